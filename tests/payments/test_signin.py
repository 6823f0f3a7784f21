import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from tests.fakes import FakeClock
from tritonfleet.payments import signin
from tritonfleet.payments.signin import (
    BadAddress,
    ChallengeFailed,
    ChallengesFull,
    ChallengeStore,
    ForeignOrigin,
    NoKeySigned,
    hash_api_key,
    new_api_key,
)


def store(clock: FakeClock, max_live: int = 100) -> ChallengeStore:
    return ChallengeStore("https://fleet.example", 31337, ttl_s=60, max_live=max_live, clock=clock)


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


def test_the_message_names_the_configured_origin_as_domain_and_uri() -> None:
    challenge = store(FakeClock()).issue(Account.create().address)
    assert challenge.message.startswith("fleet.example wants you to sign in")
    assert "\nURI: https://fleet.example\n" in challenge.message
    assert "\nChain ID: 31337\n" in challenge.message


@pytest.mark.parametrize(
    ("ours", "theirs", "refused"),
    [
        ("fleet.example wants", "evil.example wants", ForeignOrigin),
        ("URI: https://fleet.example", "URI: https://evil.example", ForeignOrigin),
        ("Chain ID: 31337", "Chain ID: 1", ChallengeFailed),
    ],
)
def test_a_message_for_another_site_or_chain_is_refused_saying_which(
    ours: str, theirs: str, refused: type[Exception]
) -> None:
    """A challenge rewritten for another site (or chain) and signed there signs in nowhere."""
    user = Account.create()
    challenges = store(FakeClock())
    relayed = challenges.issue(user.address).message.replace(ours, theirs)
    with pytest.raises(refused, match="evil.example" if refused is ForeignOrigin else "chain '1'"):
        challenges.verify(user.address, relayed, sign(user, relayed))


def test_a_request_from_a_page_of_another_origin_is_refused() -> None:
    challenges = store(FakeClock())
    challenges.check_origin(None)  # no browser: a script, the CLI
    challenges.check_origin("https://fleet.example")
    for origin in ("https://evil.example", "http://fleet.example", "https://fleet.example:8443", "null"):
        with pytest.raises(ForeignOrigin):
            challenges.check_origin(origin)


def test_a_signature_by_no_key_of_the_address_carries_what_a_contract_wallet_check_needs() -> None:
    """The personal_sign hash (EIP-191) that the wallet's isValidSignature is asked about."""
    user, stranger = Account.create(), Account.create()
    challenges = store(FakeClock())
    message = challenges.issue(user.address).message
    signature = Account.sign_message(encode_defunct(text=message), stranger.key)
    with pytest.raises(NoKeySigned) as refused:
        challenges.verify(user.address, message, signature.signature.to_0x_hex())
    assert refused.value.address == user.address
    assert refused.value.digest == bytes(signature.message_hash)
    assert refused.value.signature == bytes(signature.signature)


def test_a_malformed_address_is_a_bad_request() -> None:
    with pytest.raises(BadAddress):
        store(FakeClock()).issue("0x1234")


def test_only_the_hash_of_a_key_is_kept_and_it_matches_the_key() -> None:
    key, key_hash = new_api_key()
    assert key.startswith("tf_") and key not in key_hash
    assert hash_api_key(key) == key_hash and len(key_hash) == 64


def test_an_altered_message_is_refused_and_the_challenge_stays_usable() -> None:
    user = Account.create()
    challenges = store(FakeClock())
    challenge = challenges.issue(user.address)
    altered = challenge.message.replace("TritonFleet", "AnotherFleet")
    with pytest.raises(ChallengeFailed, match="no live challenge"):
        challenges.verify(user.address, altered, sign(user, altered))
    assert challenges.verify(user.address, challenge.message, sign(user, challenge.message)) == user.address


