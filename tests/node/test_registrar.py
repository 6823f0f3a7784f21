"""HealthLink against a health checker simulated by httpx.MockTransport."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.node.fakes import wait_until
from tritonfleet.node.backoff import Backoff
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.registrar import HealthLink
from tritonfleet.protocol import Heartbeat, NodeState

FAST = Backoff(base_s=0.01, max_s=0.05)
Handler = Callable[[httpx.Request], httpx.Response]


def heartbeat(state: NodeState = NodeState.READY) -> Heartbeat:
    return Heartbeat(node_id="n1", manager_url="http://m", triton_http_url="http://t", state=state)


def registered(interval_s: float = 10.0, secret: str = "s3cret-1") -> httpx.Response:
    body = {"node_id": "n1", "heartbeat_interval_s": interval_s, "ttl_s": 3, "node_secret": secret}
    return httpx.Response(200, json=body)


def presented(request: httpx.Request) -> str | None:
    return request.headers.get("X-Node-Secret")


@asynccontextmanager
async def link_to(
    handler: Handler, snapshot: Callable[[], Heartbeat] = heartbeat
) -> AsyncIterator[HealthLink]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        yield HealthLink("http://health/", "tok", snapshot, client, FAST, NodeMetrics())


def failures(link: HealthLink) -> float | None:
    name = "tritonfleet_node_heartbeat_failures_total"
    return link.metrics.registry.get_sample_value(name, {"health_url": "http://health"})


async def run_for(link: HealthLink, seconds: float) -> None:
    task = asyncio.create_task(link.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_register_retries_until_accepted_then_heartbeats_at_the_given_interval() -> None:
    """Two 503s, then a registration whose interval (50 ms) paces the heartbeats that follow."""
    seen: list[tuple[str, str, str | None]] = []
    answers = [httpx.Response(503), httpx.Response(503), registered(interval_s=0.05)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("Authorization")))
        return answers.pop(0) if answers else httpx.Response(200, json={})

    async with link_to(handler) as link:
        await run_for(link, 0.3)
    assert [path for _, path, _ in seen[:3]] == ["/v1/nodes/register"] * 3
    beats = [path for _, path, _ in seen[3:]]
    assert 3 <= len(beats) <= 7 and set(beats) == {"/v1/nodes/n1/heartbeat"}
    assert {auth for _, _, auth in seen} == {"Bearer tok"}
    assert failures(link) == 2


async def test_a_refused_token_is_logged_as_an_error_and_retried_slowly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 is an error in the log, and registration is retried at the longest back-off only."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(401, json={"error": "unauthorized"})

    async with link_to(handler) as link:
        with caplog.at_level(logging.ERROR):
            await run_for(link, 0.2)
    assert 2 <= len(calls) <= 5  # every 50 ms, not every 10 ms
    assert any("cluster token" in record.getMessage() for record in caplog.records)


async def test_poke_sends_the_next_heartbeat_at_once() -> None:
    """With a 10 s interval, a poke gets the changed state to the health checker within moments."""
    bodies: list[dict[str, str]] = []
    state = [NodeState.STARTING]

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return registered(interval_s=10.0) if request.url.path.endswith("/register") else httpx.Response(200)

    async with link_to(handler, lambda: heartbeat(state[0])) as link:
        task = asyncio.create_task(link.run())
        await wait_until(lambda: len(bodies) == 2, 1, "registration and first heartbeat")
        state[0] = NodeState.READY
        link.poke()
        await wait_until(lambda: len(bodies) == 3, 0.5, "a heartbeat right after the poke")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert bodies[-1]["state"] == "ready"


async def test_farewell_sends_draining_then_delete_and_never_raises() -> None:
    """Farewell is a last heartbeat and a DELETE; an unreachable health checker is only logged."""
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(200, json={})

    async with link_to(handler, lambda: heartbeat(NodeState.DRAINING)) as link:
        await link.farewell()
    assert seen == [("POST", "/v1/nodes/n1/heartbeat"), ("DELETE", "/v1/nodes/n1")]

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with link_to(unreachable) as link:
        await link.farewell()
    assert failures(link) == 2


@pytest.mark.parametrize("status", [404, 403], ids=["forgotten", "id-held-by-another"])
async def test_a_heartbeat_answered_404_or_403_registers_again_and_uses_the_new_secret(status: int) -> None:
    """A checker that lost the node (404), or knows another node by its id (403), gets a fresh
    registration, whose secret the heartbeats then present."""
    seen: list[tuple[str, str | None]] = []
    answers = [
        registered(interval_s=0.02, secret="old"),
        httpx.Response(status, json={"error": "no"}),
        registered(interval_s=0.02, secret="new"),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, presented(request)))
        return answers.pop(0) if answers else httpx.Response(200, json={})

    async with link_to(handler) as link:
        await run_for(link, 0.15)
    assert seen[:3] == [
        ("/v1/nodes/register", None),
        ("/v1/nodes/n1/heartbeat", "old"),
        ("/v1/nodes/register", "old"),
    ]
    assert len(seen) > 4 and set(seen[3:]) == {("/v1/nodes/n1/heartbeat", "new")}


async def test_heartbeats_and_the_farewell_present_the_secret_registration_answered() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, presented(request)))
        return registered(interval_s=0.02) if request.url.path.endswith("/register") else httpx.Response(200)

    async with link_to(handler) as link:
        await run_for(link, 0.1)
        await link.farewell()
    assert seen[0] == ("POST", "/v1/nodes/register", None)
    assert {secret for _, path, secret in seen[1:]} == {"s3cret-1"}
    assert seen[-1][:2] == ("DELETE", "/v1/nodes/n1")


async def test_each_health_checker_gets_its_own_secret() -> None:
    """Two links, as the manager keeps one per checker URL, each present the secret of their own."""
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        seen.append((host, request.url.path, presented(request)))
        return (
            registered(secret=f"for-{host}")
            if request.url.path.endswith("/register")
            else httpx.Response(200)
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        links = [
            HealthLink(f"http://{host}", "tok", heartbeat, client, FAST, NodeMetrics())
            for host in ("h1", "h2")
        ]
        for link in links:
            await link.register()
            await link.beat()
    beats = {(host, secret) for host, path, secret in seen if path.endswith("/heartbeat")}
    assert beats == {("h1", "for-h1"), ("h2", "for-h2")}


async def test_a_registration_refused_409_is_retried_every_heartbeat_interval_until_the_id_is_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A manager restarted before its old record expired waits it out at its own pace, not the
    back-off's (which would reach 50 ms here), and says so once."""
    times: list[float] = []
    loop = asyncio.get_running_loop()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/register"):
            times.append(loop.time())
            if len(times) <= 3:
                return httpx.Response(409, json={"error": "node id 'n1' is held by a live node"})
            return registered()
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        slow = Backoff(base_s=1.0, max_s=1.0)
        link = HealthLink("http://health", "tok", heartbeat, client, slow, NodeMetrics(), interval_s=0.03)
        with caplog.at_level(logging.INFO):
            await asyncio.wait_for(link.register(), 1.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4 and all(0.025 <= gap < 0.5 for gap in gaps)
    held = [r for r in caplog.records if "still held by a live registration" in r.getMessage()]
    assert len(held) == 1 and held[0].levelname == "WARNING"
    assert any(r.getMessage() == "registered" for r in caplog.records)


async def test_the_secret_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Not at registration, nor in failures of heartbeats, re-registration or farewell."""
    answers = [
        registered(interval_s=0.02, secret="first-s3cret"),
        httpx.Response(403, json={"error": "missing or wrong node secret"}),
        httpx.Response(409, json={"error": "held"}),
        registered(interval_s=0.02, secret="second-s3cret"),
        httpx.Response(500, text="boom"),
    ]

    sent: set[str | None] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.add(presented(request))
        return answers.pop(0) if answers else httpx.Response(404, json={"error": "gone"})

    async with link_to(handler) as link:
        with caplog.at_level(logging.DEBUG):
            await run_for(link, 0.2)
            await link.farewell()
    assert {"first-s3cret", "second-s3cret"} <= sent, "the secrets were in use"
    assert any(r.getMessage() == "registered" for r in caplog.records)
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "s3cret" not in logged
