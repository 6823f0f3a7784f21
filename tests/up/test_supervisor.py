"""`up` restarts a settler that dies, after a back-off that grows while it keeps dying."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.cluster import fleet_config, paid_sections
from tests.fakes import FakeClock
from tritonfleet.net import free_port
from tritonfleet.node.backoff import Backoff
from tritonfleet.processes import ServiceProcess
from tritonfleet.up.cluster import LocalCluster
from tritonfleet.up.supervisor import Supervisor


def sleeper(tmp_path: Path) -> ServiceProcess:
    argv = [sys.executable, "-c", "import time; time.sleep(600)"]
    return ServiceProcess("sleeper", argv, {}, tmp_path / "sleeper.log")


def test_a_dead_process_is_restarted_after_a_back_off_that_doubles_while_it_keeps_dying(
    tmp_path: Path,
) -> None:
    proc, clock = sleeper(tmp_path), FakeClock()
    supervisor = Supervisor([proc], Backoff(base_s=1.0, max_s=8.0), clock)
    proc.start()
    try:
        assert supervisor.tend() == [], "alive: nothing to do"
        first_pid = proc.pid
        proc.kill()
        assert supervisor.tend() == [], "not before the back-off"
        clock.advance(1.0)
        assert supervisor.tend() == [proc] and proc.alive() and proc.pid != first_pid
        proc.kill()  # dies again soon after its start
        assert supervisor.tend() == []
        clock.advance(1.0)
        assert supervisor.tend() == []
        clock.advance(1.0)
        assert supervisor.tend() == [proc], "after twice the back-off"
        clock.advance(8.0)  # lived past the longest back-off: a fresh count
        proc.kill()
        supervisor.tend()
        clock.advance(1.0)
        assert supervisor.tend() == [proc]
        assert supervisor.restarts == {"sleeper": 3}
    finally:
        proc.kill()


def wait_metrics(port: int, proc: ServiceProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.alive(), proc.tail()
        try:
            if "tritonfleet_settler_rounds_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the settler's metrics never answered; its log ends:\n{proc.tail()}")


def test_the_cluster_restarts_a_killed_settler_instead_of_stopping(tmp_path: Path) -> None:
    port = free_port()
    sections = paid_sections(tmp_path)
    sections["settler"] = {**sections["settler"], "metrics_port": port}
    cluster = LocalCluster(fleet_config(tmp_path, **sections), tmp_path / "state", [])
    settler = cluster.settler
    assert settler is not None
    settler.start()
    try:
        wait_metrics(port, settler)
        killed_pid = settler.pid
        settler.signal(signal.SIGKILL)
        settler.wait_or_kill(timeout_s=10)
        assert cluster.died() == [], "a dead settler does not stop the cluster"
        deadline = time.monotonic() + 10
        while not cluster.tend():
            assert time.monotonic() < deadline, "not restarted"
            time.sleep(0.05)
        assert settler.pid != killed_pid
        wait_metrics(port, settler)
    finally:
        settler.stop(timeout_s=10)
