# pragma version ~=0.4.3
"""
@title PaymentVault
@notice Holds users' deposits of one ERC-20 asset and pays the operator's
        treasury for the inferences they used.
        - Users deposit (`approve` + `deposit`, or a signed EIP-2612 permit
          relayed through `deposit_with_permit`); the operator may also fund
          someone else's deposit from its own tokens (`deposit_for`: the
          development faucet).
        - The settler settles usage in batches: `settle(batch_id, accounts,
          amounts)` runs at most once per `batch_id`, so a settler that
          retries after a crash or a lost receipt can never charge twice,
          and moves at most `max_batch_total` per batch.
        - Users withdraw unspent funds in two steps, `request_withdrawal`
          then `withdraw` once `withdrawal_delay` seconds have passed, so
          that charges for inferences already served can still settle.
        - Two roles, so that no one hot key holds every deposit. The
          `settler` (a hot key, online in the settler service) may settle
          and do nothing else; settlements pay only the treasury. The
          owner (a cold key) appoints or revokes the settler and lowers
          the cap at once, so that a stolen settler key is cut off at
          once; it changes the treasury, the owner, or raises the cap only
          through a time lock: proposed, executable `admin_delay` seconds
          later, cancellable until then. So a stolen owner key cannot
          send deposits anywhere but the known treasury before users have
          seen the proposal and had time to withdraw (`admin_delay` is at
          least `withdrawal_delay`).
@dev Every state-changing function updates storage before it calls the
     token (checks-effects-interactions) and is `@nonreentrant` as well,
     because the asset is any ERC-20, possibly one with transfer hooks.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

# Ownership moves only through the time lock below (`propose_owner`), and
# is never renounced: a vault without an owner could not cut off a stolen
# settler key.
exports: ownable.owner


# Bounds the loop of `settle`. A batch of this many accounts costs about
# 8M gas (measured on anvil), a quarter of a mainnet block; the settler
# splits larger batches. `Chain.MAX_BATCH_ACCOUNTS` mirrors it.
MAX_BATCH: constant(uint256) = 1000
# Bounds `balances_of`. Reading this many accounts never seen before costs
# about 5.2M gas (measured on anvil), a sixth of the 30M that anvil allows one
# eth_call (geth 50M), in 32 KB of calldata; `Chain.MAX_READ_ACCOUNTS`
# mirrors it.
MAX_READ: constant(uint256) = 1000


asset: public(immutable(IERC20))
withdrawal_delay: public(immutable(uint256))
# Seconds between proposing a treasury, owner or cap raise and executing it.
admin_delay: public(immutable(uint256))

treasury: public(address)
# The only account that may settle; empty: nobody (settlement paused).
settler: public(address)
# The most one settle may charge in all (the sum of its amounts).
max_batch_total: public(uint256)
# Proposed changes, each executable from its `*_ready_at` on; a ready_at
# of 0 means none is pending.
pending_treasury: public(address)
treasury_ready_at: public(uint256)
pending_owner: public(address)
owner_ready_at: public(uint256)
pending_max_batch_total: public(uint256)
max_batch_total_ready_at: public(uint256)

deposits: public(HashMap[address, uint256])
# A pending withdrawal: the amount asked for and when it may be taken. The
# amount stays in `deposits` until then, so settlements can still draw on it.
pending_withdrawal: public(HashMap[address, uint256])
withdrawable_at: public(HashMap[address, uint256])
is_settled: public(HashMap[bytes32, bool])


event Deposited:
    account: indexed(address)
    payer: indexed(address)
    amount: uint256


event Charged:
    batch_id: indexed(bytes32)
    account: indexed(address)
    amount: uint256


event Shortfall:
    batch_id: indexed(bytes32)
    account: indexed(address)
    wanted: uint256
    taken: uint256


event Settled:
    batch_id: indexed(bytes32)
    total: uint256
    count: uint256


event WithdrawalRequested:
    account: indexed(address)
    amount: uint256
    withdrawable_at: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


event TreasuryChanged:
    previous_treasury: indexed(address)
    new_treasury: indexed(address)


event TreasuryChangeProposed:
    new_treasury: indexed(address)
    ready_at: uint256


event TreasuryChangeCancelled:
    new_treasury: indexed(address)


event SettlerChanged:
    previous_settler: indexed(address)
    new_settler: indexed(address)


event MaxBatchTotalChanged:
    previous_max: uint256
    new_max: uint256


event MaxBatchTotalProposed:
    new_max: uint256
    ready_at: uint256


event MaxBatchTotalCancelled:
    new_max: uint256


# The executed transfer logs ownable's OwnershipTransferred.
event OwnershipTransferProposed:
    previous_owner: indexed(address)
    new_owner: indexed(address)
    ready_at: uint256


event OwnershipTransferCancelled:
    new_owner: indexed(address)


@deploy
def __init__(
    asset_: IERC20,
    treasury_: address,
    withdrawal_delay_: uint256,
    admin_delay_: uint256,
    settler_: address,
    max_batch_total_: uint256,
):
    ownable.__init__()
    assert asset_.address != empty(address), "vault: asset is the zero address"
    assert treasury_ != empty(address), "vault: treasury is the zero address"
    # Else a treasury change could take effect before a user who saw it
    # proposed could get their deposit out.
    assert admin_delay_ >= withdrawal_delay_, "vault: admin delay below the withdrawal delay"
    asset = asset_
    withdrawal_delay = withdrawal_delay_
    admin_delay = admin_delay_
    self.treasury = treasury_
    log TreasuryChanged(previous_treasury=empty(address), new_treasury=treasury_)
    self._set_settler(settler_)
    self._set_max_batch_total(max_batch_total_)


@external
@nonreentrant
def deposit(amount: uint256):
    """
    @notice Moves `amount` of the caller's tokens (approved beforehand)
            into the caller's deposit.
    """
    self._deposit(msg.sender, msg.sender, amount)


@external
@nonreentrant
def deposit_for(account: address, amount: uint256):
    """
    @notice Moves `amount` of the caller's tokens into `account`'s deposit.
    """
    self._deposit(msg.sender, account, amount)


@external
@nonreentrant
def deposit_with_permit(
    owner: address, amount: uint256, deadline: uint256, v: uint8, r: bytes32, s: bytes32
):
    """
    @notice Deposits `amount` of `owner`'s tokens into `owner`'s deposit on
            the strength of `owner`'s EIP-2612 signature, so that anyone
            (the operator, relaying for a user without ether) may submit it.
    """
    # Anyone who sees the signature in the mempool can submit the permit
    # first, making ours fail. For the owner's own call that is harmless:
    # the allowance is there (or the transfer below reverts), so carry on.
    # For a relayer it is not: a failed permit must not let a third party
    # move an allowance the owner granted for something else.
    permitted: bool = raw_call(
        asset.address,
        abi_encode(
            owner,
            self,
            amount,
            deadline,
            v,
            r,
            s,
            method_id=method_id("permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"),
        ),
        revert_on_failure=False,
    )
    assert permitted or msg.sender == owner, "vault: permit failed"
    self._deposit(owner, owner, amount)


@external
@nonreentrant
def settle(batch_id: bytes32, accounts: DynArray[address, MAX_BATCH], amounts: DynArray[uint256, MAX_BATCH]):
    """
    @notice Charges each account its amount and pays the total to the
            treasury; runs once per `batch_id` and reverts on a repeat.
    @dev An account whose deposit is below its charge pays what it has and a
         `Shortfall` records the difference, instead of reverting the whole
         batch: one user's shortfall must not block everyone else's
         settlement, and the charge is for inferences already served, so
         taking what is there is the best the vault can do. The operator's
         ledger settles the rest off chain.
         The cap is on what the batch asks for, not on what it takes, so
         that whether a batch fits does not depend on the deposits.
    """
    assert msg.sender == self.settler, "vault: caller is not the settler"
    assert batch_id != empty(bytes32), "vault: empty batch id"
    assert not self.is_settled[batch_id], "vault: batch already settled"
    assert len(accounts) == len(amounts), "vault: accounts and amounts differ in length"
    self.is_settled[batch_id] = True

    asked: uint256 = 0
    total: uint256 = 0
    for i: uint256 in range(len(accounts), bound=MAX_BATCH):
        account: address = accounts[i]
        wanted: uint256 = amounts[i]
        available: uint256 = self.deposits[account]
        taken: uint256 = min(wanted, available)
        self.deposits[account] = unsafe_sub(available, taken)
        asked += wanted
        total += taken
        if taken < wanted:
            log Shortfall(batch_id=batch_id, account=account, wanted=wanted, taken=taken)
        log Charged(batch_id=batch_id, account=account, amount=taken)
    assert asked <= self.max_batch_total, "vault: batch total above the cap"
    log Settled(batch_id=batch_id, total=total, count=len(accounts))

    if total > 0:
        assert extcall asset.transfer(self.treasury, total, default_return_value=True), "vault: transfer failed"


@external
@nonreentrant
def request_withdrawal(amount: uint256):
    """
    @notice Asks to withdraw `amount` after `withdrawal_delay` seconds; a
            new request replaces the previous one and restarts the delay,
            and a request for 0 cancels.
    """
    assert amount <= self.deposits[msg.sender], "vault: amount exceeds deposit"
    ready_at: uint256 = block.timestamp + withdrawal_delay
    self.pending_withdrawal[msg.sender] = amount
    self.withdrawable_at[msg.sender] = ready_at
    log WithdrawalRequested(account=msg.sender, amount=amount, withdrawable_at=ready_at)


@external
@nonreentrant
def withdraw():
    """
    @notice Pays out the pending withdrawal once its delay has passed: the
            amount requested, or less if settlements took part of it since.
    """
    requested: uint256 = self.pending_withdrawal[msg.sender]
    assert requested > 0, "vault: no pending withdrawal"
    assert block.timestamp >= self.withdrawable_at[msg.sender], "vault: withdrawal delay not over"
    available: uint256 = self.deposits[msg.sender]
    amount: uint256 = min(requested, available)
    self.pending_withdrawal[msg.sender] = 0
    self.withdrawable_at[msg.sender] = 0
    self.deposits[msg.sender] = unsafe_sub(available, amount)
    log Withdrawn(account=msg.sender, amount=amount)

    if amount > 0:
        assert extcall asset.transfer(msg.sender, amount, default_return_value=True), "vault: transfer failed"


@external
def set_settler(new_settler: address):
    """
    @notice Gives the settle role to `new_settler`, at once (owner only);
            the empty address revokes it. At once, because this is how a
            stolen settler key is cut off; and safe at once, because a
            settler can pay only the treasury, which is time-locked.
    """
    ownable._check_owner()
    self._set_settler(new_settler)


@external
def lower_max_batch_total(new_max: uint256):
    """
    @notice Lowers the cap per batch at once (owner only); 0 pauses
            settlement. A raise goes through `propose_max_batch_total`.
    """
    ownable._check_owner()
    assert new_max <= self.max_batch_total, "vault: a raise goes through the time lock"
    self._set_max_batch_total(new_max)


@external
def propose_treasury(new_treasury: address):
    """
    @notice Proposes to send future settlements to `new_treasury`, from
            `admin_delay` seconds on (owner only); replaces any pending
            proposal and restarts the delay.
    """
    ownable._check_owner()
    self._check_treasury(new_treasury)
    ready_at: uint256 = block.timestamp + admin_delay
    self.pending_treasury = new_treasury
    self.treasury_ready_at = ready_at
    log TreasuryChangeProposed(new_treasury=new_treasury, ready_at=ready_at)


@external
def execute_treasury():
    """
    @notice Makes the proposed treasury the treasury, once its delay has
            passed (owner only).
    """
    ownable._check_owner()
    self._check_ready(self.treasury_ready_at)
    new_treasury: address = self.pending_treasury
    # The settler may have changed since the proposal.
    self._check_treasury(new_treasury)
    self.pending_treasury = empty(address)
    self.treasury_ready_at = 0
    previous: address = self.treasury
    self.treasury = new_treasury
    log TreasuryChanged(previous_treasury=previous, new_treasury=new_treasury)


@external
def cancel_treasury():
    """
    @notice Drops the pending treasury proposal (owner only).
    """
    ownable._check_owner()
    self._check_pending(self.treasury_ready_at)
    log TreasuryChangeCancelled(new_treasury=self.pending_treasury)
    self.pending_treasury = empty(address)
    self.treasury_ready_at = 0


@external
def propose_max_batch_total(new_max: uint256):
    """
    @notice Proposes a new cap per batch, from `admin_delay` seconds on
            (owner only); replaces any pending proposal.
    """
    ownable._check_owner()
    ready_at: uint256 = block.timestamp + admin_delay
    self.pending_max_batch_total = new_max
    self.max_batch_total_ready_at = ready_at
    log MaxBatchTotalProposed(new_max=new_max, ready_at=ready_at)


@external
def execute_max_batch_total():
    """
    @notice Makes the proposed cap the cap, once its delay has passed
            (owner only).
    """
    ownable._check_owner()
    self._check_ready(self.max_batch_total_ready_at)
    new_max: uint256 = self.pending_max_batch_total
    self.pending_max_batch_total = 0
    self.max_batch_total_ready_at = 0
    self._set_max_batch_total(new_max)


@external
def cancel_max_batch_total():
    """
    @notice Drops the pending cap proposal (owner only).
    """
    ownable._check_owner()
    self._check_pending(self.max_batch_total_ready_at)
    log MaxBatchTotalCancelled(new_max=self.pending_max_batch_total)
    self.pending_max_batch_total = 0
    self.max_batch_total_ready_at = 0


@external
def propose_owner(new_owner: address):
    """
    @notice Proposes `new_owner` as the owner (owner only): it becomes the
            owner when it calls `accept_ownership`, `admin_delay` seconds
            on; replaces any pending proposal and restarts the delay.
    """
    ownable._check_owner()
    assert new_owner != empty(address), "vault: new owner is the zero address"
    assert new_owner != self.settler, "vault: the settler may not be the owner"
    ready_at: uint256 = block.timestamp + admin_delay
    self.pending_owner = new_owner
    self.owner_ready_at = ready_at
    log OwnershipTransferProposed(previous_owner=ownable.owner, new_owner=new_owner, ready_at=ready_at)


@external
def accept_ownership():
    """
    @notice The proposed owner takes ownership, once the delay has passed;
            accepting proves that the new owner's key works.
    """
    assert msg.sender == self.pending_owner, "vault: caller is not the proposed owner"
    self._check_ready(self.owner_ready_at)
    # The settler may have changed since the proposal.
    assert msg.sender != self.settler, "vault: the settler may not be the owner"
    self.pending_owner = empty(address)
    self.owner_ready_at = 0
    ownable._transfer_ownership(msg.sender)


@external
def cancel_owner():
    """
    @notice Drops the pending ownership proposal (owner only).
    """
    ownable._check_owner()
    self._check_pending(self.owner_ready_at)
    log OwnershipTransferCancelled(new_owner=self.pending_owner)
    self.pending_owner = empty(address)
    self.owner_ready_at = 0


@external
@view
def balances_of(
    accounts: DynArray[address, MAX_READ]
) -> (DynArray[uint256, MAX_READ], DynArray[uint256, MAX_READ]):
    """
    @notice Each account's deposit and pending withdrawal, in the order
            given, read in one call and so at one block.
    @dev For the gateway, which reads every user's balance each block: one
         eth_call per `MAX_READ` accounts instead of two per account.
    """
    deposits: DynArray[uint256, MAX_READ] = []
    pending: DynArray[uint256, MAX_READ] = []
    for account: address in accounts:
        deposits.append(self.deposits[account])
        pending.append(self.pending_withdrawal[account])
    return deposits, pending


@internal
def _deposit(payer: address, account: address, amount: uint256):
    assert account != empty(address), "vault: deposit to the zero address"
    assert amount > 0, "vault: zero deposit"
    self.deposits[account] += amount
    log Deposited(account=account, payer=payer, amount=amount)
    assert extcall asset.transferFrom(payer, self, amount, default_return_value=True), "vault: transfer failed"


@internal
def _set_settler(new_settler: address):
    # One key for both roles would be the single hot key this split avoids;
    # a settler that is the treasury would pay itself.
    assert new_settler != ownable.owner, "vault: the settler may not be the owner"
    assert new_settler != self.treasury, "vault: the settler may not be the treasury"
    previous: address = self.settler
    self.settler = new_settler
    log SettlerChanged(previous_settler=previous, new_settler=new_settler)


@internal
def _set_max_batch_total(new_max: uint256):
    previous: uint256 = self.max_batch_total
    self.max_batch_total = new_max
    log MaxBatchTotalChanged(previous_max=previous, new_max=new_max)


@internal
def _check_treasury(new_treasury: address):
    assert new_treasury != empty(address), "vault: treasury is the zero address"
    assert new_treasury != self.settler, "vault: the settler may not be the treasury"


@internal
@view
def _check_pending(ready_at: uint256):
    assert ready_at != 0, "vault: nothing proposed"


@internal
@view
def _check_ready(ready_at: uint256):
    self._check_pending(ready_at)
    assert block.timestamp >= ready_at, "vault: time lock not over"
