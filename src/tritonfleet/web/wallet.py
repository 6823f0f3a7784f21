"""The wallet page's calls to the token manager, made as the page's user (their API key)."""

from __future__ import annotations

import asyncio
from typing import Any

from tritonfleet.token_manager.api import FAUCET_MAX
from tritonfleet.web.errors import BadInput, Refused
from tritonfleet.web.upstream import Upstream

USAGE_ROWS = 50
KEY_LABEL = "web"


class Wallet:
    def __init__(self, token_manager: Upstream) -> None:
        self.token_manager = token_manager

    # Sign-in passes the browser's Origin header on: the token manager refuses a sign-in that a
    # page of another site sends, and only the browser can say where the page came from.

    async def challenge(self, address: str, origin: str | None) -> Any:
        body = {"address": address}
        return await self.token_manager.json("POST", "/v1/auth/challenge", json=body, headers=_origin(origin))

    async def verify(self, address: str, message: str, signature: str, origin: str | None) -> Any:
        body = {"address": address, "message": message, "signature": signature, "label": KEY_LABEL}
        return await self.token_manager.json("POST", "/v1/auth/verify", json=body, headers=_origin(origin))

    async def summary(self, authorization: str | None) -> dict[str, Any]:
        """Balance, recent usage and settlements of the key's account, fetched side by side."""
        headers = _auth(authorization)
        balance, usage, settlements = await asyncio.gather(
            self.token_manager.json("GET", "/v1/balance", headers=headers),
            self.token_manager.json("GET", "/v1/usage", headers=headers, params={"limit": USAGE_ROWS}),
            self.token_manager.json("GET", "/v1/settlements", headers=headers),
        )
        return {
            "account": balance["account"],
            "balance": balance,
            "usage": usage["charges"],
            "settlements": settlements["settlements"],
        }

    async def faucet(self, authorization: str | None, amount: int) -> Any:
        """Development chains only; the token manager answers 403 elsewhere."""
        balance = await self.token_manager.json("GET", "/v1/balance", headers=_auth(authorization))
        body = {"address": balance["account"], "amount": amount}
        try:
            return await self.token_manager.json("POST", "/v1/faucet", json=body, timeout_s=90.0)
        except Refused as exc:
            if exc.status == 403:
                raise Refused(403, f"no faucet here: {exc.message}") from exc
            raise

    async def prices(self) -> Any:
        return await self.token_manager.json("GET", "/v1/prices")


def _origin(origin: str | None) -> dict[str, str]:
    return {} if origin is None else {"Origin": origin}


def _auth(authorization: str | None) -> dict[str, str]:
    if not authorization:
        raise Refused(401, "sign in first: with an API key, or with an Ethereum wallet", wallet="/wallet")
    return {"Authorization": authorization}


def check_amount(amount: int, most: int = FAUCET_MAX) -> int:
    if not 1 <= amount <= most:
        raise BadInput(f"the amount must be between 1 and {most}")
    return amount
