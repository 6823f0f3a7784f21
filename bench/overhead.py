"""Gateway overhead on tiny requests: wrk against Triton directly, the gateway in its modes
(the Python data plane, Envoy in front of it, the remote scheduler, forwarding through the
manager), a bare aiohttp proxy, a bare Envoy (bare_envoy) and nginx, all in front of the same
single Triton node.

    .venv/bin/python -m bench.overhead [--duration-s 5] [--rounds 3] [--only direct,gateway]
                                       [--stacks] [--profile] [--nginx-workers 1] [--output FILE]

Every target serves `POST /v2/models/simple/infer` with the same 16-int JSON body. Each is
measured at saturation (`-t2 -c32`: requests per second) and closed-loop at low concurrency
(`-c1`, `-c4`: p50/p99 latency; wrk has no fixed-rate mode and Debian has no wrk2). Rounds
interleave the targets so that drift of the machine hits them alike; the table shows each
figure's median over rounds. Everything runs on loopback on this machine, wrk and Triton
included, so the proxies compete with them for the same cores: that is part of the overhead.

The figures per target: requests/s at saturation and its ratio to direct and to nginx; the
CPU time the target's own processes spend per request (the steadiest figure on a shared
machine: throughput moves with whatever else runs); p50/p99 at -c1 and -c4 and the p50 added
over direct. The payment path is off: this measures what routing itself costs.

`--stacks` adds bare proxies (`bench.bare_proxy`) on other server/client/loop combinations, to
choose the gateway's stack by measurement. Results go to `bench/results/overhead.json`; with
`--profile` (py-spy from PyPI in the venv), the folded stacks of each Python process under
saturation go beside it as `profile-<target>-<process>.txt`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.scenario import RESULTS, scenario_main
from tests.e2e.cluster import cluster
from tritonfleet.gateway.envoy.binary import locate
from tritonfleet.net import free_port
from tritonfleet.processes import ServiceProcess, die_with_parent
from tritonfleet.protocol import NodeView
from tritonfleet.up.cluster import LocalCluster

INFER_PATH = "/v2/models/simple/infer"
BODY = json.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
        ]
    },
    separators=(",", ":"),
)
# (name, wrk threads, connections): saturation, then two closed-loop latency loads.
LOADS = (("saturation", 2, 32), ("c1", 1, 1), ("c4", 1, 4))
TARGETS = (
    "direct",
    "gateway",
    "gateway_envoy",
    "gateway_remote",
    "gateway_manager",
    "bare_aiohttp",
    "bare_envoy",
    "nginx",
)
# server/client/loop of the bare proxies that --stacks adds; the first is the gateway's own.
STACKS = (
    "aiohttp/aiohttp/uvloop",
    "aiohttp/aiohttp/asyncio",
    "aiohttp/httpx/uvloop",
    "aiohttp/raw/uvloop",
    "raw/aiohttp/uvloop",
    "uvicorn/aiohttp/uvloop",
    "raw/raw/uvloop",
)

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"p999_us":%%d,"max_us":%%d,"mean_us":%%d,"status_errors":%%d,"socket_errors":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    upstream triton {{
        {method}
        {servers}
        keepalive 64;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://triton;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class Run:
    """One wrk run's figures."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    # CPU time (user + system) of the target's own processes per request; None for direct.
    cpu_us_per_request: float | None = None
    # Share of the machine's CPU used meanwhile by processes this benchmark did not start
    # (other work on a shared machine): a noisy run shows here.
    foreign_cpu_share: float = 0.0


@dataclass
class Target:
    name: str
    url: str
    # The processes this target adds to the request path, {label: pid}: their CPU time is
    # counted per request, and with --profile the Python ones are sampled.
    pids: dict[str, int] = field(default_factory=dict)
    python: bool = True
    grpc_port: int = 0


# --- processes ---------------------------------------------------------------------------------


