"""Model control's flow and merge, over fake nodes: which nodes are asked, and what one answer
the cluster gives for theirs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import pytest

from tests.gateway.fakes import CLUSTER_TOKEN, FakeWatcher
from tests.scheduler.fakes import node
from tritonfleet.gateway.errors import Unavailable
from tritonfleet.gateway.model_control import (
    Action,
    ModelControl,
    ModelControlUnauthorized,
    NodeAnswer,
    Outcome,
)
from tritonfleet.protocol import NodeView

BEARER = f"Bearer {CLUSTER_TOKEN}"
POLL_FAILED = "failed to load 'simple', failed to poll from model repository"


def ok(node_id: str) -> NodeAnswer[int]:
    return NodeAnswer(node_id, True, 200)


def failed(node_id: str, error: str, code: int = 400) -> NodeAnswer[int]:
    return NodeAnswer(node_id, False, code, error)


class FakeControl:
    """Each node's repository and answer as the test sets them; what was asked, in order."""

    def __init__(self, holds: dict[str, set[str] | None], answers: dict[str, NodeAnswer[int]]) -> None:
        self.holds = holds
        self.answers = answers
        self.applied: list[str] = []

    async def holdings(self, node: NodeView) -> Collection[str] | None:
        return self.holds[node.node_id]

    async def apply(self, node: NodeView) -> NodeAnswer[int]:
        self.applied.append(node.node_id)
        return self.answers.get(node.node_id, ok(node.node_id))


class ChangingWatcher(FakeWatcher):
    """A view that becomes `later` when the flow first waits for it (a heartbeat later)."""

    def __init__(self, now: Sequence[NodeView], later: Sequence[NodeView] | None) -> None:
        super().__init__(now)
        self.later = later
        self.waited_s: list[float] = []

    async def wait_for(self, predicate: Callable[[list[NodeView]], bool], timeout_s: float) -> bool:
        self.waited_s.append(timeout_s)
        if not predicate(self.nodes) and self.later is not None:
            self.view = list(self.later)
        return predicate(self.nodes)


def flow(watcher: FakeWatcher | None = None) -> ModelControl:
    return ModelControl(watcher or FakeWatcher(), CLUSTER_TOKEN, view_wait_s=2.0)


NODES = [node("node-1", "simple"), node("node-2", "simple"), node("node-3", "digits")]


def test_all_succeeded_is_success() -> None:
    outcome = Outcome(Action.LOAD, "simple", (ok("node-1"), ok("node-2")))
    assert outcome.ok and outcome.relayed() is None and outcome.succeeded == ["node-1", "node-2"]


def test_every_node_failing_alike_is_that_nodes_answer_as_it_gave_it() -> None:
    outcome = Outcome(
        Action.LOAD, "simple", (failed("node-1", POLL_FAILED, 500), failed("node-2", POLL_FAILED, 500))
    )
    assert outcome.relayed() == failed("node-1", POLL_FAILED, 500)


def test_a_partial_failure_names_each_failing_node_its_reason_and_where_it_worked() -> None:
    outcome = Outcome(
        Action.LOAD,
        "twin",
        (ok("node-1"), failed("node-2", "load failed for model 'twin': no version 2\n")),
    )
    assert not outcome.ok and outcome.relayed() is None
    assert outcome.message() == (
        "failed to load 'twin' on 1 of 2 nodes: node-2: load failed for model 'twin': no version 2; "
        "loaded on node-1"
    )
    assert (outcome.code(500), outcome.failed_nodes) == (400, "node-2")


def test_failures_that_differ_are_named_each_with_the_fallback_status() -> None:
    outcome = Outcome(Action.UNLOAD, "m", (failed("node-1", "a", 400), failed("node-2", "b", 500)))
    assert outcome.relayed() is None
    assert outcome.message() == "failed to unload 'm' on 2 of 2 nodes: node-1: a; node-2: b"
    assert (outcome.code(500), outcome.failed_nodes) == (500, "node-1,node-2")


def test_nodes_that_gave_no_answer_are_named_even_when_all_failed_alike() -> None:
    """'could not be reached' is the gateway's word, not Triton's: it must say which nodes."""
    silent = [NodeAnswer(f"node-{i}", False, 503, "could not be reached", answered=False) for i in (1, 2)]
    outcome = Outcome(Action.LOAD, "simple", tuple(silent))
    assert outcome.relayed() is None
    assert "node-1: could not be reached; node-2: could not be reached" in outcome.message()


