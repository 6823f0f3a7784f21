"""Envoy's configuration, derived from the gateway's settings and node view: pure functions.

    bootstrap()   the fixed part: the front listeners (HTTP, gRPC), the Python gateway's two
                  clusters, the loopback admin, and where the dynamic parts are read from
    clusters()    CDS: one cluster per model and one per model version, over the nodes that
                  have it READY, with the policy's balancer, ejection of failing hosts
    endpoints()   EDS: each of those clusters' nodes, so that a node coming or going changes
                  no cluster and drops no connection
    routes()      RDS: the fast path (a model's `infer` straight to its cluster), then
                  everything else to the Python gateway

Every resource is a JSON-ready dict in Envoy's v3 API; control.py writes them to files that
Envoy watches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tritonfleet.config import GatewayConfig, NodeRoute, Policy
from tritonfleet.protocol import NodeView

PYTHON_HTTP = "python_http"
PYTHON_GRPC = "python_grpc"
ROUTE_CONFIG = "gateway"
NODE_HEADER = "X-Tritonfleet-Node"
# Client connections Envoy holds at once; beyond it new ones are refused.
MAX_CONNECTIONS = 50_000
# Model names that can stand in a route's exact path and a cluster's name as they are; a model
# named otherwise is served by the Python gateway, which parses its URL.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")

_TYPES = "type.googleapis.com/envoy"
_CLUSTER = f"{_TYPES}.config.cluster.v3.Cluster"
_ASSIGNMENT = f"{_TYPES}.config.endpoint.v3.ClusterLoadAssignment"
_ROUTE_CONFIGURATION = f"{_TYPES}.config.route.v3.RouteConfiguration"
_HCM = f"{_TYPES}.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = f"{_TYPES}.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = f"{_TYPES}.extensions.upstreams.http.v3.HttpProtocolOptions"
_LEAST_REQUEST = f"{_TYPES}.extensions.load_balancing_policies.least_request.v3.LeastRequest"
_ROUND_ROBIN = f"{_TYPES}.extensions.load_balancing_policies.round_robin.v3.RoundRobin"
_DOWNSTREAM_CONNECTIONS = (
    f"{_TYPES}.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)
# Envoy's defaults (1024 requests, 3 retries in flight per cluster) would refuse load that the
# nodes can take and the retries of a failover; the nodes' own limits apply (issue 16 adds
# the gateway's).
_UNBOUNDED = 1_000_000
_NO_CIRCUIT_BREAKER = {
    "thresholds": [
        {
            "max_connections": _UNBOUNDED,
            "max_pending_requests": _UNBOUNDED,
            "max_requests": _UNBOUNDED,
            "max_retries": _UNBOUNDED,
        }
    ]
}
# No `x-envoy-*` header reaches a client or a node: what the gateway answers is what a Triton
# answers (and `server` is passed through from the node, which sends none).
_ROUTER_FILTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": _ROUTER, "suppress_envoy_headers": True},
}
_BUFFER = f"{_TYPES}.extensions.filters.http.buffer.v3.Buffer"
_BUFFER_PER_ROUTE = f"{_TYPES}.extensions.filters.http.buffer.v3.BufferPerRoute"
_LUA = f"{_TYPES}.extensions.filters.http.lua.v3.Lua"
_LUA_PER_ROUTE = f"{_TYPES}.extensions.filters.http.lua.v3.LuaPerRoute"
_PREVIOUS_HOSTS = f"{_TYPES}.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"


@dataclass(frozen=True)
class Files:
    """Where Envoy reads its dynamic resources: one directory, watched for renames into it."""

    directory: str

    @property
    def clusters(self) -> str:
        return f"{self.directory}/clusters.json"

    @property
    def routes(self) -> str:
        return f"{self.directory}/routes.json"

    def endpoints(self, cluster: str) -> str:
        return f"{self.directory}/endpoints-{cluster}.json"


@dataclass(frozen=True)
class Ports:
    """The front door Envoy listens on, its admin, and the Python gateway behind it."""

    host: str
    http: int
    grpc: int
    admin: int
    python_http: int
    python_grpc: int


MODEL_CLUSTER_PREFIX = "model."


def model_cluster(model: str, version: str | None = None) -> str:
    name = f"{MODEL_CLUSTER_PREFIX}{model}"
    return name if version is None else f"{name}.v{version}"


def served(nodes: Iterable[NodeView]) -> dict[str, list[NodeView]]:
    """Each model cluster's nodes: the schedulable ones with the model (at that version) READY,
    for the models whose names can be routed as they are."""
    members: dict[str, list[NodeView]] = {}
    for node in sorted(nodes, key=lambda n: n.node_id):
        if not node.schedulable:
            continue
        for ref in node.models:
            if _PLAIN_NAME.fullmatch(ref.name) and _PLAIN_NAME.fullmatch(ref.version):
                for name in (model_cluster(ref.name), model_cluster(ref.name, ref.version)):
                    if node not in members.setdefault(name, []):
                        members[name].append(node)
    return members


def bootstrap(ports: Ports, files: Files, gw: GatewayConfig, request_ids: bool) -> dict[str, Any]:
    """`request_ids`: Envoy makes up an `X-Request-ID` for a request without one. Not with
    payments on, where the Python gateway must tell a client's id (which it checks against the
    ledger) from its own."""
    return {
        "node": {"id": "tritonfleet-gateway", "cluster": "tritonfleet"},
        "admin": {"address": _address("127.0.0.1", ports.admin)},
        "dynamic_resources": {"cds_config": _file_source(files.clusters, files.directory)},
        "static_resources": {
            "listeners": [
                _listener("http", ports.host, ports.http, _http_manager(files, gw, request_ids)),
                _listener("grpc", ports.host, ports.grpc, _grpc_manager(gw)),
            ],
            "clusters": [
                _python_cluster(PYTHON_HTTP, ports.python_http, gw, http2=False),
                _python_cluster(PYTHON_GRPC, ports.python_grpc, gw, http2=True),
            ],
        },
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}]},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _DOWNSTREAM_CONNECTIONS,
                        "max_active_downstream_connections": MAX_CONNECTIONS,
                    },
                }
            ]
        },
    }


def clusters(names: Iterable[str], files: Files, gw: GatewayConfig, policy: Policy) -> dict[str, Any]:
    return {"resources": [_model_cluster(name, files, gw, policy) for name in sorted(names)]}


def endpoints(cluster: str, nodes: Iterable[NodeView], route: NodeRoute) -> dict[str, Any]:
    lb_endpoints = [
        {
            "endpoint": {
                "address": _url_address(
                    node.manager_url if route is NodeRoute.MANAGER else node.triton_http_url
                )
            },
            "metadata": {"filter_metadata": {"tritonfleet": {"node_id": node.node_id}}},
        }
        for node in nodes
    ]
    assignment = {
        "@type": _ASSIGNMENT,
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": lb_endpoints}],
    }
    return {"resources": [assignment]}


def routes(names: Iterable[str], gw: GatewayConfig, fast: bool) -> dict[str, Any]:
    """The route table: with `fast`, a model's `infer` goes straight to its cluster; anything
    else (and everything without `fast`) to the Python gateway."""
    fast_routes = [_infer_route(name, gw) for name in sorted(names)] if fast else []
    python = {
        "name": "the request",
        "match": {"prefix": "/"},
        "route": {"cluster": PYTHON_HTTP, "timeout": "0s"},
        # The Python gateway parses and bounds bodies itself.
        "typed_per_filter_config": {
            "envoy.filters.http.buffer": {"@type": _BUFFER_PER_ROUTE, "disabled": True},
            "envoy.filters.http.lua": {"@type": _LUA_PER_ROUTE, "disabled": True},
        },
    }
    return {
        "resources": [
            {
                "@type": _ROUTE_CONFIGURATION,
                "name": ROUTE_CONFIG,
                "virtual_hosts": [{"name": "gateway", "domains": ["*"], "routes": [*fast_routes, python]}],
            }
        ]
    }


def _infer_route(cluster: str, gw: GatewayConfig) -> dict[str, Any]:
    model, _, version = cluster.removeprefix(MODEL_CLUSTER_PREFIX).partition(".v")
    path = f"/v2/models/{model}/versions/{version}/infer" if version else f"/v2/models/{model}/infer"
    return {
        # What Envoy's own 503 names (_triton_errors), in the Python gateway's words.
        "name": f"model '{model}' version {version}" if version else f"model '{model}'",
        "match": {"path": path},
        "route": {
            "cluster": cluster,
            "timeout": _duration(gw.request_timeout_s),
            "retry_policy": {
                # Before any answer, on another node: what the Python gateway retries too.
                # A reset after the request was sent may run an inference twice, on two nodes; as in
                # the Python gateway, stateless inference may take that (routing.py).
                "retry_on": "connect-failure,refused-stream,reset,retriable-status-codes",
                "retriable_status_codes": [503],
                "num_retries": max(0, gw.max_attempts - 1),
                "retry_host_predicate": [
                    {
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {"@type": _PREVIOUS_HOSTS},
                    }
                ],
                "host_selection_retry_max_attempts": 5,
                # At once, as the Python gateway retries: the next node is another one.
                "retry_back_off": {"base_interval": "0.001s", "max_interval": "0.010s"},
            },
        },
        "response_headers_to_add": [
            {
                "header": {"key": NODE_HEADER, "value": "%UPSTREAM_METADATA(tritonfleet:node_id)%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


# Triton answers 500 to a body it cannot parse; the client's mistake deserves a 400, as the
# Python gateway answers (http/routes.py). Only a 500's body is read.
_CLIENTS_MISTAKE = """
function envoy_on_response(response)
  if response:headers():get(":status") ~= "500" then
    return
  end
  local body = response:body()
  local start = '{"error":"failed to parse the request JSON buffer'
  if body ~= nil and body:length() >= #start and body:getBytes(0, #start) == start then
    response:headers():replace(":status", "400")
  end
