"""Watches the cluster for the cluster page: node listings, direct probes, Triton's counters.

The health checker needs a TTL to drop a dead node; the page should not. So the monitor also
probes every node it knows (its manager and its Triton) each `interval_s`: a refused
connection turns the node red at the next snapshot, well within two seconds of its death.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from tritonfleet.protocol import NodeList, NodeView
from tritonfleet.web.board import Board, Probe
from tritonfleet.web.counters import Counters, parse

log = logging.getLogger(__name__)

# Rates are computed over about a second whatever the probe period, so they do not jitter.
SAMPLE_PERIOD_S = 1.0


class ClusterMonitor:
    """Lists the nodes with the cluster token (the health checkers' lists need it), and probes
    them without: nodes and the gateway are not sent the token."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        health_urls: list[str],
        gateway_url: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        token: str,
    ) -> None:
        self.client = client
        self.health_urls = [url.rstrip("/") for url in health_urls]
        self._health_headers = {"Authorization": f"Bearer {token}"}
        self.gateway_url = gateway_url.rstrip("/")
        self.interval_s = interval_s
        # Probes must not outlast the period by much, or a hung node slows every update.
        self.timeout_s = max(interval_s * 2, 0.5)
        self.clock = clock
        self.board = Board()
        self.version = 0
        self._changed = asyncio.Condition()
        self._last_sample_s: float | None = None

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            started = self.clock()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cluster monitor tick failed", exc_info=True)
            await asyncio.sleep(max(self.interval_s - (self.clock() - started), 0.05))

    async def tick(self) -> None:
        now = self.clock()
        self.board.listing(await self._listing(), now)
        views = [record.view for record in self.board.nodes.values()]
        sampling = self._last_sample_s is None or now - self._last_sample_s >= SAMPLE_PERIOD_S * 0.95
        gateway_up, probes, metrics = await asyncio.gather(
            self._gateway_up(),
            asyncio.gather(*(self._probe_node(view) for view in views)),
            asyncio.gather(*(self._metrics(view) for view in views if sampling)),
        )
        self.board.gateway_up = gateway_up
        for view, probe in zip(views, probes, strict=True):
            self.board.probe(view.node_id, probe)
        if sampling:
            self._last_sample_s = now
            for view, counters in zip(views, metrics, strict=True):
                self.board.sample(view.node_id, now, counters)
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    def snapshot(self) -> dict[str, Any]:
        return {"version": self.version, **self.board.snapshot(self.clock())}

    async def next_snapshot(self, since: int, timeout_s: float) -> dict[str, Any]:
        """As soon as there is a snapshot newer than `since`, or the current one at the timeout."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version != since), timeout_s)
            except TimeoutError:
                pass
        return self.snapshot()

    async def _listing(self) -> list[NodeView] | None:
        for url in self.health_urls:
            try:
                answer = await self.client.get(
                    f"{url}/v1/nodes", headers=self._health_headers, timeout=self.timeout_s
                )
                answer.raise_for_status()
                return NodeList.model_validate_json(answer.content).nodes
            except (httpx.HTTPError, ValueError):
                log.debug("health checker did not answer", extra={"url": url}, exc_info=True)
        return None

    async def _probe_node(self, view: NodeView) -> Probe:
        manager, triton = await asyncio.gather(
            self._probe(f"{view.manager_url.rstrip('/')}/ping"),
            self._probe(f"{view.triton_http_url.rstrip('/')}/v2/health/live"),
        )
        for result in (Probe.REFUSED, Probe.FAILED):
            if result in (manager, triton):
                return result
        return Probe.OK

    async def _probe(self, url: str) -> Probe:
        try:
            answer = await self.client.get(url, timeout=self.timeout_s)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            return Probe.REFUSED
        except httpx.HTTPError:
            return Probe.FAILED
        return Probe.OK if answer.status_code == 200 else Probe.FAILED

    async def _gateway_up(self) -> bool:
        return await self._probe(f"{self.gateway_url}/healthz") is Probe.OK

    async def _metrics(self, view: NodeView) -> Counters | None:
        if not view.triton_metrics_url:
            return None
        try:
            answer = await self.client.get(view.triton_metrics_url, timeout=self.timeout_s)
            answer.raise_for_status()
            return parse(answer.text)
        except (httpx.HTTPError, ValueError):
            return None
