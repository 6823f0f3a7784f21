"""The floor of the paid fast path, for bench.paid: Envoy's external authorization to a Python
authorizer before the node, and a Lua call back to it in the response phase that records the
charge before the answer goes out (gateway/http/authorizer.py; completing the charge from
Envoy's access log instead would answer first, and a crash in between would serve the
inference free).

Here the authorizer is a stub that answers 200 at once to both calls, checking no key and
writing no ledger: what the design costs in Envoy and in Python's HTTP handling alone. Beside
the real one (`paid_envoy`) in the same run, the difference is what holding and charging cost.

    .venv/bin/python -m bench.extauthz --stub PORT     (the stub authorizer, on uvloop)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.overhead import Target, service, wait_infer_ok
from tritonfleet.gateway.envoy.binary import locate
from tritonfleet.net import free_port

_TYPES = "type.googleapis.com/envoy.extensions"
# The charge, before the answer: the response waits for the authorizer's 200 (httpCall is
# synchronous), and an answer whose charge failed is not given.
_COMMIT = """
function envoy_on_response(response)
  local status = response:headers():get(":status")
  local answer = response:httpCall(
    "authorizer",
    {[":method"] = "POST", [":path"] = "/commit", [":authority"] = "authorizer", ["x-status"] = status},
    "",
    1000
  )
  if answer[":status"] ~= "200" then
    response:headers():replace(":status", "503")
  end
end
"""


def bootstrap(port: int, admin: int, triton: tuple[str, int], authorizer: int) -> dict[str, Any]:
    manager = {
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "http",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "triton", "timeout": "60s"}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.ext_authz",
                "typed_config": {
                    "@type": f"{_TYPES}.filters.http.ext_authz.v3.ExtAuthz",
                    "transport_api_version": "V3",
                    "failure_mode_allow": False,
                    "http_service": {
                        "server_uri": {
                            "uri": f"http://127.0.0.1:{authorizer}",
                            "cluster": "authorizer",
                            "timeout": "1s",
                        },
                        "path_prefix": "/authorize",
                        "authorization_request": {
                            "allowed_headers": {"patterns": [{"exact": "authorization"}]}
                        },
                    },
                },
            },
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {
                    "@type": f"{_TYPES}.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": _COMMIT},
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "admin": {"address": _address("127.0.0.1", admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": _address("127.0.0.1", port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [_static("triton", *triton), _static("authorizer", "127.0.0.1", authorizer)],
        },
    }


def _static(name: str, host: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
    }


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


@contextlib.contextmanager
def extauthz_floor(triton_url: str, log_dir: Path, headers: dict[str, str]) -> Iterator[Target]:
    """Envoy (one worker, as the other Envoy targets) with the stub authorizer, in front of
    the Triton at `triton_url`."""
    authorizer, port, admin = free_port(), free_port(), free_port()
    node = urlsplit(triton_url)
    assert node.hostname is not None and node.port is not None, triton_url
    with tempfile.TemporaryDirectory(prefix="extauthz-") as run_dir:
        config = Path(run_dir) / "bootstrap.json"
        config.write_text(json.dumps(bootstrap(port, admin, (node.hostname, node.port), authorizer)))
        stub_argv = [sys.executable, "-m", "bench.extauthz", "--stub", str(authorizer)]
        envoy_argv = [str(locate()), "-c", str(config), "--concurrency", "1", "--use-dynamic-base-id"]
        envoy_argv += ["--log-level", "warning"]
        with (
            service("extauthz_stub", stub_argv, dict(os.environ), log_dir) as stub,
            service("extauthz_envoy", envoy_argv, dict(os.environ), log_dir) as envoy,
        ):
            url = f"http://127.0.0.1:{port}"
            wait_infer_ok(url, 60.0, envoy, headers=headers)
            yield Target("extauthz_floor", url, {"envoy": envoy.pid, "authorizer": stub.pid}, python=True)


def serve_stub(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def allow(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", allow)
    web.run_app(app, host="127.0.0.1", port=port, loop=uvloop.new_event_loop(), access_log=None, print=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stub", type=int, required=True)
    serve_stub(parser.parse_args().stub)
