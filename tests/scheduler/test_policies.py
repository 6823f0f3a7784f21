import random
from collections import Counter

from tritonfleet.config import Policy
from tritonfleet.scheduler.policies import (
    LeastOutstanding,
    PowerOfTwoChoices,
    RoundRobin,
    make_policy,
)


def idle(node_id: str) -> int:
    return 0


def test_round_robin_spreads_each_model_evenly_over_its_nodes() -> None:
    policy = RoundRobin()
    picks = Counter(policy.choose("resnet", ["a", "b", "c"], idle) for _ in range(30))
    assert picks == {"a": 10, "b": 10, "c": 10}


def test_round_robin_keeps_one_rotation_per_model() -> None:
    policy = RoundRobin()
    assert [policy.choose("resnet", ["a", "b"], idle) for _ in range(3)] == ["a", "b", "a"]
    # Another model's traffic does not move resnet's rotation, and starts its own.
    assert [policy.choose("bert", ["a", "b"], idle) for _ in range(2)] == ["a", "b"]
    assert policy.choose("resnet", ["a", "b"], idle) == "b"


def test_round_robin_goes_on_after_the_last_node_when_the_candidates_change() -> None:
    policy = RoundRobin()
    assert policy.choose("m", ["a", "b", "c"], idle) == "a"
    # b is excluded (or gone): the rotation continues with c, not back at a.
    assert policy.choose("m", ["a", "c"], idle) == "c"
    assert policy.choose("m", ["a", "b", "c"], idle) == "a"
    assert policy.choose("m", ["c", "b", "a"], idle) == "b"


def test_least_outstanding_picks_the_least_loaded_node() -> None:
    loads = {"a": 5, "b": 1, "c": 3}
    assert LeastOutstanding().choose("m", list(loads), loads.__getitem__) == "b"


def test_least_outstanding_rotates_among_nodes_tied_for_least() -> None:
    loads = {"a": 0, "b": 4, "c": 0}
    policy = LeastOutstanding()
    picks = [policy.choose("m", list(loads), loads.__getitem__) for _ in range(4)]
    assert picks == ["a", "c", "a", "c"]


def test_p2c_never_picks_the_busier_of_its_two_choices() -> None:
    loads = {"a": 0, "b": 1, "c": 2, "d": 3}
    policy = PowerOfTwoChoices(random.Random(7))
    picks = Counter(policy.choose("m", list(loads), loads.__getitem__) for _ in range(600))
    assert "d" not in picks
    # a wins all three pairs it is in, b two, c one: about 3/6, 2/6 and 1/6 of the picks.
    assert picks["a"] > picks["b"] > picks["c"] > 0


def test_p2c_spreads_requests_over_equally_loaded_nodes() -> None:
    policy = PowerOfTwoChoices(random.Random(1))
    picks = Counter(policy.choose("m", ["a", "b", "c", "d"], idle) for _ in range(4000))
    assert set(picks) == {"a", "b", "c", "d"}
    assert all(800 < count < 1200 for count in picks.values())


def test_p2c_with_one_candidate_picks_it() -> None:
    assert PowerOfTwoChoices(random.Random(0)).choose("m", ["only"], idle) == "only"


def test_make_policy_builds_each_configured_policy() -> None:
    assert isinstance(make_policy(Policy.ROUND_ROBIN), RoundRobin)
    assert isinstance(make_policy(Policy.LEAST_OUTSTANDING), LeastOutstanding)
    p2c = make_policy(Policy.P2C, random.Random(3))
    assert isinstance(p2c, PowerOfTwoChoices)
