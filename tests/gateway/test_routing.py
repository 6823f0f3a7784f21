import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes import FakeClock
from tests.gateway.fakes import FakeScheduler, first_failure_ejector
from tests.scheduler.fakes import node as node_view
from tritonfleet.gateway.errors import DeadlineExceeded, Unavailable
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.routing import Ejector, NodeFailed, NodeRouting
from tritonfleet.protocol import NodeHealth
from tritonfleet.scheduler.client import Pick
from tritonfleet.scheduler.errors import NoNodeAvailable, UnknownModel


def test_a_failing_node_is_ejected_for_the_base_backoff() -> None:
    clock = FakeClock()
    ejector = Ejector(after_failures=1, base_s=1.0, max_s=8.0, clock=clock)
    assert ejector.failed("a") is True
    assert ejector.ejected() == {"a"}
    clock.now_s += 1.01
    assert ejector.ejected() == frozenset()


def test_ejection_waits_for_the_threshold_of_consecutive_failures() -> None:
    ejector = Ejector(after_failures=3, base_s=1.0, max_s=8.0, clock=FakeClock())
    assert not ejector.failed("a")
    assert not ejector.failed("a")
    ejector.succeeded("a")
    assert not ejector.failed("a")
    assert not ejector.failed("a")
    assert ejector.failed("a")


def test_backoff_doubles_while_the_node_keeps_failing_and_is_capped() -> None:
    clock = FakeClock()
    ejector = Ejector(after_failures=2, base_s=1.0, max_s=3.0, clock=clock)
    ejector.failed("a")
    ejector.failed("a")
    for expected_s in (2.0, 3.0, 3.0):
        clock.now_s += 10
        assert ejector.failed("a"), "a half-open node is ejected again on its first failure"
        clock.now_s += expected_s - 0.01
        assert "a" in ejector.ejected()
        clock.now_s += 0.02
        assert "a" not in ejector.ejected()


def test_a_success_clears_the_record() -> None:
    clock = FakeClock()
    ejector = Ejector(after_failures=1, base_s=1.0, max_s=8.0, clock=clock)
    ejector.failed("a")
    clock.now_s += 2
    ejector.succeeded("a")
    ejector.failed("a")
    clock.now_s += 1.01
    assert ejector.ejected() == frozenset(), "back to the base back-off after a success"


def test_a_node_that_left_the_cluster_or_restarted_comes_back_with_a_clean_record() -> None:
    clock = FakeClock()
    ejector = Ejector(after_failures=1, base_s=1.0, max_s=30.0, clock=clock)
    ejector.track({"a": "http://h:1", "b": "http://h:2", "c": "http://h:3"})
    for _ in range(4):
        for node in "abc":
            ejector.failed(node)
    ejector.track({"b": "http://h:2", "c": "http://h:9"})
    assert ejector.ejected() == {"b"}, "a left the view; c restarted on another port"
    ejector.track({"a": "http://h:1", "b": "http://h:2", "c": "http://h:9"})
    ejector.failed("a")
    clock.now_s += 1.01
    assert ejector.ejected() == {"b"}, "a is back to the base back-off, b still backs off"


class Sender:
    """A `send` for NodeRouting.attempt: NodeFailed on the nodes in `failing`, else the node's id
    as the answer; it notes each node tried and the scheduler's in-flight count there meanwhile."""

    def __init__(self, scheduler: FakeScheduler, *failing: str) -> None:
        self.scheduler = scheduler
        self.failing = set(failing)
        self.tried: list[str] = []
        self.in_flight: list[int] = []
        self.remaining_s: list[float] = []

    async def __call__(self, pick: Pick, attempt: int, remaining_s: float) -> str:
        self.tried.append(pick.node_id)
        self.in_flight.append(self.scheduler.core.in_flight(pick.node_id))
        self.remaining_s.append(remaining_s)
        if pick.node_id in self.failing:
            raise NodeFailed("refused")
        return pick.node_id


def routing(*node_ids: str, max_attempts: int = 3) -> tuple[NodeRouting, FakeScheduler]:
    """Routing over healthy nodes serving "simple", in round-robin order of their ids."""
    scheduler = FakeScheduler([node_view(node_id, "simple") for node_id in node_ids])
    return NodeRouting(
        scheduler, first_failure_ejector(), GatewayMetrics(CollectorRegistry()), max_attempts
    ), scheduler


def soon() -> float:
    return time.monotonic() + 10


def retries(route: NodeRouting) -> float:
    [family] = route.metrics.retries.collect()
    return next(sample.value for sample in family.samples if sample.name.endswith("_total"))


async def test_a_failing_node_is_ejected_and_the_request_answered_by_the_next() -> None:
    route, scheduler = routing("a", "b")
    send = Sender(scheduler, "a")
    assert await route.attempt("simple", None, soon(), send) == "b"
    assert send.tried == ["a", "b"]
    assert route.ejector.ejected() == {"a"}
    assert retries(route) == 1


async def test_the_next_request_goes_straight_past_an_ejected_node() -> None:
    route, scheduler = routing("a", "b", "c")
    route.failed("a")
    send = Sender(scheduler)
    answers = [await route.attempt("simple", None, soon(), send) for _ in range(4)]
    assert answers == ["b", "c", "b", "c"]
    assert retries(route) == 0


async def test_with_every_node_failing_the_request_is_unavailable_with_the_last_failure() -> None:
    route, scheduler = routing("a", "b")
    send = Sender(scheduler, "a", "b")
    with pytest.raises(Unavailable, match="model 'simple' now; last failure: node b refused"):
        await route.attempt("simple", None, soon(), send)
    assert send.tried == ["a", "b"]
    assert route.ejector.ejected() == {"a", "b"}


