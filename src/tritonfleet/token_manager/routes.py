"""HTTP endpoints of the token manager.

Keys travel as `Authorization: Bearer <api key>`. Blocking ledger and chain calls run in
Starlette's thread pool; sign-in's challenge bookkeeping stays on the event loop (see
`service.py`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from tritonfleet.metrics import render
from tritonfleet.payments.money import Credit
from tritonfleet.payments.signin import key_id_of
from tritonfleet.protocol import ErrorBody
from tritonfleet.token_manager.api import (
    BalanceResponse,
    ChallengeRequest,
    ChallengeResponse,
    FaucetRequest,
    FaucetResponse,
    IssuedKey,
    KeyList,
    KeyView,
    PriceList,
    SettlementList,
    TokenManagerHealthz,
    UsagePage,
    VerifyRequest,
    at,
    balance_view,
    charge_view,
    key_view,
    settlement_view,
)
from tritonfleet.token_manager.errors import SignInRequired
from tritonfleet.token_manager.service import KeyHolder, TokenManager

BEARER = HTTPBearer(auto_error=False, description="An API key from POST /v1/auth/verify.")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


def manager_of(request: Request) -> TokenManager:
    manager = request.app.state.token_manager
    assert isinstance(manager, TokenManager)
    return manager


Manager = Annotated[TokenManager, Depends(manager_of)]


async def caller_of(
    manager: Manager, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> KeyHolder:
    # BEARER answers None for a missing header and for another scheme than Bearer alike.
    if credentials is None:
        raise SignInRequired("missing API key: send `Authorization: Bearer <api key>`")
    return await run_in_threadpool(manager.authenticate, credentials.credentials)


Authenticated = Annotated[KeyHolder, Depends(caller_of)]


async def sign_in_admitted(request: Request, manager: Manager) -> None:
    # The peer of the connection as this service sees it: behind a proxy, the proxy's IP. The
    # Origin header is the browser's (the web frontend passes its own on).
    manager.admit_sign_in(request.client.host if request.client else "", request.headers.get("origin"))


auth = APIRouter(
    prefix="/v1/auth",
    tags=["sign-in"],
    dependencies=[Depends(sign_in_admitted)],
    responses=_errors(403, 429),
)
account = APIRouter(prefix="/v1", tags=["account"], responses=_errors(401))
public = APIRouter(prefix="/v1", tags=["public"])
ops = APIRouter(tags=["operations"])


@auth.post("/challenge", response_model=ChallengeResponse, responses=_errors(400, 503))
async def challenge(body: ChallengeRequest, manager: Manager) -> ChallengeResponse:
    """A one-time EIP-4361 message for the address to sign, good until `expires_at`."""
    issued = manager.challenge(body.address)
    return ChallengeResponse(address=issued.address, message=issued.message, expires_at=at(issued.expires_at))


@auth.post("/verify", response_model=IssuedKey, responses=_errors(400, 401, 502, 503))
async def verify(body: VerifyRequest, manager: Manager) -> IssuedKey:
    """Check the signed challenge and issue an API key bound to the address: signed by its key,
    or, for a contract wallet, accepted by its `isValidSignature` (EIP-1271)."""
    account_address = await manager.verify(body.address, body.message, body.signature)
    api_key, key = await run_in_threadpool(manager.issue_key, account_address, body.label)
    return IssuedKey(account=account_address, api_key=api_key, key_id=key_id_of(key.key_hash))


@account.get("/keys", response_model=KeyList)
async def list_keys(caller: Authenticated, manager: Manager) -> KeyList:
    """The caller's account's keys, newest first, revoked ones included."""
    keys = await run_in_threadpool(manager.keys, caller.account)
    return KeyList(account=caller.account, keys=[key_view(key) for key in keys])


@account.delete("/keys/{key_id}", response_model=KeyView, responses=_errors(404))
async def revoke_key(key_id: str, caller: Authenticated, manager: Manager) -> KeyView:
    """Revoke one of the account's keys, the one in use included."""
    return key_view(await run_in_threadpool(manager.revoke, caller.account, key_id))


@account.get("/balance", response_model=BalanceResponse, responses=_errors(502, 503))
async def balance(caller: Authenticated, manager: Manager) -> BalanceResponse:
    """Deposit and pending withdrawal from the chain, unsettled charges from the ledger,
    reservations in flight from the gateway; available = deposit - the other three."""
    return balance_view(await manager.balance(caller))


@account.get("/usage", response_model=UsagePage, responses=_errors(400))
async def usage(
    caller: Authenticated,
    manager: Manager,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[str | None, Query(description="`next_before` of the previous page.")] = None,
    key_id: Annotated[str | None, Query(description="Only this API key's charges (see /v1/keys).")] = None,
) -> UsagePage:
    """The account's charges (or one key's), newest first, a page at a time."""
    charges, next_before = await run_in_threadpool(manager.usage, caller.account, limit, before, key_id)
    return UsagePage(
        account=caller.account, charges=[charge_view(c) for c in charges], next_before=next_before
    )


@account.get("/settlements", response_model=SettlementList)
async def settlements(caller: Authenticated, manager: Manager) -> SettlementList:
    """Settlement batches holding the account's charges, newest first, with their transactions."""
    batches = await run_in_threadpool(manager.settlements, caller.account)
    return SettlementList(account=caller.account, settlements=[settlement_view(b) for b in batches])


@public.get("/prices", response_model=PriceList)
async def prices(manager: Manager) -> PriceList:
    """The price of one request per model (and per model version), in credit base units."""
    payments = manager.config.payments
    return PriceList(prices=dict(payments.prices), default_price=payments.default_price)


@public.post("/faucet", response_model=FaucetResponse, responses=_errors(400, 403, 502, 503, 504))
async def faucet(body: FaucetRequest, manager: Manager) -> FaucetResponse:
    """Development chains only: mint credit and deposit it for the address."""
    done = await run_in_threadpool(manager.faucet, body.address, Credit(body.amount))
    return FaucetResponse(
        address=done.address, amount=done.amount, deposit=done.deposit, tx_hash=done.tx_hash
    )


@ops.get("/healthz", response_model=TokenManagerHealthz)
async def healthz() -> TokenManagerHealthz:
    return TokenManagerHealthz()


@ops.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(manager: Manager) -> Response:
    body, content_type = render(manager.metrics.collectors)
    return Response(body, media_type=content_type)
