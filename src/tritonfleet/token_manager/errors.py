"""Errors of the token manager, each carrying the HTTP status it is answered with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tritonfleet.payments.chain.client import ChainError, ChainUnavailable, NotDeployed, ReceiptTimeout

BALANCES_UNKNOWN = "on-chain balances are unknown for now (inference is still served)"


class TokenManagerError(Exception):
    """Root of the token manager's own errors (the payments library's, sign-in's included, are
    answered the same way).

    TokenManagerError (500)
    ├── BadParameter (400)      a malformed cursor or amount
    ├── SignInRequired (401)    a missing, unknown or revoked API key
    ├── FaucetClosed (403)      the faucet on a chain that is not a development chain
    ├── KeyNotFound (404)       no key of the caller's has this key id
    ├── TooManySignIns (429)    a client IP over its sign-in rate; comes with Retry-After
    └── ChainFailed (502)       the chain refused or failed a call
        ├── ChainDown (503)     the chain is unreachable (balances, or whether a contract wallet
        │                       signed, are unknown), or its contracts are unknown
        └── ChainTimeout (504)  a faucet transaction was not confirmed in time
    """

    status = 500


class BadParameter(TokenManagerError):
    status = 400


class SignInRequired(TokenManagerError):
    status = 401


class FaucetClosed(TokenManagerError):
    status = 403


class KeyNotFound(TokenManagerError):
    status = 404


class TooManySignIns(TokenManagerError):
    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ChainFailed(TokenManagerError):
    status = 502


class ChainDown(ChainFailed):
    status = 503


class ChainTimeout(ChainFailed):
    status = 504


@contextmanager
def chain_errors(endpoint: str, unknown: str = BALANCES_UNKNOWN) -> Iterator[None]:
    """Translate the chain wrapper's errors into answers a user can act on; `endpoint` is the
    RPC URL redacted (`Chain.endpoint`), since these answers reach users, and `unknown` says
    what cannot be known while the chain is down."""
    try:
        yield
    except ChainUnavailable as exc:
        raise ChainDown(f"the chain at {endpoint} is unreachable, so {unknown}: {exc}") from exc
    except NotDeployed as exc:
        raise ChainDown(f"the payment contracts are not known on {endpoint}: {exc}") from exc
    except ReceiptTimeout as exc:
        raise ChainTimeout(str(exc)) from exc
    except ChainError as exc:
        raise ChainFailed(f"the chain at {endpoint} refused the call: {exc}") from exc
