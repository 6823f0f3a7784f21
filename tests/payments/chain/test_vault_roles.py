"""PaymentVault's two roles on a real EVM: the settler settles and does nothing else; the owner
revokes the settler and lowers the cap at once, and changes the treasury, the owner and a raise
of the cap only through the time lock."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tests.devnet import (
    ADMIN_DELAY_S,
    DELAY_S,
    batch_id,
    deployed_chain,
    depositor,
    operator_chain,
    terms,
    user,
)
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.client import TransactionRejected
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.chain.records import PendingChange
from tritonfleet.payments.money import Credit

EMPTY = "0x" + "00" * 20


def signed_by(chain: DevChain, anvil: Anvil, account: LocalAccount) -> DevChain:
    """The same contracts, every transaction (settlements too) signed by `account`."""
    other = operator_chain(anvil, operator=account, settler=account)
    other.use(chain.deployment)
    return other


def settles(chain: DevChain, payer: LocalAccount, n: int = 1, amount: int = 1) -> None:
    chain.wait_confirmed(chain.settle(batch_id(n), [payer.address], [Credit(amount)]))


# --- the settle role ---------------------------------------------------------------------------


def test_only_the_settler_settles(chain: DevChain, anvil: Anvil) -> None:
    """settle signed by the owner or by a stranger reverts; signed by the settler it settles."""
    payer = depositor(chain, 10)
    for account in (chain.operator, user(chain)):
        with pytest.raises(TransactionRejected, match="caller is not the settler"):
            settles(signed_by(chain, anvil, account), payer)
    settles(chain, payer, amount=4)
    assert chain.deposit_of(payer.address) == 6


def test_revoking_the_settler_cuts_it_off_at_once(chain: DevChain, anvil: Anvil) -> None:
    """set_settler takes effect in its own block: the old key is refused, the new one settles."""
    payer, new_key = depositor(chain, 10), user(chain)
    chain.wait_confirmed(chain.administer("set_settler", EMPTY))
    with pytest.raises(TransactionRejected, match="caller is not the settler"):
        settles(chain, payer)
    chain.wait_confirmed(chain.administer("set_settler", new_key.address))
    settles(signed_by(chain, anvil, new_key), payer)
    changed = [e.args for e in chain.vault_events("SettlerChanged")]
    assert changed[-2:] == [
        {"previous_settler": chain.settler.address, "new_settler": EMPTY},
        {"previous_settler": EMPTY, "new_settler": new_key.address},
    ]


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("set_settler", ("new",)),
        ("lower_max_batch_total", (0,)),
        ("propose_max_batch_total", (10**30,)),
        ("propose_treasury", ("new",)),
        ("propose_owner", ("new",)),
        ("execute_treasury", ()),
        ("cancel_treasury", ()),
        ("cancel_owner", ()),
        ("execute_max_batch_total", ()),
        ("cancel_max_batch_total", ()),
    ],
)
def test_the_settler_key_changes_nothing_but_deposits(
    chain: DevChain, anvil: Anvil, function: str, args: tuple[str | int, ...]
) -> None:
    """Every owner function signed by the settler's key reverts: a stolen hot key can neither
    take the treasury, the ownership or the role, nor raise the cap."""
    new = Account.create().address
    given = [new if arg == "new" else arg for arg in args]
    with pytest.raises(TransactionRejected, match="caller is not the owner"):
        signed_by(chain, anvil, chain.settler).administer(function, *given)


def test_one_key_holds_one_role(chain: DevChain) -> None:
    """The owner cannot make itself or the treasury the settler, nor the settler the treasury or
    the owner: one hot key must never hold every deposit."""
    roles = chain.vault_roles()
    for settler, refusal in (
        (roles.owner, "may not be the owner"),
        (roles.treasury, "may not be the treasury"),
    ):
        with pytest.raises(TransactionRejected, match=refusal):
            chain.administer("set_settler", settler)
    with pytest.raises(TransactionRejected, match="settler may not be the treasury"):
        chain.administer("propose_treasury", roles.settler)
    with pytest.raises(TransactionRejected, match="settler may not be the owner"):
        chain.administer("propose_owner", roles.settler)


# --- the cap per batch -------------------------------------------------------------------------


def test_a_settle_above_the_cap_reverts(anvil: Anvil) -> None:
    """A batch asking for more than max_batch_total in all reverts and moves nothing; one asking
    for the cap exactly settles."""
    chain = deployed_chain(anvil, max_batch_total=Credit(10))
    alice, bob = depositor(chain, 100), depositor(chain, 100)
    with pytest.raises(TransactionRejected, match="batch total above the cap"):
        chain.settle(batch_id(1), [alice.address, bob.address], [Credit(6), Credit(5)])
    assert (chain.deposit_of(alice.address), chain.deposit_of(bob.address)) == (100, 100)
    assert not chain.is_settled(batch_id(1))
    chain.wait_confirmed(chain.settle(batch_id(2), [alice.address, bob.address], [Credit(6), Credit(4)]))
    assert chain.credit_balance_of(chain.treasury()) == 10


def test_the_cap_counts_what_a_batch_asks_not_what_it_takes(anvil: Anvil) -> None:
    """Over the cap a batch reverts even when short deposits would pay less than the cap."""
    chain = deployed_chain(anvil, max_batch_total=Credit(10))
    short = depositor(chain, 2)
    with pytest.raises(TransactionRejected, match="batch total above the cap"):
        chain.settle(batch_id(1), [short.address], [Credit(11)])


def test_lowering_the_cap_is_immediate(chain: DevChain) -> None:
    """lower_max_batch_total applies in its block and logs MaxBatchTotalChanged; 0 pauses settling."""
    payer = depositor(chain, 100)
    before = chain.max_batch_total()
    chain.wait_confirmed(chain.administer("lower_max_batch_total", 0))
    assert chain.max_batch_total() == 0
    with pytest.raises(TransactionRejected, match="batch total above the cap"):
        settles(chain, payer)
    assert chain.vault_events("MaxBatchTotalChanged")[-1].args == {"previous_max": before, "new_max": 0}


def test_raising_the_cap_waits_out_the_time_lock(anvil: Anvil) -> None:
    """A raise is refused as a lowering, and proposed it is executable only after admin_delay."""
    chain = deployed_chain(anvil, max_batch_total=Credit(10))
    with pytest.raises(TransactionRejected, match="a raise goes through the time lock"):
        chain.administer("lower_max_batch_total", 11)
    chain.wait_confirmed(chain.administer("propose_max_batch_total", 50))
    with pytest.raises(TransactionRejected, match="time lock not over"):
        chain.administer("execute_max_batch_total")
    assert chain.max_batch_total() == 10
    chain.increase_time(ADMIN_DELAY_S)
    chain.wait_confirmed(chain.administer("execute_max_batch_total"))
    assert chain.max_batch_total() == 50 and chain.vault_roles().pending_max_batch_total is None


# --- the treasury ------------------------------------------------------------------------------


def test_a_treasury_change_before_its_time_lock_reverts(chain: DevChain) -> None:
    """Proposed, a new treasury cannot be executed before admin_delay: settlements still pay the
    old one; after the delay they pay the new one, and TreasuryChanged says so."""
    before, after, payer = chain.treasury(), Account.create().address, depositor(chain, 10)
    receipt = chain.wait_confirmed(chain.administer("propose_treasury", after))
    ready_at = int(chain.w3.eth.get_block(receipt.block_number)["timestamp"]) + ADMIN_DELAY_S
    assert chain.vault_roles().pending_treasury == PendingChange(after, ready_at)
    chain.increase_time(ADMIN_DELAY_S - 60)
    with pytest.raises(TransactionRejected, match="time lock not over"):
        chain.administer("execute_treasury")
    settles(chain, payer, 1, amount=3)
    assert chain.treasury() == before and chain.credit_balance_of(before) == 3
    chain.increase_time(60)
    chain.wait_confirmed(chain.administer("execute_treasury"))
    settles(chain, payer, 2, amount=4)
    assert chain.treasury() == after and chain.credit_balance_of(after) == 4
    assert chain.vault_events("TreasuryChanged")[-1].args == {
        "previous_treasury": before,
        "new_treasury": after,
    }
    assert chain.vault_events("TreasuryChangeProposed")[0].args == {
        "new_treasury": after,
        "ready_at": ready_at,
    }


def test_a_cancelled_treasury_change_never_executes(chain: DevChain) -> None:
    """cancel_treasury drops the proposal: after the delay there is nothing to execute."""
    before, after = chain.treasury(), Account.create().address
    chain.wait_confirmed(chain.administer("propose_treasury", after))
    chain.wait_confirmed(chain.administer("cancel_treasury"))
    chain.increase_time(ADMIN_DELAY_S)
    with pytest.raises(TransactionRejected, match="nothing proposed"):
        chain.administer("execute_treasury")
    assert chain.treasury() == before
    assert chain.vault_events("TreasuryChangeCancelled")[0].args == {"new_treasury": after}


# --- the ownership -----------------------------------------------------------------------------


def test_an_ownership_change_before_its_time_lock_reverts(chain: DevChain, anvil: Anvil) -> None:
    """The proposed owner cannot accept before admin_delay; after it, it owns the vault and the
    old owner's key is refused."""
    new_owner = user(chain)
    chain.wait_confirmed(chain.administer("propose_owner", new_owner.address))
    with pytest.raises(TransactionRejected, match="time lock not over"):
        chain.accept_ownership(new_owner)
    chain.increase_time(ADMIN_DELAY_S)
    chain.wait_confirmed(chain.accept_ownership(new_owner))
    assert chain.vault_roles().owner == new_owner.address
    with pytest.raises(TransactionRejected, match="caller is not the owner"):
        chain.administer("set_settler", EMPTY)
    signed_by(chain, anvil, new_owner).wait_confirmed(
        signed_by(chain, anvil, new_owner).administer("set_settler", EMPTY)
    )


