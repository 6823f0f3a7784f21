"""Follows the health checkers' node lists by long-poll, and merges them into one view."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

from tritonfleet.protocol import NodeList, NodeView

log = logging.getLogger(__name__)

# Connecting to, or listing, a health checker on the cluster network takes milliseconds;
# a checker that takes longer is treated as down rather than stalling the view.
REQUEST_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Answer:
    """One health checker's latest node list, and when (on the watcher's clock) it came;
    `complete_at`: from when the list can be taken as the whole cluster (NodeList.warming_s)."""

    nodes: tuple[NodeView, ...]
    received_at: float
    complete_at: float = 0.0


def merge(answers: Iterable[Answer], now: float) -> list[NodeView]:
    """One entry per node id, from the checker that heard from the node most recently.

    A node's heartbeat age is as of its checker's answer, so the time that answer has waited
    here is added before comparing: a quiet checker's answer from ten seconds ago does not
    win over a fresh one. The result is ordered by node id.
    """
    best: dict[str, tuple[float, NodeView]] = {}
    for answer in answers:
        waited_s = now - answer.received_at
        for node in answer.nodes:
            age_s = node.last_heartbeat_age_s + waited_s
            if node.node_id not in best or age_s < best[node.node_id][0]:
                best[node.node_id] = (age_s, node)
    return [best[node_id][1] for node_id in sorted(best)]


class NodeWatcher:
    """Keeps the merged node list of every health checker of the cluster, by long-poll.

    One task per checker: list its nodes once, then ask `/v1/nodes/watch?since=<version>`
    again and again. A failed request is logged and retried after `retry_s`, starting over
    with a full listing (a restarted checker counts its versions from scratch) while the
    other checkers' lists stay in use. A checker that stays unreachable for `stale_after_s`
    (default: the nodes' default TTL, after which the checker itself, were it up, would have
    removed any node that stopped heartbeating) has its list dropped, so that no dead
    information lingers; its nodes stay only if another checker lists them.

    The control plane going down must not stop inference on nodes that are fine: while no
    checker that answers has a complete list (all are unreachable, or the ones back have just
    restarted and are still hearing from the nodes, NodeList.warming_s), the view is `stale`:
    the nodes known before stay in it, updated by whatever the checkers do say, and failing
    nodes are still ejected by the gateway's own routing. The first complete list ends it.

    Every request carries `token`, the cluster token, without which checkers answer 401
    (logged as an error: no listing will come until the configuration is fixed).
    """

    def __init__(
        self,
        health_urls: Sequence[str],
        client: httpx.AsyncClient,
        on_change: Callable[[list[NodeView]], None] | None = None,
        watch_timeout_s: float = 30.0,
        retry_s: float = 0.5,
        *,
        token: str,
        stale_after_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health_urls = [url.rstrip("/") for url in health_urls]
        self.client = client
        self._headers = {"Authorization": f"Bearer {token}"}
        self._listeners = [on_change] if on_change is not None else []
        self.watch_timeout_s = watch_timeout_s
        self.retry_s = retry_s
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._answers: dict[str, Answer] = {}
        self._failing: set[str] = set()
        self._nodes: list[NodeView] = []
        self.stale = True
        self._republish: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def subscribe(self, listener: Callable[[list[NodeView]], None]) -> None:
        """Also call `listener` with the merged list on every change."""
        self._listeners.append(listener)

    @property
    def nodes(self) -> list[NodeView]:
        return list(self._nodes)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._follow(url), name=f"watch {url}") for url in self.health_urls
            ]

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        if self._republish is not None:
            self._republish.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_for(self, predicate: Callable[[list[NodeView]], bool], timeout_s: float) -> bool:
        """Whether the merged list satisfies `predicate`, now or within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate(self._nodes):
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def _follow(self, url: str) -> None:
        since: int | None = None
        failing_since: float | None = None
        while True:
            try:
                listing = await self._fetch(url, since)
            except Exception as exc:
                since = None
                if failing_since is None:
                    failing_since = self.clock()
                    self._failing.add(url)
                    self._publish()
                    refused = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401
                    log.log(
                        logging.ERROR if refused else logging.WARNING,
                        "health checker %s; retrying every %ss",
                        "refused the cluster token" if refused else "unreachable",
                        self.retry_s,
                        extra={"health_url": url, "error": repr(exc)},
                    )
                self._drop_if_stale(url, failing_since, exc)
                await asyncio.sleep(self.retry_s)
                continue
            if failing_since is not None:
                log.info("health checker is back", extra={"health_url": url})
                failing_since = None
                self._failing.discard(url)
            since = listing.version
            now = self.clock()
            self._answers[url] = Answer(tuple(listing.nodes), now, now + listing.warming_s)
            if listing.warming_s > 0:
                # Nothing may change when the list turns complete: look again then.
                self._publish_later(listing.warming_s)
            self._publish()

    async def _fetch(self, url: str, since: int | None) -> NodeList:
        if since is None:
            response = await self.client.get(
                f"{url}/v1/nodes", headers=self._headers, timeout=REQUEST_TIMEOUT_S
            )
        else:
            # The checker holds the request up to watch_timeout_s; allow it that, and a margin.
            timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=self.watch_timeout_s + REQUEST_TIMEOUT_S)
            params = {"since": since, "timeout_s": self.watch_timeout_s}
            response = await self.client.get(
                f"{url}/v1/nodes/watch", params=params, headers=self._headers, timeout=timeout
            )
        response.raise_for_status()
        return NodeList.model_validate_json(response.content)

    def _drop_if_stale(self, url: str, failing_since: float, exc: Exception) -> None:
        down_s = self.clock() - failing_since
        if down_s >= self.stale_after_s and url in self._answers:
            log.warning(
                "dropping the nodes of an unreachable health checker",
                extra={"health_url": url, "error": repr(exc), "down_s": round(down_s, 3)},
            )
            del self._answers[url]
            self._publish()
            if self.stale:
                log.warning(
                    "no health checker answers: routing on the last known nodes (stale view)",
                    extra={"health_url": url, "nodes": len(self._nodes)},
                )

    def _publish_later(self, delay_s: float) -> None:
        if self._republish is not None:
            self._republish.cancel()
        self._republish = asyncio.get_running_loop().call_later(delay_s, self._publish)

    def _publish(self) -> None:
        now = self.clock()
        fresh = merge(self._answers.values(), now)
        self.stale = not any(
            answer.complete_at <= now for url, answer in self._answers.items() if url not in self._failing
        )
        if self.stale:
            # Hold on to the nodes known before; what the checkers say now wins for theirs.
            listed = {node.node_id for node in fresh}
            held = [node for node in self._nodes if node.node_id not in listed]
            fresh = sorted([*fresh, *held], key=lambda node: node.node_id)
        self._nodes = fresh
        for listener in self._listeners:
            try:
                listener(self.nodes)
            except Exception:
                log.exception("a watch listener failed; the watch goes on", extra={"nodes": len(self._nodes)})
        # Wake every waiter, and make the next waiters wait for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
