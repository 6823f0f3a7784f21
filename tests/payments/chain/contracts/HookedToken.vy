# pragma version ~=0.4.3
"""
@title HookedToken (tests only)
@notice A bare ERC-20 whose transfers call back into a vault, as a token with transfer hooks
        (ERC-777 style) or a malicious asset could: the reentrancy tests' attacker.
"""

interface Vault:
    def deposit(amount: uint256): nonpayable


balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)
# The vault to call back into on the next transfer; empty: no hook.
reenter: public(address)


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@external
def mint(to: address, amount: uint256):
    self.balanceOf[to] += amount
    self.totalSupply += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@external
def set_reenter(vault: address):
    # The token deposits 1 of its own on re-entry: a call that succeeds unless the vault is locked.
    self.reenter = vault
    self.balanceOf[self] += 1
    self.totalSupply += 1
    self.allowance[self][vault] = max_value(uint256)


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transfer(to: address, amount: uint256) -> bool:
    self._move(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    self.allowance[owner][msg.sender] -= amount
    self._move(owner, to, amount)
    return True


@internal
def _move(owner: address, to: address, amount: uint256):
    self.balanceOf[owner] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=owner, receiver=to, value=amount)
    target: address = self.reenter
    if target != empty(address):
        # Once: the re-entrant deposit moves tokens too, which would call this hook again.
        self.reenter = empty(address)
        extcall Vault(target).deposit(1)
