"""The scheduler: picks, for each request, a node that has its model READY.

Embedded in the gateway (`EmbeddedScheduler`) or run as a service (`RemoteScheduler` talks
to it); the gateway sees one interface, `SchedulerClient`, in both modes.
"""
