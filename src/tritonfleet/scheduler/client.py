"""The gateway's one interface to the scheduler, embedded in its process or as a service."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import TracebackType

import aiohttp
import httpx
from pydantic import ValidationError

from tritonfleet.config import NodeRoute, Policy
from tritonfleet.health.watch import NodeWatcher
from tritonfleet.protocol import ErrorBody, ScheduleResponse
from tritonfleet.scheduler.core import Scheduler, node_url
from tritonfleet.scheduler.errors import NoNodeAvailable, SchedulerUnavailable, UnknownModel


@dataclass(frozen=True)
class Pick:
    """The node chosen for one request, and the base URL to send it to."""

    node_id: str
    url: str


class SchedulerClient(ABC):
    """Picks nodes for the gateway; raises UnknownModel (404) or NoNodeAvailable (503)."""

    @abstractmethod
    async def pick(
        self,
        model: str,
        version: str | None = None,
        exclude: Collection[str] = (),
        affinity: str | None = None,
        pinned: str | None = None,
    ) -> Pick:
        """`affinity` and `pinned`: a sequence's request (Scheduler.choose)."""

    @abstractmethod
    def acquire(self, node_id: str) -> None:
        """A request was sent to the node: in-flight feedback, for an embedded scheduler."""

    @abstractmethod
    def release(self, node_id: str) -> None:
        """A request to the node ended, however it ended."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> SchedulerClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class EmbeddedScheduler(SchedulerClient):
    """A Scheduler in the gateway's process, fed by a NodeWatcher; the gateway counts in-flight."""

    def __init__(
        self,
        health_urls: Sequence[str],
        policy: Policy,
        route: NodeRoute,
        client: httpx.AsyncClient,
        *,
        token: str,
        rng: random.Random | None = None,
        watch_timeout_s: float = 30.0,
        retry_s: float = 0.5,
        stale_after_s: float = 3.0,
    ) -> None:
        self.route = route
        self.scheduler = Scheduler(policy, rng)
        self.watcher = NodeWatcher(
            health_urls,
            client,
            on_change=self.scheduler.update,
            watch_timeout_s=watch_timeout_s,
            retry_s=retry_s,
            token=token,
            stale_after_s=stale_after_s,
        )

    async def pick(
        self,
        model: str,
        version: str | None = None,
        exclude: Collection[str] = (),
        affinity: str | None = None,
        pinned: str | None = None,
    ) -> Pick:
        node = self.scheduler.choose(model, version, exclude, affinity, pinned)
        return Pick(node.node_id, node_url(node, self.route))

    def acquire(self, node_id: str) -> None:
        self.scheduler.acquire(node_id)

    def release(self, node_id: str) -> None:
        self.scheduler.release(node_id)

    async def start(self) -> None:
        await self.watcher.start()

    async def aclose(self) -> None:
        await self.watcher.aclose()


class RemoteScheduler(SchedulerClient):
    """Asks the scheduler service, `GET /v1/schedule`, once per pick.

    On the gateway's aiohttp session, kept alive: this call is on every request's path, where
    httpx costs many times aiohttp's CPU (docs/benchmarks.md, "Measurements behind the code").
    """

    def __init__(
        self,
        scheduler_url: str,
        route: NodeRoute,
        session: aiohttp.ClientSession,
        token: str,
        *,
        timeout_s: float = 2.0,
    ) -> None:
        self.scheduler_url = scheduler_url.rstrip("/")
        self.route = route
        self.session = session
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def pick(
        self,
        model: str,
        version: str | None = None,
        exclude: Collection[str] = (),
        affinity: str | None = None,
        pinned: str | None = None,
    ) -> Pick:
        params = {"model": model, "route": self.route.value}
        if version is not None:
            params["version"] = version
        if exclude:
            params["exclude"] = ",".join(exclude)
        if affinity is not None:
            params["affinity"] = affinity
        if pinned is not None:
            params["pinned"] = pinned
        try:
            async with self.session.get(
                f"{self.scheduler_url}/v1/schedule", params=params, headers=self.headers, timeout=self.timeout
            ) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SchedulerUnavailable(
                f"scheduler service at {self.scheduler_url} unreachable: {exc!r}"
            ) from exc
        return self._read(status, body)

    # The service counts its own recent choices instead; the session is the caller's to close.
    def acquire(self, node_id: str) -> None:
        pass

    def release(self, node_id: str) -> None:
        pass

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def _read(self, status: int, body: bytes) -> Pick:
        if status == 200:
            try:
                answer = ScheduleResponse.model_validate_json(body)
            except ValidationError as exc:
                raise SchedulerUnavailable(
                    f"scheduler service at {self.scheduler_url} answered an invalid body: {exc}"
                ) from exc
            return Pick(answer.node_id, answer.url)
        message = _error_message(body)
        if status == 404:
            raise UnknownModel(message)
        if status == 503:
            raise NoNodeAvailable(message)
        raise SchedulerUnavailable(f"scheduler service at {self.scheduler_url} answered {status}: {message}")


def _error_message(body: bytes) -> str:
    try:
        return ErrorBody.model_validate_json(body).error
    except ValidationError:
        return body.decode(errors="replace")
