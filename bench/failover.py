"""Failover: four nodes of the latency fixture under a steady load; one node is SIGKILLed
mid-run and restarted later, once per data plane of the gateway.

    .venv/bin/python -m bench.failover [--rate 100] [--steady-s 5] [--dead-s 8] [--after-s 5]
                                       [--service-time-ms 20] [--data-plane python,envoy]
                                       [--smoke] [--output FILE]

The load is open loop at `--rate` requests/s (a new request every 1/rate s whether or not the
earlier ones have answered, so a stall shows as latency instead of slowing the load down), from
a Python asyncio client, because it must read each answer's `X-Tritonfleet-Node` header, which
wrk's summary cannot give. Meanwhile the gateway's `/metrics` (attempts per node and outcome) and
`/v1/nodes` (its routing view) are polled every `--poll-s`.

The data planes run one after the other on the same cluster, each through its own gateway: the
cluster's (Python), and one more on Envoy's (one worker), started for its run and measured once
Envoy routes to all four nodes, the victim of an earlier run included. Behind Envoy the
attempts at the victim are read from Envoy's own per-host counters (its admin's `/clusters`),
which the gateway's `/metrics` carries only a second later.

The victim is node 2's manager, SIGKILLed; its Triton dies with it (the manager's guard kills
Triton's process group when the manager goes). Reported: client-visible errors (any answer but
200, or no answer), the time from the kill to the gateway's first failed attempt at the victim
(it is ejected on that failure, so that is when it leaves the rotation), the time of the last
attempt the gateway made at the dead node (half-open re-tries while ejected, each retried on
another node) and when the gateway's view dropped it, the time from the restart until the
victim serves again, and the latency spike: p99 and max around the kill and the restart
against the steady p99 before. Times from metrics polling are good to ±`--poll-s`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.fixture import (
    LATENCY_BODY,
    LatencyModel,
    infer_path,
    latency_cluster,
    policy_gateway,
    start,
    triton_urls,
)
from bench.overhead import ENVOY_PLANE
from bench.scenario import RESULTS, scenario_main
from tritonfleet.processes import ServiceProcess
from tritonfleet.protocol import NodeView
from tritonfleet.up.cluster import LocalCluster

NODE_HEADER = "X-Tritonfleet-Node"
VICTIM = "node-2"
BIN_S = 0.25
UPSTREAM_LINE = re.compile(
    r'^tritonfleet_gateway_upstream_requests_total\{node="([^"]+)",outcome="([^"]+)"\} (\S+)$', re.M
)
# A per-host request counter of Envoy's admin `/clusters`: cluster::host:port::counter::value
# (a refused connection counts in rq_error: cx_connect_fail would count it twice).
ENVOY_HOST_LINE = re.compile(r"^[^:\s]+::([^:]+:\d+)::(rq_success|rq_error|rq_timeout)::(\d+)$", re.M)
# Outcomes of an attempt that got an answer (the Python gateway's status, Envoy's counter).
SUCCESS = ("200", "rq_success")


@dataclass(slots=True)
class Sample:
    sent_s: float
    latency_ms: float
    status: int  # 0: no answer
    node: str
    error: str = ""


@dataclass(slots=True)
class Poll:
    at_s: float
    # The victim's attempts so far by outcome ("200", "unavailable", ... or Envoy's counters).
    attempts: dict[str, float]
    in_view: bool


@dataclass(frozen=True)
class Plane:
    """A data plane under test: the gateway's front door, and the page where its attempts at
    the victim are counted (through `counters_socket`, a unix socket, when given), with how to
    read them from it."""

    name: str
    url: str
    counters_url: str
    attempts: Callable[[str], dict[str, float]]
    counters_socket: str | None = None


def gateway_attempts(metrics: str) -> dict[str, float]:
    """The victim's attempts by outcome, from the gateway's `/metrics`."""
    return {outcome: float(n) for node, outcome, n in UPSTREAM_LINE.findall(metrics) if node == VICTIM}


def envoy_attempts(victim: str, clusters: str) -> dict[str, float]:
    """The victim's attempts by Envoy's per-host counter, summed over Envoy's clusters (the
    model's, the model version's), from its admin's `/clusters`; `victim` is host:port."""
    attempts: dict[str, float] = {}
    for host, counter, n in ENVOY_HOST_LINE.findall(clusters):
        if host == victim:
            attempts[counter] = attempts.get(counter, 0.0) + float(n)
    return attempts


