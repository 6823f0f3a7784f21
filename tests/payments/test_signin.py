import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from tests.fakes import FakeClock
from tritonfleet.payments.signin import (
    BadAddress,
    ChallengeFailed,
    ChallengeStore,
    hash_api_key,
    new_api_key,
)


def store(clock: FakeClock) -> ChallengeStore:
    return ChallengeStore("fleet.example", "http://fleet.example", 31337, ttl_s=60, clock=clock)


def sign(account: LocalAccount, message: str) -> str:
    return Account.sign_message(encode_defunct(text=message), account.key).signature.hex()


def test_a_signed_challenge_proves_the_address() -> None:
    user = Account.create()
    challenges = store(FakeClock())
    challenge = challenges.issue(user.address.lower())
    assert "wants you to sign in with your Ethereum account" in challenge.message
    assert challenges.verify(user.address, challenge.message, sign(user, challenge.message)) == user.address


def test_a_challenge_is_good_for_one_sign_in_only() -> None:
    user = Account.create()
    challenges = store(FakeClock())
    challenge = challenges.issue(user.address)
    signature = sign(user, challenge.message)
    challenges.verify(user.address, challenge.message, signature)
    with pytest.raises(ChallengeFailed):
        challenges.verify(user.address, challenge.message, signature)


def test_another_signer_or_an_expired_challenge_is_refused() -> None:
    user, stranger = Account.create(), Account.create()
    clock = FakeClock()
    challenges = store(clock)
    challenge = challenges.issue(user.address)
    with pytest.raises(ChallengeFailed, match="not made by this address"):
        challenges.verify(user.address, challenge.message, sign(stranger, challenge.message))
    late = challenges.issue(user.address)
    clock.advance(61)
    with pytest.raises(ChallengeFailed, match="no live challenge"):
        challenges.verify(user.address, late.message, sign(user, late.message))


def test_a_malformed_address_is_a_bad_request() -> None:
    with pytest.raises(BadAddress):
        store(FakeClock()).issue("0x1234")


def test_only_the_hash_of_a_key_is_kept_and_it_matches_the_key() -> None:
    key, key_hash = new_api_key()
    assert key.startswith("tf_") and key not in key_hash
    assert hash_api_key(key) == key_hash and len(key_hash) == 64
