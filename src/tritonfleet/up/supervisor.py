"""Restarting the services of a local cluster that may die without the cluster being broken.

The settler is one: nothing waits on it, and a settler that is down only lets charges queue in
the ledger, so `up` restarts it rather than stop the whole cluster. One that dies soon after
each start (a ledger it cannot open, say) is restarted after a back-off that doubles, so that
it does not spin; one that lived past the longest back-off starts its count afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from tritonfleet.node.backoff import Backoff
from tritonfleet.processes import ServiceProcess

log = logging.getLogger(__name__)

RESTART_BACKOFF = Backoff(base_s=0.5, max_s=30.0)


class Supervisor:
    """Restarts its processes when they die; `tend` does, when called (from `up`'s loop)."""

    def __init__(
        self,
        processes: Sequence[ServiceProcess],
        backoff: Backoff = RESTART_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.processes = list(processes)
        self.backoff = backoff
        self.clock = clock
        self.restarts: dict[str, int] = {}
        # Deaths in a row that came soon after a start, and when each dead one is restarted.
        self._deaths: dict[str, int] = {}
        self._restart_at_s: dict[str, float] = {}
        self._started_at_s: dict[str, float] = {}

    def tend(self) -> list[ServiceProcess]:
        """Restart the dead processes whose back-off is over; those restarted."""
        now_s = self.clock()
        restarted = []
        for proc in self.processes:
            if proc.proc is None or proc.alive():
                continue
            if proc.name not in self._restart_at_s:
                self._died(proc, now_s)
            if now_s >= self._restart_at_s[proc.name]:
                del self._restart_at_s[proc.name]
                proc.start()
                self._started_at_s[proc.name] = now_s
                self.restarts[proc.name] = self.restarts.get(proc.name, 0) + 1
                log.warning("restarted", extra={"service": proc.name, "pid": proc.pid})
                restarted.append(proc)
        return restarted

    def _died(self, proc: ServiceProcess, now_s: float) -> None:
        lived_s = now_s - self._started_at_s.get(proc.name, now_s)
        steady = lived_s >= self.backoff.max_s
        deaths = 1 if steady else self._deaths.get(proc.name, 0) + 1
        self._deaths[proc.name] = deaths
        delay_s = self.backoff.delay_s(deaths)
        self._restart_at_s[proc.name] = now_s + delay_s
        code = proc.proc.returncode if proc.proc is not None else None
        log.error(
            "exited; restarting it",
            extra={
                "service": proc.name,
                "exit_code": code,
                "restart_in_s": delay_s,
                "log": str(proc.log_path),
            },
        )
