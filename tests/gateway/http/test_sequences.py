"""The HTTP front over fake Tritons: a stateful model's requests go to their sequence's node, a
stateless model's body is never read, and a lost sequence is a 409 that says what to do."""

from __future__ import annotations

import json

from tests.gateway.fakes import FakeTriton, echo, refusing_node
from tests.gateway.http.conftest import StartGateway, StartTriton
from tritonfleet.gateway.http.routes import NODE_HEADER
from tritonfleet.gateway.sequences import SequenceRequest
from tritonfleet.protocol import ModelRef, NodeView
from tritonfleet.scheduler.rendezvous import rendezvous

SEQ = "simple_string_dyna_sequence"
INFER = f"/v2/models/{SEQ}/infer"


def stateful(node: NodeView) -> NodeView:
    return node.model_copy(
        update={"models": [ModelRef(name=SEQ, version="1", sequence=True, sequence_idle_s=5.0)]}
    )


def stateful_node(triton: FakeTriton, node_id: str) -> NodeView:
    return stateful(triton.node(node_id, SEQ))


def body(sequence_id: int | str, start: bool = False, end: bool = False) -> bytes:
    parameters = {"sequence_id": sequence_id, "sequence_start": start, "sequence_end": end}
    return json.dumps({"inputs": [], "parameters": parameters}).encode()


async def test_each_sequence_s_requests_reach_its_rendezvous_node(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    nodes = [stateful_node(await tritons(echo), node_id) for node_id in ("a", "b")]
    client, core = await gateway(nodes)
    core.routing.stateful.follow(nodes)
    for sequence_id in (1, 2, 3, "four", "five"):
        home = rendezvous(SequenceRequest(SEQ, sequence_id).key, ["a", "b"])
        for step in (body(sequence_id, start=True), body(sequence_id), body(sequence_id, end=True)):
            answer = await client.post(INFER, data=step)
            assert (answer.status, answer.headers[NODE_HEADER]) == (200, home)


async def test_a_stateless_model_s_body_is_never_read(tritons: StartTriton, gateway: StartGateway) -> None:
    """Not even a body that is no JSON: it goes to the node as it is."""
    triton = await tritons(echo)
    client, _ = await gateway([triton.node("a")])
    answer = await client.post("/v2/models/simple/infer", data=b"\x00 not json")
    assert answer.status == 200


async def test_a_malformed_sequence_request_is_a_400_that_reaches_no_node(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    triton = await tritons(echo)
    nodes = [stateful_node(triton, "a")]
    client, core = await gateway(nodes)
    core.routing.stateful.follow(nodes)
    answer = await client.post(INFER, data=json.dumps({"parameters": {"sequence_id": 1.5}}))
    assert answer.status == 400
    assert "'sequence_id' must be an integer or a string" in (await answer.json())["error"]
    assert triton.received == []


async def test_a_sequence_whose_node_is_dead_is_a_409_naming_it(
    tritons: StartTriton, gateway: StartGateway
) -> None:
    """No retry on the live node, which has none of the sequence's state."""
    live = await tritons(echo)
    nodes = [stateful(refusing_node("a")), stateful_node(live, "b")]
    client, core = await gateway(nodes)
    core.routing.stateful.follow(nodes)
    sequence_id = next(i for i in range(1, 100) if rendezvous(SequenceRequest(SEQ, i).key, ["a", "b"]) == "a")
    answer = await client.post(INFER, data=body(sequence_id, start=True))
    error = await answer.json()
    assert (answer.status, error["node"]) == (409, "a")
    assert "start the sequence again" in error["error"]
    assert live.received == []
    again = await client.post(INFER, data=body(sequence_id, start=True))
    assert (again.status, again.headers[NODE_HEADER]) == (200, "b"), "a is ejected: the restart goes to b"
