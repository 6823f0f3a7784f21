"""Active probes: the health checker's only outgoing HTTP, behind one small class."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

import httpx

from tritonfleet.health.errors import HealthError
from tritonfleet.health.records import ProbeTarget

log = logging.getLogger(__name__)


class Prober:
    """Checks that a node's manager (`GET /ping`) and Triton (`GET /v2/health/ready`) answer 200.

    Use as `async with prober:`, which opens and closes its connection pool. Failures are
    logged with the node id, URL and error and reported as False, never raised. The transport
    is injectable so that tests can stand an `httpx.MockTransport` in for the nodes.
    """

    def __init__(self, timeout_s: float, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        # trust_env=False: nodes are reached directly, never through an HTTP_PROXY of the host.
        # No keep-alive: an idle probe connection would hold a stopping Triton for its whole
        # exit timeout, since Triton waits for open connections before it exits.
        self._client = httpx.AsyncClient(
            timeout=self._timeout_s,
            transport=self._transport,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def probe(self, target: ProbeTarget) -> bool:
        """Whether both the manager and Triton of this node answer 200 within the timeout."""
        urls = (_join(target.manager_url, "/ping"), _join(target.triton_http_url, "/v2/health/ready"))
        results = await asyncio.gather(*(self._check(target.node_id, url) for url in urls))
        return all(results)

    async def _check(self, node_id: str, url: str) -> bool:
        if self._client is None:
            raise HealthError("Prober used outside `async with`")
        try:
            response = await self._client.get(url)
        # InvalidURL and ValueError: URLs the manager sent that cannot even be parsed.
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            log.warning("probe failed", extra={"node_id": node_id, "url": url, "error": repr(exc)})
            return False
        if response.status_code != 200:
            extra = {"node_id": node_id, "url": url, "status": response.status_code}
            log.warning("probe failed", extra=extra)
            return False
        return True


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path
