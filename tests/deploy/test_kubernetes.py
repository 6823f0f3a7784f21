"""deploy/kubernetes: every rendering valid against the API schemas of the stated Kubernetes
releases, and holding what the services need (probes on their routes, drains within the grace
periods, one settler, GPUs for the nodes, the network closed around them)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import (
    KUBERNETES,
    KUBERNETES_VERSIONS,
    RENDERED,
    config_key,
    env_file,
    kustomize,
    named,
    pod_spec,
)
from tritonfleet.config import (
    GatewayConfig,
    HealthConfig,
    SchedulerConfig,
    TokenManagerConfig,
    WebConfig,
    load_config,
)
from tritonfleet.node.options import TritonOptions
from tritonfleet.node.service import TRITON_EXIT_MAX_S

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
# What each container's probes may ask: the port its service listens on, the routes it serves.
ROUTES = {
    "gateway": (GatewayConfig().port, {"/healthz", "/v2/health/live", "/v2/health/ready"}),
    "health-checker": (HealthConfig().port, {"/healthz"}),
    "scheduler": (SchedulerConfig().port, {"/healthz"}),
    "token-manager": (TokenManagerConfig().port, {"/healthz"}),
    "web": (WebConfig().port, {"/healthz"}),
    # The settler serves its metrics only (prometheus_client answers any path with them).
    "settler": (8084, {"/metrics"}),
    "node": (8070, {"/healthz", "/ping"}),
}
TRITON_ROUTES = {"/v2/health/ready", "/v2/health/live"}


def schema_errors(manifests: list[dict[str, Any]], version: str) -> list[str]:
    """What the version's strict schemas refuse (unknown fields included), a line a manifest."""
    errors = []
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            errors.append(f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}: {exc}")
    return errors


def with_chain_admin(tmp_path: Path) -> list[dict[str, Any]]:
    """The production overlay with the chain-admin component added, as the guide says to."""
    # kustomize takes relative paths only.
    overlay, component = (
        os.path.relpath(KUBERNETES / part, tmp_path)
        for part in ("overlays/production", "components/chain-admin")
    )
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{overlay}]\ncomponents: [{component}]\n"
    )
    return kustomize(tmp_path)


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return kustomize(KUBERNETES / "overlays/production")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("folder", RENDERED)
def test_every_rendering_satisfies_the_api_schemas(folder: str, version: str) -> None:
    """The base and each overlay render, and every manifest is valid for the release."""
    manifests = kustomize(KUBERNETES / folder)
    assert len(manifests) > 20
    assert schema_errors(manifests, version) == []


def test_every_manifest_file_is_part_of_a_rendering() -> None:
    """Each YAML file under deploy/kubernetes is a kustomization or named by the one beside it
    (a resource, a patch, a config file): none escapes the validation above."""
    unnamed = []
    for path in KUBERNETES.rglob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        kustomization = yaml.safe_load((path.parent / "kustomization.yaml").read_text())
        named_there = [
            *kustomization.get("resources", []),
            *(p["path"] for p in kustomization.get("patches", [])),
        ]
        if path.name not in named_there:
            unnamed.append(str(path.relative_to(KUBERNETES)))
    assert unnamed == []


def test_the_chain_admin_component_renders_valid(tmp_path: Path) -> None:
    """The optional Job, added to the production overlay, is valid too and holds the operator's key."""
    manifests = with_chain_admin(tmp_path)
    job = named(manifests, "Job", "chain-admin")
    assert schema_errors(manifests, KUBERNETES_VERSIONS[-1]) == []
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["operator-key"]["secret"]["secretName"] == "tritonfleet-operator-key"


@pytest.mark.parametrize(
    ("breakage", "why"),
    [
        (lambda d: d["spec"].update(replica=2), "an unknown field"),
        (lambda d: d["spec"].update(replicas="two"), "a string for a number"),
        (lambda d: d["spec"].pop("selector"), "a required field missing"),
        (lambda d: pod_spec(d).update(containers={"name": "gateway"}), "a map for a list"),
    ],
)
def test_a_broken_manifest_is_refused(production: list[dict[str, Any]], breakage: Any, why: str) -> None:
    """The validator is no rubber stamp: the gateway's Deployment broken in one place fails."""
    broken = copy.deepcopy(named(production, "Deployment", "gateway"))
    breakage(broken)
    for version in KUBERNETES_VERSIONS:
        assert schema_errors([broken], version) != [], why


def test_a_kustomization_naming_a_missing_file_fails_to_render(tmp_path: Path) -> None:
    """kubectl kustomize fails on a resource that is not there, and the test helper says so."""
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(AssertionError, match="kubectl kustomize"):
        kustomize(tmp_path)


def test_there_is_exactly_one_settler_and_it_is_replaced_not_rolled(production: list[dict[str, Any]]) -> None:
    """One replica, strategy Recreate: the old settler stops before the new one starts."""
    settler = named(production, "Deployment", "settler")
    assert settler["spec"]["replicas"] == 1
    assert settler["spec"]["strategy"] == {"type": "Recreate"}
    assert not [m for m in production if m["kind"] == "HorizontalPodAutoscaler" and "settler" in str(m)]


