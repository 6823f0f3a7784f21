"""The durable usage ledger: its schema, its store, the charge writer process that group-commits
the gateway's charges, and its migrations."""
