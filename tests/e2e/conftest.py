"""tritonclient's clients of a module's `fleet` (each e2e module defines its own cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tritonfleet.up.cluster import LocalCluster


@pytest.fixture
def http(fleet: LocalCluster) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(fleet.gateway_url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture
def grpc(fleet: LocalCluster) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(
        f"{fleet.config.gateway.host}:{fleet.config.gateway.grpc_port}"
    ) as client:
        yield client