def wait_infer_ok(
    url: str,
    timeout_s: float,
    proc: ServiceProcess | subprocess.Popen[bytes] | None = None,
    path: str = INFER_PATH,
    body: str | bytes = BODY,
    headers: dict[str, str] | None = None,
) -> None:
    """Until one infer through `url` answers 200 (the proxy is up and sees the node)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if isinstance(proc, ServiceProcess) and not proc.alive():
            break
        if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
            break
        try:
            answer = httpx.post(url + path, content=body, headers=headers, timeout=5.0)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    log = proc.tail() if isinstance(proc, ServiceProcess) else ""
    raise RuntimeError(
        f"{url}{path} did not answer 200 within {timeout_s} s (last: {last}); log ends:\n{log}"
    )


@contextlib.contextmanager
def service(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(name, argv, env, log_dir / f"{name}.log")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop(timeout_s=15.0)


# The gateway's Envoy data plane as every scenario measures it (the environment of a gateway
# process): one Envoy worker thread, the one core nginx gets. And a short shutdown grace: the
# gateway is stopped once measured, with nothing in flight to wait for, and Envoy's plane waits
# out all of it today (the admin's own stats request counts as one in flight).
ENVOY_PLANE = {
    "TRITONFLEET_GATEWAY_DATA_PLANE": "envoy",
    "TRITONFLEET_GATEWAY_ENVOY_WORKERS": "1",
    "TRITONFLEET_GATEWAY_SHUTDOWN_GRACE_S": "1",
}


def extra_gateway(
    fleet: LocalCluster, name: str, **settings: str
) -> contextlib.AbstractContextManager[Target]:
    """One more gateway process of the same cluster, with some [gateway] keys changed."""
    env = {f"TRITONFLEET_GATEWAY_{key.upper()}": value for key, value in settings.items()}
    return gateway_process(fleet, name, env)


@contextlib.contextmanager
def gateway_process(
    fleet: LocalCluster,
    name: str,
    env: Mapping[str, str],
    ready_path: str = INFER_PATH,
    ready_body: str | bytes = BODY,
) -> Iterator[Target]:
    """One more gateway process of the same cluster, some of its environment changed; ready once
    an infer of `ready_path` answers 200 through it and, on the Envoy data plane, once Envoy
    itself routes to every node of the gateway's view."""
    port, grpc_port = free_port(), free_port()
    env = {
        **fleet.env,
        "TRITONFLEET_GATEWAY_PORT": str(port),
        "TRITONFLEET_GATEWAY_GRPC_PORT": str(grpc_port),
        **env,
    }
    argv = [sys.executable, "-m", "tritonfleet", "gateway"]
    with service(name, argv, env, fleet.state_dir / "logs") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_infer_ok(url, 60.0, proc, ready_path, ready_body)
        # With the Envoy data plane, Envoy's CPU is the gateway's too.
        pids = {"gateway": proc.pid}
        for child in children(proc.pid):
            if Path(f"/proc/{child}/comm").read_text().strip() == "envoy":
                pids["envoy"] = child
                wait_envoy_routes(url, fleet.cluster_auth, proc)
        yield Target(name, url, pids, grpc_port=grpc_port)


def wait_envoy_routes(url: str, auth: dict[str, str], proc: ServiceProcess, timeout_s: float = 30.0) -> None:
    """Until Envoy itself routes to every schedulable node of the gateway's view: before, the
    Python gateway behind it serves what Envoy has no cluster (or no host) for yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = httpx.get(f"{url}/v1/nodes", headers=auth, timeout=5.0).json()
        nodes = {node.node_id for node in map(NodeView.model_validate, view["nodes"]) if node.schedulable}
        if nodes and nodes <= set(view["envoy"]["routed"]):
            return
        if time.monotonic() > deadline or not proc.alive():
            raise RuntimeError(
                f"envoy did not route to all of {sorted(nodes)} within {timeout_s} s "
                f"(it routes to {view['envoy']['routed']}):\n{proc.tail()}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def bare_proxy(upstream: str, log_dir: Path, stack: str = "aiohttp/aiohttp/uvloop") -> Iterator[Target]:
    """`bench.bare_proxy` with a server/client/loop stack; the gateway's own is the default."""
    server, client, loop = stack.split("/")
    name = "bare_aiohttp" if stack == STACKS[0] else f"bare {stack}"
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_proxy", "--port", str(port), "--upstream", upstream]
    argv += ["--server", server, "--client", client, "--loop", loop]
    with service(name, argv, dict(os.environ), log_dir) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_infer_ok(url, 30.0, proc)
        yield Target(name, url, {"proxy": proc.pid})


