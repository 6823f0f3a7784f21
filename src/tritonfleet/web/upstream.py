"""The one wrapper over HTTP calls to the services behind the web backend.

Transport failures become `Unreachable` or `UpstreamTooSlow`, naming the service, so a page
can say "the gateway is not answering" instead of hanging or showing a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from tritonfleet.web.errors import BadUpstream, Refused, Unreachable, UpstreamTooSlow


class Upstream:
    """A named service at a base URL, called through a shared client."""

    def __init__(self, name: str, base_url: str, client: httpx.AsyncClient, timeout_s: float) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.timeout_s = timeout_s

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        url = self.base_url + path
        try:
            return await self.client.request(
                method,
                url,
                json=json,
                headers=headers,
                params=params,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTooSlow(f"the {self.name} at {self.base_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise Unreachable(f"the {self.name} at {self.base_url} is not answering ({exc!r})") from exc

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer; an error answer raises `Refused` with its status."""
        answer = await self.request(method, path, **kwargs)
        if answer.status_code >= 400:
            raise refused(answer, self.name)
        try:
            return answer.json()
        except ValueError as exc:
            raise BadUpstream(f"the {self.name} answered {path} with something that is not JSON") from exc


def refused(answer: httpx.Response, name: str) -> Refused:
    """An upstream error answer, its `{"error": ...}` (or FastAPI's `detail`) kept as the message."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        details = {key: value for key, value in body.items() if key not in ("error", "detail")}
        message = body.get("error") or body.get("detail")
        if message:
            return Refused(answer.status_code, str(message), **details)
    text = answer.text.strip()[:300] or answer.reason_phrase
    return Refused(answer.status_code, f"the {name} answered {answer.status_code}: {text}")
