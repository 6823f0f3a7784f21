"""Writes docs/benchmarks.md and its plots (docs/bench-*.png) from bench/results/*.json.

    .venv/bin/python -m bench.report [--results bench/results] [--docs docs]

Every figure on the page comes from the JSON files; a scenario whose file is missing is listed
as not run. The targets of the benchmark issue are checked here, each marked reached or missed
with the margin.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tritonfleet.config import SettlerConfig

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("overhead", "scaleout", "skew", "failover", "paid", "grpc_overhead", "generate", "faults")
# Every Ethereum transaction costs at least this much gas before it does anything.
INTRINSIC_TX_GAS = 21_000
NONE = "\u2013"  # an en dash, for figures not measured
TIMES = "\u00d7"  # a multiplication sign, for ratios
# The settler's defaults, which bench/paid.py runs it with.
SETTLER = SettlerConfig()


@dataclass(frozen=True)
class Check:
    """One target of the issue against its figure."""

    target: str
    goal: str
    measured: str
    reached: bool | None  # None: not measured
    margin: str


def load(folder: Path) -> dict[str, Any]:
    results = {}
    for name in (*SCENARIOS, "stacks"):
        path = folder / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    return results


def md_table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any, spec: str = ".1f", unit: str = "") -> str:
    return NONE if value is None else f"{value:{spec}}{unit}"


def verdict(reached: bool | None, unknown: str = "not measured") -> str:
    return {True: "**reached**", False: "**missed**", None: unknown}[reached]


def failover_planes(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{data plane: its run (events, summary, timeline)}; a file from before the planes were
    compared holds one run, the Python data plane's."""
    return r.get("planes") or {"python": r}


# --- targets -----------------------------------------------------------------------------------


def checks(r: dict[str, Any]) -> list[Check]:
    out = []
    if "overhead" in r:
        gw = r["overhead"]["summary"]["gateway"]
        added_c4, added_c1 = gw["c4"]["p50_added_ms"], gw["c1"]["p50_added_ms"]
        out.append(
            Check(
                "gateway overhead: p50 added at moderate load",
                "≤ 1 ms over direct",
                f"+{added_c4:.3f} ms at 4 connections (+{added_c1:.3f} ms at 1)",
                added_c4 <= 1.0,
                f"{1.0 - added_c4:+.3f} ms of headroom" if added_c4 <= 1 else f"{added_c4 - 1:.3f} ms over",
            )
        )
        ratio = gw["rps_vs_nginx"]
        out.append(
            Check(
                "gateway overhead: tiny-request throughput",
                "≥ 40% of nginx's",
                f"{ratio:.0%} of nginx ({gw['saturation']['rps']:.0f} vs "
                f"{r['overhead']['summary']['nginx']['saturation']['rps']:.0f} req/s)",
                ratio >= 0.4,
                f"{(ratio - 0.4) * 100:+.0f} points",
            )
        )
    if "scaleout" in r:
        summary = r["scaleout"]["summary"]
        largest = max(r["scaleout"]["settings"]["sizes"])
        eff = summary[f"gateway_n{largest}"]["efficiency"]
        out.append(
            Check(
                f"scale-out efficiency at {largest} nodes",
                "≥ 90%",
                f"{eff:.1%}",
                eff >= 0.9 if largest == 8 else None,
                f"{(eff - 0.9) * 100:+.1f} points" + ("" if largest == 8 else f" (at {largest}, not 8)"),
            )
        )
    if "skew" in r:
        s = r["skew"]
        best = s["best_policy"]
        ratio = s["summary"][best]["p99_vs_round_robin"]
        out.append(
            Check(
                "skew: p99 of the best policy vs round robin",
                "≤ 50% of round robin's",
                f"{best}: {s['summary'][best]['p99_ms']:.0f} ms = {ratio:.0%} of "
                f"{s['summary']['round_robin']['p99_ms']:.0f} ms",
                ratio <= 0.5,
                f"{(0.5 - ratio) * 100:+.0f} points",
            )
        )
    if "python" in failover_planes(r.get("failover", {})):
        f = failover_planes(r["failover"])["python"]["summary"]
        out.append(
            Check(
                "failover: client-visible errors (retriable requests)",
                "0",
                f"{f['errors']} of {f['requests']}",
                f["errors"] == 0,
                "none" if f["errors"] == 0 else f"{f['errors']} errors",
            )
        )
        ejected = f["ejected_after_s"]
        out.append(
            Check(
                "failover: dead node out of rotation",
                "< 1 s",
                f"ejected {fmt(ejected, '.3f', ' s')} after the kill (first failed attempt)",
                None if ejected is None else ejected < 1.0,
                NONE if ejected is None else f"{1.0 - ejected:.3f} s to spare",
            )
        )
    out += fault_checks(r.get("faults", {}))
    if "paid" in r and "sqlite" in r["paid"]:
        ratio = r["paid"]["sqlite"]["paid_vs_unpaid"]
        out.append(
            Check(
                "paid path throughput, SQLite ledger",
                "≥ 80% of unpaid",
                f"{ratio:.0%}",
                ratio >= 0.8,
                f"{(ratio - 0.8) * 100:+.0f} points",
            )
        )
    return out


# Each of issue 14's targets, on the Envoy data plane: (target, goal, its figure from the results
# as (measured, reached, margin)).
Figure = Callable[[dict[str, Any]], tuple[str, bool, str]]


def envoy_throughput(r: dict[str, Any]) -> tuple[str, bool, str]:
    s = r["overhead"]["summary"]
    ratio = s["gateway_envoy"]["rps_vs_nginx"]
    rps, ngx = s["gateway_envoy"]["saturation"]["rps"], s["nginx"]["saturation"]["rps"]
    return (
        f"{ratio:.2f} {TIMES} nginx ({rps:.0f} vs {ngx:.0f} req/s)"
        + bare_floor(s, lambda bare: f"{bare['rps_vs_nginx']:.2f}"),
        ratio >= 0.95,
        f"{ratio - 0.95:+.2f} {TIMES}",
    )


def envoy_cpu(r: dict[str, Any]) -> tuple[str, bool, str]:
    s = r["overhead"]["summary"]
    cpu, ngx = (s[name]["saturation"]["cpu_us_per_request"] for name in ("gateway_envoy", "nginx"))
    ratio = cpu / ngx
    return (
        f"{ratio:.1f} {TIMES} nginx's ({cpu:.0f} vs {ngx:.0f} µs)"
        + bare_floor(s, lambda bare: f"{bare['saturation']['cpu_us_per_request'] / ngx:.1f}"),
        ratio <= 2.5,
        f"{2.5 - ratio:+.1f} {TIMES}",
    )


def bare_floor(summary: dict[str, Any], ratio: Callable[[dict[str, Any]], str]) -> str:
    """The same ratio of `bare_envoy` (Envoy with nothing but a route), where it ran."""
    bare = summary.get("bare_envoy")
    return "" if bare is None else f"; bare Envoy {ratio(bare)} {TIMES}"


def envoy_added_c1(r: dict[str, Any]) -> tuple[str, bool, str]:
    added = r["overhead"]["summary"]["gateway_envoy"]["c1"]["p50_added_ms"]
    return f"+{added:.3f} ms", added <= 0.2, f"{0.2 - added:+.3f} ms"


def envoy_grpc(r: dict[str, Any]) -> tuple[str, bool, str]:
    g = r["grpc_overhead"]
    # The load with the most concurrent calls is the one that measures throughput.
    load = max(g["settings"]["loads"], key=lambda entry: entry["tasks"])["name"]
    ratio = g["summary"]["ratios"]["gateway_envoy"][load]["rps_over_direct"]
    return f"{ratio:.2f} {TIMES} direct at {load}", ratio >= 0.85, f"{ratio - 0.85:+.2f} {TIMES}"


def envoy_skew(r: dict[str, Any]) -> tuple[str, bool, str]:
    s, best = r["skew"]["summary"], r["skew"]["best_envoy_policy"]
    p99, ngx = s[best]["p99_ms"], s["nginx_least_conn"]["p99_ms"]
    return f"{best}: {p99:.0f} ms vs {ngx:.0f} ms", p99 <= ngx, f"{ngx - p99:+.0f} ms"


