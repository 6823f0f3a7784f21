"""Envoy's configuration, derived from the gateway's settings and node view: pure functions.

    bootstrap()   the fixed part: the front listeners (HTTP, gRPC), the Python gateway's two
                  clusters, the admin socket, and where the dynamic parts are read from
    clusters()    CDS: one cluster per model and one per model version, over the nodes that
                  have it READY, with the policy's balancer, ejection of failing hosts, the
                  gateway's bounds on requests in flight; for HTTP (`model.*`, to Triton's
                  HTTP port) and for gRPC (`grpc.*`, its gRPC port)
    endpoints()   EDS: each of those clusters' nodes, so that a node coming or going changes
                  no cluster and drops no connection; a slow one (outliers.py) UNHEALTHY
    routes()      RDS: the fast path (a model's `infer` straight to its cluster, each attempt
                  within the model's attempt timeout, hedged past it), then
    grpc_routes()      everything else to the Python gateway; gRPC's `ModelInfer` is routed on
                  the model name a Lua filter reads from the message (_GRPC_MODEL)

Every resource is a JSON-ready dict in Envoy's v3 API; control.py writes them to files that
Envoy watches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tritonfleet.config import GatewayConfig, NodeRoute, Policy
from tritonfleet.gateway.access_log import envoy_access_log
from tritonfleet.gateway.envoy.tls import downstream_tls
from tritonfleet.gateway.http.authorizer import HOLD_HEADER, SECRET_HEADER, STATUS_HEADER
from tritonfleet.gateway.http.responses import CHARGE_HEADER, CREDIT_HEADER
from tritonfleet.gateway.request_ids import INVALID_REQUEST_ID, MAX_REQUEST_ID_CHARS
from tritonfleet.protocol import NodeView

PYTHON_HTTP = "python_http"
PYTHON_GRPC = "python_grpc"
AUTHORIZER = "authorizer"
ROUTE_CONFIG = "gateway"
GRPC_ROUTE_CONFIG = "grpc"
NODE_HEADER = "X-Tritonfleet-Node"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
# Set by the Lua filter from a gRPC `ModelInferRequest` (a client's own are replaced), matched by
# the gRPC routes, removed before the node.
MODEL_HEADER = "x-tritonfleet-model"
VERSION_HEADER = "x-tritonfleet-model-version"
# Client connections Envoy holds at once (issue 16 asks for 10,000 held without errors; each
# costs a file descriptor, so Envoy's RLIMIT_NOFILE must allow them too); beyond it new ones
# are refused.
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
# Python gateway can take; it bounds its own work (gateway/admission.py). The model clusters
# have the gateway's bounds instead (_circuit_breakers).
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
_EXT_AUTHZ = f"{_TYPES}.extensions.filters.http.ext_authz.v3.ExtAuthz"
_EXT_AUTHZ_PER_ROUTE = f"{_TYPES}.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
_GRPC_STATS = f"{_TYPES}.extensions.filters.http.grpc_stats.v3.FilterConfig"
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

    @property
    def grpc_routes(self) -> str:
        return f"{self.directory}/grpc-routes.json"

    def endpoints(self, cluster: str) -> str:
        return f"{self.directory}/endpoints-{cluster}.json"


@dataclass(frozen=True)
class Ports:
    """The front door Envoy listens on and the Python gateway behind it."""

    host: str
    http: int
    grpc: int
    python_http: int
    python_grpc: int


@dataclass(frozen=True)
class Authorizing:
    """Paid inference on the fast path: where the Python gateway authorizes and charges it
    (gateway/http/authorizer.py), the secret its calls carry, how long a call may take."""

    port: int
    secret: str = field(repr=False)
    timeout_s: float


MODEL_CLUSTER_PREFIX = "model."
GRPC_CLUSTER_PREFIX = "grpc."
CLUSTER_PREFIXES = (MODEL_CLUSTER_PREFIX, GRPC_CLUSTER_PREFIX)


def model_cluster(model: str, version: str | None = None, grpc: bool = False) -> str:
    name = f"{GRPC_CLUSTER_PREFIX if grpc else MODEL_CLUSTER_PREFIX}{model}"
    return name if version is None else f"{name}.v{version}"


def is_grpc(cluster: str) -> bool:
    return cluster.startswith(GRPC_CLUSTER_PREFIX)


def served(nodes: Iterable[NodeView]) -> dict[str, list[NodeView]]:
    """Each model cluster's nodes: the schedulable ones with the model (at that version) READY,
    for the models whose names can be routed as they are; gRPC clusters of the nodes with a
    gRPC address."""
    members: dict[str, list[NodeView]] = {}
    for node in sorted(nodes, key=lambda n: n.node_id):
        if not node.schedulable:
            continue
        protocols = (False, True) if node.triton_grpc_url else (False,)
        for ref in node.models:
            if not (_PLAIN_NAME.fullmatch(ref.name) and _PLAIN_NAME.fullmatch(ref.version)):
                continue
            for grpc in protocols:
                for version in (None, ref.version):
                    cluster_nodes = members.setdefault(model_cluster(ref.name, version, grpc), [])
                    if node not in cluster_nodes:
                        cluster_nodes.append(node)
    return members


def node_address(cluster: str, node: NodeView, route: NodeRoute) -> str:
    """host:port where a cluster reaches a node: Triton's gRPC port for gRPC (as the Python
    gateway, never through the manager), else Triton's HTTP port or the manager's."""
    if is_grpc(cluster):
        url = node.triton_grpc_url
    else:
        url = node.manager_url if route is NodeRoute.MANAGER else node.triton_http_url
    return url.split("://", 1)[-1].split("/", 1)[0]


def bootstrap(
    ports: Ports, admin_socket: str, files: Files, gw: GatewayConfig, paid: Authorizing | None
) -> dict[str, Any]:
    """Envoy's admin on `admin_socket`, for its user only. With `paid` (payments on), the
    authorizer holds and charges each fast-path request, and makes up the request id of one
    without (it must tell a client's id, which it checks against the ledger, from its own);
    else Envoy does."""
    python_clusters = [
        _python_cluster(PYTHON_HTTP, ports.python_http, gw, http2=False),
        _python_cluster(PYTHON_GRPC, ports.python_grpc, gw, http2=True),
    ]
    if paid is not None:
        python_clusters.append(_python_cluster(AUTHORIZER, paid.port, gw, http2=False))
    return {
        "node": {"id": "tritonfleet-gateway", "cluster": "tritonfleet"},
        "admin": {"address": {"pipe": {"path": admin_socket, "mode": 0o600}}},
        "dynamic_resources": {"cds_config": _file_source(files.clusters, files.directory)},
        "static_resources": {
            "listeners": [
                {
                    **_listener(
                        "http",
                        ports.host,
                        ports.http,
                        _http_manager(files, gw, paid),
                        downstream_tls(gw, ["h2", "http/1.1"]),
                    ),
                    # A paid answer is read whole before its charge, as a request body is
                    # before it goes to a node: each within the body limit.
                    **({} if paid is None else {"per_connection_buffer_limit_bytes": gw.max_body_bytes}),
                },
                _listener(
                    "grpc",
                    ports.host,
                    ports.grpc,
                    _grpc_manager(files, gw, request_ids=paid is None),
                    downstream_tls(gw, ["h2"]),
                ),
            ],
            "clusters": python_clusters,
        },
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}]},
        # Histograms' `interval` quantiles cover the last second: the recent p99 the attempt
        # timeouts follow (outliers.py).
        "stats_flush_interval": "1s",
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


def clusters(
    names: Iterable[str],
    files: Files,
    gw: GatewayConfig,
    policy: Policy,
    hosts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """`hosts`: each cluster's number of nodes, which bounds a gRPC cluster's requests
    (_circuit_breakers; one when not named)."""
    sizes = hosts or {}
    return {
        "resources": [_model_cluster(name, files, gw, policy, sizes.get(name, 1)) for name in sorted(names)]
    }


def endpoints(
    cluster: str, nodes: Iterable[NodeView], route: NodeRoute, slow: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """All of equal weight. Weights falling with the queue depth each node reports were tried
    and measured worse: in the skew scenario (docs/benchmarks.md, 3 rounds of 4 s, 2026-12-01)
    least request over all hosts had a p99 of 281 ms with them and 123 ms without, nginx's
    least_conn 122 ms. Envoy counts its own requests in flight exactly; a reported depth lags a
    heartbeat, counts those same requests again, and unequal weights turn Envoy's least-request
    balancer into a weighted schedule that keeps sending to a host that just became slow.

    The `slow` hosts (host:port, outliers.py) are UNHEALTHY: out of the balancer's rotation
    (unless most of the cluster is, Envoy's panic threshold), their requests in flight kept."""
    lb_endpoints = []
    for node in nodes:
        address = node_address(cluster, node, route)
        endpoint: dict[str, Any] = {
            "endpoint": {"address": _host_port_address(address)},
            "metadata": {"filter_metadata": {"tritonfleet": {"node_id": node.node_id}}},
        }
        if address in slow:
            endpoint["health_status"] = "UNHEALTHY"
        lb_endpoints.append(endpoint)
    assignment = {
        "@type": _ASSIGNMENT,
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": lb_endpoints}],
    }
    return {"resources": [assignment]}


def routes(
    names: Iterable[str],
    gw: GatewayConfig,
    paid: Authorizing | None,
    stateful: frozenset[str] = frozenset(),
    attempts_s: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The HTTP route table: a model's `infer` straight to its cluster (with `paid`, held and
    charged by the authorizer); anything else to the Python gateway. A `stateful` model (one
    with a sequence batcher) has no fast route: only the Python gateway reads a body's sequence
    id, to keep each sequence on one node (gateway/sequences.py). `attempts_s`: how long one
    attempt of each model may take (outliers.py; the ceiling for a model it does not name)."""
    http = sorted(name for name in names if not is_grpc(name) and model_of(name)[0] not in stateful)
    # A paid stream of events is charged on its first event, which the Python gateway does.
    kinds = FAST_ROUTES if paid is None else tuple(kind for kind in FAST_ROUTES if kind != "generate_stream")
    fast_routes = [_fast_route(name, kind, gw, paid, attempts_s or {}) for kind in kinds for name in http]
    # The Python gateway parses and bounds bodies itself, and charges what it serves.
    unfiltered: dict[str, Any] = {
        "envoy.filters.http.buffer": {"@type": _BUFFER_PER_ROUTE, "disabled": True},
        "envoy.filters.http.lua": {"@type": _LUA_PER_ROUTE, "disabled": True},
    }
    if paid is not None:
        unfiltered["envoy.filters.http.ext_authz"] = {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True}
    python = {
        "name": "the request",
        "match": {"prefix": "/"},
        "route": {"cluster": PYTHON_HTTP, "timeout": "0s"},
        "typed_per_filter_config": unfiltered,
    }
    return {
        "resources": [
            {
                "@type": _ROUTE_CONFIGURATION,
                "name": ROUTE_CONFIG,
                "virtual_hosts": [
                    {
                        "name": "gateway",
                        "domains": ["*"],
                        "routes": [*fast_routes, python],
                    }
                ],
            }
        ]
    }


# The routes a model's cluster serves straight from Envoy, the last segment of their paths.
FAST_ROUTES = ("infer", "generate", "generate_stream")


def grpc_routes(
    names: Iterable[str],
    gw: GatewayConfig,
    fast: bool,
    stateful: frozenset[str] = frozenset(),
    attempts_s: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The gRPC route table: with `fast`, a `ModelInfer` whose model (and version) the Lua
    filter read goes straight to its gRPC cluster, unless the model is `stateful` (as routes());
    any other `ModelInfer` (buffered for the filter) and everything else (streams included,
    unbuffered) to the Python gateway. `attempts_s` as routes()."""
    grpc = sorted(name for name in names if is_grpc(name) and model_of(name)[0] not in stateful)
    fast_routes = [_grpc_infer_route(name, gw, attempts_s or {}) for name in grpc] if fast else []
    unbuffered = {
        "envoy.filters.http.buffer": {"@type": _BUFFER_PER_ROUTE, "disabled": True},
        "envoy.filters.http.lua": {"@type": _LUA_PER_ROUTE, "disabled": True},
    }
    python_routes = [
        {
            "name": "ModelInfer",
            "match": {"path": GRPC_INFER},
            "route": {"cluster": PYTHON_GRPC, "timeout": "0s"},
        },
        {
            "name": "the call",
            "match": {"prefix": "/"},
            "route": {"cluster": PYTHON_GRPC, "timeout": "0s"},
            "typed_per_filter_config": unbuffered,
        },
    ]
    if not fast:
        python_routes = python_routes[1:]
    table = {
        "name": "grpc",
        "domains": ["*"],
        "routes": [*fast_routes, *python_routes],
    }
    return {
        "resources": [{"@type": _ROUTE_CONFIGURATION, "name": GRPC_ROUTE_CONFIG, "virtual_hosts": [table]}]
    }


def model_of(cluster: str) -> tuple[str, str]:
    """A model cluster's model and version ("" for the cluster of every version)."""
    model, _, version = cluster.split(".", 1)[1].partition(".v")
    return model, version


def _fast_route(
    cluster: str, kind: str, gw: GatewayConfig, paid: Authorizing | None, attempts_s: Mapping[str, float]
) -> dict[str, Any]:
    """`kind` (FAST_ROUTES) of the model version of `cluster`, straight to its nodes."""
    model, version = model_of(cluster)
    path = f"/v2/models/{model}/versions/{version}/{kind}" if version else f"/v2/models/{model}/{kind}"
    # A stream of events has no attempt timeout: it would cut a stream that takes its time.
    attempt_s = None if kind == "generate_stream" else attempts_s.get(model, gw.attempt_timeout_ceiling_s)
    route = _fast_infer_route(cluster, model, version, path, gw, attempt_s)
    # Every fast route of a kind counts into `vhost.gateway.route.<kind>.upstream_rq_<status>`,
    # each request by the status its client got, for the gateway's metrics (stats.py). (Not a
    # virtual cluster matching every fast path: its regex outgrows RE2's limit at a few models.)
    route["stat_prefix"] = kind
    if kind == "generate_stream":
        # Events for as long as they keep coming, as from a node itself: no deadline on the
        # whole answer, only on each wait (the first event's included).
        route["route"]["timeout"] = "0s"
        route["route"]["idle_timeout"] = _duration(gw.request_timeout_s)
    if paid is not None:
        route["typed_per_filter_config"] = {
            "envoy.filters.http.lua": {"@type": _LUA_PER_ROUTE, "source_code": {"inline_string": _paid(paid)}}
        }
        # The API key is the authorizer's: no node sees it.
        route["request_headers_to_remove"] = ["authorization"]
    return route


def _fast_infer_route(
    cluster: str, model: str, version: str, path: str, gw: GatewayConfig, attempt_s: float | None
) -> dict[str, Any]:
    return {
        # What Envoy's own 503 names (_triton_errors), in the Python gateway's words.
        "name": f"model '{model}' version {version}" if version else f"model '{model}'",
        "match": {"path": path},
        "route": {
            "cluster": cluster,
            "timeout": _duration(gw.request_timeout_s),
            # Before any answer, on another node: what the Python gateway retries too.
            **_retries(gw, "", attempt_s),
        },
        "response_headers_to_add": [_header(NODE_HEADER, "%UPSTREAM_METADATA(tritonfleet:node_id)%")],
    }


def _grpc_infer_route(cluster: str, gw: GatewayConfig, attempts_s: Mapping[str, float]) -> dict[str, Any]:
    model, version = model_of(cluster)
    version_match: dict[str, Any] = (
        {"name": VERSION_HEADER, "string_match": {"exact": version}}
        if version
        else {"name": VERSION_HEADER, "present_match": True, "invert_match": True}
    )
    return {
        "name": f"model '{model}' version {version}" if version else f"model '{model}'",
        "match": {
            "path": GRPC_INFER,
            "headers": [{"name": MODEL_HEADER, "string_match": {"exact": model}}, version_match],
        },
        "route": {
            "cluster": cluster,
            "timeout": _duration(gw.request_timeout_s),
            # A client's deadline (grpc-timeout) bounds the call, as it bounds it at a Triton.
            "max_stream_duration": {"grpc_timeout_header_max": _duration(gw.request_timeout_s)},
            # UNAVAILABLE: a Triton not (or no longer) ready, which another node may serve.
            **_retries(gw, ",unavailable", attempts_s.get(model, gw.attempt_timeout_ceiling_s)),
        },
        "request_headers_to_remove": [MODEL_HEADER, VERSION_HEADER],
        # Moved to the trailers by the Lua filter, beside the request id.
        "response_headers_to_add": [_header(NODE_HEADER.lower(), "%UPSTREAM_METADATA(tritonfleet:node_id)%")],
    }


def _retries(gw: GatewayConfig, also_on: str, attempt_s: float | None) -> dict[str, Any]:
    """The route action's retry policy and, with an attempt timeout, its hedging.

    Past `attempt_s` an attempt counts as a local-origin failure of its node in Envoy's outlier
    detection (even when hedged and answered later), so a hung node is ejected at its first
    late attempt (_outlier_detection); and another node is asked: with `hedge`, while the late
    attempt goes on (the first answer wins, the other is reset), else instead of it. Only
    stateless inference has fast routes: a sequence's requests and paid gRPC calls go to the
    Python gateway; a paid HTTP request is held before its attempts and charged once, on the
    answer that wins (_paid), however many nodes were asked."""
    policy: dict[str, Any] = {
        # A reset after the request was sent may run an inference twice, on two nodes; as in
        # the Python gateway, stateless inference may take that (routing.py). `gateway-error`:
        # a node's 502-504 (its manager's, or a Triton not ready) and an attempt past its
        # timeout, which Envoy retries (and hedges) under that condition only.
        "retry_on": f"connect-failure,refused-stream,reset,gateway-error{also_on}",
        "num_retries": max(0, gw.max_attempts - 1),
        "retry_host_predicate": [
            {"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": _PREVIOUS_HOSTS}}
        ],
        "host_selection_retry_max_attempts": 5,
        # At once, as the Python gateway retries: the next node is another one.
        "retry_back_off": {"base_interval": "0.001s", "max_interval": "0.010s"},
    }
    if attempt_s is None:
        return {"retry_policy": policy}
    policy["per_try_timeout"] = _duration(attempt_s)
    if not gw.hedge:
        return {"retry_policy": policy}
    return {"retry_policy": policy, "hedge_policy": {"hedge_on_per_try_timeout": True}}


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


# Triton answers 500 to a body it cannot parse; the client's mistake deserves a 400, as the
# Python gateway answers (http/routes.py). Only a 500's body is read.
_PARSE_ERROR = """
local function parse_error(body)
  local start = '{"error":"failed to parse the request JSON buffer'
  return body ~= nil and body:length() >= #start and body:getBytes(0, #start) == start
end
"""
_CLIENTS_MISTAKE = (
    _PARSE_ERROR
    + """
function envoy_on_response(response)
  if response:headers():get(":status") ~= "500" then
    return
  end
  if parse_error(response:body()) then
    response:headers():replace(":status", "400")
  end
end
"""
)


def _paid(paid: Authorizing) -> str:
    """The paid fast route's response phase (authorizer.py): the whole answer, then its charge
    (or the hold freed), then the answer with what it cost; or, when the charge fails, its
    refusal instead of the answer. The headers and body are fetched again after each wait:
    what Lua got before it no longer holds."""
    constants = {
        "SECRET_HEADER": SECRET_HEADER,
        "SECRET": paid.secret,
        "STATUS_HEADER": STATUS_HEADER,
        "HOLD_HEADER": HOLD_HEADER,
        "CHARGE": CHARGE_HEADER.lower(),
        "CREDIT": CREDIT_HEADER.lower(),
    }
    head = "".join(f'local {name} = "{value}"\n' for name, value in constants.items())
    refusal = json.dumps({"error": INVALID_REQUEST_ID}, separators=(",", ":"))
    return (
        head
        + f"local TIMEOUT_MS = {round(paid.timeout_s * 1000)}\n"
        + f"local MAX_REQUEST_ID = {MAX_REQUEST_ID_CHARS}\n"
        + f"local INVALID_REQUEST_ID = [[{refusal}]]\n"
        + _PARSE_ERROR
        + """
-- A client's request id the ledger could not hold is refused here, as the Python gateway
-- refuses it: Envoy would pass the authorizer a sanitized copy, and charge under that.
function envoy_on_request(request)
  local id = request:headers():get("x-request-id")
  if id ~= nil and (#id > MAX_REQUEST_ID or id:find("[^ -~]")) then
    request:respond({[":status"] = "400", ["content-type"] = "application/json"}, INVALID_REQUEST_ID)
  end
end

function envoy_on_response(response)
  -- None on the authorizer's own refusal, which is the answer.
  local held = response:streamInfo():dynamicMetadata():get("envoy.filters.http.ext_authz")
  local request_id = held and held[HOLD_HEADER]
  if request_id == nil then
    return
  end
  -- The whole answer first: what is charged is an answer that has arrived.
  local whole = response:body()
  local status = response:headers():get(":status")
  if status == "500" and parse_error(whole) then
    response:headers():replace(":status", "400")
    status = "400"
  end
  local answer, refused = response:httpCall(
    "authorizer",
    {
      [":method"] = "POST",
      [":path"] = "/commit",
      [":authority"] = "authorizer",
      [SECRET_HEADER] = SECRET,
      ["x-request-id"] = request_id,
      [STATUS_HEADER] = status,
    },
    "",
    TIMEOUT_MS
  )
  local headers = response:headers()
  headers:replace("x-request-id", request_id)
  if answer[":status"] == "200" then
    for _, name in ipairs({CHARGE, CREDIT}) do
      if answer[name] ~= nil then
        headers:replace(name, answer[name])
      end
    end
    return
  end
  headers:replace(":status", answer[":status"] or "503")
  headers:replace("content-type", "application/json")
  headers:remove("content-encoding")
  if answer["retry-after"] ~= nil then
    headers:replace("retry-after", answer["retry-after"])
  end
  local body = response:body()
  if body ~= nil then
    body:setBytes(refused or '{"error":"the charge could not be recorded, try again"}')
  end
end
"""
    )


def _ext_authz(paid: Authorizing) -> dict[str, Any]:
    """Before a paid request reaches a node: the authorizer's hold, or its refusal as the
    answer (ext_authz passes a denial's status, headers and body on)."""
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": _EXT_AUTHZ,
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "status_on_error": {"code": "ServiceUnavailable"},
            "http_service": {
                "server_uri": {
                    "uri": f"http://127.0.0.1:{paid.port}",
                    "cluster": AUTHORIZER,
                    "timeout": _duration(paid.timeout_s),
                },
                "path_prefix": "/authorize",
                "authorization_request": {"headers_to_add": [{"key": SECRET_HEADER, "value": paid.secret}]},
                "authorization_response": {
                    # A refusal's, as the Python gateway answers it (not aiohttp's `server`).
                    "allowed_client_headers": _exactly(
                        "content-type", "x-request-id", "retry-after", "www-authenticate"
                    ),
                    # The request id the authorizer chose (the client's, else its own): to the
                    # node, and, as the hold's, to the response phase.
                    "allowed_upstream_headers": _exactly("x-request-id"),
                    "dynamic_metadata_from_headers": _exactly(HOLD_HEADER),
                },
            },
            "allowed_headers": _exactly("authorization", "x-request-id"),
        },
    }


