"""TLS at the gateway's front door: Triton's own clients infer over TLS on both ports, with
either data plane, and a plaintext client is refused there."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent.ssl
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.cluster import DATA_PLANES, cluster, simple_body
from tritonfleet.config import ConfigError, GatewayConfig, load_config
from tritonfleet.gateway.command import http_tls
from tritonfleet.gateway.envoy.tls import downstream_tls
from tritonfleet.up.cluster import LocalCluster


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("the TLS tests make their certificates with the openssl command: install it")
    subprocess.run([binary, *args], check=True, capture_output=True)


def issue_certificates(directory: Path) -> Certificates:
    """A CA of this test alone, and a server certificate it signs, for 127.0.0.1 and localhost."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *new_key, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=ca"
    )
    openssl("req", *new_key, "-keyout", str(key), "-out", str(request), "-subj", "/CN=127.0.0.1")
    signed_by_ca = ["-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2"]
    openssl(
        "x509", "-req", "-in", str(request), *signed_by_ca, "-extfile", str(extensions), "-out", str(cert)
    )
    return Certificates(ca, cert, key)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module", params=DATA_PLANES)
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[LocalCluster]:
    local = cluster(
        tmp_path_factory.mktemp("tls"),
        {"node-1": ["simple"]},
        gateway={
            "data_plane": request.param,
            "tls_cert_file": str(certificates.cert),
            "tls_key_file": str(certificates.key),
        },
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


def http_address(fleet: LocalCluster) -> str:
    return f"{fleet.config.gateway.host}:{fleet.config.gateway.port}"


def grpc_address(fleet: LocalCluster) -> str:
    return f"{fleet.config.gateway.host}:{fleet.config.gateway.grpc_port}"


def simple_inputs(infer_input: type[Any]) -> list[Any]:
    """`simple`'s inputs as tritonclient's `infer_input` class (HTTP's or gRPC's) holds them."""
    inputs = [infer_input(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    inputs[1].set_data_from_numpy(np.full((1, 16), 3, dtype=np.int32))
    return inputs


def test_tritonclient_http_infers_over_tls(fleet: LocalCluster, certificates: Certificates) -> None:
    assert fleet.gateway_url.startswith("https://")
    client = httpclient.InferenceServerClient(
        http_address(fleet),
        ssl=True,
        # Verifies the chain and the host name, against the test's CA.
        ssl_context_factory=gevent.ssl.create_default_context,
        ssl_options={"ca_certs": str(certificates.ca)},
    )
    with client:
        assert client.is_server_ready()
        result = client.infer("simple", simple_inputs(httpclient.InferInput))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0")[0], np.arange(16) + 3)


def test_tritonclient_grpc_infers_over_tls(fleet: LocalCluster, certificates: Certificates) -> None:
    with grpcclient.InferenceServerClient(
        grpc_address(fleet), ssl=True, root_certificates=str(certificates.ca)
    ) as client:
        assert client.is_server_ready()
        result = client.infer("simple", simple_inputs(grpcclient.InferInput))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0")[0], np.arange(16) + 3)


def test_plaintext_http_is_refused(fleet: LocalCluster) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://{http_address(fleet)}/v2/models/simple/infer", json=simple_body(3), timeout=5.0)


def test_plaintext_grpc_is_refused(fleet: LocalCluster) -> None:
    with (
        grpcclient.InferenceServerClient(grpc_address(fleet)) as client,
        pytest.raises(InferenceServerException, match="UNAVAILABLE"),
    ):
        client.is_server_live(client_timeout=5.0)


def test_a_client_that_does_not_trust_the_certificate_is_refused(fleet: LocalCluster) -> None:
    """No public CA (httpx trusts certifi's) signed the test's certificate: it is really verified."""
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{fleet.gateway_url}/healthz", timeout=5.0)


def test_a_certificate_without_its_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set both or neither"):
        load_config(None, env={}, overrides={"gateway": {"tls_cert_file": str(tmp_path / "server.pem")}})


def test_a_key_that_is_not_the_certificates_is_a_config_error(certificates: Certificates) -> None:
    gw = GatewayConfig(tls_cert_file=certificates.cert, tls_key_file=certificates.ca.with_name("ca.key"))
    with pytest.raises(ConfigError, match="tls_key_file"):
        http_tls(gw)


def test_envoy_serves_the_configured_files_with_the_listeners_alpn() -> None:
    assert downstream_tls(GatewayConfig(), ["h2"]) is None
    gw = GatewayConfig(tls_cert_file=Path("server.pem"), tls_key_file=Path("server.key"))
    socket = downstream_tls(gw, ["h2", "http/1.1"])
    assert socket is not None
    context = socket["typed_config"]["common_tls_context"]
    assert context["tls_certificates"] == [
        {"certificate_chain": {"filename": "server.pem"}, "private_key": {"filename": "server.key"}}
    ]
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
