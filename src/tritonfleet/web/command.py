"""`tritonfleet web`: the FastAPI app, its lifespan (HTTP client, cluster monitor) and errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from tritonfleet.config import FleetConfig
from tritonfleet.serving import BodyLimit, serve_asgi
from tritonfleet.web.catalog import Catalog
from tritonfleet.web.errors import WebError
from tritonfleet.web.estimates import StepTimes
from tritonfleet.web.monitor import ClusterMonitor
from tritonfleet.web.routes import cluster, generate, pages, playground, wallet
from tritonfleet.web.service import WebState
from tritonfleet.web.upstream import Upstream
from tritonfleet.web.wallet import Wallet

log = logging.getLogger(__name__)

# Calls that are not inferences (metadata, balances) answer fast or not at all.
CONTROL_TIMEOUT_S = 10.0


def create_app(config: FleetConfig, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The app; `transport` stands in for the network in unit tests (httpx.MockTransport)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # trust_env=False: a proxy from the environment must not capture calls to the cluster.
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            state = build_state(config, client)
            app.state.web = state
            task = asyncio.create_task(state.monitor.run(), name="cluster-monitor")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="TritonFleet web", lifespan=lifespan)
    app.add_middleware(BodyLimit, served=config.web)
    app.add_exception_handler(WebError, _web_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for module in (generate, playground, cluster, wallet, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.add_api_route("/healthz", _healthz, methods=["GET"], tags=["operations"])
    return app


async def _healthz() -> dict[str, str]:
    return {"status": "ok"}


def build_state(config: FleetConfig, client: httpx.AsyncClient) -> WebState:
    web = config.web
    gateway = Upstream("gateway", web.gateway_url, client, web.request_timeout_s)
    token_manager = Upstream("token manager", web.token_manager_url, client, CONTROL_TIMEOUT_S)
    metadata = Upstream("gateway", web.gateway_url, client, CONTROL_TIMEOUT_S)
    monitor = ClusterMonitor(
        client,
        config.cluster.health_urls,
        web.gateway_url,
        web.refresh_interval_s,
        token=config.cluster.read_token(),
    )
    return WebState(
        config=config,
        gateway=gateway,
        catalog=Catalog(metadata),
        monitor=monitor,
        wallet=Wallet(token_manager),
        step_times=StepTimes(),
    )


async def _web_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WebError)
    if exc.status >= 500:
        log.warning(
            "request failed", extra={"path": request.url.path, "status": exc.status, "error": exc.message}
        )
    return JSONResponse(exc.body(), status_code=exc.status)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part != "body")
        problems.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return JSONResponse({"error": "; ".join(problems) or "malformed request"}, status_code=422)


def serve(config: FleetConfig) -> int:
    serve_asgi(create_app(config), config.web)
    return 0
