import pytest

from tests.fakes import FakeClock
from tritonfleet.health.records import next_health
from tritonfleet.health.registry import Registry
from tritonfleet.protocol import NodeHealth

from .fakes import beat

HEALTHY, UNHEALTHY = NodeHealth.HEALTHY, NodeHealth.UNHEALTHY


def make(clock: FakeClock, ttl_s: float = 3.0, threshold: int = 3) -> Registry:
    return Registry(ttl_s=ttl_s, unhealthy_threshold=threshold, clock=clock)


def health_of(registry: Registry, node_id: str = "n1") -> NodeHealth:
    (view,) = [v for v in registry.listing().nodes if v.node_id == node_id]
    return view.health


def test_a_new_node_is_listed_healthy_with_its_heartbeat_and_age() -> None:
    clock = FakeClock()
    registry = make(clock)
    assert registry.heartbeat(beat("n1", pending=4)) is True
    clock.advance(1.5)
    (view,) = registry.listing().nodes
    assert (view.node_id, view.health, view.pending, view.probe_failures) == ("n1", HEALTHY, 4, 0)
    assert view.last_heartbeat_age_s == 1.5


def test_a_node_stays_while_heartbeats_arrive_within_the_ttl_and_leaves_after() -> None:
    clock = FakeClock()
    registry = make(clock, ttl_s=3.0)
    registry.heartbeat(beat("n1"))
    clock.advance(2.5)
    registry.heartbeat(beat("n1"))
    clock.advance(2.5)
    assert registry.tick() == []
    clock.advance(0.6)
    assert registry.tick() == ["n1"]
    assert "n1" not in registry


def test_a_node_turns_unhealthy_after_threshold_consecutive_probe_failures() -> None:
    registry = make(FakeClock(), threshold=3)
    registry.heartbeat(beat("n1"))
    for _ in range(2):
        registry.record_probe("n1", ok=False)
    assert health_of(registry) is HEALTHY
    registry.record_probe("n1", ok=False)
    assert health_of(registry) is UNHEALTHY


def test_a_probe_success_resets_the_failure_count() -> None:
    registry = make(FakeClock(), threshold=2)
    registry.heartbeat(beat("n1"))
    registry.record_probe("n1", ok=False)
    registry.record_probe("n1", ok=True)
    registry.record_probe("n1", ok=False)
    assert health_of(registry) is HEALTHY
    assert registry.listing().nodes[0].probe_failures == 1


def test_an_unhealthy_node_is_readmitted_by_a_heartbeat_then_a_probe_success() -> None:
    registry = make(FakeClock(), threshold=1)
    registry.heartbeat(beat("n1"))
    registry.record_probe("n1", ok=False)
    registry.heartbeat(beat("n1"))
    assert health_of(registry) is UNHEALTHY
    registry.record_probe("n1", ok=True)
    assert health_of(registry) is HEALTHY


def test_an_unhealthy_node_is_readmitted_by_a_probe_success_then_a_heartbeat() -> None:
    registry = make(FakeClock(), threshold=1)
    registry.heartbeat(beat("n1"))
    registry.record_probe("n1", ok=False)
    registry.record_probe("n1", ok=True)
    assert health_of(registry) is UNHEALTHY  # no heartbeat since the fall yet
    registry.heartbeat(beat("n1"))
    assert health_of(registry) is HEALTHY


@pytest.mark.parametrize(
    ("current", "failures", "heard", "expected"),
    [
        (HEALTHY, 0, False, HEALTHY),
        (HEALTHY, 2, False, HEALTHY),
        (HEALTHY, 3, True, UNHEALTHY),
        (UNHEALTHY, 0, False, UNHEALTHY),
        (UNHEALTHY, 1, True, UNHEALTHY),
        (UNHEALTHY, 0, True, HEALTHY),
    ],
)
def test_next_health_follows_failures_and_fresh_heartbeats(
    current: NodeHealth, failures: int, heard: bool, expected: NodeHealth
) -> None:
    got = next_health(current, probe_failures=failures, threshold=3, heard_since_unhealthy=heard)
    assert got is expected


def test_deregistration_removes_a_node_at_once_and_ignores_unknown_ids() -> None:
    registry = make(FakeClock())
    registry.heartbeat(beat("n1"))
    version = registry.version
    assert registry.remove("n1") is True
    assert registry.listing().nodes == []
    assert registry.version == version + 1
    assert registry.remove("n1") is False
    assert registry.version == version + 1


def test_a_probe_result_for_a_removed_node_is_ignored() -> None:
    registry = make(FakeClock())
    registry.record_probe("gone", ok=False)
    assert len(registry) == 0
    assert registry.version == 0


def test_listing_filters_by_model_and_version() -> None:
    registry = make(FakeClock())
    registry.heartbeat(beat("a", models=[{"name": "digits", "version": "1"}]))
    registry.heartbeat(beat("b", models=[{"name": "digits", "version": "2"}]))
    registry.heartbeat(beat("c", models=[{"name": "resnet", "version": "1"}]))
    assert [v.node_id for v in registry.listing("digits").nodes] == ["a", "b"]
    assert [v.node_id for v in registry.listing("digits", "2").nodes] == ["b"]
    assert registry.listing("bert").nodes == []


def test_version_bumps_on_add_health_and_heartbeat_changes_but_not_on_repeats() -> None:
    seen: list[int] = []
    registry = Registry(ttl_s=3.0, unhealthy_threshold=1, clock=FakeClock(), on_change=seen.append)
    registry.heartbeat(beat("n1"))  # added
    registry.heartbeat(beat("n1"))  # nothing new
    registry.heartbeat(beat("n1", state="draining"))
    registry.heartbeat(beat("n1", state="draining", models=[]))
    registry.heartbeat(beat("n1", state="draining", models=[], triton_grpc_url="n1:8001"))
    registry.record_probe("n1", ok=False)  # unhealthy
    registry.record_probe("n1", ok=False)  # still unhealthy: no change
    assert seen == [1, 2, 3, 4, 5]
    assert registry.version == 5


def test_load_only_changes_are_coalesced_into_one_bump_at_the_next_tick() -> None:
    registry = make(FakeClock())
    registry.heartbeat(beat("a"))
    registry.heartbeat(beat("b"))
    version = registry.version
    registry.heartbeat(beat("a", in_flight=3))
    registry.heartbeat(beat("b", pending=7))
    assert registry.version == version
    registry.tick()
    assert registry.version == version + 1
    assert {v.node_id: v.in_flight + v.pending for v in registry.listing().nodes} == {"a": 3, "b": 7}
    registry.tick()
    assert registry.version == version + 1


def test_a_structural_bump_carries_pending_load_changes_with_it() -> None:
    registry = make(FakeClock())
    registry.heartbeat(beat("a"))
    registry.heartbeat(beat("a", in_flight=2))
    registry.heartbeat(beat("b"))
    version = registry.version
    registry.tick()
    assert registry.version == version


def test_counts_tally_nodes_by_health() -> None:
    registry = make(FakeClock(), threshold=1)
    registry.heartbeat(beat("a"))
    registry.heartbeat(beat("b"))
    registry.record_probe("b", ok=False)
    assert registry.counts() == {HEALTHY: 1, UNHEALTHY: 1}
