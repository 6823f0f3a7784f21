"""The settler: committed charges settled on chain in batches, exactly once; and reconcile.

command.py     `tritonfleet settler` (serve) and `tritonfleet reconcile`
service.py     Settler: batch → send → confirm, and recovery after a crash
reconcile.py   the ledger against the vault's events
"""
