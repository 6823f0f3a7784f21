"""NodeManager, the async core of `tritonfleet node`.

start()     bind the manager's HTTP server (its URL, hence the node id, is then known),
            start Triton (or attach to `node.triton_url`), register with every health
            checker of the cluster and heartbeat to each.
shutdown()  drain: announce `draining` and leave every health checker; stop accepting and
            let forwarded requests finish (up to drain_timeout_s), cancel the rest; stop
            Triton.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any

import aiohttp
import httpx

from tritonfleet.config import FleetConfig
from tritonfleet.net import http_url
from tritonfleet.node import endpoints
from tritonfleet.node.backoff import Backoff
from tritonfleet.node.dist import TritonDist, locate
from tritonfleet.node.endpoints import TritonPorts, TritonUrls, public_host
from tritonfleet.node.forward import InFlight, TritonRelay
from tritonfleet.node.gpus import read_gpus, visible_devices
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.observe import TritonObserver
from tritonfleet.node.options import TritonOptions
from tritonfleet.node.registrar import HealthLink
from tritonfleet.node.routes import build_app
from tritonfleet.node.server import HttpServer
from tritonfleet.node.state import NodeEvent
from tritonfleet.node.status import NodeStatus
from tritonfleet.node.supervisor import TritonSupervisor, TritonWatcher
from tritonfleet.node.triton import TritonProcess
from tritonfleet.protocol import GpuDevice, Heartbeat
from tritonfleet.proxy import aclose_session, new_session
from tritonfleet.triton_admin import admin_key

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
REGISTER_BACKOFF = Backoff(base_s=0.25, max_s=5.0)
# Triton's own exit timeout: it waits that long for idle keep-alive connections of others.
TRITON_EXIT_MAX_S = 5.0


class NodeManager:
    """Starts or attaches to Triton, keeps every health checker informed, forwards requests."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.node = config.node
        self.metrics = NodeMetrics()
        self.in_flight = InFlight(self.metrics)
        self.node_id = ""
        self.manager_url = ""
        self.triton: TritonProcess | None = None
        self.server: HttpServer | None = None
        self.links: list[HealthLink] = []
        self.gpus: list[GpuDevice] = []
        self.exit_code = 0
        self.stopping = asyncio.Event()
        self._client = httpx.AsyncClient()
        self._session: aiohttp.ClientSession | None = None
        self._token = config.cluster.read_token()
        self._admin_key = admin_key(self._token)
        self._observer = TritonObserver(self._client, self._admin_key)
        self.status = NodeStatus(self._observer, self.local_urls, self.metrics, self._poke)
        self._tasks: list[asyncio.Task[None]] = []
        self._link_tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        dist = None if self.node.triton_url else locate(self.node.triton_binary)
        self._session = new_session(CONNECT_TIMEOUT_S)
        relay = TritonRelay(
            self._session, self._forward_target, self.in_flight, self.metrics, self.node.request_timeout_s
        )
        app = build_app(self._ping, relay, self.metrics, self.node.max_body_bytes)
        self.server = HttpServer(app, self.node.host, self.node.port, self.node.drain_timeout_s)
        self.node_id = endpoints.node_id(self.node.node_id, socket.gethostname(), self.server.port)
        self.manager_url = http_url(public_host(self.node.advertise_host, self.node.host), self.server.port)
        self.triton = None if dist is None else self._make_triton(dist)
        self.gpus = await read_gpus(visible_devices(self.node.gpus, os.environ))
        await self.server.start()
        log.info("manager listening", extra={"node_id": self.node_id, "manager_url": self.manager_url})
        self._spawn(self._tasks, self._keep_triton())
        self._spawn(self._tasks, self.status.run(self.config.health.heartbeat_interval_s))
        interval_s = self.config.health.heartbeat_interval_s
        for url in self.config.cluster.health_urls:
            link = HealthLink(
                url, self._token, self.heartbeat, self._client, REGISTER_BACKOFF, self.metrics, interval_s
            )
            self.links.append(link)
            self._spawn(self._link_tasks, link.run())

    async def run(self) -> int:
        """Start, serve until `stopping` is set (a signal, a crashed task), drain; the exit code."""
        try:
            await self.start()
            await self.stopping.wait()
        finally:
            await self.shutdown()
        return self.exit_code

    async def shutdown(self) -> None:
        # 1. Leave the cluster: a `draining` heartbeat, then a DELETE, to every health checker.
        self.status.move(NodeEvent.DRAIN)
        await _cancel(self._link_tasks)
        await asyncio.gather(*(link.farewell() for link in self.links))
        # 2. Stop accepting; forwarded requests finish up to drain_timeout_s; the rest are cancelled.
        if self.server is not None:
            log.info("draining", extra={"in_flight": self.in_flight.count})
            await self.server.aclose()
        # 3. Stop watching Triton, close our connections to it (it waits for open ones), stop it.
        await _cancel(self._tasks)
        if self._session is not None:
            await aclose_session(self._session)
        await self._client.aclose()
        if self.triton is not None:
            status = await self.triton.stop()
            self.triton.close()
            log.info("tritonserver stopped", extra={"status": status})

    def heartbeat(self) -> Heartbeat:
        urls = self._public_urls()
        return Heartbeat(
            node_id=self.node_id,
            manager_url=self.manager_url,
            triton_http_url=urls.http,
            triton_grpc_url=urls.grpc,
            triton_metrics_url=urls.metrics,
            models=self.status.models,
            in_flight=self.in_flight.count,
            pending=self.status.pending,
            capacity=self.node.capacity,
            state=self.status.state,
            gpus=self.gpus,
        )

    def local_urls(self) -> TritonUrls:
        """Where the manager reaches its Triton."""
        if self.triton is not None:
            return self.triton.urls
        node = self.node
        return TritonUrls(node.triton_url.rstrip("/"), node.triton_grpc_url, node.triton_metrics_url)

    def _public_urls(self) -> TritonUrls:
        if self.triton is None:
            return self.local_urls()
        return TritonUrls.on(public_host(self.node.advertise_host, self.node.host), self.triton.ports)

    def _make_triton(self, dist: TritonDist) -> TritonProcess:
        node = self.node
        options = TritonOptions(
            model_repository=node.model_repository,
            bind_host=node.host,
            ports=TritonPorts(node.triton_http_port, node.triton_grpc_port, node.triton_metrics_port),
            model_control_mode=node.model_control_mode,
            repository_poll_s=node.repository_poll_s,
            load_models=tuple(node.load_models),
            start_timeout_s=node.triton_start_timeout_s,
            exit_timeout_s=min(node.drain_timeout_s, TRITON_EXIT_MAX_S),
            log_path=node.log_dir / f"tritonserver-{self.node_id}.log" if node.log_dir else None,
            admin_key=self._admin_key,
            gpus=node.gpus,
            extra_args=tuple(node.triton_args),
        )
        return TritonProcess(options, dist, self._observer.ready)

    async def _keep_triton(self) -> None:
        """Supervise the Triton started here, or watch the one attached to."""
        down = self.status.triton_down
        if self.triton is None:
            url, interval_s = self.local_urls().http, self.config.health.heartbeat_interval_s
            await TritonWatcher(self._observer, url, self._on_ready, down, interval_s).run()
        else:
            backoff = Backoff(self.node.restart_backoff_s, self.node.restart_backoff_max_s)
            await TritonSupervisor(self.triton, backoff, self._on_ready, down, self.metrics).run()

    async def _on_ready(self) -> None:
        await self.status.triton_up()
        urls = self._public_urls()
        log.info(
            "node ready",
            extra={
                "node_id": self.node_id,
                "manager_url": self.manager_url,
                "triton_http_url": urls.http,
                "triton_grpc_url": urls.grpc,
                "triton_metrics_url": urls.metrics,
                "models": [f"{m.name}:{m.version}" for m in self.status.models],
            },
        )

    def _poke(self) -> None:
        for link in self.links:
            link.poke()

    def _ping(self) -> dict[str, str]:
        return {"node_id": self.node_id, "state": self.status.state.value}

    def _forward_target(self) -> str | None:
        return self.local_urls().http if self.status.triton_ready else None

    def _spawn(self, tasks: list[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        task.add_done_callback(self._check_task)
        tasks.append(task)

    def _check_task(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("background task failed; stopping", exc_info=task.exception())
        self.exit_code = 1
        self.stopping.set()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()
