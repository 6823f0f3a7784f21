"""The settler: committed charges settled on chain in batches, exactly once; and reconcile.

command.py     `tritonfleet settler` (serve) and `tritonfleet reconcile`
service.py     Settler: batch → send → confirm (short deposits left as debts), and recovery
rounds.py      Rounds: when a round is due; a failed one is logged, counted, backed off
metrics.py     Prometheus: rounds, failures, batches by state, the oldest unsettled charge
reconcile.py   the ledger against the vault's events, and the open debts
"""