def test_nodes_ask_for_gpus_on_gpu_machines(production: list[dict[str, Any]]) -> None:
    """The node DaemonSet requests nvidia.com/gpu, selects GPU machines and tolerates their taint."""
    spec = pod_spec(named(production, "DaemonSet", "node"))
    assert int(spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in spec["volumes"]


def test_the_gateway_scales_out_and_keeps_one_up_through_disruptions(
    production: list[dict[str, Any]],
) -> None:
    """An HPA on CPU from two gateways, a PDB, and rolling updates that surge before removing."""
    hpa = named(production, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway" and hpa["spec"]["minReplicas"] >= 2
    assert named(production, "PodDisruptionBudget", "gateway")["spec"]["maxUnavailable"] == 1
    strategy = named(production, "Deployment", "gateway")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert named(production, "StatefulSet", "health-checker")["spec"]["replicas"] == 2


def test_every_probe_asks_a_route_its_service_serves_on_its_port(production: list[dict[str, Any]]) -> None:
    """Liveness and readiness on each service's own port and routes (a node's readiness: its Triton's)."""
    for workload in (m for m in production if m["kind"] in WORKLOADS):
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        port, routes = ROUTES[component]
        container = pod_spec(workload)["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[next(iter(ports))] == port, component
        assert "livenessProbe" in container, component
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(kind, {}).get("httpGet")
            if probe is None:
                continue
            allowed = TRITON_ROUTES if ports[probe["port"]] == 8000 else routes
            assert probe["path"] in allowed, f"{component} {kind} {probe}"
            assert ports[probe["port"]] in (port, 8000), f"{component} {kind} {probe}"


def test_grace_periods_cover_the_drains(production: list[dict[str, Any]]) -> None:
    """A gateway's preStop and shutdown grace, and a node's drain and Triton's stop, end within
    their pods' termination grace periods."""
    config = env_file(KUBERNETES / "base/config.env")
    gateway = pod_spec(named(production, "Deployment", "gateway"))
    pre_stop_s = int(gateway["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    shutdown_s = float(config["TRITONFLEET_GATEWAY_SHUTDOWN_GRACE_S"])
    assert gateway["terminationGracePeriodSeconds"] >= pre_stop_s + shutdown_s + 10
    node = pod_spec(named(production, "DaemonSet", "node"))
    drain_s = float(config["TRITONFLEET_NODE_DRAIN_TIMEOUT_S"])
    triton_stop_s = TritonOptions(Path("/models"), exit_timeout_s=min(drain_s, TRITON_EXIT_MAX_S)).stop_wait_s
    assert node["terminationGracePeriodSeconds"] >= drain_s + triton_stop_s + 5


def test_only_the_gateway_health_checkers_and_web_reach_the_nodes(production: list[dict[str, Any]]) -> None:
    """Ingress is denied by default; the nodes' rule admits those three components (and Prometheus
    to the metrics ports), so that no inference reaches Triton around the gateway's payment."""
    deny = named(production, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    rules = named(production, "NetworkPolicy", "node")["spec"]["ingress"]
    from_pods = [
        source["podSelector"] for rule in rules for source in rule["from"] if "podSelector" in source
    ]
    components = {
        value
        for selector in from_pods
        for expression in selector["matchExpressions"]
        if expression["key"] == "app.kubernetes.io/component"
        for value in expression["values"]
    }
    assert components == {"gateway", "health-checker", "web"}
    monitoring = [rule for rule in rules if "namespaceSelector" in rule["from"][0]]
    assert [p["port"] for p in monitoring[0]["ports"]] == [8070, 8002]


def test_scrape_annotations_name_a_port_of_the_pod(production: list[dict[str, Any]]) -> None:
    """Every pod that asks to be scraped names one of its container ports and its /metrics."""
    scraped = 0
    for workload in (m for m in production if m["kind"] in WORKLOADS):
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        scraped += 1
        ports = {p["containerPort"] for c in pod_spec(workload)["containers"] for p in c["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports
        assert annotations["prometheus.io/path"] == "/metrics"
    assert scraped == 6


def test_every_setting_is_a_key_of_the_configuration(
    production: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The ConfigMap's and the containers' TRITONFLEET_* names each set a real key (a typo would
    be ignored at run time), and the ConfigMap loads as a configuration."""
    configmap = next(m for m in production if m["kind"] == "ConfigMap")
    names = set(configmap["data"])
    for workload in (m for m in production if m["kind"] in (*WORKLOADS, "Job")):
        names |= {e["name"] for c in pod_spec(workload)["containers"] for e in c.get("env", [])}
    assert [name for name in sorted(names) if config_key(name) is None] == []
    empty = tmp_path / "fleet.toml"
    empty.touch()
    config = load_config(empty, env=configmap["data"])
    assert (config.chain.dev, config.node.port, len(config.cluster.health_urls)) == (False, 8070, 2)