def _exactly(*names: str) -> dict[str, Any]:
    return {"patterns": [{"exact": name} for name in names]}


# Reads a gRPC `ModelInferRequest`'s model name and version (fields 1 and 2 of Triton's
# grpc_service.proto) for the route match, stepping over the other fields by their lengths, as
# the Python gateway does (grpc/wire.py): the tensors are never copied. A message it cannot read
# (compressed, malformed, several in one call) keeps its route to the Python gateway, which
# answers as it always has.
_GRPC_MODEL = (
    f'local MODEL, VERSION, NODE = "{MODEL_HEADER}", "{VERSION_HEADER}", "{NODE_HEADER.lower()}"\n'
    + """

local function varint(body, at, size)
  local value, scale = 0, 1
  while at < size and scale < 2^63 do
    local byte = body:getBytes(at, 1):byte()
    at = at + 1
    value = value + (byte % 128) * scale
    if byte < 128 then
      return value, at
    end
    scale = scale * 128
  end
  return nil, at
end

local function routing_fields(body)
  local size = body:length()
  if size < 5 or body:getBytes(0, 1):byte() ~= 0 then
    return nil
  end
  local length, found, at = 0, {}, 1
  for i = 1, 4 do
    length = length * 256 + body:getBytes(i, 1):byte()
  end
  if length + 5 ~= size then
    return nil
  end
  at = 5
  while at < size do
    local tag, kind, skip
    tag, at = varint(body, at, size)
    if tag == nil then
      return nil
    end
    kind = tag % 8
    if kind == 0 then
      skip, at = varint(body, at, size)
      if skip == nil then
        return nil
      end
      skip = 0
    elseif kind == 1 then
      skip = 8
    elseif kind == 5 then
      skip = 4
    elseif kind == 2 then
      skip, at = varint(body, at, size)
      if skip == nil or at + skip > size then
        return nil
      end
      local number = (tag - kind) / 8
      if number == 1 or number == 2 then
        found[number] = body:getBytes(at, skip)
      end
    else
      return nil
    end
    at = at + skip
  end
  if at ~= size then
    return nil
  end
  return found
end

function envoy_on_request(request)
  local body = request:body()
  -- The headers after the body: waiting for it ends the scope of what came before.
  local headers = request:headers()
  headers:remove(MODEL)
  headers:remove(VERSION)
  local found = body and routing_fields(body)
  if found == nil or found[1] == nil or found[1] == "" then
    return
  end
  headers:add(MODEL, found[1])
  if found[2] ~= nil and found[2] ~= "" then
    headers:add(VERSION, found[2])
  end
  request:streamInfo():dynamicMetadata():set("tritonfleet", "request_id", headers:get("x-request-id"))
  request:clearRouteCache()
end

-- The serving node and the request id as trailing metadata, where the Python gateway puts them:
-- in the trailers, or in the headers of an answer that is trailers only (an error).
function envoy_on_response(response)
  local node = response:headers():get(NODE)
  if node == nil then
    return
  end
  local request_id = response:streamInfo():dynamicMetadata():get("tritonfleet")["request_id"]
  if response:headers():get("grpc-status") ~= nil then
    response:headers():add("x-request-id", request_id)
    return
  end
  response:headers():remove(NODE)
  local trailers = response:trailers()
  if trailers ~= nil then
    trailers:add(NODE, node)
    trailers:add("x-request-id", request_id)
  end
end
"""
)


