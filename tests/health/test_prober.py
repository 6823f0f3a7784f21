import logging

import httpx
import pytest

from tritonfleet.health.errors import HealthError
from tritonfleet.health.prober import Prober
from tritonfleet.health.records import ProbeTarget

TARGET = ProbeTarget("n1", "http://mgr:9000/", "http://triton:8000")


def answering(statuses: dict[str, int], seen: list[str] | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(str(request.url))
        return httpx.Response(statuses.get(request.url.path, 404))

    return httpx.MockTransport(handle)


async def test_a_node_passes_when_ping_and_triton_ready_both_answer_200() -> None:
    seen: list[str] = []
    transport = answering({"/ping": 200, "/v2/health/ready": 200}, seen)
    async with Prober(1.0, transport=transport) as prober:
        assert await prober.probe(TARGET) is True
    assert sorted(seen) == ["http://mgr:9000/ping", "http://triton:8000/v2/health/ready"]


@pytest.mark.parametrize("failing", ["/ping", "/v2/health/ready"])
async def test_a_node_fails_and_is_logged_when_either_check_is_not_200(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    statuses = {"/ping": 200, "/v2/health/ready": 200, failing: 503}
    async with Prober(1.0, transport=answering(statuses)) as prober:
        with caplog.at_level(logging.WARNING):
            assert await prober.probe(TARGET) is False
    (record,) = caplog.records
    assert (record.node_id, record.status) == ("n1", 503)
    assert record.url.endswith(failing)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("bad")]
)
async def test_transport_errors_are_logged_with_context_and_never_raised(
    error: httpx.HTTPError, caplog: pytest.LogCaptureFixture
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise error

    async with Prober(1.0, transport=httpx.MockTransport(handle)) as prober:
        with caplog.at_level(logging.WARNING):
            assert await prober.probe(TARGET) is False
    assert {r.node_id for r in caplog.records} == {"n1"}
    assert all(type(error).__name__ in r.error for r in caplog.records)


async def test_a_node_with_unusable_urls_fails_its_probe_instead_of_raising() -> None:
    async with Prober(1.0, transport=answering({})) as prober:
        assert await prober.probe(ProbeTarget("n1", "", "not a url")) is False


async def test_probing_outside_async_with_is_a_programming_error() -> None:
    with pytest.raises(HealthError):
        await Prober(1.0).probe(TARGET)
