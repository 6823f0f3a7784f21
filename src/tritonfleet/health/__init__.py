"""The health checker: the registry of live nodes, fed by manager heartbeats and active probes.

command.py    `tritonfleet health-checker`: the app, its probe and expiry tasks, its server
routes.py     register, heartbeat, deregister, list, watch; handlers.py: errors as Triton's
auth.py       the cluster token every /v1/nodes route needs, and the node secret's header
service.py    Checker: what one app holds, free of HTTP types
registry.py   the pure core: nodes, TTLs, probe results (records.py: one node's record)
watch.py      NodeWatcher: the client side, the node view the gateway and scheduler follow
status.py     `tritonfleet status`: the table of nodes
"""
