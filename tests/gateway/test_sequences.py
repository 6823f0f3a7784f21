"""Sequences: their parameters read from each kind of request, the live-sequence table, and the
routing rule (the sequence's node or none, never a retry elsewhere)."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry
from tritonclient.grpc import service_pb2

from tests.fakes import FakeClock
from tests.gateway.fakes import FakeScheduler, first_failure_ejector
from tests.scheduler.fakes import node as node_view
from tritonfleet.gateway.errors import MalformedRequest
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.routing import NodeFailed, NodeRouting
from tritonfleet.gateway.sequences import (
    HEADER_LENGTH,
    LiveSequences,
    SequenceLost,
    SequenceRequest,
    StatefulModels,
    from_grpc,
    from_http,
)
from tritonfleet.protocol import ModelRef, NodeView
from tritonfleet.scheduler.client import Pick
from tritonfleet.scheduler.rendezvous import rendezvous

SEQ = "simple_sequence"


def json_body(**parameters: object) -> bytes:
    inputs = [{"name": "INPUT", "shape": [1, 1], "datatype": "INT32", "data": [1]}]
    return json.dumps({"inputs": inputs, "parameters": parameters}).encode()


@pytest.mark.parametrize("sequence_id", [7, "seven", 2**63 + 5])
def test_a_json_body_gives_its_sequence_id_and_flags(sequence_id: int | str) -> None:
    """Numeric and string ids are read as they are, with start and end."""
    body = json_body(sequence_id=sequence_id, sequence_start=True, sequence_end=False)
    assert from_http(SEQ, {}, body) == SequenceRequest(SEQ, sequence_id, start=True, end=False)


def test_a_binary_body_is_read_only_up_to_its_json_header() -> None:
    """The tensors after the header (not JSON) are never parsed."""
    header = json_body(sequence_id="s-1", sequence_end=True)
    body = header + b"\xff\x00\x01 raw tensor bytes"
    found = from_http(SEQ, {HEADER_LENGTH: str(len(header))}, body)
    assert found == SequenceRequest(SEQ, "s-1", start=False, end=True)


@pytest.mark.parametrize(
    "body", [json_body(), json_body(sequence_id=0), json_body(sequence_id=""), b'{"inputs":[]}']
)
def test_no_sequence_id_means_no_sequence(body: bytes) -> None:
    """Absent, 0 or "" (Triton's "no sequence") give None: routed as any request."""
    assert from_http(SEQ, {}, body) is None


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({}, b"{not json", "failed to parse the request JSON buffer"),
        ({}, b"[1, 2]", "must be an object"),
        ({}, b'{"parameters": [1]}', "'parameters' must be an object"),
        ({}, json_body(sequence_id=1.5), "'sequence_id' must be an integer or a string"),
        ({}, json_body(sequence_id=True), "'sequence_id' must be an integer or a string"),
        ({}, json_body(sequence_id=1, sequence_start="yes"), "'sequence_start' must be a boolean"),
        ({HEADER_LENGTH: "x"}, b"{}", f"invalid {HEADER_LENGTH}"),
        ({HEADER_LENGTH: "99"}, b"{}", f"invalid {HEADER_LENGTH}"),
    ],
)
def test_a_malformed_request_is_a_clear_400(headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(MalformedRequest, match=message) as raised:
        from_http(SEQ, headers, body)
    assert raised.value.status == 400


def grpc_request(sequence_id: int | str | None, start: bool = False, end: bool = False) -> bytes:
    """A ModelInferRequest as tritonclient.grpc builds one, a raw tensor included."""
    request = service_pb2.ModelInferRequest(model_name=SEQ, id="r-1")
    request.inputs.add(name="INPUT", datatype="INT32", shape=[1, 1])
    request.raw_input_contents.append(b"\x01\x00\x00\x00")
    request.parameters["priority"].uint64_param = 1
    if isinstance(sequence_id, str):
        request.parameters["sequence_id"].string_param = sequence_id
    elif sequence_id is not None:
        request.parameters["sequence_id"].int64_param = sequence_id
    if sequence_id is not None:
        request.parameters["sequence_start"].bool_param = start
        request.parameters["sequence_end"].bool_param = end
    return bytes(request.SerializeToString())


@pytest.mark.parametrize("sequence_id", [1001, "gold", -3])
def test_a_grpc_request_gives_its_sequence_id_and_flags(sequence_id: int | str) -> None:
    found = from_grpc(SEQ, grpc_request(sequence_id, start=True))
    assert found == SequenceRequest(SEQ, sequence_id, start=True, end=False)
    assert from_grpc(SEQ, grpc_request(sequence_id, end=True)) == SequenceRequest(SEQ, sequence_id, end=True)


def test_a_grpc_uint64_sequence_id_is_read_too() -> None:
    request = service_pb2.ModelInferRequest(model_name=SEQ)
    request.parameters["sequence_id"].uint64_param = 2**64 - 1
    assert from_grpc(SEQ, request.SerializeToString()) == SequenceRequest(SEQ, 2**64 - 1)


def test_a_grpc_request_without_a_sequence_id_has_no_sequence() -> None:
    assert from_grpc(SEQ, grpc_request(None)) is None


def test_a_malformed_grpc_message_is_a_clear_400() -> None:
    with pytest.raises(MalformedRequest, match="malformed message") as raised:
        from_grpc(SEQ, grpc_request(5)[:-3])
    assert raised.value.status == 400


def test_the_stateful_models_follow_the_node_view() -> None:
    """A model is stateful when a node announces its sequence batcher; the longest idle wins."""
    plain = node_view("a", "simple")
    stateful = node_view("b").model_copy(
        update={"models": [ModelRef(name=SEQ, version="1", sequence=True, sequence_idle_s=5.0)]}
    )
    models = StatefulModels([plain, stateful])
    assert (SEQ in models, "simple" in models, models.idle_s(SEQ)) == (True, False, 5.0)
    models.follow([plain])
    assert SEQ not in models


def test_a_live_sequence_is_kept_until_its_end_and_counted_on_its_node() -> None:
    opened: list[str] = []
    closed: list[str] = []
    live = LiveSequences(opened.append, closed.append, FakeClock())
    sequence = SequenceRequest(SEQ, 1, start=True)
    live.served(sequence, "a", idle_s=1.0)
    live.served(SequenceRequest(SEQ, 1), "a", idle_s=1.0)
    assert (live.node(sequence.key), opened, closed) == ("a", ["a"], [])
    live.served(SequenceRequest(SEQ, 1, end=True), "a", idle_s=1.0)
    assert (live.node(sequence.key), opened, closed) == (None, ["a"], ["a"])


def test_an_idle_sequence_is_forgotten_after_twice_its_idle_timeout() -> None:
    clock = FakeClock()
    closed: list[str] = []
    live = LiveSequences(closed=closed.append, clock=clock)
    first, second = SequenceRequest(SEQ, 1, start=True), SequenceRequest(SEQ, 2, start=True)
    live.served(first, "a", idle_s=1.0)
    clock.now_s += 1.5
    live.served(second, "b", idle_s=1.0)
    clock.now_s += 0.6
    assert (live.node(first.key), live.node(second.key), closed) == (None, "b", ["a"])
    assert len(live) == 1


def test_a_sequence_started_again_on_another_node_moves_there() -> None:
    closed: list[str] = []
    live = LiveSequences(closed=closed.append, clock=FakeClock())
    live.served(SequenceRequest(SEQ, 1, start=True), "a", idle_s=1.0)
    live.served(SequenceRequest(SEQ, 1, start=True), "b", idle_s=1.0)
    assert (live.node(SequenceRequest(SEQ, 1).key), closed) == ("b", ["a"])


class Sender:
    """Answers with the node's id, or NodeFailed on the nodes in `failing`; notes each try."""

    def __init__(self, *failing: str) -> None:
        self.failing = set(failing)
        self.tried: list[str] = []

    async def __call__(self, pick: Pick, attempt: int, remaining_s: float) -> str:
        self.tried.append(pick.node_id)
        if pick.node_id in self.failing:
            raise NodeFailed("refused")
        return pick.node_id


def seq_node(node_id: str) -> NodeView:
    """A node serving SEQ, announced stateful with a 10 s idle timeout."""
    ref = ModelRef(name=SEQ, version="1", sequence=True, sequence_idle_s=10.0)
    return node_view(node_id).model_copy(update={"models": [ref]})


def routing(*node_ids: str) -> tuple[NodeRouting, FakeScheduler]:
    nodes = [seq_node(node_id) for node_id in node_ids]
    scheduler = FakeScheduler(nodes)
    route = NodeRouting(scheduler, first_failure_ejector(), GatewayMetrics(CollectorRegistry()), 3)
    route.stateful.follow(nodes)
    return route, scheduler


def soon() -> float:
    return time.monotonic() + 10


async def test_every_request_of_a_sequence_goes_to_its_rendezvous_node() -> None:
    route, scheduler = routing("a", "b", "c")
    for sequence_id in range(1, 30):
        home = rendezvous(SequenceRequest(SEQ, sequence_id).key, ["a", "b", "c"])
        steps = [
            SequenceRequest(SEQ, sequence_id, start=True),
            SequenceRequest(SEQ, sequence_id),
            SequenceRequest(SEQ, sequence_id, end=True),
        ]
        assert [await route.attempt(SEQ, None, soon(), Sender(), sequence=step) for step in steps] == [
            home
        ] * 3
    assert len(route.live) == 0
    assert all(scheduler.core.in_flight(n) == 0 for n in "abc"), "every sequence ended: none counted"


async def test_a_live_sequence_stays_on_its_node_when_a_node_joins() -> None:
    """The joiner wins some keys' rendezvous; the sequences already live stay where they started."""
    route, scheduler = routing("a", "b")
    started = [SequenceRequest(SEQ, i, start=True) for i in range(40)]
    homes = [await route.attempt(SEQ, None, soon(), Sender(), sequence=step) for step in started]
    assert scheduler.core.in_flight("a") + scheduler.core.in_flight("b") == 40, "live sequences count as load"
    scheduler.core.update([seq_node(n) for n in ("a", "b", "c")])
    moved = [s for s in started if rendezvous(s.key, ["a", "b", "c"]) == "c"]
    assert moved, "some keys now belong to the new node"
    again = [
        await route.attempt(SEQ, None, soon(), Sender(), sequence=SequenceRequest(SEQ, i)) for i in range(40)
    ]
    assert again == homes
    fresh = SequenceRequest(SEQ, moved[0].sequence_id, start=True)
    assert await route.attempt(SEQ, None, soon(), Sender(), sequence=fresh) == "c", (
        "a restart follows rendezvous"
    )


async def test_a_sequence_whose_node_fails_is_lost_not_retried_elsewhere() -> None:
    route, _ = routing("a", "b")
    sequence_id = next(i for i in range(100) if rendezvous(SequenceRequest(SEQ, i).key, ["a", "b"]) == "a")
    await route.attempt(SEQ, None, soon(), Sender(), sequence=SequenceRequest(SEQ, sequence_id, start=True))
    send = Sender("a")
    with pytest.raises(SequenceLost, match=r"was on node a, which failed .*start the sequence again") as lost:
        await route.attempt(SEQ, None, soon(), send, sequence=SequenceRequest(SEQ, sequence_id))
    assert (send.tried, lost.value.status, lost.value.figures) == (["a"], 409, {"node": "a"})
    with pytest.raises(SequenceLost, match="is not serving the model now"):
        await route.attempt(SEQ, None, soon(), Sender(), sequence=SequenceRequest(SEQ, sequence_id))
    restart = SequenceRequest(SEQ, sequence_id, start=True)
    assert await route.attempt(SEQ, None, soon(), Sender(), sequence=restart) == "b", "a is ejected"


async def test_a_sequence_whose_node_left_is_lost() -> None:
    route, scheduler = routing("a", "b")
    await route.attempt(SEQ, None, soon(), Sender(), sequence=SequenceRequest(SEQ, "x", start=True))
    home = route.live.node(SequenceRequest(SEQ, "x").key)
    scheduler.core.update([seq_node(n) for n in ("a", "b") if n != home])
    with pytest.raises(SequenceLost, match=f"was on node {home}"):
        await route.attempt(SEQ, None, soon(), Sender(), sequence=SequenceRequest(SEQ, "x"))


async def test_an_idle_sequence_stops_counting_as_load_even_if_only_stateless_requests_follow() -> None:
    clock = FakeClock()
    route, scheduler = routing("a")
    route.live.clock = clock
    await route.attempt(SEQ, None, soon(), Sender(), sequence=SequenceRequest(SEQ, 1, start=True))
    assert scheduler.core.in_flight("a") == 1
    clock.now_s += 21  # twice the 10 s idle timeout, and a bit
    await route.attempt(SEQ, None, soon(), Sender())
    assert (scheduler.core.in_flight("a"), len(route.live)) == (0, 0)
