"""Pay per inference, as a library: money, credit, sign-in, the chain and the ledger.

    money.py     Credit: integers of base units, never floats
    credit.py    CreditBook: per-account credit in memory, the gateway's check
    signin.py    sign-in with an Ethereum address, API keys and their hashes
    errors.py    the payments errors, one tree
    chain/       every JSON-RPC call (client.py), the contracts, keys, permits, the dev chain
    ledger/      the durable ledger: schema, store, the charge writer process, migrations

The services built on it live beside it: `gateway/paid.py` (charges), `token_manager/` (keys,
balances) and `settler/` (settlement on chain).
"""
