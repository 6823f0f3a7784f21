"""10,000 client connections held open at once through the gateway, on both data planes."""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.cluster import DATA_PLANES, cluster, simple_body
from tests.e2e.connections import held_connections
from tritonfleet.up.cluster import LocalCluster

CONNECTIONS = 10_000


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # Each connection is a file descriptor here and one at the gateway, which inherits the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < CONNECTIONS + 1024:
        pytest.fail(f"{CONNECTIONS} connections need RLIMIT_NOFILE above {CONNECTIONS + 1024}: it is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    local = cluster(
        tmp_path_factory.mktemp("connections"),
        {"node-1": ["simple"], "node-2": ["simple"]},
        gateway={"data_plane": request.param},
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_ten_thousand_connections_are_held_and_each_served(fleet: LocalCluster) -> None:
    url = httpx.URL(fleet.gateway_url)
    body = json.dumps(simple_body(1))
    held = asyncio.run(
        held_connections(
            url.host, url.port or 80, CONNECTIONS, "/v2/models/simple/infer", body, concurrency=256
        )
    )
    assert (held["held"], held["errors"]) == (CONNECTIONS, {})
