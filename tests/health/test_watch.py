import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from tests.fakes import FakeClock
from tests.scheduler.fakes import FakeHealthChecker, FakeNetwork, node
from tritonfleet.health.command import create_app
from tritonfleet.health.watch import Answer, NodeWatcher, merge
from tritonfleet.net import free_port, http_url
from tritonfleet.protocol import NodeView

from .fakes import AUTH, TOKEN, FakeProber, beat_json, fleet_config


def ids(nodes: list[NodeView]) -> list[str]:
    return [n.node_id for n in nodes]


def has(*node_ids: str) -> Callable[[list[NodeView]], bool]:
    return lambda nodes: ids(nodes) == sorted(node_ids)


@contextlib.asynccontextmanager
async def watching(network: FakeNetwork, *hosts: str, **options: Any) -> AsyncIterator[NodeWatcher]:
    async with httpx.AsyncClient(transport=network) as client:
        watcher = NodeWatcher([f"http://{host}" for host in hosts], client, **{"token": TOKEN, **options})
        await watcher.start()
        try:
            yield watcher
        finally:
            await watcher.aclose()


async def test_the_watcher_lists_the_nodes_then_follows_changes() -> None:
    checker = FakeHealthChecker([node("a", "m")])
    seen: list[list[str]] = []
    network = FakeNetwork({"h1": checker.app})
    async with httpx.AsyncClient(transport=network) as client:
        watcher = NodeWatcher(
            ["http://h1/"], client, on_change=lambda nodes: seen.append(ids(nodes)), token=TOKEN
        )
        await watcher.start()
        assert await watcher.wait_for(has("a"), 1.0)
        checker.set_nodes([node("a", "m"), node("b", "m")])
        assert await watcher.wait_for(has("a", "b"), 1.0)
        checker.set_nodes([node("b", "m")])
        assert await watcher.wait_for(has("b"), 1.0)
        await watcher.aclose()
    assert seen == [["a"], ["a", "b"], ["b"]]


async def test_a_quiet_checker_answers_on_timeout_and_the_watch_goes_on() -> None:
    checker = FakeHealthChecker([node("a", "m")])
    async with watching(FakeNetwork({"h1": checker.app}), "h1", watch_timeout_s=0.05) as watcher:
        assert await watcher.wait_for(has("a"), 1.0)
        await asyncio.sleep(0.2)
        checker.set_nodes([node("b", "m")])
        assert await watcher.wait_for(has("b"), 1.0)


async def test_two_checkers_merge_by_node_id_preferring_the_freshest_heartbeat() -> None:
    one = FakeHealthChecker([node("a", "m", age_s=0.1, pending=1), node("b", "m", age_s=2.0, pending=1)])
    two = FakeHealthChecker([node("b", "m", age_s=0.2, pending=2), node("c", "m", pending=2)])
    async with watching(FakeNetwork({"h1": one.app, "h2": two.app}), "h1", "h2") as watcher:
        assert await watcher.wait_for(has("a", "b", "c"), 1.0)
        assert [n.pending for n in watcher.nodes] == [1, 2, 2]


def test_merge_ages_an_answer_by_the_time_it_has_waited() -> None:
    old = Answer((node("a", "m", age_s=0.1, pending=1),), received_at=10.0)
    new = Answer((node("a", "m", age_s=0.5, pending=2),), received_at=19.0)
    # As of now (20.0) the old answer's heartbeat is 10.1 s old, the new one's 1.5 s.
    assert merge([old, new], now=20.0)[0].pending == 2
    assert merge([], now=20.0) == []


async def test_a_checker_gone_for_stale_after_s_loses_its_nodes_and_the_others_stay() -> None:
    one = FakeHealthChecker([node("a", "m")])
    two = FakeHealthChecker([node("b", "m")])
    network = FakeNetwork({"h1": one.app, "h2": two.app})
    options = {"watch_timeout_s": 0.05, "retry_s": 0.02, "stale_after_s": 0.2}
    async with watching(network, "h1", "h2", **options) as watcher:
        assert await watcher.wait_for(has("a", "b"), 1.0)
        network.down.add("h1")
        assert await watcher.wait_for(has("b"), 1.0)
        network.down.clear()
        assert await watcher.wait_for(has("a", "b"), 1.0)


async def test_with_every_checker_down_the_last_view_is_held_stale_until_one_answers() -> None:
    one = FakeHealthChecker([node("a", "m")])
    two = FakeHealthChecker([node("b", "m")])
    network = FakeNetwork({"h1": one.app, "h2": two.app})
    options = {"watch_timeout_s": 0.05, "retry_s": 0.02, "stale_after_s": 0.1}
    async with watching(network, "h1", "h2", **options) as watcher:
        assert await watcher.wait_for(has("a", "b"), 1.0)
        assert not watcher.stale
        network.down.update({"h1", "h2"})
        await asyncio.sleep(0.4)  # long past stale_after_s
        assert ids(watcher.nodes) == ["a", "b"] and watcher.stale
        # One checker back, and b gone meanwhile: its complete list is the view again.
        two.set_nodes([node("c", "m")])
        network.down.discard("h2")
        assert await watcher.wait_for(has("c"), 1.0)
        assert not watcher.stale


