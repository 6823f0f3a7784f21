"""`tritonfleet up`: a whole cluster on this machine, its banner, and Ctrl-C to stop it.

State (cluster token, chain, ledger, logs, the development API key) lives under `.tritonfleet/`.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import httpx

from tritonfleet.config import FleetConfig
from tritonfleet.health.status import data_plane
from tritonfleet.up.cluster import LocalCluster, NodeSpec
from tritonfleet.up.devaccount import DEV_ENV_FILE, ensure_dev_key

STATE_DIR = Path(".tritonfleet")
DEFAULT_NODES = 2


def banner(cluster: LocalCluster, api_key: str | None = None) -> str:
    url = cluster.gateway_url
    host_port = url.removeprefix("http://")
    tensors = [("INPUT0", list(range(16))), ("INPUT1", [1] * 16)]
    inputs = [{"name": name, "shape": [1, 16], "datatype": "INT32", "data": data} for name, data in tensors]
    body = json.dumps({"inputs": inputs}, separators=(",", ":"))
    auth_header, auth_arg, paid = "", "", ""
    # The table lists node addresses, for holders of the cluster token only.
    generated_token = cluster.env.get("TRITONFLEET_CLUSTER_TOKEN_FILE")
    token_flag = f" --token-file {generated_token}" if generated_token else ""
    if api_key is not None:
        env_file = cluster.state_dir / DEV_ENV_FILE
        auth_header = ' -H "Authorization: Bearer $TRITONFLEET_API_KEY"'
        auth_arg = ', headers={"Authorization": "Bearer " + os.environ["TRITONFLEET_API_KEY"]}'
        settler = cluster.config.settler
        settler_metrics = f"http://{settler.metrics_host}:{settler.metrics_port}/metrics"
        paid = f"""
  payments                  on: each inference is charged to the development account
  token manager             {cluster.token_manager_url}   (keys, balance, usage, faucet)
  settler metrics           {settler_metrics}   (restarted if it dies)
  chain (anvil)             {cluster.config.chain.rpc_url}
  API key                   in {env_file}; first run:  set -a; . {env_file}; set +a
"""
    return f"""
TritonFleet is up: {len(cluster.nodes)} Triton nodes behind the gateway.

  gateway (KServe v2 HTTP)  {url}
  gateway (KServe v2 gRPC)  {cluster.config.gateway.host}:{cluster.config.gateway.grpc_port}
  data plane                {data_plane(url, cluster.config.gateway.tls_cert_file, cluster.cluster_auth)}
  web                       {cluster.web_url}   (generate, playground, cluster, wallet)
  health checker            {cluster.health_url}{paid}
  logs                      {cluster.state_dir / "logs"}/

Try it:
  curl -s {url}/v2/models/simple/infer{auth_header} -H 'Content-Type: application/json' -d '{body}'

  .venv/bin/python - <<'PY'
import os, numpy as np, tritonclient.http as httpclient
client = httpclient.InferenceServerClient("{host_port}")
a = np.arange(16, dtype=np.int32).reshape(1, 16); b = np.ones((1, 16), dtype=np.int32)
inputs = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
inputs[0].set_data_from_numpy(a); inputs[1].set_data_from_numpy(b)
print(client.infer("simple", inputs{auth_arg}).as_numpy("OUTPUT0"))
PY

  .venv/bin/tritonfleet status{token_flag}      (the table of nodes)
Ctrl-C stops everything.
"""


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(config: FleetConfig) -> int:
    nodes = [NodeSpec(f"node-{i}") for i in range(1, DEFAULT_NODES + 1)]
    cluster = LocalCluster(config, STATE_DIR, nodes, with_web=True)
    # Explicitly, since a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    print(f"Starting a local cluster; logs in {STATE_DIR / 'logs'}/ ...", flush=True)
    try:
        cluster.start()
        api_key = None
        if cluster.token_manager is not None and config.chain.dev:
            _, api_key = ensure_dev_key(STATE_DIR, cluster.token_manager_url)
        print(banner(cluster, api_key), flush=True)
        dead = cluster.tend_until_one_dies()
        print(f"{dead.name} exited; its log ends:\n{dead.tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        print(f"tritonfleet up: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cluster.stop()
        print("Stopped.", flush=True)