def envoy_failover(r: dict[str, Any]) -> tuple[str, bool, str]:
    f = failover_planes(r["failover"])["envoy"]["summary"]
    return f"{f['errors']} of {f['requests']}", f["errors"] == 0, "none" if f["errors"] == 0 else "errors"


def envoy_paid_cpu(r: dict[str, Any]) -> tuple[str, bool, str]:
    ledger = "sqlite" if "sqlite" in r["paid"] else next(iter(r["paid"]))
    s = r["paid"][ledger]["summary"]
    cpu, today = (s[name]["saturation"]["cpu_us_per_request"] for name in ("paid_envoy", "paid"))
    return f"{cpu:.0f} vs {today:.0f} µs ({ledger})", cpu < today, f"{today - cpu:+.0f} µs"


ISSUE_14: list[tuple[str, str, Figure]] = [
    ("tiny-request throughput", f"≥ 0.95 {TIMES} nginx's", envoy_throughput),
    ("CPU per request at saturation", f"≤ 2.5 {TIMES} nginx's", envoy_cpu),
    ("p50 added at 1 connection", "≤ 0.2 ms over direct", envoy_added_c1),
    ("gRPC throughput", f"≥ 0.85 {TIMES} direct Triton gRPC", envoy_grpc),
    ("skew: p99 of the best policy", "≤ nginx least_conn's", envoy_skew),
    ("failover: client-visible errors", "0", envoy_failover),
    ("paid path CPU per request", "below today's paid path (Python plane)", envoy_paid_cpu),
]


def issue_14_checks(r: dict[str, Any]) -> list[Check]:
    out = []
    for target, goal, figure in ISSUE_14:
        try:
            measured, reached, margin = figure(r)
        except (KeyError, StopIteration):
            # The scenario did not run, or ran without its Envoy target (an older results file).
            out.append(Check(target, goal, NONE, None, NONE))
            continue
        out.append(Check(target, goal, measured, reached, margin))
    return out


def envoy_version(r: dict[str, Any]) -> str:
    """As the scenarios read it from the binary they ran (results from before they did: unknown)."""
    versions = (r[n]["environment"].get("envoy") for n in SCENARIOS if n in r)
    return next((v for v in versions if v), "(version not recorded)")


def issue_14_section(r: dict[str, Any]) -> str:
    rows = [
        [c.target, c.goal, c.measured, verdict(c.reached, "not run"), c.margin] for c in issue_14_checks(r)
    ]
    return "\n\n".join(
        [
            "### Targets of issue 14: the Envoy data plane",
            f"Envoy {envoy_version(r)} with one worker thread (the one core "
            "nginx gets) in front of the Python gateway: `gateway_envoy` in the overhead and gRPC "
            "scenarios, `envoy_<policy>` in the skew one, the Envoy run of the failover one, "
            "`paid_envoy` in the paid one.",
            md_table(["target", "goal", "measured", "verdict", "margin"], rows),
            ISSUE_14_MISSES,
        ]
    )


# Why the missed targets of issue 14 were missed, as far as measurement showed.
ISSUE_14_MISSES = """Why the missed ones were missed:

- **Throughput, CPU and latency at one connection**: mostly Envoy's own cost on this machine,
  not the gateway's configuration. `bare_envoy` in the overhead scenario, the same binary and
  worker with nothing but a route to the node, already stands at about three times nginx's CPU
  per request and short of 0.95 of its throughput (its figures are beside the measured ones
  above, where it ran). The gateway's filters (body buffer, the Lua check that turns Triton's
  500 for an unparseable body into a 400, request ids, the access log, Triton-shaped local
  replies, ejection) add about a tenth on top; each was taken off in turn in a one-off run, and
  none alone accounts for more than about 10 µs. The issue's own reference figure for Envoy
  (175 against nginx's 75 µs) was measured with a whole-process CPU counter on another day.
- **gRPC**: every `ModelInfer` is buffered whole and read by a Lua filter for its model name
  and version before it is routed (a route can match only headers); gRPC field extraction,
  Envoy's own filter for this, writes metadata that a route cannot match without clearing the
  route cache, which that filter does not do.
- **Skew**: Envoy's best policy and nginx's `least_conn` are equal within this machine's noise.
- **Paid CPU**: the fast paid path asks the Python authorizer twice per request (the hold, then
  the charge once the whole answer has been read), each a loopback HTTP request into Python,
  where the Python plane charges in the process that already holds the request. Charging on
  the answer's headers alone cost less (537 µs in its run) but would charge an answer that
  breaks off mid-body, so it was not kept; the other way measured, Envoy in front of the Python
  paid path, served 0.30 of the unpaid gateway's requests per second against this way's 0.44.
  The money rules come first (the guide's rule: a speed-up that weakens them is not taken)."""


# --- plots -------------------------------------------------------------------------------------


def save(fig: Any, docs: Path, name: str) -> str:
    path = docs / f"bench-{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_overhead(r: dict[str, Any], docs: Path) -> str:
    summary = r["summary"]
    names = list(summary)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rps = [summary[n]["saturation"]["rps"] for n in names]
    left.barh(names, rps, color=["#888" if n in ("direct", "nginx") else "#3a7" for n in names])
    left.set_xlabel("requests/s at saturation (wrk -t2 -c32)")
    left.invert_yaxis()
    for y, value in enumerate(rps):
        left.text(value, y, f" {value:.0f}", va="center", fontsize=8)
    added = [summary[n]["c4"].get("p50_added_ms", 0.0) for n in names]
    right.barh(names, added, color="#37a")
    right.axvline(1.0, color="red", linestyle="--", label="target: 1 ms")
    right.set_xlabel("p50 added over direct at 4 connections (ms)")
    right.invert_yaxis()
    right.legend()
    fig.suptitle("Overhead on tiny requests (simple model, one Triton node)")
    return save(fig, docs, "overhead")


def plot_scaleout(r: dict[str, Any], docs: Path) -> str:
    sizes = r["settings"]["sizes"]
    summary = r["summary"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ideal = 1000 / r["settings"]["service_time_ms"]
    ax.plot(sizes, [n * ideal for n in sizes], ":", color="#aaa", label=f"{ideal:.0f} req/s per node")
    for gateway, names in sized(r).items():
        figures = [summary[name] for name in names]
        nodes, rps = [f["nodes"] for f in figures], [f["rps"] for f in figures]
        ax.plot(nodes, rps, "o-", label=f"through {gateway}")
        for n, f in zip(nodes, figures, strict=True):
            label = f"{f['rps']:.0f} ({f['efficiency']:.0%})"
            ax.annotate(label, (n, f["rps"]), textcoords="offset points", xytext=(5, -12), fontsize=8)
    ax.set_xticks(sizes)
    ax.set_xlabel("nodes")
    ax.set_ylabel("requests/s")
    ax.set_title(f"Scale-out: latency fixture, {r['settings']['service_time_ms']:g} ms, 1 instance per node")
    ax.legend()
    return save(fig, docs, "scaleout")


def plot_skew(r: dict[str, Any], docs: Path) -> str:
    summary = r["summary"]
    names = list(summary)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.27
    for i, (key, label) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))):
        xs = [x + (i - 1) * width for x in range(len(names))]
        left.bar(xs, [summary[n][key] for n in names], width, label=label)
    left.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    left.set_ylabel("latency (ms)")
    left.legend()
    right.bar(range(len(names)), [summary[n]["rps"] for n in names], color="#3a7")
    right.axhline(r["settings"]["capacity_rps"], color="#888", linestyle="--", label="capacity")
    right.set_ylim(0, r["settings"]["capacity_rps"] * 1.15)
    right.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=7)
    right.set_ylabel("requests/s")
    right.legend()
    times = "/".join(f"{t:g}" for t in r["settings"]["service_times_ms"])
    fig.suptitle(f"Skew: four nodes at {times} ms, {r['settings']['connections']} connections")
    return save(fig, docs, "skew")