def _model_cluster(name: str, files: Files, gw: GatewayConfig, policy: Policy, hosts: int) -> dict[str, Any]:
    model, version = model_of(name)
    return {
        "@type": _CLUSTER,
        "name": name,
        # For the access log's lines (access_log.py).
        "metadata": {
            "filter_metadata": {"tritonfleet": {"model": model, **({"version": version} if version else {})}}
        },
        "type": "EDS",
        "eds_cluster_config": {"eds_config": _file_source(files.endpoints(name), files.directory)},
        # Envoy's per-try timeout starts once a connection is had, so a host that swallows SYNs
        # (blackholed, partitioned) would hold each attempt for the whole connect timeout; an
        # attempt, connect included, takes at most the floor of the attempt timeout there, as it
        # does on the Python plane.
        "connect_timeout": _duration(min(gw.connect_timeout_s, gw.attempt_timeout_floor_s)),
        "load_balancing_policy": {"policies": [_balancer(policy)]},
        "outlier_detection": _outlier_detection(gw),
        "circuit_breakers": _circuit_breakers(name, gw, hosts),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicit_http_config": (
                    {"http2_protocol_options": {}} if is_grpc(name) else {"http_protocol_options": {}}
                ),
            }
        },
    }


def _outlier_detection(gw: GatewayConfig) -> dict[str, Any]:
    """Ejection on what the Python gateway's Ejector counts as a node's failure: refused, reset,
    no answer within the attempt timeout (local origin: Envoy records a per-try timeout as one,
    hedged or not), or a 502-504 from the node (its manager's, a Triton not ready); ejected at
    once, for eject_base_s times the ejections in a row, up to eject_max_s. Not a 500: Triton
    answers it for the model's own error (a bad input the model rejects, a bug), which every
    node would answer alike; ejecting on it would empty the cluster for one client's input.
    Slow nodes, which fail nothing, are ejected by the control plane (outliers.py)."""
    return {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": gw.eject_after_failures,
        "enforcing_consecutive_local_origin_failure": 100,
        "consecutive_gateway_failure": gw.eject_after_failures,
        "enforcing_consecutive_gateway_failure": 100,
        "enforcing_consecutive_5xx": 0,
        "enforcing_success_rate": 0,
        "enforcing_local_origin_success_rate": 0,
        "base_ejection_time": _duration(gw.eject_base_s),
        "max_ejection_time": _duration(gw.eject_max_s),
        "max_ejection_percent": 100,
        "interval": "1s",
    }


