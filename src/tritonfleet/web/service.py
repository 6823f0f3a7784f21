"""What the routes share, built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from tritonfleet.config import FleetConfig
from tritonfleet.web.catalog import Catalog
from tritonfleet.web.estimates import StepTimes
from tritonfleet.web.monitor import ClusterMonitor
from tritonfleet.web.upstream import Upstream
from tritonfleet.web.wallet import Wallet


@dataclass(frozen=True)
class WebState:
    config: FleetConfig
    gateway: Upstream
    catalog: Catalog
    monitor: ClusterMonitor
    wallet: Wallet
    step_times: StepTimes


def state_of(request: Request) -> WebState:
    state = request.app.state.web
    assert isinstance(state, WebState)
    return state
