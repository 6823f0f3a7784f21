"""Stateful models: the sequence a request belongs to, and the node each live sequence is on.

A model with a sequence batcher keeps each sequence's state on the Triton instance that got its
first request, so every request of that sequence (same model and correlation id) must reach the
same node. The nodes announce which of their models are stateful (`ModelRef.sequence`, read
from each model's config by the manager); only those models' requests are read here:

    HTTP, JSON body         `parameters.sequence_id` (integer or string), `sequence_start`,
                            `sequence_end`
    HTTP, binary tensors    the same, in the JSON header: the body's first
                            `Inference-Header-Content-Length` bytes, the tensors not parsed
    gRPC ModelInferRequest  `parameters["sequence_id"]` (int64, uint64 or string param), ...
                            read by stepping over the message's fields (grpc/wire.py)

Where a sequence goes (NodeRouting): the node this gateway saw it start on (`LiveSequences`),
while that node is a candidate; else the rendezvous node of (model, sequence id) over the
candidates (scheduler/rendezvous.py), which every gateway computes alike. Never another node
after a failure: a sequence whose node failed or left answers SequenceLost, telling the client
to start the sequence again.

SequenceLost (409)   the sequence's node failed or left: restart the sequence (gRPC ABORTED)
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tritonfleet.gateway.errors import GatewayError, MalformedRequest
from tritonfleet.gateway.grpc.wire import WireError, infer_parameters
from tritonfleet.protocol import NodeView
from tritonfleet.scheduler.rendezvous import sequence_key

SEQUENCE_ID, SEQUENCE_START, SEQUENCE_END = "sequence_id", "sequence_start", "sequence_end"
_NAMES = frozenset({SEQUENCE_ID, SEQUENCE_START, SEQUENCE_END})
HEADER_LENGTH = "Inference-Header-Content-Length"
# How long past Triton's own idle timeout the gateway still remembers a sequence's node: longer
# is harmless (a request of a sequence Triton has forgotten gets Triton's "START flag" error from
# the right node), shorter could send a late request to the rendezvous node instead.
RETAIN_FACTOR = 2.0
# Triton's own default idle timeout, for a model announced without one.
MIN_IDLE_S = 1.0


class SequenceLost(GatewayError):
    """The node of a live sequence failed or left: its state is gone with it. 409 (Conflict) and
    gRPC ABORTED, not 503 or UNAVAILABLE: the same request cannot succeed again anywhere, and
    retry policies (a client's, a proxy's) retry 503s and UNAVAILABLE on their own; ABORTED
    is gRPC's "retry at a higher level", here: start the sequence again."""

    status = 409

    def __init__(self, message: str, node_id: str) -> None:
        super().__init__(message)
        self.figures = {"node": node_id}


@dataclass(frozen=True, slots=True)
class SequenceRequest:
    """A request of a sequence: which one, and whether it starts or ends it."""

    model: str
    sequence_id: int | str
    start: bool = False
    end: bool = False

    @property
    def key(self) -> str:
        return sequence_key(self.model, self.sequence_id)

    def lost(self, node_id: str, why: str) -> SequenceLost:
        return SequenceLost(
            f"sequence {self.sequence_id!r} of model '{self.model}' was on node {node_id}, which {why}: "
            "its state is lost; start the sequence again (sequence_start)",
            node_id,
        )


def from_parameters(model: str, parameters: Any) -> SequenceRequest | None:
    """The sequence of a request with these parameters (JSON `parameters`, or gRPC's as read by
    `infer_parameters`); None without a sequence id (absent, 0 or "": no sequence, as Triton
    has it). MalformedRequest for values of the wrong type."""
    if parameters is None:
        return None
    if not isinstance(parameters, Mapping):
        raise MalformedRequest("request 'parameters' must be an object")
    sequence_id = parameters.get(SEQUENCE_ID)
    if sequence_id is None or sequence_id == 0 or sequence_id == "":
        return None
    if isinstance(sequence_id, bool) or not isinstance(sequence_id, int | str):
        raise MalformedRequest(f"parameter '{SEQUENCE_ID}' must be an integer or a string")
    return SequenceRequest(
        model, sequence_id, _flag(parameters, SEQUENCE_START), _flag(parameters, SEQUENCE_END)
    )


