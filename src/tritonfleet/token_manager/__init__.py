"""The token manager: sign-in with Ethereum, API keys, balances, prices, usage, dev faucet.

command.py         `tritonfleet token-manager`: the app, its error handlers, its server
routes.py          the endpoints          api.py        the HTTP bodies
service.py         what they do           errors.py     its error tree
signin_limit.py    sign-in's rate limit per client IP
metrics.py         Prometheus
"""