def _circuit_breakers(name: str, gw: GatewayConfig, hosts: int) -> dict[str, Any]:
    """The gateway's overload bounds on a model cluster; beyond them Envoy answers 503 at once
    (response flag UO; Triton's words and Retry-After from _triton_errors, UNAVAILABLE for gRPC).

    HTTP/1.1 carries one request per connection: max_in_flight_per_node connections per node
    bound its requests, and up to max_queued more wait for one (Envoy's pending requests). Over
    HTTP/2 (gRPC) Envoy multiplexes streams on its connections and bounds only the cluster's
    requests, at once, without a queue: max_in_flight_per_node per node of the cluster (the
    least-request balancers spread them; the cluster is rewritten when its node count changes).

    Each cluster holds at most max_in_flight requests. Envoy has no bound on requests across
    clusters (its overload manager bounds connections and memory, not requests in flight):
    with several models the fast path may hold max_in_flight for each."""
    thresholds: dict[str, Any] = {
        "max_pending_requests": gw.max_queued,
        # Failovers and hedges are retries in flight: never what refuses a request.
        "max_retries": gw.max_in_flight,
    }
    if is_grpc(name):
        thresholds["max_requests"] = max(1, min(gw.max_in_flight, gw.max_in_flight_per_node * hosts))
        thresholds["max_connections"] = _UNBOUNDED
        return {"thresholds": [thresholds]}
    thresholds["max_requests"] = thresholds["max_connections"] = gw.max_in_flight
    return {
        "thresholds": [thresholds],
        "per_host_thresholds": [{"max_connections": gw.max_in_flight_per_node}],
    }


