"""Grey failures on the fast path, judged from Envoy's statistics (stats.py reads them every
second): pure, so that control.py only renders what they decide.

    PerTryTimeouts   per model: how long one attempt on a node may take, attempt_timeout_factor
                     x the model's recent p99 (Envoy's `upstream_rq_time` of its clusters),
                     within [floor, ceiling]; moved only when it changes materially, so that the
                     routes are not rewritten every second
    SlowHosts        per model cluster and host: the host's recent latency by Little's law
                     (mean requests in flight / answers per second); a host outlier_latency_factor
                     times slower than its peers' median is ejected (EDS: UNHEALTHY) for a
                     back-off that doubles while it stays slow. Envoy's own outlier detection
                     counts failures only, never latency.

The Python plane judges the same from each answer it relays (gateway/latency.py).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from tritonfleet.config import GatewayConfig
from tritonfleet.gateway.envoy.resources import model_of
from tritonfleet.gateway.latency import ABSOLUTE_MARGIN_S

# The timeout follows the largest p99 of the model's last readings (one a second, each over
# Envoy's last stats flush): up at once when the model slows, down a few seconds after.
P99_READINGS = 5
# A new timeout within this fraction of the current one is not worth rewriting the routes for.
MATERIAL = 0.2
# A host's latency is judged over this much of its recent readings...
WINDOW_S = 2.0
# ...and only once it has seen this many requests in it (answered, or still in flight).
MIN_REQUESTS = 3


class PerTryTimeouts:
    def __init__(self, factor: float, floor_s: float, ceiling_s: float) -> None:
        self.factor = factor
        self.floor_s = floor_s
        self.ceiling_s = ceiling_s
        self._p99s_ms: dict[str, deque[float | None]] = {}
        # Per model; a model without history has the ceiling.
        self.timeouts_s: dict[str, float] = {}

    @classmethod
    def of(cls, gw: GatewayConfig) -> PerTryTimeouts:
        return cls(gw.attempt_timeout_factor, gw.attempt_timeout_floor_s, gw.attempt_timeout_ceiling_s)

    def observe(self, p99s_ms: Mapping[str, float | None]) -> bool:
        """Each model cluster's p99 over Envoy's last interval (None: no answer in it); True
        when some model's timeout moved."""
        self._p99s_ms = {cluster: recent for cluster, recent in self._p99s_ms.items() if cluster in p99s_ms}
        for cluster, p99_ms in p99s_ms.items():
            self._p99s_ms.setdefault(cluster, deque(maxlen=P99_READINGS)).append(p99_ms)
        # The union's p99 is at most the largest of its clusters' (HTTP, gRPC, each version). A
        # model with no answer in its last readings keeps its timeout.
        worst_ms: dict[str, float] = {}
        for cluster, recent in self._p99s_ms.items():
            answered = [p99_ms for p99_ms in recent if p99_ms is not None]
            if answered:
                model = model_of(cluster)[0]
                worst_ms[model] = max(worst_ms.get(model, 0.0), *answered)
        moved = False
        for model, p99_ms in worst_ms.items():
            target_s = min(max(self.factor * p99_ms / 1000, self.floor_s), self.ceiling_s)
            current_s = self.timeouts_s.get(model, self.ceiling_s)
            if abs(target_s - current_s) > MATERIAL * current_s:
                self.timeouts_s[model] = target_s
                moved = True
        return moved


@dataclass(frozen=True)
class HostCounts:
    """One host of a cluster as Envoy counts it: requests in flight now, requests ever sent."""

    active: int
    total: int


@dataclass(frozen=True)
class Ejection:
    """A host leaving (`ejected`) or re-entering a cluster's rotation for its latency."""

    cluster: str
    address: str
    ejected: bool
    latency_s: float = 0.0
    peers_s: float = 0.0


@dataclass
class _Host:
    readings: deque[tuple[float, HostCounts]] = field(default_factory=deque)
    # Ejections in a row, each without the host judged fast in between: the back-off's exponent.
    ejections: int = 0
    until: float | None = None


