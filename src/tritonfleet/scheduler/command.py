"""`tritonfleet scheduler`: the scheduler service's app, its watch of the health checkers, and
its server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from tritonfleet import __version__
from tritonfleet.config import FleetConfig
from tritonfleet.scheduler.routes import add_error_handlers, add_routes
from tritonfleet.scheduler.service import ScheduleService
from tritonfleet.serving import BodyLimit, ControlPlaneApp, HttpMetricsMiddleware, serve_asgi


def create_app(config: FleetConfig, *, watcher_client: httpx.AsyncClient | None = None) -> FastAPI:
    service = ScheduleService(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            client = watcher_client
            if client is None:
                client = await stack.enter_async_context(httpx.AsyncClient())
            watcher = service.watcher(client)
            await watcher.start()
            stack.push_async_callback(watcher.aclose)
            app.state.watcher = watcher
            yield

    app = ControlPlaneApp(title="TritonFleet scheduler", version=__version__, lifespan=lifespan)
    app.state.service = service
    add_routes(app, service)
    add_error_handlers(app, service.metrics)
    app.add_middleware(BodyLimit, served=config.scheduler)
    app.add_middleware(HttpMetricsMiddleware, metrics=service.metrics.http)
    return app


def serve(config: FleetConfig) -> int:
    serve_asgi(create_app(config), config.scheduler)
    return 0
