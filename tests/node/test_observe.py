"""Parsing what Triton reports: the repository index and the Prometheus metrics."""

from __future__ import annotations

import httpx
import pytest

from tritonfleet.node.errors import TritonQueryError
from tritonfleet.node.observe import TritonObserver, pending_requests, ready_models
from tritonfleet.protocol import ModelRef

METRICS = """\
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="simple",version="1"} 2
nv_inference_pending_request_count{model="digits",version="1"} 3
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="simple",version="1"} 40
"""


def test_ready_models_keeps_only_ready_versions_sorted() -> None:
    """Of an index with a READY, an UNAVAILABLE and a version-less entry, only the READY one counts."""
    index = [
        {"name": "simple", "version": "2", "state": "READY"},
        {"name": "digits", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "_bench", "state": "UNAVAILABLE", "reason": "no backend"},
        {"name": "digits", "version": "3", "state": "READY"},
    ]
    assert ready_models(index) == [ModelRef(name="digits", version="3"), ModelRef(name="simple", version="2")]


def test_ready_models_rejects_an_index_that_is_not_a_list() -> None:
    """An error body in place of the index is an error, not an empty node."""
    with pytest.raises(ValueError):
        ready_models({"error": "boom"})


def test_pending_requests_sums_the_gauge_over_models() -> None:
    """2 pending on simple and 3 on digits make 5; other metrics do not count."""
    assert pending_requests(METRICS) == 5


def test_pending_requests_is_zero_without_the_metric() -> None:
    """A Triton with no model yet exposes no pending gauge: nothing is pending."""
    assert pending_requests("# nothing here\n") == 0


async def test_observer_maps_a_failed_query_to_triton_query_error() -> None:
    """A 500 from the repository index comes out as TritonQueryError; readiness as False."""
    transport = httpx.MockTransport(lambda request: httpx.Response(500, json={"error": "boom"}))
    async with httpx.AsyncClient(transport=transport) as client:
        observer = TritonObserver(client)
        with pytest.raises(TritonQueryError, match="repository index"):
            await observer.models("http://triton")
        assert await observer.ready("http://triton") is False
