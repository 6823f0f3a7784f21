"""TLS on Envoy's front door, from gateway.tls_cert_file and tls_key_file: a pure function, as
resources.py's are. The Python gateway behind Envoy, on loopback, stays plaintext."""

from __future__ import annotations

from typing import Any

from tritonfleet.config import GatewayConfig

_DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def downstream_tls(gw: GatewayConfig, alpn: list[str]) -> dict[str, Any] | None:
    """The `transport_socket` of a listener's filter chain: TLS offering the `alpn` protocols
    (HTTP: h2 and http/1.1; gRPC: h2); None when TLS is off."""
    if gw.tls_cert_file is None or gw.tls_key_file is None:
        return None
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _DOWNSTREAM_TLS,
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                # Envoy runs in the gateway's directory: a relative path means the same file.
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(gw.tls_cert_file)},
                        "private_key": {"filename": str(gw.tls_key_file)},
                    }
                ],
                "alpn_protocols": alpn,
            },
        },
    }
