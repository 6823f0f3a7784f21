from tests.fakes import FakeClock
from tritonfleet.gateway.routing import Ejector


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