def plot_failover(r: dict[str, Any], docs: Path) -> str:
    planes = failover_planes(r)
    fig, axes = plt.subplots(2, len(planes), figsize=(10 * len(planes), 6), sharex="col", squeeze=False)
    for (plane, run), (top, bottom) in zip(planes.items(), axes.T, strict=True):
        rows, events = run["timeline"], run["events"]
        bin_s = rows[1]["t_s"] - rows[0]["t_s"] if len(rows) > 1 else 0.25
        nodes = sorted({node for row in rows for node in row["by_node"]})
        ts = [row["t_s"] for row in rows]
        bottoms = [0.0] * len(rows)
        for node in nodes:
            values = [row["by_node"].get(node, 0) / bin_s for row in rows]
            top.bar(ts, values, bin_s, bottom=bottoms, align="edge", label=node)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        errors = [row["errors"] / bin_s for row in rows]
        if any(errors):
            top.bar(ts, errors, bin_s, bottom=bottoms, align="edge", color="red", label="errors")
        top.set_title(f"{plane} data plane")
        top.set_ylabel("answers/s by serving node")
        top.legend(loc="lower left", fontsize=8, ncol=len(nodes) + 1)
        bottom.plot(ts, [row["p50_ms"] for row in rows], label="p50")
        bottom.plot(ts, [row["p99_ms"] for row in rows], label="p99")
        bottom.set_ylabel(f"latency per {bin_s:g} s (ms)")
        bottom.set_xlabel("seconds (by send time)")
        bottom.legend(fontsize=8)
        for ax in (top, bottom):
            for key, label, color in (("kill_s", "SIGKILL", "red"), ("restart_s", "restart", "green")):
                if key in events:
                    ax.axvline(events[key], color=color, linestyle="--")
                    if ax is top:
                        ax.text(events[key], ax.get_ylim()[1] * 0.95, f" {label}", color=color, va="top")
    settings = r["settings"]
    title = f"{settings['rate_rps']:g} req/s open loop, {settings['victim']} killed and restarted"
    fig.suptitle(f"Failover: {title}")
    return save(fig, docs, "failover")


def plot_paid(r: dict[str, Any], docs: Path) -> str:
    ledgers = [k for k in ("sqlite", "postgresql") if k in r]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    targets = list(dict.fromkeys(name for ledger in ledgers for name in r[ledger]["summary"]))
    width = 0.8 / len(targets)
    for i, name in enumerate(targets):
        for j, ledger in enumerate(ledgers):
            summary = r[ledger]["summary"]
            if name not in summary:
                continue
            x, rps = j + (i - (len(targets) - 1) / 2) * width, summary[name]["saturation"]["rps"]
            ax.bar([x], [rps], width, color=f"C{i}", label=name if j == 0 else None)
            ax.text(x, rps, f"{rps / summary['unpaid']['saturation']['rps']:.0%}", ha="center", va="bottom")
    ax.set_xticks(range(len(ledgers)), ledgers)
    ax.set_ylabel("requests/s at saturation (% of unpaid)")
    ax.set_title("Paid path vs unpaid, per ledger (simple model)")
    ax.legend(fontsize=8)
    return save(fig, docs, "paid")


def plot_grpc(r: dict[str, Any], docs: Path) -> str:
    targets = r["summary"]["targets"]
    loads = [load["name"] for load in r["settings"]["loads"]]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    width = 0.8 / len(targets)
    for i, (name, by_load) in enumerate(targets.items()):
        xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(loads))]
        ax.bar(xs, [by_load[load]["rps"] for load in loads], width, label=name)
    ax.set_xticks(range(len(loads)), [f"{load} (concurrent calls)" for load in loads])
    ax.set_ylabel("requests/s")
    ax.set_title("gRPC ModelInfer: direct vs proxied (simple model)")
    ax.legend()
    return save(fig, docs, "grpc")


# --- the page ----------------------------------------------------------------------------------


def overhead_section(r: dict[str, Any], image: str) -> str:
    s = r["summary"]
    rows = [
        [
            name,
            fmt(f["saturation"]["rps"], ".0f"),
            fmt(f.get("rps_vs_direct"), ".2f"),
            fmt(f.get("rps_vs_nginx"), ".2f"),
            fmt(f["saturation"]["cpu_us_per_request"], ".0f"),
            fmt(f["c1"]["p50_ms"], ".3f"),
            fmt(f["c1"]["p99_ms"], ".2f"),
            fmt(f["c4"]["p50_ms"], ".3f"),
            fmt(f["c4"]["p99_ms"], ".2f"),
            fmt(f["c4"].get("p50_added_ms"), "+.3f"),
        ]
        for name, f in s.items()
    ]
    head = ["target", "req/s", "÷ direct", "÷ nginx", "CPU µs/req", "c1 p50", "c1 p99", "c4 p50", "c4 p99"]
    head.append("c4 p50 added")
    settings = r["settings"]
    return "\n\n".join(
        [
            "## 1. Overhead on tiny requests",
            f"`bench/overhead.py`: one Triton node serving `simple` ({settings['body_bytes']}-byte JSON "
            "body); wrk at saturation (`-t2 -c32`) and closed loop at 1 and 4 connections; "
            f"{settings['rounds']} interleaved rounds of {settings['duration_s']:g} s, medians. Latencies "
            "in ms. *CPU µs/req* is the CPU time of the target's own processes per request (the "
            "steadiest figure on a shared machine). `gateway` is the Python data plane; "
            "`gateway_envoy`, where run, Envoy with one worker thread in front of it, sending "
            "`infer` straight to Triton (Envoy's CPU counted with the gateway's); `bare_envoy`, "
            "where run, the same Envoy binary and worker with nothing but a route to the node (no "
            "body buffer, Lua, request ids, access log, error rewriting or ejection): the floor "
            f"under the fast path's cost. nginx runs {settings['nginx_workers']} worker, as the "
            "gateway runs on one core.",
            md_table(head, rows),
            cpu_by_load(s),
            f"![overhead]({image})",
        ]
    )


def cpu_by_load(s: dict[str, Any]) -> str:
    """CPU per request at each load: it falls as the load rises, for every proxy alike."""
    shown = [name for name in ("gateway", "gateway_envoy", "nginx") if name in s]
    figures = "; ".join(
        f"`{name}` "
        + " / ".join(fmt(s[name][load]["cpu_us_per_request"], ".0f") for load in ("c1", "c4", "saturation"))
        for name in shown
    )
    return (
        f"CPU µs per request at 1 connection / 4 / saturation: {figures}. At one connection each "
        "request pays a wake-up of its own (epoll, the loop's turn, a write per answer); under load "
        "one wake-up serves several. That is where the 0.8 ms per request of the Python gateway "
        "under `make up` went (issue 14 asked): a lighter load, on a machine shared with two "
        "Tritons, not a cost of `make up`'s configuration (which, measured at saturation beside "
        "this harness's, cost the same per request)."
    )