def test_only_the_proposed_owner_accepts(chain: DevChain) -> None:
    """Another account, even after the delay, cannot take the ownership proposed to someone else;
    nor anyone once the owner cancelled."""
    proposed, other = user(chain), user(chain)
    chain.wait_confirmed(chain.administer("propose_owner", proposed.address))
    chain.increase_time(ADMIN_DELAY_S)
    with pytest.raises(TransactionRejected, match="not the proposed owner"):
        chain.accept_ownership(other)
    chain.wait_confirmed(chain.administer("cancel_owner"))
    with pytest.raises(TransactionRejected, match="not the proposed owner"):
        chain.accept_ownership(proposed)
    assert chain.vault_roles().owner == chain.operator.address


# --- deployment --------------------------------------------------------------------------------


def test_the_time_lock_is_no_shorter_than_a_withdrawal(anvil: Anvil) -> None:
    """A vault whose admin delay is below its withdrawal delay is refused at deployment."""
    chain = operator_chain(anvil)
    with pytest.raises(TransactionRejected, match="admin delay below the withdrawal delay"):
        chain.deploy(terms(chain, DELAY_S, admin_delay_s=DELAY_S - 1))


def test_a_new_vault_holds_its_terms(anvil: Anvil) -> None:
    """The deployed vault names its settler, cap, time lock and owner, with nothing pending."""
    chain = deployed_chain(anvil, max_batch_total=Credit(123))
    roles = chain.vault_roles()
    assert (roles.owner, roles.settler) == (chain.operator.address, chain.settler.address)
    assert (roles.max_batch_total, roles.admin_delay_s) == (123, ADMIN_DELAY_S)
    assert (roles.pending_treasury, roles.pending_owner, roles.pending_max_batch_total) == (None, None, None)
