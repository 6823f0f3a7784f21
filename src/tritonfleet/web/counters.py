"""Per-node request rate and latency, from the cumulative counters of Triton's /metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
DURATION_US = "nv_inference_request_duration_us"


@dataclass(frozen=True)
class Counters:
    """Totals over all of a node's models since its Triton started."""

    requests: float
    duration_us: float


@dataclass(frozen=True)
class Rates:
    rps: float
    # None when no request finished in the interval.
    latency_ms: float | None


def parse(metrics_text: str) -> Counters:
    totals = {SUCCESS: 0.0, FAILURE: 0.0, DURATION_US: 0.0}
    for family in text_string_to_metric_families(metrics_text):
        if family.name in totals:
            totals[family.name] += sum(sample.value for sample in family.samples)
    return Counters(totals[SUCCESS] + totals[FAILURE], totals[DURATION_US])


def rates(before: Counters, after: Counters, elapsed_s: float) -> Rates | None:
    """None when the counters went back (Triton restarted) or no time passed."""
    done = after.requests - before.requests
    busy_us = after.duration_us - before.duration_us
    if elapsed_s <= 0 or done < 0 or busy_us < 0:
        return None
    return Rates(rps=done / elapsed_s, latency_ms=busy_us / done / 1000 if done else None)
