"""HealthLink: registration and heartbeats to one health checker; the one wrapper over those calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import httpx
from pydantic import ValidationError

from tritonfleet.node.backoff import Backoff
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.protocol import Heartbeat, RegisterResponse

log = logging.getLogger(__name__)

UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
CONFLICT = 409

# What a refusal means to this node, logged once when failures start or change.
FAILURES = {
    FORBIDDEN: "health checker refused this node's secret: another registration holds its id",
    NOT_FOUND: "health checker does not know this node (it restarted, or the node expired)",
    CONFLICT: "node id still held by a live registration (an earlier run of this node?); "
    "retrying every heartbeat interval until that one expires (within its TTL)",
}


class HealthLink:
    """Keeps one health checker informed of this node.

    `run` registers, retrying with back-off until the health checker accepts (a 401 means a
    wrong cluster token: logged as an error and retried at the slowest pace; a 409 means an
    earlier registration of this node id is still live, as after a crash and restart: retried
    every heartbeat interval, so the node is back once that record expires), then sends the
    current heartbeat every `heartbeat_interval_s` of its answer, and at once when `poke`d. A
    heartbeat answered 404 (the checker forgot the node) or 403 (another node holds the id)
    registers again. `farewell` sends a last heartbeat (draining) and the DELETE.

    Registration answers this checker's secret for the node, which every later call presents;
    it is never logged. Nothing here raises: every failure is logged with context and counted.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        snapshot: Callable[[], Heartbeat],
        client: httpx.AsyncClient,
        backoff: Backoff,
        metrics: NodeMetrics,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.snapshot = snapshot
        self.client = client
        self.backoff = backoff
        self.metrics = metrics
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.registered_id: str | None = None
        self._headers = {"Authorization": f"Bearer {token}"}
        self._secret: str | None = None
        self._poked = asyncio.Event()
        self._failing = False
        self._failed_status: int | None = None
        self._last_status: int | None = None

    def poke(self) -> None:
        """Send the next heartbeat now rather than at the end of the interval."""
        self._poked.set()

    async def run(self) -> None:
        await self.register()
        while True:
            if not await self.beat() and self._last_status in (FORBIDDEN, NOT_FOUND):
                await self.register()  # for a new secret, once the id is free
            await self._pause(self.interval_s)

    async def register(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            answer = await self._call("POST", "/v1/nodes/register", self.snapshot())
            if answer is not None and self._accept(answer):
                return
            await asyncio.sleep(self._retry_s(attempt))

    def _retry_s(self, attempt: int) -> float:
        if self._last_status == UNAUTHORIZED:
            return self.backoff.max_s  # a wrong token stays wrong until an operator acts
        if self._last_status == CONFLICT:
            # Not backed off: the old record expires within its TTL, and the node should be
            # back within about one heartbeat interval of that.
            return self.interval_s
        return self.backoff.delay_s(attempt)

    async def beat(self) -> bool:
        return await self._call("POST", f"/v1/nodes/{self.node_id}/heartbeat", self.snapshot()) is not None

    async def farewell(self) -> None:
        await self.beat()
        if await self._call("DELETE", f"/v1/nodes/{self.node_id}") is not None:
            log.info("deregistered", extra={"health_url": self.base_url, "node_id": self.node_id})

    @property
    def node_id(self) -> str:
        return self.registered_id or self.snapshot().node_id

    def _accept(self, answer: httpx.Response) -> bool:
        try:
            registered = RegisterResponse.model_validate_json(answer.content)
        except ValidationError as exc:
            self._failed(f"invalid register answer: {exc}", answer.status_code)
            return False
        self.registered_id = registered.node_id
        self.interval_s = registered.heartbeat_interval_s
        self._secret = registered.node_secret
        shown = registered.model_dump(exclude={"node_secret"})
        log.info("registered", extra={"health_url": self.base_url, **shown})
        return True

    async def _call(self, method: str, path: str, body: Heartbeat | None = None) -> httpx.Response | None:
        """The answer when 2xx; otherwise None, the failure logged and counted."""
        self._last_status = None
        content = body.model_dump_json().encode() if body is not None else None
        headers = dict(self._headers)
        if self._secret is not None:
            headers[RegisterResponse.SECRET_HEADER] = self._secret
        if content:
            headers["Content-Type"] = "application/json"
        try:
            answer = await self.client.request(
                method, self.base_url + path, content=content, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            self._failed(f"{method} {path}: {exc!r}", None)
            return None
        if answer.is_success:
            self._recovered()
            return answer
        self._failed(f"{method} {path}: HTTP {answer.status_code} {answer.text[:200]}", answer.status_code)
        return None

    def _failed(self, what: str, status: int | None) -> None:
        changed = not self._failing or status != self._failed_status
        self._last_status = self._failed_status = status
        self.metrics.heartbeat_failures.labels(self.base_url).inc()
        extra = {"health_url": self.base_url, "node_id": self.node_id, "error": what}
        if status == UNAUTHORIZED:
            log.error("health checker refused the cluster token", extra=extra)
        elif changed:
            log.warning(FAILURES.get(status or 0, "health checker call failed"), extra=extra)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            log.info("health checker reachable again", extra={"health_url": self.base_url})
        self._failing = False

    async def _pause(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._poked.wait()
        self._poked.clear()
