"""Attempt timeouts and slow hosts judged from fabricated Envoy statistics (outliers.py)."""

from __future__ import annotations

from collections.abc import Mapping

from tritonfleet.config import GatewayConfig
from tritonfleet.gateway.envoy.outliers import Ejection, HostCounts, PerTryTimeouts, SlowHosts

GW = GatewayConfig()


def test_a_model_without_history_has_the_ceiling_then_its_p99_times_the_factor_within_bounds() -> None:
    timeouts = PerTryTimeouts.of(GW)
    assert not timeouts.observe({"model.simple": None})
    assert timeouts.timeouts_s == {}, "the ceiling, for now"
    assert timeouts.observe({"model.simple": 20.0})
    assert timeouts.timeouts_s == {"simple": GW.attempt_timeout_floor_s}, "3 x 20 ms is under the floor"
    assert timeouts.observe({"model.simple": 1000.0})
    assert timeouts.timeouts_s["simple"] == 3.0
    assert not PerTryTimeouts(3.0, 0.25, 10.0).observe({"model.slow": 60_000.0}), "never over the ceiling"


def test_the_timeout_follows_the_largest_recent_p99_of_all_the_models_clusters() -> None:
    timeouts = PerTryTimeouts(2.0, 0.1, 10.0)
    timeouts.observe({"model.m": 100.0, "model.m.v1": 300.0, "grpc.m": None, "model.other": 50.0})
    assert timeouts.timeouts_s == {"m": 0.6, "other": 0.1}
    # A quiet second keeps what was seen; the peak stays for the readings it is recent in.
    quiet = {"model.m": None, "model.m.v1": None, "grpc.m": 100.0, "model.other": None}
    assert not timeouts.observe(quiet)
    assert timeouts.timeouts_s == {"m": 0.6, "other": 0.1}
    for _ in range(4):
        timeouts.observe(quiet)
    assert timeouts.timeouts_s == {"m": 0.2, "other": 0.1}, (
        "then only gRPC's answers count; other keeps its own"
    )


def test_the_timeout_moves_only_when_it_changes_materially() -> None:
    timeouts = PerTryTimeouts(1.0, 0.1, 10.0)
    timeouts.observe({"model.m": 1000.0})
    assert not timeouts.observe({"model.m": 1100.0}), "10% more: the routes stay as they are"
    assert timeouts.observe({"model.m": 1500.0})
    assert timeouts.timeouts_s["m"] == 1.5


class Host:
    """A host answering `rate` requests a second, each taking `latency_s`: in flight, by
    Little's law, rate x latency on average (here always)."""

    def __init__(self, rate: float, latency_s: float) -> None:
        self.rate, self.latency_s, self.total = rate, latency_s, 0.0

    def counts(self, dt_s: float) -> HostCounts:
        self.total += self.rate * dt_s
        return HostCounts(active=round(self.rate * self.latency_s), total=round(self.total))


def run(
    slow: SlowHosts, hosts: Mapping[str, Host], start: float, seconds: float, cluster: str = "model.m"
) -> list[Ejection]:
    changes: list[Ejection] = []
    for tick in range(round(seconds * 4)):
        now = start + tick / 4
        changes += slow.observe(
            now, {cluster: {address: host.counts(0.25) for address, host in hosts.items()}}
        )
    return changes


def test_a_host_much_slower_than_its_peers_is_ejected_within_two_seconds_and_comes_back() -> None:
    slow = SlowHosts(factor=4.0, base_s=1.0, max_s=30.0)
    hosts = {"a:1": Host(200, 0.02), "b:1": Host(200, 0.02), "c:1": Host(20, 0.4)}
    first = run(slow, hosts, 0.0, 1.0)
    assert [(c.address, c.ejected) for c in first] == [("c:1", True)]
    assert first[0].latency_s > 4 * first[0].peers_s
    assert slow.ejected("model.m") == {"c:1"}
    # Out for the base back-off: then back, to be judged on what it answers next.
    hosts["c:1"] = Host(0, 0.4)
    assert [(c.address, c.ejected) for c in run(slow, hosts, 1.0, 1.0)] == [("c:1", False)]
    assert slow.ejected("model.m") == frozenset()


def test_a_host_still_slow_when_it_comes_back_is_ejected_for_twice_as_long() -> None:
    slow = SlowHosts(factor=4.0, base_s=1.0, max_s=30.0)
    hosts = {"a:1": Host(200, 0.02), "c:1": Host(20, 0.4)}
    timeline = []
    for tick in range(40):
        now = tick / 4
        for change in slow.observe(now, {"model.m": {a: h.counts(0.25) for a, h in hosts.items()}}):
            timeline.append((now, change.ejected))
    (out1, _), (back1, _), (out2, _), (back2, _) = timeline[:4]
    assert [ejected for _, ejected in timeline[:4]] == [True, False, True, False]
    assert (back1 - out1, back2 - out2) == (1.0, 2.0)


def test_hosts_of_equal_pace_are_never_ejected_however_their_samples_fall() -> None:
    slow = SlowHosts(factor=4.0, base_s=1.0, max_s=30.0)

    class Flickering(Host):
        """Fast requests: one caught in flight at some samples, none at the others."""

        def __init__(self, pattern: list[int]) -> None:
            super().__init__(500, 0.001)
            self.pattern, self.at = pattern, 0

        def counts(self, dt_s: float) -> HostCounts:
            self.total += self.rate * dt_s
            self.at += 1
            return HostCounts(active=self.pattern[self.at % len(self.pattern)], total=round(self.total))

    hosts = {"a:1": Flickering([1, 1, 1, 0]), "b:1": Flickering([0])}
    assert run(slow, hosts, 0.0, 10.0) == []


def test_a_lone_host_or_one_with_too_few_requests_is_not_judged() -> None:
    slow = SlowHosts(factor=4.0, base_s=1.0, max_s=30.0)
    assert run(slow, {"c:1": Host(20, 0.4)}, 0.0, 4.0) == [], "no peer to compare with"
    assert run(slow, {"a:1": Host(200, 0.02), "c:1": Host(0.5, 4.0)}, 10.0, 1.0) == []


def test_at_most_half_of_a_cluster_is_ejected_for_slowness() -> None:
    slow = SlowHosts(factor=4.0, base_s=10.0, max_s=30.0)
    hosts = {"a:1": Host(200, 0.02), "b:1": Host(200, 0.02), "c:1": Host(20, 0.4), "d:1": Host(20, 0.5)}
    assert {c.address for c in run(slow, hosts, 0.0, 2.0)} == {"c:1", "d:1"}
    hosts["b:1"] = Host(20, 0.4)
    assert run(slow, hosts, 2.0, 3.0) == [], "b is as slow, but the rest would be one host"


def test_latency_outliers_are_off_with_a_factor_of_zero() -> None:
    slow = SlowHosts.of(GatewayConfig(outlier_latency_factor=0))
    assert run(slow, {"a:1": Host(200, 0.02), "c:1": Host(20, 0.4)}, 0.0, 3.0) == []


def test_a_restarted_envoys_counters_start_the_hosts_window_again() -> None:
    slow = SlowHosts(factor=4.0, base_s=1.0, max_s=30.0)
    run(slow, {"a:1": Host(200, 0.02), "c:1": Host(200, 0.02)}, 0.0, 2.0)
    # Counts fall back to zero: no negative answers, no verdict on a window across the restart.
    assert run(slow, {"a:1": Host(200, 0.02), "c:1": Host(200, 0.02)}, 2.0, 0.25) == []
