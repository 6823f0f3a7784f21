"""The scheduler: picks, for each request, a node that has its model READY.

Embedded in the gateway (`EmbeddedScheduler`) or run as a service (`RemoteScheduler` talks
to it); the gateway sees one interface, `SchedulerClient`, in both modes.

    core.py       Scheduler: the node view, in-flight counts and a policy; no I/O
    policies.py   round robin, least outstanding, power of two choices
    rendezvous.py rendezvous hashing: the node of a sequence, agreed without shared state
    client.py     the gateway's SchedulerClient: embedded, or remote
    service.py    the service's logic (its view, recent choices); routes.py; command.py
"""
