"""The gateway: one KServe v2 entry point in front of the cluster's Triton nodes."""
