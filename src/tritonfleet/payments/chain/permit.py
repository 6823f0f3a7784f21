"""EIP-2612 permits: a user signs an allowance off chain, anyone relays it with the deposit.

Signing is pure eth-account; the domain comes from the token itself (`Chain.permit_domain`,
which reads EIP-5267's `eip712Domain`), so name and version are never copied here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from tritonfleet.payments.money import Credit


@dataclass(frozen=True)
class PermitDomain:
    name: str
    version: str
    chain_id: int
    verifying_contract: str


@dataclass(frozen=True)
class Permit:
    owner: str
    spender: str
    amount: Credit
    nonce: int
    deadline: int
    v: int
    r: bytes
    s: bytes


_PERMIT_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


def permit_message(
    domain: PermitDomain, owner: str, spender: str, amount: Credit, nonce: int, deadline: int
) -> dict[str, Any]:
    """The EIP-712 typed data a wallet shows and signs."""
    return {
        "types": _PERMIT_TYPES,
        "primaryType": "Permit",
        "domain": {
            "name": domain.name,
            "version": domain.version,
            "chainId": domain.chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": {
            "owner": owner,
            "spender": spender,
            "value": amount,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def sign_permit(
    owner: LocalAccount, domain: PermitDomain, spender: str, amount: Credit, nonce: int, deadline: int
) -> Permit:
    message = permit_message(domain, owner.address, spender, amount, nonce, deadline)
    signed = owner.sign_typed_data(full_message=message)
    return Permit(
        owner=owner.address,
        spender=spender,
        amount=amount,
        nonce=nonce,
        deadline=deadline,
        v=signed.v,
        r=signed.r.to_bytes(32, "big"),
        s=signed.s.to_bytes(32, "big"),
    )
