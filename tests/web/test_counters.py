from __future__ import annotations

from tritonfleet.web.counters import Counters, parse, rates

METRICS = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="simple",version="1"} 30
nv_inference_request_success{model="digits",version="1"} 10
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="simple",version="1"} 2
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="simple",version="1"} 64000
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="simple",version="1"} 3
"""


def test_triton_counters_are_summed_over_models_failures_included() -> None:
    assert parse(METRICS) == Counters(requests=42, duration_us=64000)


def test_rates_are_requests_per_second_and_mean_latency_of_the_interval() -> None:
    measured = rates(Counters(10, 10_000), Counters(30, 50_000), elapsed_s=2.0)
    assert measured is not None and measured.rps == 10 and measured.latency_ms == 2.0


def test_an_idle_interval_has_no_latency_and_a_restart_has_no_rate() -> None:
    idle = rates(Counters(5, 100), Counters(5, 100), 1.0)
    assert idle is not None and idle.rps == 0 and idle.latency_ms is None
    assert rates(Counters(50, 9000), Counters(2, 100), 1.0) is None
