"""The token manager's HTTP bodies, and their making from the ledger's records.

Times are ISO-8601 in UTC; amounts are integers in credit base units.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from tritonfleet.payments.credit import CreditSnapshot
from tritonfleet.payments.ledger.records import ApiKey, Batch, Charge
from tritonfleet.payments.signin import key_id_of

# Large enough for any test or demo, small enough that a dev chain's supply stays readable.
FAUCET_MAX = 10**6
PRICE_UNIT = "credit base units per request"
# Characters of the key hash that name a key: 64 bits, unique among one account's keys.


class ChallengeRequest(BaseModel):
    address: str = Field(description="The Ethereum address to sign in with.")


class ChallengeResponse(BaseModel):
    address: str = Field(description="The address, checksummed.")
    message: str = Field(description="The EIP-4361 message to sign (EIP-191 personal_sign).")
    expires_at: datetime


class VerifyRequest(BaseModel):
    address: str
    message: str = Field(description="The challenge's message, unchanged.")
    signature: str = Field(
        description="Hex: the address's key's 65-byte signature, or one its contract wallet's "
        "isValidSignature accepts (EIP-1271)."
    )
    label: str = Field("", max_length=100, description="A name for the key, to tell keys apart.")


class IssuedKey(BaseModel):
    account: str
    api_key: str = Field(description="Shown this once: only its hash is kept.")
    key_id: str = Field(description="Names the key in /v1/keys.")


class KeyView(BaseModel):
    key_id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


class KeyList(BaseModel):
    account: str
    keys: list[KeyView] = Field(description="Newest first, revoked keys included.")


class BalanceResponse(BaseModel):
    account: str
    deposit: int = Field(description="In the vault, on chain.")
    pending_withdrawal: int = Field(description="Requested out of the deposit, on chain.")
    unsettled: int = Field(description="Charged in the ledger, not yet settled on chain.")
    reserved: int = Field(description="Held by requests in flight at the gateway.")
    available: int = Field(description="What further requests may spend; never negative.")


class PriceList(BaseModel):
    prices: dict[str, int] = Field(description='By "model" or "model:version" (the latter wins).')
    default_price: int = Field(description="The price of a model not listed.")
    unit: str = PRICE_UNIT


class ChargeView(BaseModel):
    request_id: str
    key_id: str = Field(description="The API key that made the request (see /v1/keys).")
    model: str
    version: str
    amount: int
    state: str
    batch_id: str | None
    created_at: datetime


class UsagePage(BaseModel):
    account: str
    charges: list[ChargeView] = Field(description="Newest first.")
    next_before: str | None = Field(description="`before` of the next page; null on the last.")


class SettlementView(BaseModel):
    batch_id: str
    state: str
    tx_hash: str | None
    amount: int = Field(description="This account's share of the batch.")
    charges: int = Field(description="This account's charges in the batch.")
    created_at: datetime
    updated_at: datetime


class SettlementList(BaseModel):
    account: str
    settlements: list[SettlementView] = Field(description="Newest first.")


class FaucetRequest(BaseModel):
    address: str
    amount: int = Field(gt=0, le=FAUCET_MAX, description="Credit to mint and deposit.")


class FaucetResponse(BaseModel):
    address: str
    amount: int
    deposit: int = Field(description="The address's deposit once the faucet's is confirmed.")
    tx_hash: str = Field(description="The deposit transaction.")


class TokenManagerHealthz(BaseModel):
    status: str = "ok"


def at(timestamp_s: float) -> datetime:
    return datetime.fromtimestamp(timestamp_s, UTC)


def key_view(key: ApiKey) -> KeyView:
    revoked = None if key.revoked_at_s is None else at(key.revoked_at_s)
    return KeyView(
        key_id=key_id_of(key.key_hash), label=key.label, created_at=at(key.created_at_s), revoked_at=revoked
    )


def balance_view(snapshot: CreditSnapshot) -> BalanceResponse:
    return BalanceResponse(
        account=snapshot.account,
        deposit=snapshot.deposit,
        pending_withdrawal=snapshot.pending_withdrawal,
        unsettled=snapshot.unsettled,
        reserved=snapshot.reserved,
        available=max(0, snapshot.available),
    )


def charge_view(charge: Charge) -> ChargeView:
    return ChargeView(
        request_id=charge.request_id,
        key_id=charge.key_id,
        model=charge.model,
        version=charge.version,
        amount=charge.amount,
        state=charge.state.value,
        batch_id=charge.batch_id,
        created_at=at(charge.created_at_s),
    )


def settlement_view(batch: Batch) -> SettlementView:
    return SettlementView(
        batch_id=batch.batch_id,
        state=batch.state.value,
        tx_hash=batch.tx_hash,
        amount=batch.amount,
        charges=batch.charge_count,
        created_at=at(batch.created_at_s),
        updated_at=at(batch.updated_at_s),
    )
