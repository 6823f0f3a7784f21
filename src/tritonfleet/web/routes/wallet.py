"""The wallet page's API: sign-in, balance, usage, settlements and the dev faucet."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header

from tritonfleet.web.api import ChallengeBody, FaucetBody, VerifyBody
from tritonfleet.web.service import WebState, state_of
from tritonfleet.web.wallet import check_amount

router = APIRouter(prefix="/api/wallet", tags=["wallet"])
State = Annotated[WebState, Depends(state_of)]
Authorization = Annotated[str | None, Header()]
# The page's origin, as the browser names it.
Origin = Annotated[str | None, Header()]


@router.get("/info")
async def info(state: State) -> dict[str, Any]:
    """Whether this cluster charges at all, and whether its chain has a faucet."""
    config = state.config
    return {"payments": config.payments.enabled, "faucet": config.payments.enabled and config.chain.dev}


@router.post("/challenge")
async def challenge(body: ChallengeBody, state: State, origin: Origin = None) -> Any:
    return await state.wallet.challenge(body.address, origin)


@router.post("/verify")
async def verify(body: VerifyBody, state: State, origin: Origin = None) -> Any:
    return await state.wallet.verify(body.address, body.message, body.signature, origin)


@router.get("/summary")
async def summary(state: State, authorization: Authorization = None) -> dict[str, Any]:
    return await state.wallet.summary(authorization)


@router.post("/faucet")
async def faucet(body: FaucetBody, state: State, authorization: Authorization = None) -> Any:
    return await state.wallet.faucet(authorization, check_amount(body.amount))


@router.get("/prices")
async def prices(state: State) -> Any:
    return await state.wallet.prices()