async def test_only_the_nodes_whose_repository_holds_the_model_are_asked() -> None:
    control = FakeControl({"node-1": {"simple"}, "node-2": {"simple", "digits"}, "node-3": {"digits"}}, {})
    outcome = await flow().apply(BEARER, Action.UNLOAD, "simple", NODES, control)
    assert control.applied == ["node-1", "node-2"]
    assert outcome.ok and outcome.succeeded == ["node-1", "node-2"]


async def test_a_node_whose_index_cannot_be_read_is_asked_and_answers_for_itself() -> None:
    control = FakeControl(
        {"node-1": {"simple"}, "node-2": None, "node-3": {"digits"}},
        {"node-2": failed("node-2", POLL_FAILED, 500)},
    )
    outcome = await flow().apply(BEARER, Action.LOAD, "simple", NODES, control)
    assert control.applied == ["node-1", "node-2"]
    assert outcome.failed_nodes == "node-2" and outcome.relayed() is None


async def test_a_model_no_repository_holds_goes_to_every_node_for_tritons_own_answer() -> None:
    control = FakeControl(
        {"node-1": {"simple"}, "node-2": {"simple"}, "node-3": {"digits"}},
        {
            n: failed(n, "failed to load 'nope', failed to poll from model repository", 500)
            for n in ("node-1", "node-2", "node-3")
        },
    )
    outcome = await flow().apply(BEARER, Action.LOAD, "nope", NODES, control)
    assert control.applied == ["node-1", "node-2", "node-3"]
    relayed = outcome.relayed()
    assert relayed is not None and (relayed.code, relayed.error) == (
        500,
        "failed to load 'nope', failed to poll from model repository",
    )


@pytest.mark.parametrize("authorization", [None, "Bearer user-api-key", f"Bearer {CLUSTER_TOKEN}x"])
async def test_anything_but_the_cluster_token_is_refused_before_any_node_is_asked(
    authorization: str | None,
) -> None:
    control = FakeControl({"node-1": {"simple"}}, {})
    with pytest.raises(ModelControlUnauthorized, match="cluster token") as refused:
        await flow().apply(authorization, Action.LOAD, "simple", NODES[:1], control)
    assert refused.value.status == 401 and control.applied == []


async def test_no_node_at_all_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="no node is serving"):
        await flow().apply(BEARER, Action.LOAD, "simple", [], FakeControl({}, {}))


async def test_the_answer_waits_until_the_view_shows_the_model_loaded_where_it_was() -> None:
    before = [node("node-1"), node("node-2"), node("node-3", "digits")]
    after = [node("node-1", "simple"), node("node-2", "simple"), node("node-3", "digits")]
    watcher = ChangingWatcher(before, after)
    control = FakeControl({"node-1": {"simple"}, "node-2": {"simple"}, "node-3": {"digits"}}, {})
    await flow(watcher).apply(BEARER, Action.LOAD, "simple", before, control)
    assert watcher.waited_s == [2.0] and watcher.nodes == after


async def test_an_unload_waits_only_for_the_nodes_that_unloaded() -> None:
    """node-2 failed and still serves the model: the view is followed once node-1 has it no more."""
    before = [node("node-1", "simple"), node("node-2", "simple")]
    after = [node("node-1"), node("node-2", "simple")]
    watcher = ChangingWatcher(before, after)
    control = FakeControl({"node-1": {"simple"}, "node-2": {"simple"}}, {"node-2": failed("node-2", "busy")})
    outcome = await flow(watcher).apply(BEARER, Action.UNLOAD, "simple", before, control)
    assert outcome.succeeded == ["node-1"] and watcher.nodes == after


async def test_a_view_that_does_not_follow_in_time_leaves_the_answer_as_the_nodes_gave_it() -> None:
    watcher = ChangingWatcher([node("node-1")], None)
    control = FakeControl({"node-1": {"simple"}}, {})
    outcome = await flow(watcher).apply(BEARER, Action.LOAD, "simple", [node("node-1")], control)
    assert outcome.ok and watcher.waited_s == [2.0]


async def test_nothing_is_awaited_when_no_node_changed() -> None:
    watcher = ChangingWatcher([node("node-1")], None)
    control = FakeControl({"node-1": {"simple"}}, {"node-1": failed("node-1", "bad config")})
    await flow(watcher).apply(BEARER, Action.LOAD, "simple", [node("node-1")], control)
    assert watcher.waited_s == []
