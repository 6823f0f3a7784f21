"""Parsing what Triton reports: the repository index and the Prometheus metrics."""

from __future__ import annotations

import httpx
import pytest

from tritonfleet.node.errors import TritonQueryError
from tritonfleet.node.observe import TritonObserver, pending_requests, ready_models, with_sequence
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


def test_a_config_with_a_sequence_batcher_makes_the_model_stateful() -> None:
    """Its idle timeout comes along, Triton's default 1 s when unset; no section: stateless."""
    ref = ModelRef(name="seq", version="1")
    stateful = with_sequence(
        ref, {"name": "seq", "sequence_batching": {"max_sequence_idle_microseconds": "5000000"}}
    )
    assert (stateful.sequence, stateful.sequence_idle_s) == (True, 5.0)
    assert with_sequence(ref, {"sequence_batching": {}}).sequence_idle_s == 1.0
    assert with_sequence(ref, {"name": "seq", "max_batch_size": 8}) == ref


async def test_each_ready_version_s_config_is_read_once_and_one_unreadable_is_left_out() -> None:
    """Configs are read when a version first appears; a version whose config fails is not
    announced (stateless by mistake would split its sequences) until it can be read."""
    asked: list[str] = []
    broken = {"/v2/models/digits/versions/1/config"}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/repository/index":
            return httpx.Response(
                200, json=[{"name": n, "version": "1", "state": "READY"} for n in ("digits", "seq")]
            )
        asked.append(request.url.path)
        if request.url.path in broken:
            return httpx.Response(500, json={"error": "boom"})
        return httpx.Response(200, json={"sequence_batching": {"max_sequence_idle_microseconds": 2000000}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        observer = TritonObserver(client)
        first = await observer.models("http://triton")
        assert first == [ModelRef(name="seq", version="1", sequence=True, sequence_idle_s=2.0)]
        broken.clear()
        second = await observer.models("http://triton")
    assert [ref.name for ref in second] == ["digits", "seq"]
    assert sorted(asked) == [*["/v2/models/digits/versions/1/config"] * 2, "/v2/models/seq/versions/1/config"]
