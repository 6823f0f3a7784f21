"""`tritonfleet health-checker`: the registry of live nodes behind its HTTP API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tritonfleet.config import FleetConfig
from tritonfleet.health import handlers
from tritonfleet.health.prober import Prober
from tritonfleet.health.records import Clock
from tritonfleet.health.routes import nodes, ops
from tritonfleet.health.service import Checker
from tritonfleet.health.tickers import expire_forever, probe_forever
from tritonfleet.serving import BodyLimit, ControlPlaneApp, HttpMetricsMiddleware, serve_asgi

log = logging.getLogger(__name__)


def create_app(
    config: FleetConfig, *, clock: Clock = time.monotonic, prober: Prober | None = None
) -> FastAPI:
    """The health checker's app; raises ConfigError without a cluster token.

    The app owns `prober` (it opens and closes it in its lifespan). The lifespan also runs the
    probe and expiry tasks, so an app served without lifespan events neither probes nor expires.
    """
    checker = Checker.build(config, clock=clock, prober=prober)
    app = ControlPlaneApp(title="TritonFleet health checker", lifespan=_lifespan)
    app.state.checker = checker
    app.include_router(nodes)
    app.include_router(ops)
    app.add_middleware(BodyLimit, served=config.health)
    app.add_middleware(HttpMetricsMiddleware, metrics=checker.metrics.http)
    handlers.install(app)
    return app


def serve(config: FleetConfig) -> int:
    app = create_app(config)
    log.info("health checker starting", extra={"host": config.health.host, "port": config.health.port})
    serve_asgi(app, config.health)
    return 0


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    checker: Checker = app.state.checker
    async with checker.prober:
        tasks = [
            asyncio.create_task(expire_forever(checker.registry), name="health-expiry"),
            asyncio.create_task(
                probe_forever(
                    checker.registry,
                    checker.prober,
                    checker.config.probe_interval_s,
                    checker.metrics.probe_failures.inc,
                ),
                name="health-probes",
            ),
        ]
        try:
            yield
        finally:
            # uvicorn has already stopped accepting and drained requests; only our tasks remain.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
