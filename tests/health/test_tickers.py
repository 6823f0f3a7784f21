import asyncio

import pytest

from tests.fakes import FakeClock
from tritonfleet.health.prober import Prober
from tritonfleet.health.records import ProbeTarget
from tritonfleet.health.registry import Registry
from tritonfleet.health.tickers import expire_forever, probe_round
from tritonfleet.protocol import NodeHealth

from .fakes import Managers, beat


class ScriptedProber(Prober):
    """Fails nodes named in `down`, raises for nodes named in `broken`."""

    def __init__(self, down: set[str], broken: frozenset[str] = frozenset()) -> None:
        super().__init__(timeout_s=1.0)
        self.down, self.broken = down, broken

    async def probe(self, target: ProbeTarget) -> bool:
        if target.node_id in self.broken:
            raise RuntimeError("prober bug")
        return target.node_id not in self.down


async def test_a_probe_round_records_each_result_and_counts_failures() -> None:
    registry = Registry(ttl_s=3, unhealthy_threshold=1, clock=FakeClock())
    feed = Managers(registry)
    for node_id in ("a", "b", "c"):
        feed(beat(node_id))
    failures: list[None] = []
    await probe_round(registry, ScriptedProber(down={"b"}), lambda: failures.append(None))
    assert {v.node_id: v.health for v in registry.listing().nodes} == {
        "a": NodeHealth.HEALTHY,
        "b": NodeHealth.UNHEALTHY,
        "c": NodeHealth.HEALTHY,
    }
    assert len(failures) == 1


async def test_a_probe_that_raises_counts_as_a_failure_and_the_round_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry(ttl_s=3, unhealthy_threshold=1, clock=FakeClock())
    feed = Managers(registry)
    feed(beat("a"))
    feed(beat("b"))
    await probe_round(registry, ScriptedProber(down=set(), broken={"a"}), lambda: None)
    assert registry.counts() == {NodeHealth.HEALTHY: 1, NodeHealth.UNHEALTHY: 1}
    assert "probe raised" in caplog.text


async def test_the_expiry_ticker_drops_silent_nodes_until_cancelled() -> None:
    clock = FakeClock()
    registry = Registry(ttl_s=3, unhealthy_threshold=1, clock=clock)
    feed = Managers(registry)
    feed(beat("a"))
    ticker = asyncio.create_task(expire_forever(registry, tick_s=0.005))
    clock.advance(3.1)
    await asyncio.sleep(0.02)
    assert len(registry) == 0
    ticker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ticker