def stacks_section(r: dict[str, Any]) -> str:
    s = r["summary"]
    python = {"gateway", "bare_aiohttp"}
    bare = {name: f for name, f in s.items() if name in python or name.startswith("bare ")}
    ordered = sorted(bare.items(), key=lambda item: item[1]["saturation"]["cpu_us_per_request"] or 1e9)
    rows = [
        [
            "aiohttp/aiohttp/uvloop (bare_aiohttp)" if name == "bare_aiohttp" else name.removeprefix("bare "),
            fmt(f["saturation"]["rps"], ".0f"),
            fmt(f["saturation"]["cpu_us_per_request"], ".0f"),
            fmt(f["c1"].get("p50_added_ms"), "+.3f"),
            fmt(f["saturation"]["foreign_cpu_share"], ".0%"),
        ]
        for name, f in ordered
    ]
    cheapest = ordered[0][0].removeprefix("bare ")

    def cpu(name: str) -> str:
        return fmt(s.get(name, {}).get("saturation", {}).get("cpu_us_per_request"), ".0f")

    foreign = max(f["saturation"]["foreign_cpu_share"] for f in s.values())
    return "\n\n".join(
        [
            "### Choosing the gateway's stack",
            "`bench/overhead.py --stacks` (results in `bench/results/stacks.json`, "
            f"{r['when']}) puts bare proxies on other server/client/event-loop combinations "
            "(server/client/loop; `raw` is a hand-written asyncio protocol) in front of the same "
            "node, beside the gateway. Sorted by CPU per request at saturation, which is what "
            "bounds a proxy on a busy machine; requests/s moved with other work on the machine "
            f"(up to {foreign:.0%} of its CPU was used by other processes during that run), so "
            "read them as rough.",
            md_table(["stack", "req/s", "CPU µs/req", "c1 p50 added (ms)", "foreign CPU"], rows),
            "The gateway runs aiohttp's server and client on uvloop (the stack of `bare_aiohttp`, "
            f"{cpu('bare_aiohttp')} µs per request in that run). The cheapest bare stack was "
            f"`{cheapest}` at {ordered[0][1]['saturation']['cpu_us_per_request']:.0f} µs, a "
            "hand-written HTTP/1.1 server and client that handle only what this benchmark sends; "
            f"uvicorn's server ({cpu('bare uvicorn/aiohttp/uvloop')} µs) and the hand-written "
            f"client behind aiohttp's server ({cpu('bare aiohttp/raw/uvloop')} µs) saved nothing, "
            f"and httpx as the upstream client ({cpu('bare aiohttp/httpx/uvloop')} µs) is out of "
            "the question for the hot path. The gap between the gateway and the bare aiohttp proxy "
            "is the gateway's own work (routing, scheduling, metrics, request ids, retries).",
        ]
    )


def sized(r: dict[str, Any]) -> dict[str, list[str]]:
    """{gateway: its targets by size}: `gateway_n4` and `gateway_envoy_n4` are both 4 nodes."""
    out: dict[str, list[str]] = {}
    for name, f in r["summary"].items():
        if "nodes" in f:  # all but direct_n1
            out.setdefault(name.rpartition("_n")[0], []).append(name)
    return out


def scaleout_section(r: dict[str, Any], image: str) -> str:
    s, settings = r["summary"], r["settings"]
    direct = s["direct_n1"]
    rows = [["direct to Triton", "1", fmt(direct["rps"]), NONE, NONE, fmt(direct["p50_ms"])]]
    rows[0] += [fmt(direct["p99_ms"]), fmt(direct.get("foreign_cpu_share"), ".0%")]
    for gateway, names in sized(r).items():
        for name in names:
            f = s[name]
            rows.append(
                [
                    gateway,
                    str(f["nodes"]),
                    fmt(f["rps"]),
                    f"{f['nodes'] * 1000 / settings['service_time_ms']:.0f}",
                    f"{f['efficiency']:.1%}",
                    fmt(f["p50_ms"]),
                    fmt(f["p99_ms"]),
                    fmt(f.get("foreign_cpu_share"), ".0%"),
                ]
            )
    head = ["through", "nodes", "req/s", "ideal", "efficiency", "p50 ms", "p99 ms", "foreign CPU"]
    return "\n\n".join(
        [
            "## 2. Scale-out",
            "`bench/scaleout.py`: one cluster of "
            f"{max(settings['sizes'])} nodes, the latency fixture at {settings['service_time_ms']:g} ms "
            "with one instance and no dynamic batching per node (a node serves at most "
            f"{1000 / settings['service_time_ms']:.0f} requests/s), and one model name per size "
            "served by exactly that many nodes, so all sizes run interleaved on one cluster. wrk "
            f"keeps {settings['connections_per_node']} connections per node open; "
            f"{settings['rounds']} rounds of {settings['duration_s']:g} s, medians; policy "
            f"`{settings['policy']}`. `gateway` is the Python data plane, `gateway_envoy` (where run) "
            "a second gateway of the cluster on the Envoy data plane (one worker). Efficiency = "
            f"req/s at N ÷ (N {TIMES} req/s at 1 node), both through the same gateway.",
            md_table(head, rows),
            per_round(r),
            f"![scale-out]({image})",
        ]
    )


def per_round(r: dict[str, Any]) -> str:
    """Each round's req/s per target: on a shared machine one stalled round shows here."""
    names = [name for names in sized(r).values() for name in names]
    rounds = len(r["runs"][names[0]])
    rows = [[name, *(fmt(run["rps"]) for run in r["runs"][name])] for name in names]
    head = ["target", *(f"round {i} req/s" for i in range(1, rounds + 1))]
    return "Each round (the table above shows medians):\n\n" + md_table(head, rows)


SKEW_HEAD = ["target", "req/s", "p50", "p99", "p99.9", "max", "p99 ÷ rr", "req/s ÷ rr", "foreign CPU"]


def skew_section(r: dict[str, Any], image: str) -> str:
    s, settings = r["summary"], r["settings"]
    rows = [
        [
            name,
            fmt(f["rps"]),
            fmt(f["p50_ms"]),
            fmt(f["p99_ms"]),
            fmt(f["p999_ms"]),
            fmt(f["max_ms"]),
            f"{f['p99_vs_round_robin']:.2f}",
            f"{f['rps_vs_round_robin']:.2f}",
            fmt(f.get("foreign_cpu_share"), ".0%"),
        ]
        for name, f in s.items()
    ]
    times = " / ".join(f"{t:g}" for t in settings["service_times_ms"])
    return "\n\n".join(
        [
            "## 3. Load balancing under skew",
            f"`bench/skew.py`: four nodes at {times} ms (one instance each, no batching: capacity "
            f"{settings['capacity_rps']:.0f} req/s), one gateway per scheduling policy on the Python "
            "data plane, their twins on the Envoy data plane where run (`envoy_<policy>`: Envoy, one "
            "worker, balances the nodes itself: `round_robin` as ROUND_ROBIN, `least_outstanding` as "
            "LEAST_REQUEST over every host, `p2c` as LEAST_REQUEST of two), and nginx over "
            "the same four Triton nodes with `least_conn` and with its default round robin. wrk "
            f"closed loop, {settings['connections']} connections, {settings['rounds']} interleaved "
            f"rounds of {settings['duration_s']:g} s, medians; p99.9 from wrk's histogram. Latencies "
            "in ms; ÷ rr: against the Python gateway's round robin.",
            md_table(SKEW_HEAD, rows),
            f"![skew]({image})",
            "Round robin sends a quarter of the requests to the slow node whatever its queue, so "
            "with a closed loop most connections end up waiting there: throughput drops to about "
            "four times the slow node's rate and p99 is its queue. `least_outstanding` sends each "
            "request to the node with the fewest in flight; `p2c` samples two nodes and takes the "
            "less loaded, so the slow node still wins some draws against a busier fast one. "
            + skew_comparison(r),
        ]
    )


def skew_comparison(r: dict[str, Any]) -> str:
    s, slow_ms = r["summary"], max(r["settings"]["service_times_ms"])
    best = r["best_policy"]
    text = (
        f"The best policy's p99 ({s[best]['p99_ms']:.0f} ms) is "
        f"{s[best]['p99_ms'] / slow_ms:.1f} times the slow node's service time: requests that "
        "land there queue behind about that many others."
    )
    if "nginx_least_conn" in s:
        ngx = s["nginx_least_conn"]
        relation = "lower" if ngx["p99_ms"] < s[best]["p99_ms"] else "no lower"
        text += (
            f" nginx's `least_conn` over the same nodes reached a {relation} p99 "
            f"({ngx['p99_ms']:.0f} ms, {ngx['p99_vs_round_robin']:.0%} of round robin's) at "
            f"{ngx['rps']:.0f} req/s against {s[best]['rps']:.0f}."
        )
    if "best_envoy_policy" in r:
        envoy = r["best_envoy_policy"]
        text += (
            f" On the Envoy data plane the best was `{envoy}`: p99 {s[envoy]['p99_ms']:.0f} ms at "
            f"{s[envoy]['rps']:.0f} req/s."
        )
    return text