@contextlib.contextmanager
def gateway_of(fleet: LocalCluster, plane: str) -> Iterator[Plane]:
    """The gateway of a data plane: the cluster's own (Python), or one more on Envoy's."""
    if plane == "python":
        yield Plane(plane, fleet.gateway_url, f"{fleet.gateway_url}/metrics", gateway_attempts)
        return
    policy = fleet.config.scheduler.policy.value
    with policy_gateway(fleet, policy, name="gateway_envoy", env=ENVOY_PLANE) as gateway:
        view = httpx.get(f"{gateway.url}/v1/nodes", headers=fleet.cluster_auth, timeout=5.0).json()
        # Envoy's host for the victim: its Triton's HTTP port, as the gateway's node route is.
        victim = triton_urls(fleet)[VICTIM].split("://", 1)[-1]
        attempts = functools.partial(envoy_attempts, victim)
        yield Plane(plane, gateway.url, "http://envoy/clusters", attempts, view["envoy"]["admin"])


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)


async def one_request(session: aiohttp.ClientSession, url: str, t0: float, out: list[Sample]) -> None:
    loop = asyncio.get_running_loop()
    begin = loop.time()
    try:
        headers = {"Content-Type": "application/json"}
        async with session.post(url, data=LATENCY_BODY, headers=headers) as answer:
            await answer.read()
            status, node, error = answer.status, answer.headers.get(NODE_HEADER, ""), ""
    except (aiohttp.ClientError, TimeoutError) as exc:
        status, node, error = 0, "", repr(exc)
    out.append(Sample(begin - t0, (loop.time() - begin) * 1000, status, node, error))


async def open_loop(url: str, rate: float, t0: float, stop: asyncio.Event, out: list[Sample]) -> None:
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        pending: set[asyncio.Task[None]] = set()
        due = loop.time()
        while not stop.is_set():
            task = asyncio.create_task(one_request(session, url, t0, out))
            pending.add(task)
            task.add_done_callback(pending.discard)
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
        await asyncio.gather(*pending)


async def poll_gateway(
    plane: Plane,
    cluster_auth: dict[str, str],
    interval_s: float,
    t0: float,
    stop: asyncio.Event,
    out: list[Poll],
) -> None:
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=2)
    counters_connector = (
        None if plane.counters_socket is None else aiohttp.UnixConnector(plane.counters_socket)
    )
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        aiohttp.ClientSession(timeout=timeout, connector=counters_connector) as counters,
    ):
        while not stop.is_set():
            at_s = loop.time() - t0
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with counters.get(plane.counters_url) as answer:
                    text = await answer.text()
                async with session.get(f"{plane.url}/v1/nodes", headers=cluster_auth) as answer:
                    nodes = [NodeView.model_validate(n) for n in (await answer.json())["nodes"]]
                in_view = any(n.node_id == VICTIM and n.schedulable for n in nodes)
                out.append(Poll(at_s, plane.attempts(text), in_view))
            await asyncio.sleep(interval_s)


