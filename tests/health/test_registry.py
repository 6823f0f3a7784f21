import logging

import pytest

from tests.fakes import FakeClock
from tritonfleet.health.errors import NodeIdTaken, NodeSecretRefused, UnknownNode
from tritonfleet.health.records import digest, next_health
from tritonfleet.health.registry import Registry
from tritonfleet.protocol import NodeHealth

from .fakes import Managers, beat

HEALTHY, UNHEALTHY = NodeHealth.HEALTHY, NodeHealth.UNHEALTHY


def make(clock: FakeClock, ttl_s: float = 3.0, threshold: int = 3) -> Registry:
    return Registry(ttl_s=ttl_s, unhealthy_threshold=threshold, clock=clock)


def health_of(registry: Registry, node_id: str = "n1") -> NodeHealth:
    (view,) = [v for v in registry.listing().nodes if v.node_id == node_id]
    return view.health


def test_a_new_node_is_listed_healthy_with_its_heartbeat_and_age() -> None:
    clock = FakeClock()
    registry = make(clock)
    feed = Managers(registry)
    feed(beat("n1", pending=4))
    clock.advance(1.5)
    (view,) = registry.listing().nodes
    assert (view.node_id, view.health, view.pending, view.probe_failures) == ("n1", HEALTHY, 4, 0)
    assert view.last_heartbeat_age_s == 1.5


def test_a_node_stays_while_heartbeats_arrive_within_the_ttl_and_leaves_after() -> None:
    clock = FakeClock()
    registry = make(clock, ttl_s=3.0)
    feed = Managers(registry)
    feed(beat("n1"))
    clock.advance(2.5)
    feed(beat("n1"))
    clock.advance(2.5)
    assert registry.tick() == []
    clock.advance(0.6)
    assert registry.tick() == ["n1"]
    assert "n1" not in registry


def test_a_node_turns_unhealthy_after_threshold_consecutive_probe_failures() -> None:
    registry = make(FakeClock(), threshold=3)
    feed = Managers(registry)
    feed(beat("n1"))
    for _ in range(2):
        registry.record_probe("n1", ok=False)
    assert health_of(registry) is HEALTHY
    registry.record_probe("n1", ok=False)
    assert health_of(registry) is UNHEALTHY


def test_a_probe_success_resets_the_failure_count() -> None:
    registry = make(FakeClock(), threshold=2)
    feed = Managers(registry)
    feed(beat("n1"))
    registry.record_probe("n1", ok=False)
    registry.record_probe("n1", ok=True)
    registry.record_probe("n1", ok=False)
    assert health_of(registry) is HEALTHY
    assert registry.listing().nodes[0].probe_failures == 1


def test_an_unhealthy_node_is_readmitted_by_a_heartbeat_then_a_probe_success() -> None:
    registry = make(FakeClock(), threshold=1)
    feed = Managers(registry)
    feed(beat("n1"))
    registry.record_probe("n1", ok=False)
    feed(beat("n1"))
    assert health_of(registry) is UNHEALTHY
    registry.record_probe("n1", ok=True)
    assert health_of(registry) is HEALTHY


def test_an_unhealthy_node_is_readmitted_by_a_probe_success_then_a_heartbeat() -> None:
    registry = make(FakeClock(), threshold=1)
    feed = Managers(registry)
    feed(beat("n1"))
    registry.record_probe("n1", ok=False)
    registry.record_probe("n1", ok=True)
    assert health_of(registry) is UNHEALTHY  # no heartbeat since the fall yet
    feed(beat("n1"))
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
    feed = Managers(registry)
    feed(beat("n1"))
    version = registry.version
    assert registry.remove("n1", feed.secrets["n1"]) is True
    assert registry.listing().nodes == []
    assert registry.version == version + 1
    assert registry.remove("n1", None) is False
    assert registry.version == version + 1


def test_a_probe_result_for_a_removed_node_is_ignored() -> None:
    registry = make(FakeClock())
    registry.record_probe("gone", ok=False)
    assert len(registry) == 0
    assert registry.version == 0


def test_listing_filters_by_model_and_version() -> None:
    registry = make(FakeClock())
    feed = Managers(registry)
    feed(beat("a", models=[{"name": "digits", "version": "1"}]))
    feed(beat("b", models=[{"name": "digits", "version": "2"}]))
    feed(beat("c", models=[{"name": "resnet", "version": "1"}]))
    assert [v.node_id for v in registry.listing("digits").nodes] == ["a", "b"]
    assert [v.node_id for v in registry.listing("digits", "2").nodes] == ["b"]
    assert registry.listing("bert").nodes == []


