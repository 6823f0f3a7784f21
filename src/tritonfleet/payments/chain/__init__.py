"""The chain: every JSON-RPC call (`client.py`), the contracts, the operator's keys, permits,
and the development chain (`anvil.py`, `devchain.py`, `command.py`: `tritonfleet chain`)."""
