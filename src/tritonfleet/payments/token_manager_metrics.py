"""The token manager's Prometheus metrics, in a registry of its own per app."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
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
            "Sign-ins, by outcome (issued: a key was issued; refused: a bad or stale signature).",
            ["outcome"],
            registry=self.collectors,
        )
        self.revocations = Counter(f"{PREFIX}_revocations", "API keys revoked.", registry=self.collectors)
        self.faucet_credit = Counter(
            f"{PREFIX}_faucet_credit", "Credit deposited by the dev faucet.", registry=self.collectors
        )


def observe_http(app: FastAPI, metrics: HttpMetrics) -> None:
    """Count and time every request by route template and status."""

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started_s = time.perf_counter()
        response = await call_next(request)
        # The template, not the raw path: key ids in paths must not grow the label set.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.observe(route, response.status_code, time.perf_counter() - started_s)
        return response