async def test_max_attempts_bounds_the_nodes_one_request_tries() -> None:
    route, scheduler = routing("a", "b", "c", "d", max_attempts=2)
    send = Sender(scheduler, "a", "b", "c", "d")
    with pytest.raises(Unavailable):
        await route.attempt("simple", None, soon(), send)
    assert send.tried == ["a", "b"]


async def test_a_request_never_goes_twice_to_the_same_node() -> None:
    route, scheduler = routing("a", max_attempts=3)
    send = Sender(scheduler, "a")
    with pytest.raises(Unavailable):
        await route.attempt("simple", None, soon(), send)
    assert send.tried == ["a"]


async def test_an_ejected_node_is_still_tried_when_it_is_the_only_one_left() -> None:
    route, scheduler = routing("a")
    route.failed("a")
    assert route.ejector.ejected() == {"a"}
    assert await route.attempt("simple", None, soon(), Sender(scheduler)) == "a"
    assert route.ejector.ejected() == frozenset(), "its success clears its record"


async def test_an_ejected_node_is_tried_once_the_others_have_failed() -> None:
    route, scheduler = routing("a", "b")
    route.failed("a")
    send = Sender(scheduler, "b")
    assert await route.attempt("simple", None, soon(), send) == "a"
    assert send.tried == ["b", "a"]


async def test_a_success_clears_the_failures_counted_against_a_node() -> None:
    scheduler = FakeScheduler([node_view("a", "simple")])
    counting = Ejector(after_failures=2, base_s=10.0, max_s=60.0, clock=FakeClock())
    route = NodeRouting(scheduler, counting, GatewayMetrics(CollectorRegistry()), max_attempts=3)
    flaky = Sender(scheduler, "a")
    with pytest.raises(Unavailable):
        await route.attempt("simple", None, soon(), flaky)
    assert await route.attempt("simple", None, soon(), Sender(scheduler)) == "a"
    with pytest.raises(Unavailable):
        await route.attempt("simple", None, soon(), flaky)
    assert counting.ejected() == frozenset(), "one failure since the success, below the threshold"


async def test_the_in_flight_count_is_held_during_each_send_and_back_to_zero_after() -> None:
    route, scheduler = routing("a", "b")
    send = Sender(scheduler, "a")
    await route.attempt("simple", None, soon(), send)
    assert send.in_flight == [1, 1]
    assert (scheduler.core.in_flight("a"), scheduler.core.in_flight("b")) == (0, 0)


async def test_the_in_flight_count_is_released_when_the_send_raises_something_else() -> None:
    route, scheduler = routing("a", "b")

    async def timed_out(pick: Pick, attempt: int, remaining_s: float) -> str:
        raise DeadlineExceeded(f"node {pick.node_id} did not answer within the deadline")

    with pytest.raises(DeadlineExceeded, match="node a"):
        await route.attempt("simple", None, soon(), timed_out)
    assert scheduler.core.in_flight("a") == 0
    assert route.ejector.ejected() == frozenset(), "a timeout is no reason to eject, nor to retry"


async def test_a_deadline_spent_before_the_first_send_is_exceeded_without_sending() -> None:
    route, scheduler = routing("a")
    send = Sender(scheduler)
    with pytest.raises(DeadlineExceeded):
        await route.attempt("simple", None, time.monotonic() - 0.001, send)
    assert send.tried == []
    assert scheduler.core.in_flight("a") == 0


async def test_no_retry_starts_once_the_deadline_is_spent() -> None:
    route, scheduler = routing("a", "b")

    async def fails_late(pick: Pick, attempt: int, remaining_s: float) -> str:
        await asyncio.sleep(remaining_s + 0.001)
        raise NodeFailed("reset")

    with pytest.raises(DeadlineExceeded):
        await route.attempt("simple", None, time.monotonic() + 0.01, fails_late)
    assert scheduler.core.in_flight("a") == 0 and scheduler.core.in_flight("b") == 0


async def test_each_send_is_given_the_time_left_before_the_deadline() -> None:
    route, scheduler = routing("a")
    send = Sender(scheduler)
    await route.attempt("simple", None, time.monotonic() + 5.0, send)
    [remaining_s] = send.remaining_s
    assert 4.0 < remaining_s <= 5.0


async def test_a_node_turned_down_as_unusable_is_skipped_without_being_ejected() -> None:
    route, scheduler = routing("a", "b")
    send = Sender(scheduler)
    answer = await route.attempt("simple", None, soon(), send, usable=lambda pick: pick.node_id != "a")
    assert (answer, send.tried) == ("b", ["b"])
    assert route.ejector.ejected() == frozenset()


async def test_a_model_no_node_reports_is_unknown() -> None:
    route, scheduler = routing("a")
    with pytest.raises(UnknownModel, match="Request for unknown model: 'x' is not found"):
        await route.attempt("x", None, soon(), Sender(scheduler))


async def test_a_model_whose_nodes_are_all_unhealthy_has_no_node_available() -> None:
    scheduler = FakeScheduler([node_view("a", "simple", health=NodeHealth.UNHEALTHY)])
    route = NodeRouting(
        scheduler, first_failure_ejector(), GatewayMetrics(CollectorRegistry()), max_attempts=3
    )
    with pytest.raises(NoNodeAvailable):
        await route.attempt("simple", None, soon(), Sender(scheduler))
