"""Pay-per-inference: contracts, chain access, the usage ledger, settlement and API keys."""