def failover_section(r: dict[str, Any], image: str) -> str:
    settings, planes = r["settings"], failover_planes(r)

    def window(plane: str, name: str, w: dict[str, Any]) -> list[str]:
        figures = [fmt(w["p50_ms"]), fmt(w["p99_ms"]), fmt(w["max_ms"])]
        return [plane, name, str(w["requests"]), str(w["errors"]), *figures]

    # (figure, how to read it from a plane's summary)
    figures: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("client-visible errors", lambda f: f"{f['errors']} of {f['requests']}"),
        ("dead node ejected (first failed attempt at it)", lambda f: fmt(f["ejected_after_s"], ".3f", " s")),
        (
            "failed attempts at the dead node (each retried)",
            lambda f: fmt(f["failed_attempts_at_dead_node"], ".0f"),
        ),
        ("last attempt at the dead node", lambda f: fmt(f["last_attempt_at_dead_node_s"], ".3f", " s")),
        ("dropped from the gateway's view", lambda f: fmt(f["out_of_gateway_view_s"], ".3f", " s")),
        (
            "after restart: back in the gateway's view",
            lambda f: fmt(f["back_in_gateway_view_s"], ".3f", " s"),
        ),
        ("after restart: serving again", lambda f: fmt(f["serving_again_s"], ".3f", " s")),
    ]
    rows = [[name, *(read(run["summary"]) for run in planes.values())] for name, read in figures]
    windows = []
    for plane, run in planes.items():
        f = run["summary"]
        windows += [
            window(plane, "steady, before the kill", f["steady"]),
            window(plane, "2 s after the kill", f["after_kill"]),
            window(plane, "restart until 2 s after serving again", f["after_restart"]),
        ]
    head = ["figure", *(f"{plane} data plane" for plane in planes)]
    return "\n\n".join(
        [
            "## 4. Failover",
            f"`bench/failover.py`: four nodes at {settings['service_time_ms']:g} ms, "
            f"{settings['rate_rps']:g} requests/s open loop from an asyncio client (it reads each "
            "answer's `X-Tritonfleet-Node`, which wrk cannot report); "
            f"{settings['victim']}'s manager is SIGKILLed (its Triton dies with it) after "
            f"{settings['steady_s']:g} s and restarted {settings['dead_s']:g} s later. The gateway's "
            f"`/metrics` and `/v1/nodes` are polled every {settings['poll_s'] * 1000:.0f} ms, so the "
            "times from them are good to that much. Times after the kill unless marked. Settings: "
            f"policy `{settings['policy']}`, eject back-off from {settings['eject_base_s']:g} s, "
            f"heartbeat every {settings['heartbeat_interval_s']:g} s, TTL {settings['ttl_s']:g} s. "
            "Each data plane is run in turn on the same cluster, through its own gateway; on the "
            "Envoy data plane (one worker) the attempts at the dead node are Envoy's own per-host "
            "counters, read from its admin at the same pace.",
            md_table(head, rows),
            md_table(
                ["data plane", "window (by send time)", "requests", "errors", "p50 ms", "p99 ms", "max ms"],
                windows,
            ),
            f"![failover]({image})",
            "The gateway ejects a node on its first failure (connection refused or reset) and "
            "retries the request on another node, so the kill costs the client nothing but that "
            "retry. While ejected the node is tried again after a back-off that doubles (half-open), "
            "each such try retried elsewhere too, until the health checker's TTL runs out and the "
            "gateway's view drops the node. After the restart, most of the time goes to Triton "
            "starting and loading the model; the node is routed to from its first good heartbeat. "
            "Envoy does the same on its data plane: its outlier detection ejects a host on its "
            "first failure before an answer (refused, reset, timed out), the request is retried on "
            "another host, and the gateway's view, once it drops the node, drops it from Envoy's "
            "endpoints.",
        ]
    )


# What each target of bench/paid.py is, for those a results file has.
PAID_TARGETS = {
    "unpaid": "a second gateway of the cluster with payments off",
    "paid": "the cluster's gateway, charging every request (the Python data plane)",
    "paid_envoy": "a second paying gateway on the Envoy data plane (one worker): Envoy asks the "
    "Python gateway's authorizer to hold the price (`ext_authz`), sends the request straight to "
    "Triton, and has the answer charged durably (a Lua call in the response phase) before it goes out",
    "extauthz_floor": "that design's floor: the same Envoy calls to a stub authorizer that checks "
    "and records nothing",
}
# How the paid path behind Envoy was chosen (issue 14), measured side by side in one run of this
# scenario (sqlite, 2 rounds of 3 s, 2026-12-01) before the slower way was removed.
PAID_WAYS = (
    "How charging behind Envoy was chosen: two ways were measured side by side in one run "
    "(sqlite ledger, 2 rounds of 3 s, 2026-12-01). (a) Envoy in front of the Python gateway's "
    "own paid path (Envoy → Python → Triton): 1112 req/s at 615 µs of CPU per request; "
    "(b) `ext_authz` to the Python gateway with the charge in Envoy's response phase, measured "
    "then by its floor (`extauthz_floor`, 3571 req/s at 239 µs) plus what charging costs the "
    "Python path (`paid` minus `unpaid`: 453 - 255 = 198 µs), about 437 µs. Built, (b) measured "
    "537 µs and 1971 req/s in the next run, against 467 µs and 2099 req/s for the Python gateway "
    "alone. That (b) charged on the answer's headers; reading the whole answer first, so that "
    "only an answer that arrived is charged, as the Python path does, it measured 904 µs against "
    "641 µs in a noisier run (the table's): 2.4 times the unpaid gateway's CPU, as (a) was, "
    "serving 0.44 of the unpaid gateway's requests per second where (a) served 0.30. So (b) is "
    "kept, and Envoy's paid path misses the issue's target (below today's paid path). "
    "Completing the charge "
    "from Envoy's access log instead would have saved the response-phase call, but answers "
    "before the charge is durable: a crash in between serves the inference free, so it was not "
    "taken."
)


def paid_section(r: dict[str, Any], image: str) -> str:
    rows: list[list[Any]] = []
    settled: list[list[Any]] = []
    for ledger in ("sqlite", "postgresql"):
        if ledger not in r:
            continue
        s, gas = r[ledger]["summary"], r[ledger]["settlement"]
        unpaid = s["unpaid"]
        for name, f in s.items():
            rows.append(
                [
                    ledger,
                    name,
                    fmt(f["saturation"]["rps"], ".0f"),
                    f"{f['saturation']['rps'] / unpaid['saturation']['rps']:.0%}",
                    fmt(f["saturation"]["cpu_us_per_request"], ".0f"),
                    fmt(f["c1"]["p50_ms"], ".3f"),
                    fmt(f["c1"]["p50_ms"] - unpaid["c1"]["p50_ms"], "+.3f"),
                ]
            )
        per_request = gas.get("per_request_gas_per_inference") or gas.get("per_request_gas")
        settled.append(
            [
                ledger,
                f"{gas['charges']} in {gas['batches']}",
                fmt(gas.get("settler_cpu_us_per_charge"), ".0f"),
                fmt(gas["gas_per_inference"], ".0f"),
                fmt(per_request, ".0f") if per_request else f"≥ {INTRINSIC_TX_GAS:,}",
            ]
        )
    head = ["ledger", "target", "req/s", "÷ unpaid", "CPU µs/req", "c1 p50 (ms)", "c1 p50 added (ms)"]
    settled_head = ["ledger", "charges settled in batches", "settler CPU µs/charge", "gas per inference"]
    settled_head.append("gas, one tx per inference")
    names = dict.fromkeys(row[1] for row in rows)
    described = "; ".join(f"`{name}`: {PAID_TARGETS[name]}" for name in names if name in PAID_TARGETS)
    return "\n\n".join(
        [
            "## 5. Paid path",
            "`bench/paid.py`: per ledger, one cluster with payments on (dev chain, token manager, "
            "settler, one node serving `simple`) and its gateways in front of the same node, all "
            f"sent the same requests with a funded key by the overhead harness. Targets: {described}. "
            "A paying gateway hands its charges to a writer process of its own, which "
            "group-commits them; its CPU per request counts both processes (and Envoy, in front). "
            "The settler runs beside them at its default pace (every "
            f"{SETTLER.interval_s:g} s, or sooner once {SETTLER.max_charges} "
            "charges wait), on the same cores; its CPU per settled charge is shown apart. "
            "Every paid answer is one durable charge, so paid req/s are the "
            "charges recorded per second. After the load the settler settles everything; gas per "
            "settled inference is set beside one transaction per inference (the original design), "
            f"which costs at least the {INTRINSIC_TX_GAS:,} gas every Ethereum transaction pays "
            "before doing anything (more with its storage writes), where the run did not measure it.",
            md_table(head, rows),
            PAID_WAYS,
            md_table(settled_head, settled),
            f"![paid]({image})",
        ]
    )


