"""Grey failures and overload on the Python plane: late attempts, hedges, slow nodes, bounds."""

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes import FakeClock
from tests.gateway.fakes import FakeScheduler, first_failure_ejector
from tests.scheduler.fakes import node as node_view
from tritonfleet.gateway.admission import Admission, Overloaded
from tritonfleet.gateway.errors import DeadlineExceeded
from tritonfleet.gateway.latency import MIN_ANSWERS, MIN_NODE_ANSWERS, AttemptTimeouts, LatencyOutliers
from tritonfleet.gateway.metrics import GatewayMetrics
from tritonfleet.gateway.routing import Ejector, NodeRouting
from tritonfleet.scheduler.client import Pick


def test_the_attempt_timeout_is_the_ceiling_until_the_model_has_a_history() -> None:
    timeouts = AttemptTimeouts(factor=3.0, floor_s=0.25, ceiling_s=10.0)
    assert timeouts.timeout_s("simple") == 10.0
    for _ in range(MIN_ANSWERS - 1):
        timeouts.observe("simple", 0.2)
    assert timeouts.timeout_s("simple") == 10.0


def test_the_attempt_timeout_follows_the_p99_within_floor_and_ceiling() -> None:
    timeouts = AttemptTimeouts(factor=3.0, floor_s=0.25, ceiling_s=10.0)
    for _ in range(64):
        timeouts.observe("fast", 0.001)
        timeouts.observe("paced", 0.5)
        timeouts.observe("slow", 5.0)
    assert timeouts.timeout_s("fast") == 0.25
    assert timeouts.timeout_s("paced") == pytest.approx(1.5)
    assert timeouts.timeout_s("slow") == 10.0


def test_one_stall_of_a_busy_machine_makes_no_outlier() -> None:
    outliers = LatencyOutliers(factor=3.0)
    for _ in range(MIN_NODE_ANSWERS):
        outliers.observe("simple", "a", 0.002)
        assert not outliers.observe("simple", "b", 0.002)
    assert not outliers.observe("simple", "b", 0.300)
    assert not outliers.observe("simple", "b", 0.002)


def test_a_node_far_slower_than_its_peers_is_an_outlier_and_starts_over() -> None:
    outliers = LatencyOutliers(factor=4.0)
    verdicts = []
    for _ in range(MIN_NODE_ANSWERS):
        outliers.observe("simple", "a", 0.002)
        outliers.observe("simple", "b", 0.002)
        verdicts.append(outliers.observe("simple", "slow", 0.200))
    assert verdicts[-1] is True and verdicts[:-1] == [None] * (MIN_NODE_ANSWERS - 1)
    # Judged again only on the answers after its back-off: not at all for the first few.
    assert outliers.observe("simple", "slow", 0.002) is None


def test_alike_nodes_and_sub_millisecond_gaps_are_no_outliers() -> None:
    outliers = LatencyOutliers(factor=4.0)
    verdicts = []
    for _ in range(3 * MIN_NODE_ANSWERS):
        verdicts.append(outliers.observe("simple", "a", 0.010))
        verdicts.append(outliers.observe("simple", "b", 0.012))
        verdicts.append(outliers.observe("simple", "c", 0.011))
        verdicts.append(outliers.observe("tiny", "a", 0.0009))
        verdicts.append(outliers.observe("tiny", "b", 0.0001))
    assert not any(verdicts)


def grey_routing(*node_ids: str, hedge: bool = True, admission: Admission | None = None) -> NodeRouting:
    scheduler = FakeScheduler([node_view(node_id, "simple") for node_id in node_ids])
    timeouts = AttemptTimeouts(factor=3.0, floor_s=0.05, ceiling_s=0.05)
    return NodeRouting(
        scheduler,
        first_failure_ejector(),
        GatewayMetrics(CollectorRegistry()),
        max_attempts=3,
        timeouts=timeouts,
        outliers=LatencyOutliers(4.0),
        admission=admission,
        hedge=hedge,
    )


class Nodes:
    """Sends that take each node's delay (None: hangs until cancelled), noting what was cancelled."""

    def __init__(self, **delays: float | None) -> None:
        self.delays = delays
        self.cancelled: list[str] = []
        self.tried: list[str] = []

    async def __call__(self, pick: Pick, attempt: int, remaining_s: float) -> str:
        self.tried.append(pick.node_id)
        delay = self.delays[pick.node_id]
        try:
            await asyncio.sleep(3600 if delay is None else delay)
        except asyncio.CancelledError:
            self.cancelled.append(pick.node_id)
            raise
        return pick.node_id


def counted(counter: object) -> float:
    [family] = counter.collect()  # type: ignore[attr-defined]
    return next(sample.value for sample in family.samples if sample.name.endswith("_total"))


async def test_a_hung_node_is_hedged_around_ejected_and_its_attempt_cancelled() -> None:
    route = grey_routing("hung", "live")
    nodes = Nodes(hung=None, live=0.0)
    assert await route.attempt("simple", None, time.monotonic() + 10, nodes) == "live"
    assert nodes.tried == ["hung", "live"]
    assert route.ejector.ejected() == {"hung"}
    await asyncio.sleep(0)
    assert nodes.cancelled == ["hung"]
    assert counted(route.metrics.hedges) == 1
    # Both nodes' in-flight counts are back to zero.
    assert route.scheduler.core.in_flight("hung") == route.scheduler.core.in_flight("live") == 0  # type: ignore[attr-defined]


