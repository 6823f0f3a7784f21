import random
from collections import Counter

import pytest

from tritonfleet.config import NodeRoute, Policy
from tritonfleet.protocol import NodeHealth, NodeState, NodeView
from tritonfleet.scheduler.core import Scheduler, node_url
from tritonfleet.scheduler.errors import NoNodeAvailable, SchedulerError, UnknownModel

from .fakes import node


def scheduler_with(*nodes: NodeView, policy: Policy = Policy.ROUND_ROBIN) -> Scheduler:
    scheduler = Scheduler(policy, random.Random(0))
    scheduler.update(nodes)
    return scheduler


def test_only_nodes_serving_the_model_are_chosen() -> None:
    scheduler = scheduler_with(node("a", "resnet"), node("b", "bert"), node("c", "resnet", "bert"))
    picks = Counter(scheduler.choose("resnet").node_id for _ in range(10))
    assert picks == {"a": 5, "c": 5}


def test_a_version_narrows_the_candidates_to_nodes_with_that_version() -> None:
    scheduler = scheduler_with(node("a", "resnet:1"), node("b", "resnet:2"))
    assert {scheduler.choose("resnet", "2").node_id for _ in range(4)} == {"b"}
    assert {scheduler.choose("resnet").node_id for _ in range(4)} == {"a", "b"}


def test_excluded_nodes_are_not_chosen() -> None:
    scheduler = scheduler_with(node("a", "m"), node("b", "m"), node("c", "m"))
    assert {scheduler.choose("m", exclude={"a", "c"}).node_id for _ in range(3)} == {"b"}


def test_a_model_no_node_reports_is_unknown_with_tritons_message() -> None:
    scheduler = scheduler_with(node("a", "resnet:1"))
    with pytest.raises(UnknownModel, match=r"^Request for unknown model: 'bert' is not found$") as err:
        scheduler.choose("bert")
    assert err.value.status == 404
    with pytest.raises(UnknownModel, match=r"^Request for unknown model: 'resnet' version 3 is not found$"):
        scheduler.choose("resnet", "3")


@pytest.mark.parametrize(
    "unavailable",
    [
        node("a", "m", health=NodeHealth.UNHEALTHY),
        node("a", "m", state=NodeState.DRAINING),
        node("a", "m", state=NodeState.STARTING),
    ],
    ids=["unhealthy", "draining", "starting"],
)
def test_a_known_model_without_a_schedulable_node_is_unavailable_not_unknown(unavailable: NodeView) -> None:
    scheduler = scheduler_with(unavailable, node("b", "other"))
    with pytest.raises(NoNodeAvailable, match=r"^no node is serving model 'm' now$") as err:
        scheduler.choose("m")
    assert err.value.status == 503
    assert isinstance(err.value, SchedulerError)


def test_excluding_every_node_of_a_model_makes_it_unavailable() -> None:
    scheduler = scheduler_with(node("a", "m:2"))
    with pytest.raises(NoNodeAvailable, match="'m' version 2"):
        scheduler.choose("m", "2", exclude=["a"])


def test_an_empty_view_knows_no_model() -> None:
    with pytest.raises(UnknownModel):
        Scheduler(Policy.P2C).choose("m")


def test_update_replaces_the_view() -> None:
    scheduler = scheduler_with(node("a", "m"))
    scheduler.update([node("b", "m")])
    assert [n.node_id for n in scheduler.nodes] == ["b"]
    assert scheduler.choose("m").node_id == "b"


def test_outstanding_is_own_in_flight_plus_reported_pending() -> None:
    scheduler = scheduler_with(node("a", "m", pending=2, in_flight=7))
    scheduler.acquire("a")
    scheduler.acquire("a")
    scheduler.release("a")
    assert scheduler.in_flight("a") == 1
    assert scheduler.outstanding("a") == 3


def test_reported_in_flight_counts_only_when_asked_for() -> None:
    scheduler = Scheduler(Policy.LEAST_OUTSTANDING, count_reported_in_flight=True)
    scheduler.update([node("a", "m", pending=2, in_flight=7)])
    assert scheduler.outstanding("a") == 9


def test_release_never_goes_below_zero_and_counts_survive_updates() -> None:
    scheduler = scheduler_with(node("a", "m"))
    scheduler.release("a")
    assert scheduler.in_flight("a") == 0
    scheduler.acquire("a")
    scheduler.update([])
    assert scheduler.in_flight("a") == 1


def test_least_outstanding_avoids_the_node_with_requests_in_flight() -> None:
    scheduler = scheduler_with(node("a", "m"), node("b", "m", pending=1), policy=Policy.LEAST_OUTSTANDING)
    scheduler.acquire("a")
    scheduler.acquire("a")
    assert scheduler.choose("m").node_id == "b"
    scheduler.release("a")
    scheduler.release("a")
    assert scheduler.choose("m").node_id == "a"


def test_node_url_follows_the_route() -> None:
    view = node("a", "m")
    assert node_url(view, NodeRoute.TRITON) == "http://a-triton"
    assert node_url(view, NodeRoute.MANAGER) == "http://a-manager"