def grpc_section(r: dict[str, Any], image: str) -> str:
    settings, summary = r["settings"], r["summary"]
    rows = []
    for name, by_load in summary["targets"].items():
        for load in (entry["name"] for entry in settings["loads"]):
            figures = by_load[load]
            ratio = summary["ratios"].get(name, {}).get(load, {})
            rows.append(
                [
                    name,
                    load,
                    fmt(figures["rps"], ".0f"),
                    fmt(ratio.get("rps_over_direct", 1.0 if name == "direct" else None), ".2f"),
                    fmt(figures["p50_ms"], ".3f"),
                    fmt(figures["p99_ms"], ".3f"),
                    fmt(ratio.get("p50_added_ms", 0.0 if name == "direct" else None), "+.3f"),
                    fmt(figures["cpu_us_per_request"], ".0f"),
                ]
            )
    head = ["target", "load", "req/s", "÷ direct", "p50 ms", "p99 ms", "p50 added (ms)", "CPU µs/req"]
    return "\n\n".join(
        [
            "## 6. Overhead over gRPC",
            "`bench/grpc_overhead.py`: one Triton node serving `simple`; `tritonclient.grpc.aio` "
            "sends `ModelInfer` from 1, 4 and 16 concurrent tasks, closed loop, to Triton's own gRPC "
            "port, to the gateway's (`gateway`: the Python data plane; `gateway_envoy`, where run: "
            "Envoy, one worker, in front of it, sending `ModelInfer` straight to Triton; its CPU "
            "counted with the gateway's), and to a logic-free `grpc.aio` proxy with the same generic "
            f"handler (what grpcio itself costs); {settings['rounds']} interleaved rounds of "
            f"{settings['duration_s']:g} s after {settings['warmup_s']:g} s of warm-up, medians. The "
            "load generator is the same Python client for every target, and it shares the cores.",
            md_table(head, rows),
            f"![grpc]({image})",
        ]
    )


def environment_section(r: dict[str, Any]) -> str:
    rows = []
    env: dict[str, Any]
    for name in (*SCENARIOS, "stacks"):
        if name not in r:
            rows.append([name, "not run", "", ""])
            continue
        env = r[name].get("environment", {})
        wall = r[name].get("wall_s")
        rows.append(
            [
                name,
                r[name].get("when", ""),
                f"{env.get('cpus', '?')} CPUs, Linux {env.get('kernel', '?')}, "
                f"Python {env.get('python', '?')}",
                "" if wall is None else f"{wall:.0f} s" + (" (smoke)" if r[name].get("smoke") else ""),
            ]
        )
    env = next((r[n]["environment"] for n in (*SCENARIOS, "stacks") if n in r), {})
    envoy = envoy_version(r)
    return "\n\n".join(
        [
            "## What ran where",
            "Every process of a scenario — Triton nodes, the project's services, nginx and the "
            f"load generator — ran on one machine with {env.get('cpus', '?')} CPU cores "
            "(a shared, virtualised build machine; other work ran on it at the same time, which the "
            "overhead tables show as *foreign CPU*). So the proxies compete with Triton and wrk for "
            "the same cores, and absolute figures are low and noisy; the ratios, measured side by "
            "side in interleaved rounds, are what to read. Triton is the `tritonserver` 2.51 of the "
            f"`nvidia-pytriton` wheel on CPU; {env.get('nginx', 'nginx')}; Envoy {envoy}; "
            f"{env.get('wrk', 'wrk')}; "
            f"aiohttp {env.get('aiohttp', '?')}, uvloop {env.get('uvloop', '?')}.",
            md_table(["scenario", "run at (UTC)", "machine", "wall time"], rows),
        ]
    )


# Measurements that decided how a piece of code is written: the code says why and links here,
# so that its comments do not go stale when the figures change. (where, what, figures, commit)
DESIGN_MEASUREMENTS = [
    (
        "`gateway/http/routes.py`, `gateway/grpc/routes.py`",
        "the request log line written on the loop's next turn, after the answer",
        "~40 µs of CPU per request that the client no longer waits for; p50 0.57 → 0.53 ms at "
        "1 connection and 1.05 → 0.93 ms at 4 (`bench/overhead.py`, A/B, 2 cores)",
        "ea66232",
    ),
    (
        "`gateway/request_ids.py`",
        "time-ordered request ids (UUIDv7), the ledger's primary key",
        "recording a charge in SQLite took 46-75 µs of CPU with random ids, 26-28 µs with ordered "
        "ones (9 charges a transaction, 60 000 in the table; random ids get worse as it grows)",
        "a34fecd",
    ),
    (
        "`gateway/grpc/wire.py`",
        "routing fields read by stepping over the protobuf wire format",
        "parsing a 128 MB `ModelInferRequest` with a message class that declares only the routing "
        "fields took 116 ms (protobuf 6, upb: unknown fields are copied); stepping took ~2 µs, "
        "whatever the size",
        "256d6c2",
    ),
    (
        "`scheduler/client.py` (`RemoteScheduler`)",
        "the remote scheduler asked over the gateway's aiohttp session",
        "httpx cost 12 to 15 times aiohttp's CPU per pick; remote mode went from 590 to 2308 req/s and "
        "from 2043 to 556 µs of CPU per request (`bench/overhead.py --stacks`)",
        "f7e6059",
    ),
    (
        "`payments/ledger/writer.py`",
        "the charge writer in a process of its own, not a thread",
        "a writer thread took ~3 ms to wake for a group and ~4 ms to write one that takes 0.5 ms "
        "alone (the event loop holds the GIL at saturation); the paid gateway served 0.4 times the "
        "unpaid one's requests (`bench/paid.py`, 2 cores)",
        "8dca659",
    ),
    (
        "`pyproject.toml` (coincurve)",
        "eth-keys signing with libsecp256k1",
        "a settlement's signature took 4.5 ms of CPU in pure Python, 0.45 ms with coincurve",
        "1e85e9e",
    ),
    (
        "`pyproject.toml` (sniffio)",
        "sniffio installed, so httpcore does not retry importing it on every call",
        "each control-plane call cost ~0.5 ms more of CPU without it (encode/httpcore#1103)",
        "721ab88",
    ),
    (
        "`gateway/paid.py`, `payments/ledger/store.py` (`take_lease`)",
        "credit leases: one atomic grant per slice, the slice spent in the charge's transaction",
        "with one gateway, 1457-1562 charges/s at 647-692 µs of CPU per request against 1655-2070 "
        "at 488-620 µs without leases (`bench/paid.py`, SQLite, old and new trees alternated, 2 "
        "cores): the price of never overspending across gateways; 2 and 3 gateways on one ledger "
        "served exactly a deposit's 300 of 1000 requests, without leases 323",
        "db9a67d",
    ),
    (
        "`node/guard.py`",
        "a guard process between the manager and `tritonserver`",
        "a Python backend stub noticed the death of `tritonserver` only seconds later, up to 13 s",
        "6f2e0ed",
    ),
]


def design_measurements_section() -> str:
    rows = [[where, what, figures, commit] for where, what, figures, commit in DESIGN_MEASUREMENTS]
    return "\n\n".join(
        [
            "## Measurements behind the code",
            "Figures that decided how a piece of code is written, measured once, on this project's "
            "2-core build machine; the code links here rather than quoting them.",
            md_table(["code", "choice", "measured", "commit"], rows),
        ]
    )


