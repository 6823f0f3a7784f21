"""The token manager: sign-in with Ethereum, API keys, balances, prices, usage, dev faucet.

command.py         `tritonfleet token-manager`: the app, its error handlers, its server
routes.py          the endpoints          api.py        the HTTP bodies
service.py         what they do           errors.py     its error tree
gateway_credit.py  the gateway's reservations in flight, for balances
metrics.py         Prometheus
"""
