"""A multi-host TritonFleet cluster on one machine: each host a Linux network namespace.

hosts.py     the bridge, the namespaces and their veths (HostNetwork), cleanup of dead runs
faults.py    partition, blackhole, latency and loss, a paused `tritonserver`; heal
cluster.py   NetnsCluster: LocalCluster's services, each on its own host
command.py   `tritonfleet netns` (a cluster until Ctrl-C) and `python -m tritonfleet.netns`
             (faults on it)
"""
