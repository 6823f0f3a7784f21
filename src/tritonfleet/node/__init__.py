"""A Triton node: a real `tritonserver` and the manager that starts, watches and announces it.

command.py     `tritonfleet node`: runs the manager until a signal, then drains
service.py     NodeManager, the async core
routes.py      the manager's HTTP routes: /ping, /healthz, /metrics and forwarding
server.py      the manager's HTTP server, on a socket bound before it serves
status.py      NodeStatus: state, READY models, pending requests, kept current from Triton
supervisor.py  restarts the Triton started here with back-off, or watches an attached one
triton.py      TritonProcess: the one wrapper over the `tritonserver` subprocess
guard.py       the small parent of `tritonserver` that takes its whole tree down with it
options.py     TritonOptions: how `tritonserver` runs, as command-line flags
dist.py        where the binary and the Python backend are, and the environment they need
observe.py     what Triton says (readiness, repository index, metrics), parsed
registrar.py   HealthLink: registration and heartbeats to one health checker
forward.py     forwarding mode: /v2/... relayed to Triton, in-flight requests counted
endpoints.py   node id, advertised host, Triton ports and URLs
gpus.py        the GPUs Triton may use, model and memory, read once from nvidia-smi
state.py       the state transition function; backoff.py, metrics.py, errors.py
"""