end
"""


def _model_cluster(name: str, files: Files, gw: GatewayConfig, policy: Policy) -> dict[str, Any]:
    return {
        "@type": _CLUSTER,
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": _file_source(files.endpoints(name), files.directory)},
        "connect_timeout": _duration(gw.connect_timeout_s),
        "load_balancing_policy": {"policies": [_balancer(policy)]},
        "outlier_detection": {
            # A node that fails before answering (refused, reset, timed out) or answers 502-504 is
            # ejected at once, for a back-off that doubles, as the Python gateway's Ejector does.
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": gw.eject_after_failures,
            "enforcing_consecutive_local_origin_failure": 100,
            "consecutive_gateway_failure": gw.eject_after_failures,
            "enforcing_consecutive_gateway_failure": 100,
            "enforcing_consecutive_5xx": 0,
            "enforcing_success_rate": 0,
            "base_ejection_time": _duration(gw.eject_base_s),
            "max_ejection_time": _duration(gw.eject_max_s),
            "max_ejection_percent": 100,
            "interval": "1s",
        },
        "circuit_breakers": _NO_CIRCUIT_BREAKER,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }


def _balancer(policy: Policy) -> dict[str, Any]:
    if policy is Policy.ROUND_ROBIN:
        return {"typed_extension_config": {"name": "round_robin", "typed_config": {"@type": _ROUND_ROBIN}}}
    least = {"@type": _LEAST_REQUEST, "choice_count": 2}
    if policy is Policy.LEAST_OUTSTANDING:
        least["selection_method"] = "FULL_SCAN"  # the fewest in flight of all, not of two
    return {"typed_extension_config": {"name": "least_request", "typed_config": least}}


def _http_manager(files: Files, gw: GatewayConfig, request_ids: bool) -> dict[str, Any]:
    return {
        "@type": _HCM,
        "stat_prefix": "http",
        "codec_type": "AUTO",
        "rds": {
            "route_config_name": ROUTE_CONFIG,
            "config_source": _file_source(files.routes, files.directory),
        },
        "http_filters": [
            # The whole body before a node is asked: 413 over the limit, and a body to retry with.
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {"@type": _BUFFER, "max_request_bytes": gw.max_body_bytes},
            },
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {"@type": _LUA, "default_source_code": {"inline_string": _CLIENTS_MISTAKE}},
            },
            _ROUTER_FILTER,
        ],
        "server_header_transformation": "PASS_THROUGH",
        "generate_request_id": request_ids,
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        "request_headers_timeout": _duration(10.0),
        "stream_idle_timeout": _duration(gw.request_timeout_s),
        "local_reply_config": _triton_errors(gw),
    }


def _grpc_manager(gw: GatewayConfig) -> dict[str, Any]:
    """gRPC goes to the Python gateway as it is: the model name is inside the message."""
    return {
        "@type": _HCM,
        "stat_prefix": "grpc",
        "codec_type": "HTTP2",
        "route_config": {
            "name": "grpc",
            "virtual_hosts": [
                {
                    "name": "grpc",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": PYTHON_GRPC, "timeout": "0s"}}
                    ],
                }
            ],
        },
        "http_filters": [_ROUTER_FILTER],
        "http2_protocol_options": {},
        "server_header_transformation": "PASS_THROUGH",
        "stream_idle_timeout": "0s",
        "request_headers_timeout": _duration(10.0),
    }


def _triton_errors(gw: GatewayConfig) -> dict[str, Any]:
    """Envoy's own answers in Triton's shape: `{"error": ...}`, 503 with Retry-After."""
    unavailable = {
        "filter": {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {"default_value": 503, "runtime_key": "tritonfleet.unavailable"},
                }
            }
        },
        "body_format_override": {
            "json_format": {"error": "no node could serve %ROUTE_NAME% now"},
            "content_type": "application/json",
        },
        "headers_to_add": [
            {
                "header": {"key": "Retry-After", "value": str(gw.retry_after_s)},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }
    too_large = {
        "filter": {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {"default_value": 413, "runtime_key": "tritonfleet.too_large"},
                }
            }
        },
        "body": {"inline_string": f"request body exceeds {gw.max_body_bytes} bytes"},
    }
    timeout = {
        "filter": {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {"default_value": 504, "runtime_key": "tritonfleet.timeout"},
                }
            }
        },
        "body": {"inline_string": "the request's deadline ran out before a node answered"},
    }
    return {
        "mappers": [unavailable, too_large, timeout],
        "body_format": {"json_format": {"error": "%LOCAL_REPLY_BODY%"}, "content_type": "application/json"},
    }


def _python_cluster(name: str, port: int, gw: GatewayConfig, http2: bool) -> dict[str, Any]:
    protocol: dict[str, Any] = {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": _duration(gw.connect_timeout_s),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address("127.0.0.1", port)}}]}],
        },
        "circuit_breakers": _NO_CIRCUIT_BREAKER,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicit_http_config": protocol,
            }
        },
    }


def _listener(name: str, host: str, port: int, manager: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": _address(host, port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _file_source(path: str, directory: str) -> dict[str, Any]:
    # Envoy reloads the file when a new one is renamed into the watched directory.
    return {
        "path_config_source": {"path": path, "watched_directory": {"path": directory}},
        "resource_api_version": "V3",
    }


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _url_address(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return _address(parts.hostname, parts.port)


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"