async def served_again(timeline: Timeline, after_s: float, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(s.node == VICTIM and s.status == 200 and s.sent_s >= after_s for s in timeline.samples):
            return True
        await asyncio.sleep(0.05)
    return False


async def drive(fleet: LocalCluster, plane: Plane, args: argparse.Namespace) -> Timeline:
    loop = asyncio.get_running_loop()
    timeline, stop = Timeline(), asyncio.Event()
    victim: ServiceProcess = fleet.nodes[VICTIM]
    t0 = loop.time()
    url = plane.url + infer_path()
    tasks = [
        asyncio.create_task(open_loop(url, args.rate, t0, stop, timeline.samples)),
        asyncio.create_task(poll_gateway(plane, fleet.cluster_auth, args.poll_s, t0, stop, timeline.polls)),
    ]
    try:
        await asyncio.sleep(args.steady_s)
        timeline.events["kill_s"] = loop.time() - t0
        await asyncio.to_thread(victim.kill)  # SIGKILL to the manager's process group
        print(f"  {timeline.events['kill_s']:6.2f} s  SIGKILLed {VICTIM}", flush=True)
        await asyncio.sleep(args.dead_s)
        timeline.events["restart_s"] = loop.time() - t0
        victim.start()
        print(f"  {timeline.events['restart_s']:6.2f} s  restarted {VICTIM}", flush=True)
        if await served_again(timeline, timeline.events["restart_s"], args.restart_timeout_s):
            timeline.events["served_again_s"] = loop.time() - t0
            print(f"  {timeline.events['served_again_s']:6.2f} s  {VICTIM} serves again", flush=True)
        await asyncio.sleep(args.after_s)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return timeline


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 2)


def window(samples: list[Sample], begin_s: float, end_s: float) -> dict[str, Any]:
    inside = [s for s in samples if begin_s <= s.sent_s < end_s]
    latencies = [s.latency_ms for s in inside if s.status == 200]
    return {
        "requests": len(inside),
        "errors": sum(s.status != 200 for s in inside),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": round(max(latencies), 2) if latencies else None,
    }


def failed_attempts(poll: Poll) -> float:
    return sum(n for outcome, n in poll.attempts.items() if outcome not in SUCCESS)


def analyse(timeline: Timeline, rate: float) -> dict[str, Any]:
    events, samples, polls = timeline.events, timeline.samples, timeline.polls
    kill_s, restart_s = events["kill_s"], events["restart_s"]
    dead = [p for p in polls if kill_s <= p.at_s < restart_s]
    before = [p for p in polls if p.at_s < kill_s]
    base = failed_attempts(before[-1]) if before else 0.0
    watched = [before[-1], *dead] if before else dead
    rises = [q.at_s for p, q in itertools.pairwise(watched) if failed_attempts(q) > failed_attempts(p)]
    first_failure_s = next((p.at_s for p in dead if failed_attempts(p) > base), None)
    out_of_view_s = next((p.at_s for p in dead if not p.in_view), None)
    back_in_view_s = next((p.at_s for p in polls if p.at_s >= restart_s and p.in_view), None)
    back_s = [s.sent_s for s in samples if s.node == VICTIM and s.status == 200 and s.sent_s >= restart_s]
    served_by_victim = [
        s.sent_s + s.latency_ms / 1000 for s in samples if s.node == VICTIM and s.sent_s < kill_s
    ]
    since_kill = lambda t: None if t is None else round(t - kill_s, 3)  # noqa: E731
    since_restart = lambda t: None if t is None else round(t - restart_s, 3)  # noqa: E731
    errors = [s for s in samples if s.status != 200]
    return {
        "requests": len(samples),
        "errors": len(errors),
        "error_examples": [asdict(s) for s in errors[:5]],
        "rate_rps": rate,
        # The most seen: Envoy's counters of a host go when the view drops the node.
        "failed_attempts_at_dead_node": max(map(failed_attempts, dead)) - base if dead else None,
        "ejected_after_s": since_kill(first_failure_s),
        "last_attempt_at_dead_node_s": since_kill(rises[-1] if rises else None),
        "out_of_gateway_view_s": since_kill(out_of_view_s),
        "last_served_by_victim_before_kill_s": since_kill(max(served_by_victim, default=None)),
        "back_in_gateway_view_s": since_restart(back_in_view_s),
        "serving_again_s": since_restart(min(back_s, default=None)),
        "steady": window(samples, 1.0, kill_s),
        "after_kill": window(samples, kill_s, kill_s + 2.0),
        "after_restart": window(samples, restart_s, (min(back_s, default=restart_s)) + 2.0),
        "whole_run": window(samples, 0.0, float("inf")),
    }


