"""TritonFleet: one KServe v2 entry point in front of many Triton Inference Servers."""

__version__ = "0.1.0"
