"""Triton's routes that no node answers for the cluster, and routes Triton does not know,
answered as Triton answers them: JSON `{"error": ...}` with Triton's status."""

from __future__ import annotations

import json

import pytest

from tests.gateway.http.conftest import StartGateway
from tritonfleet.gateway import unrouted

SHM = unrouted.SHARED_MEMORY

ANSWERS = [
    # Shared memory, as a Triton with client shared memory off answers it.
    ("GET", "/v2/systemsharedmemory/status", 200, []),
    ("GET", "/v2/cudasharedmemory/status", 200, []),
    (
        "GET",
        "/v2/systemsharedmemory/region/r0/status",
        404,
        "Unable to find system shared memory region: 'r0'",
    ),
    ("GET", "/v2/cudasharedmemory/region/r0/status", 404, "Unable to find cuda shared memory region: 'r0'"),
    ("POST", "/v2/systemsharedmemory/region/r0/register", 501, SHM),
    ("POST", "/v2/systemsharedmemory/register", 501, SHM),
    ("POST", "/v2/systemsharedmemory/unregister", 501, SHM),
    ("POST", "/v2/systemsharedmemory/region/r0/unregister", 501, SHM),
    ("POST", "/v2/cudasharedmemory/region/r0/register", 501, SHM),
    ("POST", "/v2/cudasharedmemory/unregister", 501, SHM),
    # Per node.
    ("GET", "/v2/trace/setting", 501, unrouted.TRACE),
    ("POST", "/v2/trace/setting", 501, unrouted.TRACE),
    ("GET", "/v2/models/simple/trace/setting", 501, unrouted.TRACE),
    ("POST", "/v2/models/simple/trace/setting", 501, unrouted.TRACE),
    ("GET", "/v2/logging", 501, unrouted.LOG),
    ("POST", "/v2/logging", 501, unrouted.LOG),
    # Triton checks the method first.
    ("POST", "/v2/systemsharedmemory/status", 405, "Method Not Allowed"),
    ("GET", "/v2/cudasharedmemory/register", 405, "Method Not Allowed"),
    ("PUT", "/v2/trace/setting", 405, "Method Not Allowed"),
    ("DELETE", "/v2/logging", 405, "Method Not Allowed"),
    ("GET", "/v2/models/simple/infer", 405, "Method Not Allowed"),
    ("POST", "/v2/health/live", 405, "Method Not Allowed"),
    ("GET", "/v2/repository/index", 405, "Method Not Allowed"),
    # Routes Triton does not know.
    ("GET", "/nope", 404, "Not Found"),
    ("DELETE", "/nope", 404, "Not Found"),
    ("POST", "/v2/nope", 404, "Not Found"),
    ("GET", "/v2/models/simple/nope", 404, "Not Found"),
    ("GET", "/v2/models/simple/versions/1/trace/setting", 404, "Not Found"),
    ("GET", "/v2/systemsharedmemory/region/r0/nope", 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "path", "status", "answer"), ANSWERS)
async def test_each_route_answers_as_triton_does(
    gateway: StartGateway, method: str, path: str, status: int, answer: object
) -> None:
    client, _ = await gateway([])
    response = await client.request(method, path, data=b"{}" if method == "POST" else None)
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = json.loads(await response.read())
    assert body == (answer if status == 200 else {"error": answer})


async def test_a_wrong_method_names_the_methods_the_route_takes(gateway: StartGateway) -> None:
    client, _ = await gateway([])
    response = await client.get("/v2/systemsharedmemory/register")
    assert response.headers["Allow"] == "POST"


async def test_a_named_repository_is_the_clusters_index_as_triton_ignores_the_name(
    gateway: StartGateway,
) -> None:
    client, _ = await gateway([])
    response = await client.post("/v2/repository/any/index", data=b"{}")
    assert response.status == 200 and await response.json() == []