def bare_envoy_bootstrap(port: int, admin_socket: str, upstream: str) -> dict[str, Any]:
    """The least an Envoy proxy of `infer` is: one listener, the router, one static cluster of
    the node with the fast path's balancer and retries; none of the gateway's filters (body
    buffer, Lua, request ids, access log, local replies, ejection, per-route statistics)."""
    host, node_port = upstream.removeprefix("http://").rsplit(":", 1)
    address = {"socket_address": {"address": host, "port_value": int(node_port)}}
    route = {
        "match": {"prefix": "/"},
        "route": {"cluster": "node", "retry_policy": {"retry_on": "connect-failure,reset", "num_retries": 2}},
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "bare",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    listener = {
        "name": "bare",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }
    cluster = {
        "name": "node",
        "type": "STATIC",
        "lb_policy": "LEAST_REQUEST",
        "load_assignment": {
            "cluster_name": "node",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }
    return {
        "admin": {"address": {"pipe": {"path": admin_socket, "mode": 0o600}}},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


@contextlib.contextmanager
def bare_envoy(upstream: str) -> Iterator[Target]:
    """The gateway's Envoy binary with one worker and nothing but a route to the node
    (bare_envoy_bootstrap): the floor under the fast path's cost, as bare_aiohttp is the
    Python plane's."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-envoy-") as tmp:
        bootstrap = Path(tmp) / "bootstrap.json"
        bootstrap.write_text(json.dumps(bare_envoy_bootstrap(port, f"{tmp}/admin.sock", upstream)))
        argv = [str(locate()), "-c", str(bootstrap), "--use-dynamic-base-id", "--concurrency", "1"]
        argv += ["--log-level", "warning", "--log-path", f"{tmp}/envoy.log"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_infer_ok(url, 20.0, proc)
            yield Target("bare_envoy", url, {"envoy": proc.pid}, python=False)
        finally:
            proc.terminate()
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def nginx(
    upstreams: Sequence[str],
    workers: int = 1,
    method: str = "",
    name: str = "nginx",
    ready_path: str = INFER_PATH,
    ready_body: str | bytes = BODY,
) -> Iterator[Target]:
    """nginx in the foreground as our child, proxying with upstream keep-alive to the Triton
    nodes with `method` (`least_conn;`, or "" for its weighted round robin); stopped after.
    It is ready once an infer of `ready_path` through it answers 200."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    servers = "\n        ".join(f"server {url.removeprefix('http://')};" for url in upstreams)
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                workers=workers, tmp=tmp, method=method, servers=servers, listen=f"127.0.0.1:{port}"
            )
        )
        argv = [binary, "-p", tmp, "-c", str(conf), "-e", f"{tmp}/error.log"]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_infer_ok(url, 20.0, proc, ready_path, ready_body)
            worker_pids = {f"worker-{i}": pid for i, pid in enumerate(children(proc.pid), start=1)}
            yield Target(name, url, worker_pids, python=False)
        finally:
            # SIGTERM is nginx's fast shutdown; its workers share its process group.
            proc.terminate()
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --- measuring ---------------------------------------------------------------------------------


def cpu_s(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def machine_busy_s() -> float:
    """CPU time all processes have used so far, from /proc/stat (idle and iowait excluded)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def tree_busy_s(pid: int) -> float:
    """CPU time of a process and all its descendants, the exited ones included."""
    total = 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total = sum(int(n) for n in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
        for child in children(pid):
            total += tree_busy_s(child)
    return total


def wrk(
    script: Path, url: str, threads: int, connections: int, duration_s: float, pids: list[int] | None = None
) -> Run:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url + INFER_PATH,
    ]
    cpu_before_s, busy_before_s, ours_before_s = cpu_s(pids or []), machine_busy_s(), tree_busy_s(os.getpid())
    out = subprocess.run(argv, capture_output=True, text=True, check=True, preexec_fn=die_with_parent).stdout
    cpu_used_s = cpu_s(pids or []) - cpu_before_s
    foreign_s = (machine_busy_s() - busy_before_s) - (tree_busy_s(os.getpid()) - ours_before_s)
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    figures = json.loads(line.removeprefix("BENCH "))
    return Run(
        rps=round(figures["requests"] / (figures["duration_us"] / 1e6), 1),
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=figures["requests"],
        errors=figures["status_errors"] + figures["socket_errors"],
        cpu_us_per_request=round(cpu_used_s / figures["requests"] * 1e6, 1) if pids else None,
        foreign_cpu_share=round(max(foreign_s, 0.0) / (duration_s * (os.cpu_count() or 1)), 3),
    )


def measure(targets: list[Target], script: Path, duration_s: float, rounds: int) -> dict[str, Any]:
    """{target: {load: [Run per round]}}, the targets interleaved within each round."""
    runs: dict[str, dict[str, list[Run]]] = {t.name: {load[0]: [] for load in LOADS} for t in targets}
    for target in targets:
        wrk(script, target.url, 2, 8, 1.0)  # warm-up: connections, caches, the JIT-less rest
    for round_no in range(1, rounds + 1):
        for target in targets:
            for load, threads, connections in LOADS:
                run = wrk(script, target.url, threads, connections, duration_s, list(target.pids.values()))
                runs[target.name][load].append(run)
                print(
                    f"  round {round_no} {target.name:22} {load:10} {run.rps:9.0f} req/s "
                    f"p50 {run.p50_ms:6.3f} ms  p99 {run.p99_ms:6.3f} ms  "
                    f"cpu/req {run.cpu_us_per_request or 0:5.0f} µs  errors {run.errors}  "
                    f"foreign cpu {run.foreign_cpu_share:.0%}",
                    flush=True,
                )
    return runs


def median_run(runs: list[Run]) -> dict[str, Any]:
    cpu = [r.cpu_us_per_request for r in runs if r.cpu_us_per_request is not None]
    return {
        "rps": round(statistics.median(r.rps for r in runs), 1),
        "cpu_us_per_request": round(statistics.median(cpu), 1) if cpu else None,
        "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
        "errors": sum(r.errors for r in runs),
        "foreign_cpu_share": round(statistics.median(r.foreign_cpu_share for r in runs), 3),
    }


def summarize(runs: dict[str, dict[str, list[Run]]]) -> dict[str, dict[str, Any]]:
    summary = {
        name: {load: median_run(by_load[load]) for load, _, _ in LOADS} for name, by_load in runs.items()
    }
    direct, ngx = summary.get("direct"), summary.get("nginx")
    for figures in summary.values():
        rps = figures["saturation"]["rps"]
        if direct:
            figures["rps_vs_direct"] = round(rps / direct["saturation"]["rps"], 3)
            for load in ("c1", "c4"):
                added = figures[load]["p50_ms"] - direct[load]["p50_ms"]
                figures[load]["p50_added_ms"] = round(added, 3)
        if ngx:
            figures["rps_vs_nginx"] = round(rps / ngx["saturation"]["rps"], 3)
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    width = max(16, *(len(name) for name in summary))
    head = (
        f"{'target':{width}} {'req/s':>7} {'/direct':>7} {'/nginx':>6} {'µs cpu':>6} │"
        f" {'c1 p50':>6} {'p99':>6} {'+p50':>6} │ {'c4 p50':>6} {'p99':>6} {'+p50':>6}  (ms)"
    )
    lines = [head, "─" * len(head)]
    for name, f in summary.items():
        sat, c1, c4 = f["saturation"], f["c1"], f["c4"]
        cpu = "" if sat["cpu_us_per_request"] is None else f"{sat['cpu_us_per_request']:.0f}"
        lines.append(
            f"{name:{width}} {sat['rps']:7.0f} {f.get('rps_vs_direct', 0):7.2f}"
            f" {f.get('rps_vs_nginx', 0):6.2f} {cpu:>6} │"
            f" {c1['p50_ms']:6.3f} {c1['p99_ms']:6.3f} {c1.get('p50_added_ms', 0):+6.3f} │"
            f" {c4['p50_ms']:6.3f} {c4['p99_ms']:6.3f} {c4.get('p50_added_ms', 0):+6.3f}"
        )
    lines.append("µs cpu: CPU time of the target's own processes per request at saturation")
    foreign = statistics.median(
        f[load]["foreign_cpu_share"] for f in summary.values() for load, _, _ in LOADS
    )
    lines.append(
        f"processes outside the benchmark used {foreign:.0%} of the machine's CPU meanwhile (median)"
    )
    errors = {name: sum(f[load]["errors"] for load, _, _ in LOADS) for name, f in summary.items()}
    if any(errors.values()):
        lines.append(f"NON-2xx OR SOCKET ERRORS: {errors}")
    return "\n".join(lines)


def profile(targets: list[Target], script: Path, duration_s: float, folder: Path) -> list[str]:
    """py-spy's folded stacks of each Python process of each target, under saturation."""
    py_spy = Path(sys.executable).parent / "py-spy"
    written = []
    for target in targets:
        if not target.python:
            continue
        spies = []
        for label, pid in target.pids.items():
            path = folder / f"profile-{target.name.replace(' ', '-').replace('/', '-')}-{label}.txt"
            argv = [
                str(py_spy),
                "record",
                "--pid",
                str(pid),
                "--duration",
                f"{duration_s:.0f}",
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
                "--output",
                str(path),
            ]
            spy = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
            )
            spies.append((spy, path))
        if not spies:
            continue
        time.sleep(0.5)
        wrk(script, target.url, 2, 32, duration_s)
        for spy, path in spies:
            spy.wait(duration_s + 30)
            written.append(str(path))
    return written


# --- the whole run -----------------------------------------------------------------------------


def node_urls(fleet: LocalCluster) -> dict[str, str]:
    [node] = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth, timeout=5.0).json()[
        "nodes"
    ]
    return {"triton": node["triton_http_url"], "manager": node["manager_url"]}


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    wanted = set(args.only.split(",")) if args.only else set(TARGETS)
    # The unpaid path: what the gateway itself adds (the paid path is measured on its own).
    # `gateway` is the Python data plane, `gateway_envoy` Envoy in front of it (one worker, the
    # one core nginx gets).
    fleet = cluster(
        tmp, {"node-1": ["simple"]}, payments={"enabled": False}, gateway={"data_plane": "python"}
    )
    stack.callback(fleet.stop)
    print("starting one Triton node, health checker, scheduler and gateway ...", flush=True)
    fleet.start()
    urls = node_urls(fleet)
    logs = fleet.state_dir / "logs"
    targets: dict[str, Target] = {
        "direct": Target("direct", urls["triton"]),
        "gateway": Target("gateway", fleet.gateway_url, {"gateway": fleet.gateway.pid}),
    }
    if "gateway_envoy" in wanted:
        targets["gateway_envoy"] = stack.enter_context(gateway_process(fleet, "gateway_envoy", ENVOY_PLANE))
    if "gateway_remote" in wanted:
        target = stack.enter_context(extra_gateway(fleet, "gateway_remote", scheduler="remote"))
        targets["gateway_remote"] = target
        target.pids["scheduler"] = fleet.scheduler.pid
    if "gateway_manager" in wanted:
        target = stack.enter_context(extra_gateway(fleet, "gateway_manager", node_route="manager"))
        targets["gateway_manager"] = target
        target.pids["manager"] = fleet.nodes["node-1"].pid
    if "bare_aiohttp" in wanted:
        targets["bare_aiohttp"] = stack.enter_context(bare_proxy(urls["triton"], logs))
    for other in STACKS[1:] if args.stacks else ():
        target = stack.enter_context(bare_proxy(urls["triton"], logs, other))
        targets[target.name] = target
    if "bare_envoy" in wanted:
        targets["bare_envoy"] = stack.enter_context(bare_envoy(urls["triton"]))
    if "nginx" in wanted:
        targets["nginx"] = stack.enter_context(nginx([urls["triton"]], args.nginx_workers))
    chosen = [target for name, target in targets.items() if name in wanted or name.startswith("bare ")]

    script = tmp / "infer.lua"
    script.write_text(WRK_SCRIPT % BODY)
    print(f"measuring {', '.join(t.name for t in chosen)}: {args.rounds} rounds of {args.duration_s:g} s")
    runs = measure(chosen, script, args.duration_s, args.rounds)
    summary = summarize(runs)
    print()
    print(table(summary))
    result: dict[str, Any] = {
        "settings": {
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "loads": [{"name": n, "threads": t, "connections": c} for n, t, c in LOADS],
            "nginx_workers": args.nginx_workers,
            "body_bytes": len(BODY),
            "payments": False,
        },
        "summary": summary,
        "runs": {
            name: {load: [asdict(r) for r in rs] for load, rs in by_load.items()}
            for name, by_load in runs.items()
        },
    }
    if args.profile:
        print("\nprofiling under saturation ...", flush=True)
        result["profiles"] = profile(chosen, script, args.duration_s, args.output.parent)
        print("\n".join(result["profiles"]))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--nginx-workers", type=int, default=1, help="1: one core, as the gateway")
    parser.add_argument("--profile", action="store_true", help="also record py-spy profiles")
    parser.add_argument("--stacks", action="store_true", help=f"also bare proxies on {', '.join(STACKS[1:])}")


def main(argv: list[str] | None = None) -> int:
    return scenario_main(__doc__ or "", RESULTS / "overhead.json", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