def from_http(model: str, headers: Mapping[str, str], body: bytes) -> SequenceRequest | None:
    """The sequence of an HTTP infer request: from its JSON body, or from the JSON header of a
    binary-tensor body (only that header is parsed). A compressed body is read inflated, as
    aiohttp hands it over (it inflates request bodies itself)."""
    length = headers.get(HEADER_LENGTH)
    if length is not None:
        if not length.isdigit() or int(length) > len(body):
            raise MalformedRequest(f"invalid {HEADER_LENGTH} '{length}' for a body of {len(body)} bytes")
        body = body[: int(length)]
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"failed to parse the request JSON buffer: {exc}") from exc
    if not isinstance(request, dict):
        raise MalformedRequest("the request JSON must be an object")
    return from_parameters(model, request.get("parameters"))


def from_grpc(model: str, message: bytes) -> SequenceRequest | None:
    """The sequence of a `ModelInferRequest`, its tensors stepped over."""
    try:
        parameters = infer_parameters(message, _NAMES)
    except WireError as exc:
        raise MalformedRequest(f"malformed message: {exc}") from exc
    return from_parameters(model, parameters)


def _flag(parameters: Mapping[str, Any], name: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise MalformedRequest(f"parameter '{name}' must be a boolean")
    return value


@dataclass(slots=True)
class _Live:
    node_id: str
    until: float


class LiveSequences:
    """The node of each sequence this gateway has seen start, until its end or idle timeout.

    It keeps a live sequence on its node when the candidates change: a node that joins wins the
    rendezvous of about 1/n of the keys, live sequences among them. Another gateway that never
    saw the start falls back to rendezvous, which is the same node unless the candidates changed
    since the start; the node it picks then has no such sequence and Triton refuses the request
    (it lacks the START flag): an error, never a silently wrong answer. Each live sequence
    counts as a request in flight on its node (`opened`, `closed`), in the scheduler's load.
    """

    def __init__(
        self,
        opened: Callable[[str], None] = lambda node_id: None,
        closed: Callable[[str], None] = lambda node_id: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.opened = opened
        self.closed = closed
        self.clock = clock
        # In the order last touched, so that expiry looks at the oldest first.
        self._live: OrderedDict[str, _Live] = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    def node(self, key: str) -> str | None:
        self.expire()
        live = self._live.get(key)
        return None if live is None else live.node_id

    def served(self, sequence: SequenceRequest, node_id: str, idle_s: float) -> None:
        """A request of `sequence` was answered by `node_id`."""
        key = sequence.key
        if sequence.end:
            self._forget(key)
            return
        live = self._live.get(key)
        if live is not None and live.node_id != node_id:
            self._forget(key)
            live = None
        until = self.clock() + max(idle_s, MIN_IDLE_S) * RETAIN_FACTOR
        if live is None:
            self._live[key] = _Live(node_id, until)
            self.opened(node_id)
        else:
            live.until = until
            self._live.move_to_end(key)

    def expire(self) -> None:
        now = self.clock()
        while self._live:
            key, live = next(iter(self._live.items()))
            if live.until > now:
                return
            self._forget(key)

    def _forget(self, key: str) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            self.closed(live.node_id)


class StatefulModels:
    """Which models have a sequence batcher, and Triton's idle timeout for their sequences, as
    the nodes announce them; follows the node view (NodeWatcher.subscribe)."""

    def __init__(self, nodes: Iterable[NodeView] = ()) -> None:
        self._idle_s: dict[str, float] = {}
        self.follow(nodes)

    def follow(self, nodes: Iterable[NodeView]) -> None:
        idle_s: dict[str, float] = {}
        for node in nodes:
            for ref in node.models:
                if ref.sequence:
                    idle_s[ref.name] = max(idle_s.get(ref.name, 0.0), ref.sequence_idle_s)
        self._idle_s = idle_s

    def __contains__(self, model: object) -> bool:
        return model in self._idle_s

    def idle_s(self, model: str) -> float:
        return self._idle_s.get(model, 0.0)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._idle_s)
