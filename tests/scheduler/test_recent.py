from tests.fakes import FakeClock
from tritonfleet.config import Policy
from tritonfleet.scheduler.core import Scheduler
from tritonfleet.scheduler.recent import RecentChoices


def test_a_choice_counts_as_in_flight_for_the_window_then_expires() -> None:
    clock = FakeClock()
    scheduler = Scheduler(Policy.LEAST_OUTSTANDING)
    recent = RecentChoices(scheduler, window_s=1.0, clock=clock)
    recent.add("a")
    clock.now_s += 0.5
    recent.add("a")
    recent.expire()
    assert scheduler.in_flight("a") == 2
    clock.now_s += 0.5
    recent.expire()
    assert scheduler.in_flight("a") == 1
    assert len(recent) == 1
    clock.now_s += 0.5
    recent.expire()
    assert scheduler.in_flight("a") == 0
