"""Rendezvous hashing: the same node for a key wherever it is computed, spread evenly, and only a
leaving node's keys move."""

from __future__ import annotations

from collections import Counter

import aiohttp
import pytest

from tests.scheduler.fakes import TOKEN, FakeHealthChecker, node, running_service, served
from tritonfleet.config import NodeRoute, Policy
from tritonfleet.scheduler.client import RemoteScheduler
from tritonfleet.scheduler.core import Scheduler
from tritonfleet.scheduler.rendezvous import rendezvous, sequence_key

NODES = ["node-a", "node-b", "node-c", "node-d"]
KEYS = [sequence_key("simple_sequence", i) for i in range(1, 4001)]


def test_the_choice_does_not_depend_on_the_candidates_order() -> None:
    """Every gateway agrees, whatever order its view lists the nodes in."""
    for key in KEYS[:200]:
        assert rendezvous(key, NODES) == rendezvous(key, list(reversed(NODES)))


def test_keys_spread_roughly_evenly() -> None:
    """4000 keys over 4 nodes: each gets its quarter within 10%."""
    counts = Counter(rendezvous(key, NODES) for key in KEYS)
    assert set(counts) == set(NODES)
    assert all(900 <= count <= 1100 for count in counts.values()), counts


def test_removing_a_node_moves_only_its_own_keys() -> None:
    """Keys of the other nodes stay where they were; the leaver's spread over the rest."""
    before = {key: rendezvous(key, NODES) for key in KEYS}
    after = {key: rendezvous(key, [n for n in NODES if n != "node-c"]) for key in KEYS}
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == "node-c"}
    assert len(Counter(after[key] for key in moved)) == 3


def test_adding_a_node_takes_only_the_keys_it_now_wins() -> None:
    """A fifth node takes about a fifth of the keys, every one of them to itself."""
    before = {key: rendezvous(key, NODES) for key in KEYS}
    after = {key: rendezvous(key, [*NODES, "node-e"]) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == "node-e" for key in moved)
    assert 650 <= len(moved) <= 950


@pytest.mark.parametrize(("one", "other"), [(5, "5"), (1, 2), ("a", "b")])
def test_numeric_and_string_ids_are_different_sequences(one: int | str, other: int | str) -> None:
    """The key tells 5 from "5", as Triton does; each id has a key of its own."""
    assert sequence_key("m", one) != sequence_key("m", other)
    assert sequence_key("m", one) != sequence_key("n", one)


def test_no_candidate_is_an_error() -> None:
    with pytest.raises(ValueError):
        rendezvous("k", [])


def test_the_scheduler_sends_a_sequence_to_its_rendezvous_node_or_its_pinned_one() -> None:
    """With affinity the policy is bypassed; a pinned node wins while it is a candidate."""
    scheduler = Scheduler(Policy.ROUND_ROBIN)
    scheduler.update([node(node_id, "seq") for node_id in NODES])
    key = sequence_key("seq", 42)
    home = rendezvous(key, NODES)
    assert {scheduler.choose("seq", affinity=key).node_id for _ in range(5)} == {home}
    other = next(n for n in NODES if n != home)
    assert scheduler.choose("seq", affinity=key, pinned=other).node_id == other
    assert scheduler.choose("seq", affinity=key, pinned="gone").node_id == home
    rest = [n for n in NODES if n != home]
    assert scheduler.choose("seq", exclude=[home], affinity=key).node_id == rendezvous(key, rest)


async def test_the_remote_scheduler_service_agrees_with_the_embedded_rendezvous() -> None:
    """A gateway on the scheduler service gets the same node for a sequence as one embedding it."""
    checker = FakeHealthChecker([node(node_id, "seq") for node_id in NODES])
    async with running_service(checker) as (app, _), served(app) as url, aiohttp.ClientSession() as session:
        remote = RemoteScheduler(url, NodeRoute.TRITON, session, TOKEN)
        for sequence_id in (1, 2, "three", "four"):
            key = sequence_key("seq", sequence_id)
            picked = await remote.pick("seq", affinity=key)
            assert picked.node_id == rendezvous(key, NODES)
            assert (await remote.pick("seq", affinity=key, pinned="node-b")).node_id == "node-b"