def page(r: dict[str, Any], docs: Path) -> str:
    parts = [
        "# Benchmarks",
        "Produced by `make bench` (every scenario with its full settings, then `bench/report.py`, "
        "which writes this page from `bench/results/*.json`); `make bench-smoke` runs each "
        "scenario for a few seconds to prove the harness works. Load comes from `wrk` (Debian's "
        "package, with a Lua script) except in the failover scenario. Timings are never asserted "
        "in tests; every comparison here was measured side by side in one run.",
        "## Targets",
        md_table(
            ["target", "goal", "measured", "verdict", "margin"],
            [[c.target, c.goal, c.measured, verdict(c.reached), c.margin] for c in checks(r)],
        ),
        missed_notes(r),
        issue_14_section(r),
    ]
    Section = Callable[[dict[str, Any], str], str]
    Plot = Callable[[dict[str, Any], Path], str]
    sections: list[tuple[str, Section, Plot]] = [
        ("overhead", overhead_section, plot_overhead),
        ("scaleout", scaleout_section, plot_scaleout),
        ("skew", skew_section, plot_skew),
        ("failover", failover_section, plot_failover),
        ("paid", paid_section, plot_paid),
        ("grpc_overhead", grpc_section, plot_grpc),
        ("generate", generate_section, lambda r, docs: ""),
        ("faults", faults_section, plot_faults),
    ]
    for name, section, plot in sections:
        if name not in r:
            parts.append(f"## {name}\n\nNot run: `bench/results/{name}.json` is missing.")
            continue
        parts.append(section(r[name], plot(r[name], docs)))
        if name == "overhead" and "stacks" in r:
            parts.append(stacks_section(r["stacks"]))
    parts.append(environment_section(r))
    parts.append(design_measurements_section())
    return "\n\n".join(part for part in parts if part) + "\n"


def generate_section(r: dict[str, Any], image: str) -> str:
    s, goal = r["summary"], r["settings"]["goal_ms"]
    rows = [
        [
            name,
            f["streams"],
            fmt(f["first_p50_ms"], ".3f"),
            fmt(f["first_p99_ms"], ".3f"),
            fmt(f["first_p50_added_ms"], "+.3f"),
            fmt(f["whole_p50_ms"], ".3f"),
        ]
        for name, f in s.items()
    ]
    verdicts = ", ".join(
        f"`{name}` {verdict(f['first_p50_added_ms'] <= goal)} ({f['first_p50_added_ms']:+.3f} ms)"
        for name, f in s.items()
        if name != "direct"
    )
    return "\n\n".join(
        [
            "## 7. Generate: time to the first event",
            "`bench/generate.py`: one client streams `text_generation` answers of "
            f"{r['settings']['body']['max_tokens']} tokens (`generate_stream`, server-sent events) one "
            "after another on a kept-alive connection, directly at the node, through the Python "
            "gateway (`gateway`) and through Envoy in front of it (`gateway_envoy`, where the stream "
            f"goes straight to the node); {r['settings']['rounds']} interleaved rounds of "
            f"{r['settings']['duration_s']:g} s. Times in ms from sending the request.",
            md_table(["target", "streams", "first event p50", "p99", "p50 added", "last event p50"], rows),
            f"Goal (issue 15): the first event through the gateway within {goal:g} ms of direct "
            f"Triton's: {verdicts}.",
        ]
    )


# What the others do, from their own documentation and issue threads (issue 16): the anchors the
# faults scenario's figures are read against. None of these was run here.
FAULT_ANCHORS = [
    (
        "Envoy, outlier detection as shipped",
        "ejects after 5 consecutive 5xx, evaluated every 10 s; no per-try timeout unless set: a hung "
        "host holds each request for the route's timeout (15 s by default)",
    ),
    ("NVIDIA Dynamo", "lost 32 of 100 requests after a worker died, before its 10 s lease expired"),
    ("Ray Serve", "open issues about routing to half-alive replicas and slow failure detection"),
    ("vLLM production router", "open issues about routing to dead nodes and hanging without timeouts"),
]
FAULT_GOALS_S = {"pause": 1.0, "blackhole": 1.0, "partition": 1.0, "throttle": 2.0}


def fault_checks(r: dict[str, Any]) -> list[Check]:
    """Issue 16's goals, on each data plane."""
    out = []
    for plane, kinds in r.get("faults", {}).items():
        failed = sum(f["failed"] for f in kinds.values())
        out.append(
            Check(
                f"faults ({plane}): failed requests that another node could serve",
                "0",
                f"{failed} of {sum(f['requests'] for f in kinds.values())} ({', '.join(kinds)})",
                failed == 0,
                "none" if failed == 0 else f"{failed} failed",
            )
        )
        for fault, goal in FAULT_GOALS_S.items():
            out_s = kinds.get(fault, {}).get("out_of_rotation_s")
            if fault in kinds:
                out.append(
                    Check(
                        f"faults ({plane}): {fault}, node out of rotation",
                        f"within {goal:g} s",
                        fmt(out_s, ".2f", " s"),
                        None if out_s is None else out_s <= goal,
                        NONE if out_s is None else f"{goal - out_s:+.2f} s",
                    )
                )
    for plane, runs in r.get("overload", {}).items():
        share = runs["bounded"]["goodput_of_capacity"]
        out.append(
            Check(
                f"overload ({plane}): goodput at 3x capacity",
                "near capacity (at least 90%)",
                f"{share:.0%} (unbounded: {runs['unbounded']['goodput_of_capacity']:.0%})",
                share >= 0.9,
                f"{(share - 0.9) * 100:+.0f} points",
            )
        )
    for plane, f in r.get("connections", {}).items():
        errors = sum(f["errors"].values())
        out.append(
            Check(
                f"connections ({plane}): {f['connections']} held at once",
                "no error",
                f"{f['held']} held, {errors} errors",
                errors == 0 and f["held"] == f["connections"] if f["connections"] >= 10_000 else None,
                "none"
                if errors == 0
                else f"{errors} errors"
                + ("" if f["connections"] >= 10_000 else f" (at {f['connections']}, not 10,000)"),
            )
        )
    return out


