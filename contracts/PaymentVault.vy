# pragma version ~=0.4.3
"""
@title PaymentVault
@notice Holds users' deposits of one ERC-20 asset and pays the operator's
        treasury for the inferences they used.
        - Users deposit (`approve` + `deposit`, or a signed EIP-2612 permit
          relayed through `deposit_with_permit`); the operator may also fund
          someone else's deposit from its own tokens (`deposit_for`: the
          development faucet).
        - The owner settles usage in batches: `settle(batch_id, accounts,
          amounts)` runs at most once per `batch_id`, so a settler that
          retries after a crash or a lost receipt can never charge twice.
        - Users withdraw unspent funds in two steps, `request_withdrawal`
          then `withdraw` once `withdrawal_delay` seconds have passed, so
          that charges for inferences already served can still settle.
@dev Every state-changing function updates storage before it calls the
     token (checks-effects-interactions) and is `@nonreentrant` as well,
     because the asset is any ERC-20, possibly one with transfer hooks.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership, ownable.renounce_ownership)


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

treasury: public(address)
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


@deploy
def __init__(asset_: IERC20, treasury_: address, withdrawal_delay_: uint256):
    ownable.__init__()
    assert asset_.address != empty(address), "vault: asset is the zero address"
    assert treasury_ != empty(address), "vault: treasury is the zero address"
    asset = asset_
    withdrawal_delay = withdrawal_delay_
    self.treasury = treasury_
    log TreasuryChanged(previous_treasury=empty(address), new_treasury=treasury_)


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
    """
    ownable._check_owner()
    assert batch_id != empty(bytes32), "vault: empty batch id"
    assert not self.is_settled[batch_id], "vault: batch already settled"
    assert len(accounts) == len(amounts), "vault: accounts and amounts differ in length"
    self.is_settled[batch_id] = True

    total: uint256 = 0
    for i: uint256 in range(len(accounts), bound=MAX_BATCH):
        account: address = accounts[i]
        wanted: uint256 = amounts[i]
        available: uint256 = self.deposits[account]
        taken: uint256 = min(wanted, available)
        self.deposits[account] = unsafe_sub(available, taken)
        total += taken
        if taken < wanted:
            log Shortfall(batch_id=batch_id, account=account, wanted=wanted, taken=taken)
        log Charged(batch_id=batch_id, account=account, amount=taken)
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
def set_treasury(new_treasury: address):
    """
    @notice Sends future settlements to `new_treasury` (owner only).
    """
    ownable._check_owner()
    assert new_treasury != empty(address), "vault: treasury is the zero address"
    previous: address = self.treasury
    self.treasury = new_treasury
    log TreasuryChanged(previous_treasury=previous, new_treasury=new_treasury)


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
