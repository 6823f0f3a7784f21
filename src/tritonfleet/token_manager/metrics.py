"""The token manager's Prometheus metrics, in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from tritonfleet.metrics import HttpMetrics

PREFIX = "tritonfleet_token_manager"


class TokenManagerMetrics:
    def __init__(self) -> None:
        # Per app, not prometheus_client's global registry, so tests can build many apps.
        self.collectors = CollectorRegistry()
        self.http = HttpMetrics(self.collectors, PREFIX)
        self.sign_ins = Counter(
            f"{PREFIX}_sign_ins",
            "Sign-ins, by outcome (issued: a key was issued; refused: a bad or stale signature; "
            "rate_limited: a client IP over its rate; challenges_full: the challenge store full).",
            ["outcome"],
            registry=self.collectors,
        )
        self.revocations = Counter(f"{PREFIX}_revocations", "API keys revoked.", registry=self.collectors)
        self.faucet_credit = Counter(
            f"{PREFIX}_faucet_credit", "Credit deposited by the dev faucet.", registry=self.collectors
        )