async def test_a_restarted_checker_still_warming_adds_to_the_held_view_until_its_list_is_complete() -> None:
    checker = FakeHealthChecker([node("a", "m"), node("b", "m")])
    network = FakeNetwork({"h1": checker.app})
    options = {"watch_timeout_s": 5.0, "retry_s": 0.02, "stale_after_s": 0.05}
    async with watching(network, "h1", **options) as watcher:
        assert await watcher.wait_for(has("a", "b"), 1.0)
        restarted = FakeHealthChecker([node("a", "m")])  # b has not heartbeated to it yet
        restarted.warming_s = 0.3
        network.transports["h1"] = httpx.ASGITransport(restarted.app)
        network.down.add("h1")
        checker.set_nodes(checker.nodes)  # ends the pending watch; the old process is gone
        await asyncio.sleep(0.1)
        network.down.clear()
        await asyncio.sleep(0.1)
        assert ids(watcher.nodes) == ["a", "b"] and watcher.stale, "no burst of 'no node' answers"
        # Once its list is complete (no change needed to learn it), b is known to be gone.
        assert await watcher.wait_for(has("a"), 1.0)
        assert not watcher.stale


async def test_a_short_outage_keeps_the_checkers_nodes(caplog: pytest.LogCaptureFixture) -> None:
    checker = FakeHealthChecker([node("a", "m")])
    network = FakeNetwork({"h1": checker.app})
    options = {"watch_timeout_s": 0.02, "retry_s": 0.02, "stale_after_s": 5.0}
    async with watching(network, "h1", **options) as watcher:
        assert await watcher.wait_for(has("a"), 1.0)
        network.down.add("h1")
        await asyncio.sleep(0.2)
        assert ids(watcher.nodes) == ["a"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    # One warning for the outage, with its context, not one per retry.
    assert len(warnings) == 1
    assert warnings[0].health_url == "http://h1"  # type: ignore[attr-defined]


async def test_a_restarted_checker_is_listed_afresh_despite_its_lower_version() -> None:
    checker = FakeHealthChecker([node("a", "m")])
    network = FakeNetwork({"h1": checker.app})
    async with watching(network, "h1", watch_timeout_s=5.0, retry_s=0.02) as watcher:
        assert await watcher.wait_for(has("a"), 1.0)
        network.transports["h1"] = httpx.ASGITransport(FakeHealthChecker([node("z", "m")]).app)
        network.down.add("h1")
        # The old process answers its pending watch at version 3, then is gone.
        checker.set_nodes([])
        checker.set_nodes([])
        assert await watcher.wait_for(has(), 1.0)
        network.down.clear()
        # The new process is at version 1: watching it since 3 would hold for the whole 5 s.
        assert await watcher.wait_for(has("z"), 1.0)


async def test_an_on_change_that_raises_does_not_stop_the_watch() -> None:
    checker = FakeHealthChecker([node("a", "m")])
    calls: list[int] = []

    def broken(nodes: list[NodeView]) -> None:
        calls.append(len(nodes))
        raise RuntimeError("boom")

    async with httpx.AsyncClient(transport=FakeNetwork({"h1": checker.app})) as client:
        watcher = NodeWatcher(["http://h1"], client, on_change=broken, token=TOKEN)
        await watcher.start()
        assert await watcher.wait_for(has("a"), 1.0)
        checker.set_nodes([])
        assert await watcher.wait_for(has(), 1.0)
        await watcher.aclose()
    assert calls == [1, 0]


async def test_wait_for_gives_false_when_the_predicate_stays_false() -> None:
    async with watching(FakeNetwork({}), "nowhere", retry_s=0.01) as watcher:
        assert not await watcher.wait_for(lambda nodes: bool(nodes), 0.05)


async def test_aclose_cancels_every_watch_task() -> None:
    checker = FakeHealthChecker([node("a", "m")])
    async with watching(FakeNetwork({"h1": checker.app, "h2": checker.app}), "h1", "h2") as watcher:
        assert await watcher.wait_for(has("a"), 1.0)
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("watch ")]
        assert len(tasks) == 2
    assert all(task.done() for task in tasks)


async def test_the_watcher_follows_a_real_http_checker_and_holds_its_nodes_when_it_stops() -> None:
    checker = FakeHealthChecker([node("a", "m")])
    port = free_port()
    config = uvicorn.Config(checker.app, port=port, log_config=None, lifespan="off", ws="none")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        # No wait for the server to start: the watcher retries until it answers.
        async with httpx.AsyncClient() as client:
            watcher = NodeWatcher(
                [http_url("127.0.0.1", port)],
                client,
                watch_timeout_s=0.1,
                retry_s=0.02,
                stale_after_s=0.1,
                token=TOKEN,
            )
            await watcher.start()
            try:
                assert await watcher.wait_for(has("a"), 2.0)
                server.should_exit = True
                await serving
                await asyncio.sleep(0.3)  # past stale_after_s
                assert ids(watcher.nodes) == ["a"] and watcher.stale
            finally:
                await watcher.aclose()
    finally:
        server.should_exit = True
        await serving


async def test_the_watcher_presents_the_cluster_token_that_a_real_checker_requires(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the token it lists the nodes; with a wrong one, none, and it logs an error, not the token."""
    app = create_app(fleet_config(), clock=FakeClock(), prober=FakeProber())
    async with app.router.lifespan_context(app):
        network = FakeNetwork({"h1": app})
        async with httpx.AsyncClient(transport=network) as client:
            await client.post("http://h1/v1/nodes/register", json=beat_json("a"), headers=AUTH)
        async with watching(network, "h1", token=TOKEN, watch_timeout_s=0.05) as watcher:
            assert await watcher.wait_for(has("a"), 1.0)
        with caplog.at_level(logging.ERROR):
            async with watching(network, "h1", token="a-wrong-token", retry_s=0.02) as refused:
                assert not await refused.wait_for(has("a"), 0.2)
    assert "refused the cluster token" in caplog.text
    assert "a-wrong-token" not in caplog.text