def _balancer(policy: Policy) -> dict[str, Any]:
    if policy is Policy.ROUND_ROBIN:
        return {"typed_extension_config": {"name": "round_robin", "typed_config": {"@type": _ROUND_ROBIN}}}
    least = {"@type": _LEAST_REQUEST, "choice_count": 2}
    if policy is Policy.LEAST_OUTSTANDING:
        least["selection_method"] = "FULL_SCAN"  # the fewest in flight of all, not of two
    return {"typed_extension_config": {"name": "least_request", "typed_config": least}}


def _http_manager(files: Files, gw: GatewayConfig, paid: Authorizing | None) -> dict[str, Any]:
    authorizing = [] if paid is None else [_ext_authz(paid)]
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
            # Before the authorizer: its refusals then pass the Lua filter's response phase too,
            # which leaves them as they are.
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {"@type": _LUA, "default_source_code": {"inline_string": _CLIENTS_MISTAKE}},
            },
            *authorizing,
            _ROUTER_FILTER,
        ],
        "server_header_transformation": "PASS_THROUGH",
        "generate_request_id": paid is None,
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        "request_headers_timeout": _duration(10.0),
        "stream_idle_timeout": _duration(gw.request_timeout_s),
        "local_reply_config": _triton_errors(gw),
        "access_log": envoy_access_log(gw),
    }