def faults_section(r: dict[str, Any], image: str) -> str:
    settings = r["settings"]
    parts = ["## 8. Faults: hung, slow, partitioned, killed nodes; overload; many connections"]
    if "faults" in r:
        rows = []
        for plane, kinds in r["faults"].items():
            for fault, f in kinds.items():
                goal = FAULT_GOALS_S.get(fault)
                out = f["out_of_rotation_s"]
                rows.append(
                    [
                        plane,
                        fault,
                        f"{f['failed']} of {f['requests']}",
                        fmt(out, ".2f", " s"),
                        NONE if goal is None else f"{goal:g} s: {verdict(out is not None and out <= goal)}",
                        f["caught"],
                        fmt(f["steady_p99_ms"], ".1f"),
                        fmt(f["fault_p99_ms"], ".1f"),
                    ]
                )
        parts += [
            "`bench/faults.py`, part `faults`: three nodes of the latency fixture "
            f"({settings['fault_service_time_ms']:g} ms, two instances each) and the health checker, "
            "scheduler and gateway, each a host of its own in a network namespace (`tritonfleet.netns`), "
            f"under an open-loop load of {settings['rate_rps']:g} requests/s from the root namespace. "
            f"Each fault hits node 2 after {settings['steady_s']:g} s of steady load and lasts "
            f"{settings['fault_s']:g} s. *Failed*: answers other than 200 (each could have been served "
            "by another node: the goal is none). *Out of rotation*: from the fault to the last request "
            "of the first burst it caught (a request slower than three times the steady p99 plus "
            "20 ms); *caught* counts them all, the half-open tries at the end of each back-off "
            "included. Latency in ms. A killed node refuses connections, which are retried at once: "
            "it catches no request, hence no figure. `tc netem` (latency, loss) is not in this "
            "machine's kernel; `throttle` makes a node slow instead (its tritonserver stopped 45 ms of "
            "every 50).",
            md_table(
                ["plane", "fault", "failed", "out of rotation", "goal", "caught", "steady p99", "fault p99"],
                rows,
            ),
        ]
    if "overload" in r:
        rows = []
        for plane, runs in r["overload"].items():
            for name, f in runs.items():
                rows.append(
                    [
                        plane,
                        name,
                        fmt(f["offered_rps"], ".0f"),
                        fmt(f["goodput_rps"], ".1f"),
                        f"{f['goodput_of_capacity']:.0%}",
                        f"{f['refused_503']} ({f['refused_with_retry_after']} with Retry-After), "
                        f"p99 {fmt(f['refused_p99_ms'], '.1f')} ms",
                        f["timed_out"],
                        fmt(f["served_p99_ms"], ".0f"),
                        fmt(f["gateway_rss_grown_mib"], ".1f"),
                    ]
                )
        parts += [
            "Part `overload`: two nodes of the latency fixture "
            f"({settings['service_time_ms']:g} ms, one instance, no batching: "
            f"{2 * 1000 / settings['service_time_ms']:g} requests/s in all) offered three times that, "
            f"open loop, for {settings['overload_s']:g} s; clients give up after "
            f"{settings['slo_s']:g} s. *Goodput*: answers 200 within that, per second, counted as they "
            "arrive past the run's first quarter. `bounded`: the gateway's limits sized to the nodes "
            "(two in flight per node, a queue of half an SLO of capacity); `unbounded`: no limit, as "
            "before issue 16. Memory: the gateway's peak resident memory grown during the run "
            "(Envoy's too, on its plane), MiB.",
            md_table(
                [
                    "plane",
                    "limits",
                    "offered/s",
                    "goodput/s",
                    "of capacity",
                    "refused",
                    "timed out",
                    "served p99 ms",
                    "memory grown",
                ],
                rows,
            ),
        ]
    if "connections" in r:
        rows = [
            [
                plane,
                f["held"],
                f"{f['open_s']:g} s",
                ", ".join(f"{t:g} s" for t in f["round_s"]),
                ", ".join(f"{k}: {v}" for k, v in f["errors"].items()) or "none",
                fmt(f["gateway_rss_grown_mib"], ".1f"),
            ]
            for plane, f in r["connections"].items()
        ]
        parts += [
            f"Part `connections`: {settings['connections']} client connections opened to the gateway "
            "and all held open, each sending one request (a model of no service time), twice over.",
            md_table(["plane", "held", "opened in", "rounds", "errors", "memory grown MiB"], rows),
        ]
    parts += [
        "What the others do, from their documentation and issue threads (not run here):",
        "\n".join(f"- **{who}**: {what}" for who, what in FAULT_ANCHORS),
    ]
    if image:
        parts.append(f"![faults]({image})")
    return "\n\n".join(parts)


def plot_faults(r: dict[str, Any], docs: Path) -> str:
    if "faults" not in r and "overload" not in r:
        return ""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for offset, (plane, kinds) in enumerate(r.get("faults", {}).items()):
        names = list(kinds)
        out = [kinds[n]["out_of_rotation_s"] or 0.0 for n in names]
        positions = [i + offset * 0.4 for i in range(len(names))]
        left.bar(positions, out, width=0.4, label=plane)
        left.set_xticks([i + 0.2 for i in range(len(names))], names)
    left.axhline(1.0, color="red", linestyle="--", label="goal, hung: 1 s")
    left.axhline(2.0, color="orange", linestyle="--", label="goal, slow: 2 s")
    left.set_ylabel("fault to out of rotation (s)")
    left.legend(fontsize=8)
    labels, goodput = [], []
    for plane, runs in r.get("overload", {}).items():
        for name, f in runs.items():
            labels.append(f"{plane}\n{name}")
            goodput.append(f["goodput_of_capacity"] * 100)
    right.bar(labels, goodput, color=["#3a7" if "bounded" == n.split()[-1] else "#a33" for n in labels])
    right.set_ylabel("goodput at 3x capacity (% of capacity)")
    right.axhline(100, color="#888", linestyle=":")
    fig.suptitle("Faults on node 2 (left) and overload (right)")
    return save(fig, docs, "faults")


def overhead_floor(r: dict[str, Any]) -> str:
    """What a Python proxy with no logic at all achieved in the same run: the floor under the
    gateway's overhead figures on that machine."""
    s = r["summary"]
    if "bare_aiohttp" not in s or "nginx" not in s:
        return ""
    bare, gateway = s["bare_aiohttp"], s["gateway"]
    share = gateway["saturation"]["rps"] / bare["saturation"]["rps"]
    return (
        "In the same run a proxy with no logic at all on the gateway's stack (`bare_aiohttp`) added "
        f"{bare['c1']['p50_added_ms']:+.2f} ms at 1 connection and {bare['c4']['p50_added_ms']:+.2f} ms "
        f"at 4, and reached {bare['rps_vs_nginx']:.0%} of nginx: the floor of a Python proxy on this "
        f"machine that day. The gateway served {share:.0%} of that proxy's requests per second, "
        "with its routing, retries, metrics and request log. "
        "The same figures vary by half between runs of this shared machine: the ratios to the "
        "logic-free proxy are the stable part."
    )


def missed_notes(r: dict[str, Any]) -> str:
    """Why each missed target was missed, from the figures themselves."""
    notes = []
    floor_told = False
    for check in checks(r):
        if check.reached is not False:
            continue
        if check.target.startswith("paid") and "paid" in r:
            s = r["paid"]["sqlite"]["summary"]
            unpaid = s["unpaid"]["saturation"]["cpu_us_per_request"]
            paid = s["paid"]["saturation"]["cpu_us_per_request"]
            settler = fmt(r["paid"]["sqlite"]["settlement"].get("settler_cpu_us_per_charge"), ".0f")
            notes.append(
                f"- **{check.target}** missed by {(0.8 - r['paid']['sqlite']['paid_vs_unpaid']) * 100:.0f} "
                f"points: the paying gateway and its charge writer process spend {paid:.0f} µs of "
                f"CPU per request against {unpaid:.0f} µs unpaid (authentication, reservation, the "
                "charge's round trip to the writer, its share of a group-committed transaction with "
                f"its fsync), the settler {settler} µs per charge more, all on the 2 cores that Triton "
                "and wrk use too, where throughput follows the CPU of everything per request. Each "
                "paid answer also waits about a millisecond for its durable commit, so 32 "
                "connections keep the paying gateway busy less of the time. Answering before the "
                "charge is durable would close much of the gap and is not done: a crash would lose "
                "charges for answers already served."
            )
        elif check.target.startswith("gateway overhead") and "overhead" in r:
            floor = overhead_floor(r["overhead"]) if not floor_told else "The same floor applies (above)."
            floor_told = True
            notes.append(f"- **{check.target}** missed ({check.measured}). {floor}")
        elif check.target.startswith("scale-out") and "scaleout" in r:
            notes.append(
                f"- **{check.target}** missed ({check.measured}): at 8 nodes this 2-core machine "
                "runs 8 `tritonserver` processes, their Python backend stubs, the gateway and wrk; "
                "see the scale-out section for where the throughput went."
            )
        else:
            notes.append(f"- **{check.target}** missed: {check.measured} against {check.goal}.")
    return "\n".join(notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    results = load(args.results)
    if not results:
        print(f"no results in {args.results}", file=sys.stderr)
        return 1
    args.docs.mkdir(parents=True, exist_ok=True)
    target = args.docs / "benchmarks.md"
    target.write_text(page(results, args.docs))
    for check in checks(results):
        print(f"{verdict(check.reached).strip('*'):12} {check.target}: {check.measured} (goal {check.goal})")
    for check in issue_14_checks(results):
        line = f"{verdict(check.reached, 'not run').strip('*'):12} {check.target}: {check.measured}"
        print(f"{line} (issue 14, Envoy data plane: goal {check.goal})")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