async def test_the_first_answer_wins_even_from_the_late_node() -> None:
    route = grey_routing("late", "later")
    nodes = Nodes(late=0.08, later=1.0)
    assert await route.attempt("simple", None, time.monotonic() + 10, nodes) == "late"
    assert nodes.tried == ["late", "later"]
    await asyncio.sleep(0)
    assert nodes.cancelled == ["later"]
    # The late node's answer is no success: it stays ejected.
    assert "late" in route.ejector.ejected()


async def test_without_hedging_a_late_node_is_ejected_and_waited_for() -> None:
    route = grey_routing("late", "other", hedge=False)
    nodes = Nodes(late=0.08, other=0.0)
    assert await route.attempt("simple", None, time.monotonic() + 10, nodes) == "late"
    assert nodes.tried == ["late"]
    assert route.ejector.ejected() == {"late"}


async def test_every_node_hung_ends_at_the_deadline_naming_them() -> None:
    route = grey_routing("a", "b")
    nodes = Nodes(a=None, b=None)
    with pytest.raises(DeadlineExceeded, match="node a, b did not answer within the deadline"):
        await route.attempt("simple", None, time.monotonic() + 0.3, nodes)
    await asyncio.sleep(0)
    assert sorted(nodes.cancelled) == ["a", "b"]


async def test_a_node_slower_than_its_peers_is_ejected() -> None:
    route = grey_routing("a", "b", "slow")
    nodes = Nodes(a=0.0, b=0.0, slow=0.02)
    for _ in range(3 * MIN_NODE_ANSWERS):
        await route.attempt("simple", None, time.monotonic() + 10, nodes)
        if route.ejector.ejected():
            break
    assert route.ejector.ejected() == {"slow"}


async def test_a_slow_node_back_from_its_back_off_is_ejected_for_longer() -> None:
    clock = FakeClock()
    route = grey_routing("a", "b", "slow")
    route.ejector = Ejector(after_failures=1, base_s=1.0, max_s=60.0, clock=clock)
    nodes = Nodes(a=0.0, b=0.0, slow=0.02)
    backoffs = []
    while len(backoffs) < 3:
        await route.attempt("simple", None, time.monotonic() + 10, nodes)
        out_s = 0.0
        while "slow" in route.ejector.ejected():
            clock.advance(0.5)
            out_s += 0.5
        if out_s:
            backoffs.append(out_s)
    # Its first answers after each return prove nothing: the back-off doubles, never restarts.
    assert backoffs == [1.0, 2.0, 4.0]


async def test_beyond_the_gateway_limit_and_its_queue_requests_are_refused_at_once() -> None:
    route = grey_routing("a", "b", admission=Admission(limit=2, per_node=100, queue_limit=1))
    nodes = Nodes(a=0.2, b=0.2)
    deadline = time.monotonic() + 10
    running = [asyncio.ensure_future(route.attempt("simple", None, deadline, nodes)) for _ in range(3)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(Overloaded, match="the gateway is at its limit"):
        await route.attempt("simple", None, deadline, nodes)
    assert time.monotonic() - started < 0.1, "refused at once, not after a wait"
    # The queued third request is served once a slot frees.
    assert len(await asyncio.gather(*running)) == 3
    assert counted(route.metrics.overloaded) == 1


async def test_full_nodes_are_passed_over_then_queued_for() -> None:
    route = grey_routing("a", "b", admission=Admission(limit=100, per_node=1, queue_limit=5))
    nodes = Nodes(a=0.03, b=0.03)
    deadline = time.monotonic() + 10
    answers = await asyncio.gather(*(route.attempt("simple", None, deadline, nodes) for _ in range(4)))
    assert sorted(answers) == ["a", "a", "b", "b"]
    assert route.admission.queued == 0 and not route.admission.full


async def test_a_queued_request_whose_deadline_passes_is_refused() -> None:
    admission = Admission(limit=1, per_node=100, queue_limit=5)
    async with admission.admitted(time.monotonic() + 10):
        with pytest.raises(Overloaded, match="at its limit of requests in flight; retry later"):
            async with admission.admitted(time.monotonic() + 0.05):
                pass
    assert admission.queued == 0 and admission.in_flight == 0


async def test_a_queued_request_that_goes_away_passes_its_turn_on() -> None:
    admission = Admission(limit=1, per_node=100, queue_limit=5)
    deadline = time.monotonic() + 10
    order: list[str] = []

    async def request(name: str, hold_s: float) -> None:
        async with admission.admitted(deadline):
            order.append(name)
            await asyncio.sleep(hold_s)

    first = asyncio.ensure_future(request("first", 0.05))
    await asyncio.sleep(0)
    leaving = asyncio.ensure_future(request("leaving", 0))
    staying = asyncio.ensure_future(request("staying", 0))
    await asyncio.sleep(0.01)
    leaving.cancel()
    await asyncio.gather(first, staying)
    assert order == ["first", "staying"]
    assert admission.queued == 0
