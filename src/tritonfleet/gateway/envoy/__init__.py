"""The Envoy data plane of the gateway (`gateway.data_plane = "envoy"`).

binary.py      which Envoy binary runs
resources.py   its configuration, from the settings and the node view (pure)
control.py     the process, supervised, and its dynamic configuration kept current
"""
