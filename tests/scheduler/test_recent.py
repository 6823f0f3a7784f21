from tritonfleet.config import Policy
from tritonfleet.scheduler.core import Scheduler
from tritonfleet.scheduler.recent import RecentChoices


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_choice_counts_as_in_flight_for_the_window_then_expires() -> None:
    clock = Clock()
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