def _grpc_manager(files: Files, gw: GatewayConfig, request_ids: bool) -> dict[str, Any]:
    return {
        "@type": _HCM,
        "stat_prefix": "grpc",
        "codec_type": "HTTP2",
        "rds": {
            "route_config_name": GRPC_ROUTE_CONFIG,
            "config_source": _file_source(files.grpc_routes, files.directory),
        },
        "http_filters": [
            # A unary call's whole message, for the Lua filter to read its model from. The gRPC
            # frame's 5 bytes come on top of the message's limit.
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {"@type": _BUFFER, "max_request_bytes": gw.grpc_max_message_bytes + 5},
            },
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {"@type": _LUA, "default_source_code": {"inline_string": _GRPC_MODEL}},
            },
            # Each call's gRPC status, by cluster: the gateway's metrics of the fast path (stats.py).
            {
                "name": "envoy.filters.http.grpc_stats",
                "typed_config": {
                    "@type": _GRPC_STATS,
                    "individual_method_stats_allowlist": {
                        "services": [
                            {"name": "inference.GRPCInferenceService", "method_names": ["ModelInfer"]}
                        ]
                    },
                },
            },
            _ROUTER_FILTER,
        ],
        "http2_protocol_options": {},
        "server_header_transformation": "PASS_THROUGH",
        "generate_request_id": request_ids,
        "preserve_external_request_id": True,
        "stream_idle_timeout": "0s",
        "request_headers_timeout": _duration(10.0),
        "local_reply_config": _grpc_errors(gw),
        "access_log": envoy_access_log(gw, grpc=True),
    }


