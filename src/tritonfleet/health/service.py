"""Everything one health-checker app holds, free of HTTP framework types."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from tritonfleet.config import ConfigError, FleetConfig, HealthConfig
from tritonfleet.health.feed import ChangeFeed
from tritonfleet.health.metrics import HealthMetrics
from tritonfleet.health.prober import Prober
from tritonfleet.health.records import Clock
from tritonfleet.health.registry import Registry
from tritonfleet.protocol import NodeList, RegisterResponse


@dataclass(frozen=True)
class Checker:
    """The registry, the feed that wakes its watchers, the prober and the metrics of one app."""

    config: HealthConfig
    token: str = field(repr=False)
    registry: Registry
    feed: ChangeFeed
    prober: Prober
    metrics: HealthMetrics

    @classmethod
    def build(cls, config: FleetConfig, *, clock: Clock, prober: Prober | None = None) -> Checker:
        """Raises ConfigError without a cluster token: an open registry would accept any node."""
        token = config.cluster.read_token()
        if not token:
            raise ConfigError("the cluster token is empty")
        feed = ChangeFeed()
        registry = Registry(
            ttl_s=config.health.ttl_s,
            unhealthy_threshold=config.health.unhealthy_threshold,
            clock=clock,
            on_change=feed.publish,
        )
        prober = prober if prober is not None else Prober(config.health.probe_timeout_s)
        return cls(config.health, token, registry, feed, prober, HealthMetrics())

    def accepts(self, presented: str) -> bool:
        # Constant time, so response timing does not reveal how much of a guess was right.
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def acknowledge(self, node_id: str, node_secret: str | None = None) -> RegisterResponse:
        return RegisterResponse(
            node_id=node_id,
            heartbeat_interval_s=self.config.heartbeat_interval_s,
            ttl_s=self.config.ttl_s,
            node_secret=node_secret,
        )

    async def watch(
        self, since: int | None, timeout_s: float | None, model: str | None, version: str | None
    ) -> NodeList:
        """The listing once the version differs from `since`, or after the timeout regardless.

        A `since` *ahead* of ours was seen from an earlier incarnation of this checker (versions
        restart at 0), so it is answered at once as well: waiting would only delay the resync.
        """
        limit_s = self.config.watch_timeout_s
        wait_s = limit_s if timeout_s is None else min(timeout_s, limit_s)
        if since is not None:
            await self.feed.wait(lambda: self.registry.version != since, wait_s)
        return self.registry.listing(model, version)
