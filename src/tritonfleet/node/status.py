"""NodeStatus: what a node announces of itself, kept current from its Triton."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tritonfleet.node.endpoints import TritonUrls
from tritonfleet.node.errors import TritonQueryError
from tritonfleet.node.metrics import NodeMetrics
from tritonfleet.node.observe import TritonObserver
from tritonfleet.node.state import NodeEvent, transition
from tritonfleet.protocol import ModelRef, NodeState

log = logging.getLogger(__name__)


class NodeStatus:
    """The node's state and its Triton's READY models and pending requests.

    The supervisor reports Triton up or down; while it is up, `run` re-reads the repository
    index (the repository check) and the pending gauge every interval. Any change of state or
    models calls `on_change`, so that heartbeats go out at once.
    """

    def __init__(
        self,
        observer: TritonObserver,
        urls: Callable[[], TritonUrls],
        metrics: NodeMetrics,
        on_change: Callable[[], None],
    ) -> None:
        self.observer = observer
        self.urls = urls
        self.metrics = metrics
        self.on_change = on_change
        self.state = NodeState.STARTING
        self.models: list[ModelRef] = []
        self.pending = 0
        self.triton_ready = False

    async def triton_up(self) -> None:
        self.triton_ready = True
        await self.refresh()
        self.move(NodeEvent.TRITON_READY)

    async def triton_down(self, reason: str) -> None:
        self.triton_ready = False
        self.pending = 0
        self._set_models([])
        self.move(NodeEvent.TRITON_DOWN)
        log.warning("triton down", extra={"reason": reason})

    def move(self, event: NodeEvent) -> None:
        state = transition(self.state, event)
        if state is not self.state:
            log.info("node state", extra={"from": self.state, "to": state})
            self.state = state
            self.metrics.state.state(state.value)
            self.on_change()

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self.triton_ready:
                await self.refresh()

    async def refresh(self) -> None:
        """Read READY models and pending requests; on failure keep the last ones (logged).
        Each on its own: Triton's metrics port may answer a moment after its HTTP port, and a
        node must not go READY without the models it has."""
        urls = self.urls()
        try:
            models = await self.observer.models(urls.http)
        except TritonQueryError as exc:
            log.warning("cannot read Triton's models", extra={"error": str(exc)})
            return
        if self._set_models(models):
            log.info("models changed", extra={"models": [f"{m.name}:{m.version}" for m in models]})
        try:
            self.pending = await self.observer.pending(urls.metrics) if urls.metrics else 0
        except TritonQueryError as exc:
            log.warning("cannot read Triton's pending requests", extra={"error": str(exc)})

    def _set_models(self, models: list[ModelRef]) -> bool:
        if models == self.models:
            return False
        self.models = models
        self.metrics.ready_models.set(len(models))
        self.on_change()
        return True
