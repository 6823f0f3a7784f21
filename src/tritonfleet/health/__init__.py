"""The health checker: the registry of live nodes, fed by manager heartbeats and active probes.

`service.create_app` builds the HTTP service; `registry.Registry` is its pure core.
"""