def bins(timeline: Timeline) -> list[dict[str, Any]]:
    """Per BIN_S of send time: requests by serving node, errors, latency percentiles."""
    if not timeline.samples:
        return []
    last = max(s.sent_s for s in timeline.samples)
    rows = []
    for i in range(int(last / BIN_S)):  # whole bins only: the last one is cut short
        inside = [s for s in timeline.samples if i * BIN_S <= s.sent_s < (i + 1) * BIN_S]
        by_node: dict[str, int] = {}
        for s in inside:
            if s.status == 200:
                by_node[s.node] = by_node.get(s.node, 0) + 1
        latencies = [s.latency_ms for s in inside if s.status == 200]
        rows.append(
            {
                "t_s": round(i * BIN_S, 2),
                "by_node": by_node,
                "errors": sum(s.status != 200 for s in inside),
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "max_ms": round(max(latencies), 2) if latencies else None,
            }
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s, open loop")
    parser.add_argument("--steady-s", type=float, default=5.0, help="load before the kill")
    parser.add_argument("--dead-s", type=float, default=8.0, help="from the kill to the restart")
    parser.add_argument("--after-s", type=float, default=5.0, help="load after the victim serves again")
    parser.add_argument("--restart-timeout-s", type=float, default=120.0)
    parser.add_argument("--poll-s", type=float, default=0.05, help="gateway metrics polling")
    parser.add_argument("--service-time-ms", type=float, default=20.0)
    parser.add_argument("--data-plane", default="python,envoy", help="the gateway's, one run each in turn")


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    if args.smoke:
        args.steady_s, args.dead_s, args.after_s = 2.0, 4.0, 1.0
    model = LatencyModel("latency", args.service_time_ms)
    fleet = latency_cluster(tmp, {f"node-{i}": [model] for i in range(1, 5)})
    start(fleet, stack)
    planes: dict[str, dict[str, Any]] = {}
    for name in args.data_plane.split(","):
        with gateway_of(fleet, name) as plane:
            print(
                f"[{name}] {args.rate:g} requests/s open loop for {args.steady_s:g} s, then SIGKILL "
                f"{VICTIM}; restart after {args.dead_s:g} s",
                flush=True,
            )
            timeline = asyncio.run(drive(fleet, plane, args))
        figures = analyse(timeline, args.rate)
        print()
        print(report(figures))
        planes[name] = {"events": timeline.events, "summary": figures, "timeline": bins(timeline)}
    return {
        "settings": {
            "rate_rps": args.rate,
            "steady_s": args.steady_s,
            "dead_s": args.dead_s,
            "after_s": args.after_s,
            "poll_s": args.poll_s,
            "service_time_ms": args.service_time_ms,
            "nodes": 4,
            "victim": VICTIM,
            "policy": fleet.config.scheduler.policy.value,
            "eject_base_s": fleet.config.gateway.eject_base_s,
            "ttl_s": fleet.config.health.ttl_s,
            "heartbeat_interval_s": fleet.config.health.heartbeat_interval_s,
            "data_planes": list(planes),
        },
        # The first plane's run at the top, as before there were several.
        **planes[next(iter(planes))],
        "planes": planes,
    }


def report(f: dict[str, Any]) -> str:
    def ms(window: dict[str, Any]) -> str:
        return f"p50 {window['p50_ms']} ms  p99 {window['p99_ms']} ms  max {window['max_ms']} ms"

    return "\n".join(
        [
            f"client-visible errors: {f['errors']} of {f['requests']} requests",
            f"dead node ejected (first failed attempt) after {f['ejected_after_s']} s; "
            f"{f['failed_attempts_at_dead_node']:.0f} failed attempts in all (each retried on another node), "
            f"the last {f['last_attempt_at_dead_node_s']} s after the kill; "
            f"out of the gateway's view after {f['out_of_gateway_view_s']} s",
            f"after the restart: in the gateway's view after {f['back_in_gateway_view_s']} s, "
            f"serving again after {f['serving_again_s']} s",
            f"latency steady:         {ms(f['steady'])}",
            f"latency 2 s after kill: {ms(f['after_kill'])}",
            f"latency around restart: {ms(f['after_restart'])}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return scenario_main(__doc__ or "", RESULTS / "failover.json", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
