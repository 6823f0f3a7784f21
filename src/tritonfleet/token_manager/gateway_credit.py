"""The one upstream HTTP call of the token manager: the gateway's reservations in flight.

Reservations live only in the gateway's memory, so a balance asks it, with the caller's own
key (the gateway answers for the key's account only). The answer is informational: the gateway
enforces credit itself. So a gateway that is down or answers oddly counts as holding nothing,
which is true of one that is down, and the balance is still served.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from tritonfleet.payments.money import Credit

log = logging.getLogger(__name__)

CREDIT_PATH = "/v1/credit"
TIMEOUT_S = 2.0


class GatewayCredit:
    """Asks the gateway at `base_url` how much of an account's credit requests in flight hold."""

    def __init__(self, base_url: str, client: httpx.AsyncClient, timeout_s: float = TIMEOUT_S) -> None:
        self.url = base_url.rstrip("/") + CREDIT_PATH
        self.client = client
        self.timeout_s = timeout_s

    async def reserved(self, api_key: str) -> Credit:
        try:
            response = await self.client.get(
                self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=self.timeout_s
            )
            response.raise_for_status()
            return _reserved(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            # The key is in the request's headers only, which neither message shows.
            log.warning(
                "cannot read reservations from the gateway; counting none",
                extra={"gateway_url": self.url, "error": f"{type(exc).__name__}: {exc}"},
            )
            return Credit(0)


def _reserved(body: Any) -> Credit:
    reserved = body.get("reserved") if isinstance(body, dict) else None
    # bool is an int to Python, but not an amount.
    if not isinstance(reserved, int) or isinstance(reserved, bool) or reserved < 0:
        raise ValueError(f"no amount `reserved` in the gateway's answer: {body!r:.200}")
    return Credit(reserved)
