"""tritonclient's one auth plugin, `BasicAuth(user, API key)`, pays for inference as a Bearer
key does: over HTTP and gRPC (unary and streams), on both data planes, charged exactly once; a
wrong or malformed password is refused before any node is asked."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc.auth import BasicAuth as GrpcBasicAuth
from tritonclient.http.auth import BasicAuth
from tritonclient.utils import InferenceServerException

from tests.e2e.cluster import DATA_PLANES, cluster, paid_sections, simple_body
from tests.e2e.test_payments import PRICE, funded_user, gateway_credit, ledger
from tritonfleet.up.cluster import LocalCluster


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("basic-auth")
    local = cluster(tmp, {"node-1": ["simple"]}, **paid_sections(tmp), gateway={"data_plane": request.param})
    try:
        local.start()
        yield local
    finally:
        local.stop()


def simple_inputs(module: Any) -> list[Any]:
    """`simple`'s inputs for tritonclient's `http` or `grpc` module: 0..15 and ones."""
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    inputs[1].set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    return inputs


def charges(fleet: LocalCluster, account: str) -> list[tuple[str, int]]:
    with ledger(fleet) as book:
        return [(charge.request_id, charge.amount) for charge in book.usage(account)]


def test_http_infers_with_basic_auth_and_is_charged_once(
    fleet: LocalCluster, http: httpclient.InferenceServerClient
) -> None:
    user, key = funded_user(fleet, credit=10)
    http.register_plugin(BasicAuth("anyone", key))
    result = http.infer("simple", simple_inputs(httpclient), headers={"X-Request-ID": "basic-http"})
    assert result.as_numpy("OUTPUT0").tolist() == [list(range(1, 17))]
    assert charges(fleet, user.address) == [("basic-http", PRICE)]
    assert gateway_credit(fleet, key)["charged"] == PRICE


def test_grpc_infers_and_streams_with_basic_auth_each_charged_once(
    fleet: LocalCluster, grpc: grpcclient.InferenceServerClient
) -> None:
    user, key = funded_user(fleet, credit=10)
    grpc.register_plugin(GrpcBasicAuth(user.address, key))
    result = grpc.infer("simple", simple_inputs(grpcclient), headers={"x-request-id": "basic-grpc"})
    assert result.as_numpy("OUTPUT1").tolist() == [list(range(-1, 15))]
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        grpc.async_stream_infer("simple", simple_inputs(grpcclient))
        streamed, error = answers.get(timeout=20)
    finally:
        grpc.stop_stream()
    assert error is None and streamed.as_numpy("OUTPUT0").tolist() == [list(range(1, 17))]
    paid = charges(fleet, user.address)
    assert sorted(amount for _, amount in paid) == [PRICE, PRICE]
    assert ("basic-grpc", PRICE) in paid, "the unary call under its own request id"


def test_a_wrong_password_is_refused_and_charges_nothing(
    fleet: LocalCluster, http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    user, key = funded_user(fleet, credit=10)
    http.register_plugin(BasicAuth("anyone", key + "x"))
    grpc.register_plugin(GrpcBasicAuth("anyone", key + "x"))
    for client, module, status in (
        (http, httpclient, "401"),
        (grpc, grpcclient, "StatusCode.UNAUTHENTICATED"),
    ):
        with pytest.raises(InferenceServerException) as raised:
            client.infer("simple", simple_inputs(module))
        assert (raised.value.status(), raised.value.message()) == (status, "unknown or revoked API key")
    assert charges(fleet, user.address) == []


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ("%%%", "malformed Basic credentials: not base64 of 'user:password'"),
        ("dXNlcg==", "malformed Basic credentials: no ':' between user and password"),  # "user"
        ("dXNlcjo=", "malformed Basic credentials: the password is empty"),  # "user:"
    ],
    ids=["not-base64", "no-colon", "empty-password"],
)
def test_malformed_basic_credentials_are_a_401_saying_what_is_wrong(
    fleet: LocalCluster, credentials: str, message: str
) -> None:
    answer = httpx.post(
        f"{fleet.gateway_url}/v2/models/simple/infer",
        json=simple_body(1),
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert answer.status_code == 401
    assert answer.json() == {"error": f"{message}; send the API key as the password"}