def test_beyond_max_live_a_challenge_is_refused_until_one_is_used_or_expires() -> None:
    user = Account.create()
    clock = FakeClock()
    challenges = store(clock, max_live=3)
    first = challenges.issue(user.address)
    clock.advance(10)
    for _ in range(2):
        challenges.issue(user.address)
    with pytest.raises(ChallengesFull) as full:
        challenges.issue(user.address)
    assert full.value.retry_after_s == 50  # when the first expires
    assert len(challenges) == 3  # the refusal dropped none of the challenges out

    challenges.verify(user.address, first.message, sign(user, first.message))
    challenges.issue(user.address)
    with pytest.raises(ChallengesFull):
        challenges.issue(user.address)
    clock.advance(61)  # the three issued 10 s in expire
    challenges.issue(user.address)
    assert len(challenges) == 1


def test_an_expired_challenge_is_gone_once_the_next_is_issued() -> None:
    user = Account.create()
    clock = FakeClock()
    challenges = store(clock)
    stale = challenges.issue(user.address)
    clock.advance(60)
    assert len(challenges) == 1  # 60 s on, it is still good
    clock.advance(1)
    challenges.issue(user.address)
    assert len(challenges) == 1
    with pytest.raises(ChallengeFailed, match="no live challenge"):
        challenges.verify(user.address, stale.message, sign(user, stale.message))


def test_ten_thousand_accounts_sign_in_with_their_challenges_open_at_once() -> None:
    users = [Account.create() for _ in range(10_000)]
    challenges = store(FakeClock(), max_live=10_000)
    issued = [challenges.issue(user.address) for user in users]
    assert len(challenges) == 10_000
    for user, challenge in zip(users, issued, strict=True):
        assert (
            challenges.verify(user.address, challenge.message, sign(user, challenge.message)) == user.address
        )
    assert len(challenges) == 0
    with pytest.raises(ChallengeFailed):
        challenges.verify(users[0].address, issued[0].message, sign(users[0], issued[0].message))


def lines_run_in_signin(action: Callable[[], object]) -> int:
    """The lines of signin.py that `action` runs: a count of the store's own work that is the
    same on every machine. (heapq is C and runs none; its O(log n) goes uncounted.)"""
    count = 0

    def trace(frame: FrameType, event: str, _arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != signin.__file__:
            return None
        count += event == "line"
        return trace

    sys.settrace(trace)
    try:
        action()
    finally:
        sys.settrace(None)
    return count


def test_a_sign_in_costs_the_same_beside_ten_or_ten_thousand_open_challenges() -> None:
    """Neither issuing nor verifying looks at the other challenges."""

    def one_sign_in_beside(open_challenges: int) -> int:
        challenges = store(FakeClock(), max_live=open_challenges + 1)
        waiting = Account.create()
        for _ in range(open_challenges):
            challenges.issue(waiting.address)
        user = Account.create()

        def sign_in() -> None:
            challenge = challenges.issue(user.address)
            challenges.verify(user.address, challenge.message, sign(user, challenge.message))

        return lines_run_in_signin(sign_in)

    assert one_sign_in_beside(10_000) == one_sign_in_beside(10)


def test_used_challenges_leave_the_heap_no_larger_than_twice_the_store() -> None:
    """A challenge never used stays at the top of the heap for its whole life, holding under it
    the entries of those used after it; they are dropped all the same."""
    clock = FakeClock()
    challenges = store(clock, max_live=10)
    forgotten = Account.create()
    challenges.issue(forgotten.address)
    user = Account.create()
    for _ in range(1000):
        challenge = challenges.issue(user.address)
        with pytest.raises(ChallengeFailed, match="malformed signature"):
            challenges.verify(user.address, challenge.message, "0x00")  # used up all the same
        assert len(challenges) == 1
        assert len(challenges._expiry) <= 2  # (expires_at, nonce) of open challenges, and used ones
    clock.advance(61)
    challenges.issue(user.address)
    assert len(challenges) == len(challenges._expiry) == 1


@pytest.mark.parametrize("signature", ["", "zz", "0x00", "0x" + "00" * 65, "0x" + "ff" * 65])
def test_a_malformed_signature_is_refused_and_uses_up_the_challenge(signature: str) -> None:
    user = Account.create()
    challenges = store(FakeClock())
    challenge = challenges.issue(user.address)
    with pytest.raises(ChallengeFailed, match="malformed signature"):
        challenges.verify(user.address, challenge.message, signature)
    assert len(challenges) == 0
