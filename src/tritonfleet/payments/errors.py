"""Errors of the payments component, each carrying the HTTP status it is answered with."""

from __future__ import annotations

from tritonfleet.payments.money import Credit


class PaymentsError(Exception):
    """Root of the payments errors.

    PaymentsError (500)
    ├── ChainError (502)            a JSON-RPC call failed (chain/client.py has its tree)
    ├── AnvilError (500)            the local anvil could not run (chain/anvil.py)
    ├── CompileError (500)          a contract did not compile (chain/contracts.py)
    ├── SignInError (401)           a sign-in refused (signin.py)
    ├── IllegalTransition (500)     a charge or batch state move that the state machine forbids
    ├── InsufficientCredit (402)    available credit is below the price; carries the figures
    ├── DuplicateReservation (409)  a request id already holds a reservation
    ├── UnknownReservation (500)    commit or release of a reservation that is not held
    └── LedgerError (500)
        ├── UnknownBatch (500)      no batch has this id
        ├── DuplicateApiKey (409)   the key hash is already registered
        └── WriterClosed (503)      a charge was handed to a closed ChargeWriter
    """

    status = 500


class IllegalTransition(PaymentsError):
    def __init__(self, kind: str, current: str, target: str) -> None:
        super().__init__(f"illegal {kind} transition: {current} → {target}")
        self.kind = kind
        self.current = current
        self.target = target


class InsufficientCredit(PaymentsError):
    """`missing` is what the account must add to its deposit for this request to pass."""

    status = 402

    def __init__(self, account: str, price: Credit, available: Credit) -> None:
        self.account = account
        self.price = price
        self.available = available
        self.missing = Credit(price - available)
        super().__init__(f"account {account}: price {price}, available {available}, missing {self.missing}")


class DuplicateReservation(PaymentsError):
    status = 409


class UnknownReservation(PaymentsError):
    pass


class LedgerError(PaymentsError):
    pass


class UnknownBatch(LedgerError):
    pass


class DuplicateApiKey(LedgerError):
    status = 409


class WriterClosed(LedgerError):
    status = 503