def _grpc_errors(gw: GatewayConfig) -> dict[str, Any]:
    """Envoy's own answers to a gRPC call (trailers only: its status and message), in the
    Python gateway's words and status codes."""
    return {
        "mappers": [
            {
                "filter": {"response_flag_filter": {"flags": ["UO"]}},
                "body_format_override": {"text_format_source": {"inline_string": _OVERLOADED}},
                "headers_to_add": [_header("retry-after", str(gw.retry_after_s))],
            },
            _status_mapper(503, "no node could serve %ROUTE_NAME% now"),
            # RESOURCE_EXHAUSTED, as gRPC itself refuses a message over the limit (its own words
            # name the message's size, which Envoy stopped reading at the limit).
            _status_mapper(
                413,
                f"Received message larger than max (more than {gw.grpc_max_message_bytes} vs. "
                f"{gw.grpc_max_message_bytes})",
                [_header("grpc-status", "8")],
            ),
            _status_mapper(504, "Deadline Exceeded"),
        ],
    }


def _status_mapper(status: int, text: str, headers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    mapper: dict[str, Any] = {
        "filter": {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {"default_value": status, "runtime_key": f"tritonfleet.status_{status}"},
                }
            }
        },
        "body_format_override": {"text_format_source": {"inline_string": text}},
    }
    if headers:
        mapper["headers_to_add"] = headers
    return mapper


