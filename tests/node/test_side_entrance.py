"""A node is no side entrance: neither its manager nor its Triton lets a client who can reach the
ports control the repository, shared memory, trace or logging; Triton's environment holds no
fleet secret. A real manager and tritonserver, in explicit model control (where an unrestricted
Triton would unload a model on request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from tests.node.fakes import TOKEN, FakeHealthChecker, node_config, wait_until
from tests.node.test_service import infer_simple, running
from tritonfleet.net import host_port
from tritonfleet.node.service import NodeManager
from tritonfleet.protocol import NodeState
from tritonfleet.triton_admin import ADMIN_HEADER, GRPC_ADMIN_METADATA, admin_key

# Each of Triton's routes that change the node or read its memory, as (method, path).
ADMIN_ROUTES = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/simple/unload"),
    ("POST", "/v2/repository/models/simple/load"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("POST", "/v2/systemsharedmemory/region/r/register"),
    ("POST", "/v2/systemsharedmemory/unregister"),
    ("GET", "/v2/cudasharedmemory/status"),
    ("POST", "/v2/cudasharedmemory/region/r/register"),
    ("GET", "/v2/logging"),
    ("POST", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
    ("POST", "/v2/trace/setting"),
    ("GET", "/v2/models/simple/trace/setting"),
]
# An escaped "/" that would reach the repository if only the decoded path were checked.
SMUGGLED = "/v2/models/x%2F..%2F..%2Frepository%2Fmodels%2Fsimple%2Funload"


def environment_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


# One node for the module: its tests share the module's event loop with the fixture.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NodeManager]:
    tmp_path = tmp_path_factory.mktemp("side-entrance")
    with pytest.MonkeyPatch.context() as env:
        # As a deployment passes it: the manager's environment holds the cluster token.
        env.setenv("TRITONFLEET_CLUSTER_TOKEN", TOKEN)
        async with FakeHealthChecker() as checker:
            config = node_config(tmp_path, [checker.url], model_control_mode="explicit")
            async with running(config) as manager:
                await wait_until(lambda: manager.status.state is NodeState.READY, 30, "ready")
                yield manager


@pytest.mark.parametrize(("method", "path"), [*ADMIN_ROUTES, ("POST", SMUGGLED)])
async def test_the_manager_forwards_no_admin_route(node: NodeManager, method: str, path: str) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.request(method, f"{node.manager_url}{path}", content=b"{}")
    assert answer.status_code == 403
    assert "nodes serve only inference and metadata" in answer.json()["error"]


async def test_the_manager_still_forwards_inference_and_metadata(node: NodeManager) -> None:
    async with httpx.AsyncClient() as client:
        for path in ("/v2", "/v2/health/ready", "/v2/models/simple", "/v2/models/simple/versions/1/ready"):
            assert (await client.get(f"{node.manager_url}{path}")).status_code == 200, path
        config = (await client.get(f"{node.manager_url}/v2/models/simple/config")).json()
        stats = (await client.get(f"{node.manager_url}/v2/models/simple/stats")).json()
    assert config["name"] == "simple"
    assert stats["model_stats"][0]["name"] == "simple"
    total, _ = await asyncio.to_thread(infer_simple, node.manager_url)
    assert total.tolist() == [[i + 3 for i in range(16)]]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_triton_refuses_its_admin_routes_without_the_key(
    node: NodeManager, method: str, path: str
) -> None:
    triton = node.local_urls().http
    async with httpx.AsyncClient() as client:
        answer = await client.request(method, f"{triton}{path}", content=b"{}")
        ready = await client.get(f"{triton}/v2/models/simple/ready")
    assert answer.status_code == 403, answer.text
    assert ADMIN_HEADER in answer.json()["error"]
    assert ready.status_code == 200  # the unload was refused


async def test_triton_refuses_unload_over_grpc_without_the_key(node: NodeManager) -> None:
    client = triton_grpc.InferenceServerClient(host_port(node.local_urls().grpc))
    try:
        with pytest.raises(InferenceServerException, match=ADMIN_HEADER):
            await asyncio.to_thread(client.unload_model, "simple")
        assert await asyncio.to_thread(client.is_model_ready, "simple")
    finally:
        client.close()


async def test_the_key_derived_from_the_cluster_token_opens_them(node: NodeManager) -> None:
    """So the restriction is the key's doing; the cluster-wide repository index relies on it."""
    triton = node.local_urls().http
    async with httpx.AsyncClient(headers={ADMIN_HEADER: admin_key(TOKEN)}) as client:
        index = await client.post(f"{triton}/v2/repository/index")
        logging = await client.get(f"{triton}/v2/logging")
    assert [entry["name"] for entry in index.json()] == ["simple"]
    assert logging.status_code == 200
    client = triton_grpc.InferenceServerClient(host_port(node.local_urls().grpc))
    try:
        headers = {GRPC_ADMIN_METADATA: admin_key(TOKEN)}
        index = await asyncio.to_thread(client.get_model_repository_index, headers=headers, as_json=True)
    finally:
        client.close()
    assert [entry["name"] for entry in index["models"]] == ["simple"]


async def test_tritonserver_does_not_inherit_the_cluster_token(node: NodeManager) -> None:
    assert node.triton is not None
    server_pid = node.triton.server_pid()
    assert server_pid is not None
    environment = environment_of(server_pid)
    assert not [entry for entry in environment if entry.startswith(b"TRITONFLEET_CLUSTER_")]
    assert not [entry for entry in environment if TOKEN.encode() in entry]
    logged = node.triton.tail(lines=1000)
    assert admin_key(TOKEN) not in logged
    assert "<admin key>" in logged