def test_version_bumps_on_add_health_and_heartbeat_changes_but_not_on_repeats() -> None:
    seen: list[int] = []
    registry = Registry(ttl_s=3.0, unhealthy_threshold=1, clock=FakeClock(), on_change=seen.append)
    feed = Managers(registry)
    feed(beat("n1"))  # added
    feed(beat("n1"))  # nothing new
    feed(beat("n1", state="draining"))
    feed(beat("n1", state="draining", models=[]))
    feed(beat("n1", state="draining", models=[], triton_grpc_url="n1:8001"))
    registry.record_probe("n1", ok=False)  # unhealthy
    registry.record_probe("n1", ok=False)  # still unhealthy: no change
    assert seen == [1, 2, 3, 4, 5]
    assert registry.version == 5


def test_load_only_changes_are_coalesced_into_one_bump_at_the_next_tick() -> None:
    registry = make(FakeClock())
    feed = Managers(registry)
    feed(beat("a"))
    feed(beat("b"))
    version = registry.version
    feed(beat("a", in_flight=3))
    feed(beat("b", pending=7))
    assert registry.version == version
    registry.tick()
    assert registry.version == version + 1
    assert {v.node_id: v.in_flight + v.pending for v in registry.listing().nodes} == {"a": 3, "b": 7}
    registry.tick()
    assert registry.version == version + 1


def test_a_structural_bump_carries_pending_load_changes_with_it() -> None:
    registry = make(FakeClock())
    feed = Managers(registry)
    feed(beat("a"))
    feed(beat("a", in_flight=2))
    feed(beat("b"))
    version = registry.version
    registry.tick()
    assert registry.version == version


def test_counts_tally_nodes_by_health() -> None:
    registry = make(FakeClock(), threshold=1)
    feed = Managers(registry)
    feed(beat("a"))
    feed(beat("b"))
    registry.record_probe("b", ok=False)
    assert registry.counts() == {HEALTHY: 1, UNHEALTHY: 1}


def test_registration_answers_a_fresh_secret_and_keeps_only_its_hash() -> None:
    registry = make(FakeClock())
    one, two = registry.register(beat("a"), None), registry.register(beat("b"), None)
    assert one != two and len(one) >= 32
    record = registry._nodes["a"]
    assert record.secret_digest == digest(one) and one not in repr(record)


def test_a_heartbeat_or_removal_without_the_nodes_secret_is_refused_and_changes_nothing() -> None:
    registry = make(FakeClock())
    secret = registry.register(beat("a", pending=1), None)
    other = registry.register(beat("b"), None)
    version, before = registry.version, registry.listing()
    for wrong in (other, None, secret + "x"):
        with pytest.raises(NodeSecretRefused):
            registry.heartbeat(beat("a", pending=9, manager_url="http://evil:1"), wrong)
        with pytest.raises(NodeSecretRefused):
            registry.remove("a", wrong)
    registry.tick()
    assert (registry.version, registry.listing()) == (version, before)


def test_a_heartbeat_from_an_unknown_node_is_refused_so_that_it_registers_again() -> None:
    registry = make(FakeClock())
    with pytest.raises(UnknownNode):
        registry.heartbeat(beat("a"), "any")
    assert len(registry) == 0 and registry.version == 0


def test_a_live_id_is_registered_again_only_with_its_secret_which_stays_the_same() -> None:
    clock = FakeClock()
    registry = make(clock)
    secret = registry.register(beat("a"), None)
    for wrong in (None, "guess"):
        with pytest.raises(NodeIdTaken):
            registry.register(beat("a", manager_url="http://evil:1"), wrong)
    assert registry.listing().nodes[0].manager_url == "http://a.mgr:9000"
    clock.advance(2.0)
    assert registry.register(beat("a", pending=3), secret) == secret
    assert registry.listing().nodes[0].last_heartbeat_age_s == 0.0


def test_an_id_is_free_again_once_its_node_expires_even_before_the_tick() -> None:
    clock = FakeClock()
    registry = make(clock, ttl_s=3.0)
    old = registry.register(beat("a"), None)
    clock.advance(3.1)
    new = registry.register(beat("a"), None)
    assert new != old
    with pytest.raises(NodeSecretRefused):
        registry.heartbeat(beat("a"), old)
    assert registry.tick() == []


def test_refusals_never_carry_the_secret_presented(caplog: pytest.LogCaptureFixture) -> None:
    registry = make(FakeClock())
    registry.register(beat("a"), None)
    with caplog.at_level(logging.DEBUG), pytest.raises(NodeSecretRefused) as refused:
        registry.heartbeat(beat("a"), "presented-guess")
    assert "presented-guess" not in str(refused.value) + caplog.text


def test_a_new_registry_says_its_list_may_be_incomplete_for_one_ttl() -> None:
    """A restarted checker has not heard from every live node yet: watchers keep what they knew."""
    clock = FakeClock()
    registry = make(clock, ttl_s=3.0)
    assert registry.listing().warming_s == 3.0
    clock.advance(2.0)
    assert registry.listing().warming_s == 1.0
    clock.advance(5.0)
    assert registry.listing().warming_s == 0.0
