"""`tritonfleet token-manager`: sign-in with Ethereum, API keys, balances, prices, usage, faucet.

The original design's `ethereum/token-manager`, as a FastAPI service. A user proves they own an
address by signing a challenge (`signin`); the key issued in return is stored as a hash only,
and no private key of a user ever reaches us. The service holds no state of its own: keys and
usage and the gateways' credit leases are in the ledger, deposits on chain.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from tritonfleet import __version__
from tritonfleet.config import FleetConfig
from tritonfleet.payments.chain.client import Chain, ChainError, connect, redacted
from tritonfleet.payments.errors import PaymentsError
from tritonfleet.payments.ledger.database import default_ledger_url
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.signin import ChallengesFull, ChallengeStore
from tritonfleet.protocol import ErrorBody
from tritonfleet.serving import BodyLimit, ControlPlaneApp, HttpMetricsMiddleware, serve_asgi
from tritonfleet.token_manager.errors import TokenManagerError, TooManySignIns
from tritonfleet.token_manager.metrics import TokenManagerMetrics
from tritonfleet.token_manager.routes import account, auth, ops, public
from tritonfleet.token_manager.service import TokenManager
from tritonfleet.token_manager.signin_limit import SignInRateLimit

log = logging.getLogger(__name__)


def create_app(
    config: FleetConfig,
    *,
    ledger: Ledger | None = None,
    chain: Chain | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The token manager's app. What is passed in stays the caller's to close; what the app
    opens itself (the ledger) it closes at the end of its lifespan."""
    owned = AsyncExitStack()
    chain = chain if chain is not None else connect(config)
    if ledger is None:
        ledger = Ledger.open(default_ledger_url(config), clock)
        owned.callback(ledger.close)
    manager = TokenManager(
        config,
        ledger,
        chain,
        _challenges(config, clock),
        _sign_in_limit(config, clock),
        TokenManagerMetrics(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with owned:
            yield

    app = ControlPlaneApp(title="TritonFleet token manager", version=__version__, lifespan=lifespan)
    app.state.token_manager = manager
    for router in (auth, account, public, ops):
        app.include_router(router)
    app.add_middleware(BodyLimit, served=config.token_manager)
    app.add_middleware(HttpMetricsMiddleware, metrics=manager.metrics.http)
    _install_error_handlers(app)
    return app


def serve(config: FleetConfig) -> int:
    try:
        app = create_app(config)
    except SQLAlchemyError as exc:
        print(f"tritonfleet token-manager: cannot open the ledger: {exc}", file=sys.stderr)
        return 1
    settings = config.token_manager
    log.info(
        "token manager starting",
        extra={
            "host": settings.host,
            "port": settings.port,
            "origin": settings.origin(config.web),
            "rpc_url": redacted(config.chain.rpc_url),
        },
    )
    serve_asgi(app, settings)
    return 0


def _challenges(config: FleetConfig, clock: Callable[[], float]) -> ChallengeStore:
    settings = config.token_manager
    # EIP-4361's domain and URI name the site that asks for the signature: the origin users see
    # (the web frontend's), never this service's bind address, which no wallet could check.
    return ChallengeStore(
        settings.origin(config.web),
        config.chain.chain_id,
        settings.challenge_ttl_s,
        settings.challenge_max,
        clock,
    )


def _sign_in_limit(config: FleetConfig, clock: Callable[[], float]) -> SignInRateLimit:
    settings = config.token_manager
    return SignInRateLimit(
        settings.signin_rate_per_s, settings.signin_burst, settings.signin_clients_max, clock
    )


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TokenManagerError, _on_error)  # type: ignore[arg-type]
    # The payments library's (a key registered twice, a failed sign-in, ...).
    app.add_exception_handler(PaymentsError, _on_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_error)  # type: ignore[arg-type]


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=message).model_dump(), status_code=status, headers=headers)


async def _on_error(_request: Request, exc: TokenManagerError | PaymentsError) -> JSONResponse:
    if isinstance(exc, ChainError):
        # One that `chain_errors` did not word for the user: its text may carry the RPC URL,
        # which holds a provider's key. Neither the answer nor the log repeats it.
        log.warning("a chain call failed", extra={"error": type(exc).__name__})
        return _error(exc.status, "the chain failed a call; try again later")
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if isinstance(exc, TooManySignIns | ChallengesFull):
        headers["Retry-After"] = str(exc.retry_after_s)
    return _error(exc.status, str(exc), headers)


async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [
        f"{'.'.join(str(part) for part in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    return _error(400, "invalid request: " + "; ".join(problems))


async def _on_http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail), exc.headers)
