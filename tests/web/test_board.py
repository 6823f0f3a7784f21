from __future__ import annotations

import json

from tritonfleet.protocol import NodeHealth, NodeState, NodeView
from tritonfleet.web.board import FORGET_AFTER_S, Board, BoardStatus, Probe
from tritonfleet.web.counters import Counters


def view(node_id: str = "n1", port: int = 9000, **changes: object) -> NodeView:
    fields: dict[str, object] = {
        "node_id": node_id,
        "manager_url": f"http://127.0.0.1:{port + 1}",
        "triton_http_url": f"http://127.0.0.1:{port}",
        "state": NodeState.READY,
        "health": NodeHealth.HEALTHY,
        "last_heartbeat_age_s": 0.1,
        **changes,
    }
    return NodeView.model_validate(fields)


def status(board: Board, node_id: str = "n1") -> BoardStatus:
    return board.nodes[node_id].status


def test_a_listed_ready_healthy_node_that_answers_is_up() -> None:
    board = Board()
    board.listing([view()], 0.0)
    board.probe("n1", Probe.OK)
    assert status(board) is BoardStatus.UP


def test_a_refused_probe_turns_a_node_down_at_once_and_a_good_one_brings_it_back() -> None:
    board = Board()
    board.listing([view()], 0.0)
    board.probe("n1", Probe.REFUSED)
    assert status(board) is BoardStatus.DOWN
    board.probe("n1", Probe.OK)
    assert status(board) is BoardStatus.UP


def test_one_slow_probe_is_forgiven_and_two_in_a_row_are_not() -> None:
    board = Board()
    board.listing([view()], 0.0)
    board.probe("n1", Probe.FAILED)
    assert status(board) is BoardStatus.UP
    board.probe("n1", Probe.FAILED)
    assert status(board) is BoardStatus.DOWN


def test_a_node_the_health_checker_dropped_stays_on_the_board_as_down_until_forgotten() -> None:
    board = Board()
    board.listing([view()], 0.0)
    board.listing([], 1.0)
    assert status(board) is BoardStatus.DOWN
    board.listing([], 2.0 + FORGET_AFTER_S)
    assert "n1" not in board.nodes


def test_unhealthy_starting_and_draining_nodes_say_so() -> None:
    board = Board()
    board.listing(
        [
            view("a", health=NodeHealth.UNHEALTHY),
            view("b", 9100, state=NodeState.STARTING),
            view("c", 9200, state=NodeState.DRAINING),
        ],
        0.0,
    )
    assert [status(board, n) for n in "abc"] == [
        BoardStatus.UNHEALTHY,
        BoardStatus.STARTING,
        BoardStatus.DRAINING,
    ]


def test_no_health_checker_answering_keeps_the_last_listing() -> None:
    board = Board()
    board.listing([view()], 0.0)
    board.listing(None, 1.0)
    assert board.health_checker_up is False and board.nodes["n1"].listed


def test_samples_become_rate_and_latency_points_and_a_restarted_node_starts_afresh() -> None:
    board = Board()
    board.listing([view()], 0.0)
    board.sample("n1", 0.0, Counters(0, 0))
    board.sample("n1", 1.0, Counters(20, 40_000))
    node = board.snapshot(1.0)["nodes"][0]
    assert node["rps"] == 20 and node["latency_ms"] == 2.0
    assert node["series"]["rps"] == [[-1.0, 0.0], [0.0, 20.0]]
    board.listing([view(port=9500)], 2.0)
    assert board.snapshot(2.0)["nodes"][0]["series"]["rps"] == []


def test_the_cluster_view_shows_no_node_address() -> None:
    """Visitors of the web see nodes by id: the addresses would let them bypass the gateway."""
    board = Board()
    board.listing([view()], 0.0)
    shown = json.dumps(board.snapshot(0.0))
    assert "127.0.0.1" not in shown and "http://" not in shown
