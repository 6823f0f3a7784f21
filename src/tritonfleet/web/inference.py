"""One inference through the gateway, with what the pages show beside its outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tritonfleet.web.errors import Refused
from tritonfleet.web.kserve import HEADER_LENGTH, Tensor, parse_response, request_body
from tritonfleet.web.upstream import Upstream, refused

# Headers the gateway sets (see gateway/http/routes.py).
NODE_HEADER = "X-Tritonfleet-Node"
CHARGE_HEADER = "X-Tritonfleet-Charge"
CREDIT_HEADER = "X-Tritonfleet-Credit-Remaining"
WALLET_PAGE = "/wallet"


@dataclass(frozen=True)
class Served:
    outputs: list[Tensor]
    node: str | None
    latency_ms: float
    request_id: str | None
    # Present when the gateway charged the request.
    charge: int | None
    credit_remaining: int | None

    def output(self, name: str) -> Tensor | None:
        return next((tensor for tensor in self.outputs if tensor.name == name), None)

    def facts(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "latency_ms": round(self.latency_ms, 1),
            "request_id": self.request_id,
            "charge": self.charge,
            "credit_remaining": self.credit_remaining,
        }


async def infer(
    gateway: Upstream,
    model: str,
    version: str | None,
    inputs: list[Tensor],
    outputs: list[str],
    authorization: str | None,
) -> Served:
    """Send the request as the page's user (their API key, if any) and decode the answer."""
    path = f"/v2/models/{quote(model, safe='')}"
    if version:
        path += f"/versions/{quote(version, safe='')}"
    headers = {"Authorization": authorization} if authorization else {}
    started = time.monotonic()
    answer = await gateway.request(
        "POST", path + "/infer", json=request_body(inputs, outputs), headers=headers
    )
    latency_ms = (time.monotonic() - started) * 1000
    if answer.status_code != 200:
        raise explain(refused(answer, gateway.name), model)
    return Served(
        outputs=parse_response(answer.content, answer.headers.get(HEADER_LENGTH)),
        node=answer.headers.get(NODE_HEADER),
        latency_ms=latency_ms,
        request_id=answer.headers.get("X-Request-ID"),
        charge=_int(answer.headers.get(CHARGE_HEADER)),
        credit_remaining=_int(answer.headers.get(CREDIT_HEADER)),
    )


def explain(error: Refused, model: str) -> Refused:
    """The gateway's refusal, with the step the user can take next."""
    if error.status == 401:
        details = {**error.details, "wallet": WALLET_PAGE}
        return Refused(401, f"{_sentence(error.message)} Sign in on the Wallet page first.", **details)
    if error.status == 402:
        details = {**error.details, "wallet": WALLET_PAGE}
        return Refused(402, f"{_sentence(error.message)} Top up on the Wallet page.", **details)
    if error.status == 503:
        return Refused(503, f"no node can serve '{model}' right now: {error.message}", **error.details)
    return error


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."