class SlowHosts:
    """Which hosts of each model cluster are out of rotation for being slow against their peers.

    A host's latency over the window is its mean requests in flight over its answers per second
    (Little's law: L = λW), from Envoy's per-host `rq_active` (sampled at each reading) and
    `rq_total`; requests still in flight count toward the mean, so a host that stopped answering
    has a latency as long as the window. Sampled a few times a second, that mean is known within
    bounds (_latency_s). A host is judged once it saw MIN_REQUESTS requests in the window,
    against the median of its judged peers (so never alone): slow when even its lower bound is
    `factor` times their upper bounds' median. Found slow, it is out for `base_s`, doubling up to
    `max_s` each time it is found slow again after coming back; found fast, its back-off starts
    over. At most half a cluster's hosts are out at once: slowness shared by most hosts is the
    model's pace, not an outlier.
    """

    def __init__(
        self,
        factor: float,
        base_s: float,
        max_s: float,
        window_s: float = WINDOW_S,
        min_requests: int = MIN_REQUESTS,
    ) -> None:
        self.factor = factor
        self.base_s = base_s
        self.max_s = max_s
        self.window_s = window_s
        self.min_requests = min_requests
        self._clusters: dict[str, dict[str, _Host]] = {}

    @classmethod
    def of(cls, gw: GatewayConfig) -> SlowHosts:
        return cls(gw.outlier_latency_factor, gw.eject_base_s, gw.eject_max_s)

    def ejected(self, cluster: str) -> frozenset[str]:
        hosts = self._clusters.get(cluster, {})
        return frozenset(address for address, host in hosts.items() if host.until is not None)

    def observe(self, now: float, clusters: Mapping[str, Mapping[str, HostCounts]]) -> list[Ejection]:
        """Each model cluster's hosts, by address, as Envoy counts them `now`; the hosts that
        left or re-entered the rotation."""
        self._clusters = {name: hosts for name, hosts in self._clusters.items() if name in clusters}
        changes: list[Ejection] = []
        for name, counts in clusters.items():
            changes += self._cluster(name, now, counts)
        return changes

    def _cluster(self, name: str, now: float, counts: Mapping[str, HostCounts]) -> list[Ejection]:
        known = self._clusters.get(name, {})
        hosts = self._clusters[name] = {address: known.get(address) or _Host() for address in counts}
        changes = []
        for address, host in hosts.items():
            if host.until is not None and host.until <= now:
                host.until = None
                host.readings.clear()  # judged afresh on what it answers from now on
                changes.append(Ejection(name, address, ejected=False))
            _record(host, now, counts[address], self.window_s)
        if self.factor <= 0:
            return changes
        latencies = {
            address: bounds
            for address, host in hosts.items()
            if host.until is None and (bounds := self._latency_s(host)) is not None
        }
        room = len(hosts) // 2 - sum(host.until is not None for host in hosts.values())
        # The slowest first: at least this slow, against peers at most that slow.
        for address, (latency_s, most_s) in sorted(latencies.items(), key=lambda item: -item[1][0]):
            peers = [most for peer, (_, most) in latencies.items() if peer != address]
            if not peers:
                break
            host, peers_s = hosts[address], statistics.median(peers)
            if most_s <= self.factor * peers_s:
                host.ejections = 0  # found fast: its next ejection starts the back-off over
            # Under the Python plane's margin, slowness is noise however large the ratio.
            elif latency_s > self.factor * peers_s and latency_s - peers_s > ABSOLUTE_MARGIN_S and room > 0:
                room -= 1
                host.until = now + min(self.base_s * 2**host.ejections, self.max_s)
                host.ejections += 1
                changes.append(Ejection(name, address, True, latency_s, peers_s))
        return changes

    def _latency_s(self, host: _Host) -> tuple[float, float] | None:
        """The host's mean latency over the window, at least and at most (None: too few
        requests to judge)."""
        if len(host.readings) < 2:
            return None
        (first_at, first), (last_at, last) = host.readings[0], host.readings[-1]
        answers = (last.total - first.total) - (last.active - first.active)
        if answers + last.active < self.min_requests or last_at <= first_at:
            return None
        pairs = list(zip(host.readings, list(host.readings)[1:], strict=False))
        # Request-seconds in flight: the samples' trapezoids...
        held = sum(
            (at - before_at) * (now.active + before.active) / 2 for (before_at, before), (at, now) in pairs
        )
        # ...give or take a standard deviation of sampling a count that moves between samples
        # (roughly Poisson in the requests sampled): a fast host seen idle at every sample is
        # not infinitely fast, nor one caught busy by chance slow. (Two made a node five times
        # slower than its peers wait four seconds to be judged at 30 requests/s.)
        sampled = sum(counts.active for _, counts in host.readings)
        spread = (last_at - first_at) / len(pairs) * math.sqrt(max(sampled, 1))
        return max(0.0, held - spread) / max(answers, 1), (held + spread) / max(answers, 1)


def _record(host: _Host, now: float, counts: HostCounts, window_s: float) -> None:
    if host.readings and counts.total < host.readings[-1][1].total:
        host.readings.clear()  # Envoy restarted or rebuilt the cluster: its counters began again
    host.readings.append((now, counts))
    while len(host.readings) > 2 and now - host.readings[1][0] >= window_s:
        host.readings.popleft()