# The Python gateway's words (gateway/admission.py) for a request refused at the bounds.
_OVERLOADED = (
    "every node serving %ROUTE_NAME% is at its limit of requests in flight and the queue is full; retry later"
)


def _triton_errors(gw: GatewayConfig) -> dict[str, Any]:
    """Envoy's own answers in Triton's shape: `{"error": ...}`, 503 with Retry-After."""
    retry_after = _header("Retry-After", str(gw.retry_after_s))
    overloaded = {
        "filter": {"response_flag_filter": {"flags": ["UO"]}},
        "body_format_override": {
            "json_format": {"error": _OVERLOADED},
            "content_type": "application/json",
        },
        "headers_to_add": [retry_after],
    }
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
        "headers_to_add": [retry_after],
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
    # The authorizer's refusal (response flag UAEX) is already in Triton's shape.
    refused = {
        "filter": {"response_flag_filter": {"flags": ["UAEX"]}},
        "body_format_override": {
            "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
            "content_type": "application/json",
        },
    }
    return {
        "mappers": [refused, overloaded, unavailable, too_large, timeout],
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


def _listener(
    name: str, host: str, port: int, manager: dict[str, Any], tls: dict[str, Any] | None
) -> dict[str, Any]:
    chain: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]
    }
    if tls is not None:
        chain["transport_socket"] = tls
    return {"name": name, "address": _address(host, port), "filter_chains": [chain]}


def _file_source(path: str, directory: str) -> dict[str, Any]:
    # Envoy reloads the file when a new one is renamed into the watched directory.
    return {
        "path_config_source": {"path": path, "watched_directory": {"path": directory}},
        "resource_api_version": "V3",
    }


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _host_port_address(host_port: str) -> dict[str, Any]:
    parts = urlsplit(f"//{host_port}")
    assert parts.hostname is not None and parts.port is not None, host_port
    return _address(parts.hostname, parts.port)


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"
