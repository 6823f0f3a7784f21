"""The one wrapper over web3.py: every JSON-RPC call of the payments path goes through `Chain`.

Only standard Ethereum JSON-RPC methods are used here, so that any node or provider will do;
anvil's own methods live in `devchain.DevChain`, for tests and the development faucet.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TooManyRequests,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import Nonce, RPCEndpoint, TxParams, Wei

from tritonfleet.config import FleetConfig
from tritonfleet.payments.chain.contracts import CompiledContract, load_contracts
from tritonfleet.payments.chain.deployment import Deployment, VaultTerms
from tritonfleet.payments.chain.keys import operator_account, settler_account
from tritonfleet.payments.chain.permit import Permit, PermitDomain
from tritonfleet.payments.chain.records import (
    ChainBalances,
    ChargedEvent,
    Fees,
    PendingChange,
    PendingWithdrawal,
    Receipt,
    SettledEvent,
    ShortfallEvent,
    VaultEvent,
    VaultRoles,
    charged,
    receipt_from_web3,
    settled,
    shortfall,
    vault_event_from_web3,
)
from tritonfleet.payments.errors import PaymentsError
from tritonfleet.payments.money import Credit


class ChainError(PaymentsError):
    """Root of the errors of chain access.

    ChainError                  an RPC error that fits none below (a bad request, say)
    ├── ChainUnavailable        the endpoint did not answer: refused, timed out, 5xx, rate-limited,
    │                           or a node behind it lagging ("header not found"); transient, so
    │                           callers queue the work and retry
    ├── FeeAboveCeiling         the fees a transaction needs exceed the caller's ceiling: wait
    ├── ReceiptTimeout          no confirmed receipt in time; the transaction may still be mined,
    │                           so wait again, or replace it (same nonce, higher fees)
    ├── WrongChain              the endpoint serves another chain than the configured chain id
    ├── NotDeployed             no deployment known, or no code at its addresses
    ├── TransactionRejected     refused before mining: the contract would revert, or the node
    │   │                       refused the transaction (nonce used, replacement underpriced, no gas)
    │   └── BatchAlreadySettled settle of a batch id that the vault has settled already
    └── TransactionReverted     mined but reverted; `receipt` has the details
    """

    status = 502


class ChainUnavailable(ChainError):
    pass


class ReceiptTimeout(ChainError):
    pass


class FeeAboveCeiling(ChainError):
    pass


class WrongChain(ChainError):
    pass


class NotDeployed(ChainError):
    pass


class TransactionRejected(ChainError):
    pass


class BatchAlreadySettled(TransactionRejected):
    pass


class NonceTaken(TransactionRejected):
    """Another transaction from the same key holds this nonce: sign again with a fresh one.

    Two processes signing with one key (two settlers, or a settler restarted while its old
    transaction was pending) take nonces from each other: one read from the node can be taken
    before a transaction signed with it lands."""


class TransactionReverted(ChainError):
    def __init__(self, receipt: Receipt) -> None:
        super().__init__(f"transaction {receipt.tx_hash} reverted in block {receipt.block_number}")
        self.receipt = receipt


# PaymentVault's MAX_BATCH: the most accounts one settle takes.
MAX_BATCH_ACCOUNTS = 1000
# PaymentVault's MAX_READ: the most accounts one balances_of call reads.
MAX_READ_ACCOUNTS = 1000
# What a contract wallet's `isValidSignature(bytes32, bytes)` answers for a signature it made.
_EIP1271_MAGIC_VALUE = bytes.fromhex("1626ba7e")
_EIP1271_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "isValidSignature",
        "stateMutability": "view",
        "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
        "outputs": [{"name": "", "type": "bytes4"}],
    }
]
# What balances_of returns: the deposits, then the pending withdrawals.
_BALANCES_OF = ["uint256[]", "uint256[]"]

# Estimates are exact for the state they ran on; the margin absorbs state that moved since.
_GAS_MARGIN_PCT = 20
# Many providers refuse eth_getLogs over wider block ranges.
_LOG_RANGE_BLOCKS = 10_000

_UNLIMITED = 2**256 - 1

_NO_DEPLOYMENT = "no contracts known: deploy them, or load chain.deployment_file"

# How nodes say another transaction holds the nonce, mined or pending.
_NONCE_TAKEN = re.compile(r"nonce too low|replacement transaction underpriced", re.IGNORECASE)
# How often a sender signs again with a fresh nonce before giving up.
NONCE_ATTEMPTS = 3
# How geth ("already known"), anvil ("already imported") and others say the pool has it.
_ALREADY_KNOWN = re.compile(r"already known|already imported|known transaction", re.IGNORECASE)
# JSON-RPC errors that mean "not now" rather than "no": a provider's rate limit (EIP-1474's
# -32005, "limit exceeded"), a node behind a load balancer that lags the block asked for, or
# the operator's key out of gas money (until it is funded: no batch is at fault, and none may
# be failed for good over it; the settler's failure metrics show it).
_TRANSIENT_CODES = frozenset({-32005})
_TRANSIENT = re.compile(
    r"header not found|rate.?limit|too many requests|request limit|insufficient funds", re.IGNORECASE
)

# 32 bytes, or their 0x-prefixed hex (the ledger's form).
BatchId = bytes | str

# The vault's owner-only functions that `administer` sends: the settle role and the cap at once,
# the rest through the time lock (propose, then execute or cancel).
OWNER_FUNCTIONS = frozenset(
    {
        "set_settler",
        "lower_max_batch_total",
        "propose_treasury",
        "execute_treasury",
        "cancel_treasury",
        "propose_owner",
        "cancel_owner",
        "propose_max_batch_total",
        "execute_max_batch_total",
        "cancel_max_batch_total",
    }
)

_Callable = ContractFunction | ContractConstructor


@dataclass(frozen=True)
class SignedTx:
    tx_hash: str
    nonce: int
    raw: bytes


@dataclass(frozen=True)
class SettledBatch:
    """Where the vault settled a batch id, and what it could not take from short deposits."""

    block_number: int
    tx_hash: str
    shortfalls: tuple[ShortfallEvent, ...]


class Chain:
    """The operator's view of one chain: deploy, mint, settle, read deposits and events.

    Transactions are signed locally and sent raw, so the node needs no unlocked account:
    settlements by `settler` (the vault's settle role), everything else by `operator` (the
    vault's owner, the credit's minter); `settler` defaults to `operator`, for a Chain that
    settles nothing or is the settler's own (`connect_settler`). A method that sends returns
    the transaction hash at once; `wait_confirmed` waits for `confirmations` blocks, so that a
    caller can record the hash before it waits.
    """

    def __init__(
        self,
        rpc_url: str,
        chain_id: int,
        operator: LocalAccount,
        confirmations: int = 1,
        receipt_timeout_s: float = 120.0,
        deployment: Deployment | None = None,
        request_timeout_s: float = 10.0,
        poll_interval_s: float = 0.2,
        settler: LocalAccount | None = None,
    ) -> None:
        self.rpc_url = rpc_url
        # What messages and logs name the endpoint by: a provider's key is in the URL's path.
        self.endpoint = redacted(rpc_url)
        self.chain_id = chain_id
        self.operator = operator
        self.settler = operator if settler is None else settler
        self.confirmations = max(1, confirmations)
        self.receipt_timeout_s = receipt_timeout_s
        self.poll_interval_s = poll_interval_s
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": request_timeout_s}))
        self._deployment: Deployment | None = None
        self._credit: Contract | None = None
        self._vault: Contract | None = None
        if deployment is not None:
            self.use(deployment)

    # --- the node --------------------------------------------------------------------------

    def check(self) -> None:
        """Raise unless the endpoint serves `chain_id` and the deployment's contracts are there."""
        with _rpc():
            actual = self.w3.eth.chain_id
        if actual != self.chain_id:
            raise WrongChain(f"{self.endpoint} serves chain {actual}, not {self.chain_id}")
        deployment = self.deployment
        if deployment.chain_id != self.chain_id:
            raise WrongChain(f"the deployment is for chain {deployment.chain_id}, not {self.chain_id}")
        for address in (deployment.credit, deployment.vault):
            if not self.has_code(address):
                raise NotDeployed(f"no contract at {address} on chain {self.chain_id}")

    def block_number(self) -> int:
        with _rpc():
            return self.w3.eth.block_number

    def has_code(self, address: str) -> bool:
        with _rpc():
            return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def contract_signed(self, address: str, digest: bytes, signature: bytes) -> bool:
        """EIP-1271: whether the contract wallet at `address` (a Safe, a smart account: no key of
        its own) accepts `signature` over `digest`, answering `isValidSignature` with its magic
        value; False where no contract is, or one that reverts or is no EIP-1271 wallet.
        ChainUnavailable when the chain cannot tell, which is no "invalid signature"."""
        if not self.has_code(address):
            return False
        wallet = self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=_EIP1271_ABI)
        try:
            with _rpc():
                answer = wallet.functions.isValidSignature(digest, signature).call()
        except (TransactionRejected, BadFunctionCallOutput):
            return False
        return bytes(answer) == _EIP1271_MAGIC_VALUE

    def eth_balance_of(self, address: str) -> int:
        with _rpc():
            return self.w3.eth.get_balance(Web3.to_checksum_address(address))

    def next_nonce(self, account: LocalAccount | None = None) -> int:
        """The next nonce of `account` (by default the operator's), counting its transactions
        still pending."""
        with _rpc():
            return self.w3.eth.get_transaction_count((account or self.operator).address, "pending")

    # --- deployment ------------------------------------------------------------------------

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            raise NotDeployed(_NO_DEPLOYMENT)
        return self._deployment

    def use(self, deployment: Deployment) -> None:
        contracts = load_contracts()
        self._deployment = deployment
        self._credit = self._contract(contracts.credit, deployment.credit)
        self._vault = self._contract(contracts.vault, deployment.vault)

    def deploy(self, terms: VaultTerms, asset: str | None = None) -> Deployment:
        """Create a PaymentVault owned by the operator, on these terms, and use it.

        The vault holds `asset`, an existing ERC-20 (a stablecoin, say), or when None a new
        FleetCredit, also owned (and so minted) by the operator.
        """
        contracts = load_contracts()
        first_block: int | None = None
        if asset is None:
            created = self.wait_confirmed(self._send(self._factory(contracts.credit).constructor()))
            assert created.contract_address is not None
            asset, first_block = created.contract_address, created.block_number
        vault_ctor = self._factory(contracts.vault).constructor(
            Web3.to_checksum_address(asset),
            Web3.to_checksum_address(terms.treasury),
            terms.withdrawal_delay_s,
            terms.admin_delay_s,
            Web3.to_checksum_address(terms.settler),
            terms.max_batch_total,
        )
        vault = self.wait_confirmed(self._send(vault_ctor))
        assert vault.contract_address is not None
        deployment = Deployment(
            chain_id=self.chain_id,
            credit=Web3.to_checksum_address(asset),
            vault=vault.contract_address,
            block=vault.block_number if first_block is None else first_block,
            withdrawal_delay_s=terms.withdrawal_delay_s,
        )
        self.use(deployment)
        return deployment

    # --- the operator's transactions -------------------------------------------------------

    def mint(self, to: str, amount: Credit) -> str:
        return self._send(self._credit_c.functions.mint(Web3.to_checksum_address(to), amount))

    def administer(self, function: str, *args: str | int) -> str:
        """Send one of the vault's owner functions (`OWNER_FUNCTIONS`) as the operator; a str
        argument is an address."""
        if function not in OWNER_FUNCTIONS:
            raise ValueError(f"{function} is not one of the vault's owner functions")
        given = [Web3.to_checksum_address(a) if isinstance(a, str) else a for a in args]
        return self._send(self._vault_c.functions[function](*given))

    def accept_ownership(self, new_owner: LocalAccount) -> str:
        """The proposed owner takes the vault over, once the time lock has passed."""
        return self._send(self._vault_c.functions.accept_ownership(), sender=new_owner)

    def deposit_for(self, account: str, amount: Credit) -> str:
        """Fund `account`'s deposit from the operator's own credit (the dev faucet)."""
        # The vault is the operator's own contract: one unlimited approval serves every faucet call.
        self._ensure_allowance(self.operator, amount, approve=_UNLIMITED)
        return self._send(self._vault_c.functions.deposit_for(Web3.to_checksum_address(account), amount))

    def deposit_with_permit(self, permit: Permit, sender: LocalAccount | None = None) -> str:
        """Deposit on a user's signed permit: by default the operator relays it and pays the gas."""
        fn = self._vault_c.functions.deposit_with_permit(
            Web3.to_checksum_address(permit.owner),
            permit.amount,
            permit.deadline,
            permit.v,
            permit.r,
            permit.s,
        )
        return self._send(fn, sender=sender)

    def settle(
        self,
        batch_id: BatchId,
        accounts: Sequence[str],
        amounts: Sequence[Credit],
        nonce: int | None = None,
        replaces: str | None = None,
    ) -> str:
        """Sign and send the settlement of one batch: `sign_settle` then `broadcast`."""
        return self.broadcast(self.sign_settle(batch_id, accounts, amounts, nonce, replaces))

    def sign_settle(
        self,
        batch_id: BatchId,
        accounts: Sequence[str],
        amounts: Sequence[Credit],
        nonce: int | None = None,
        replaces: str | None = None,
        max_fee_per_gas: int | None = None,
    ) -> SignedTx:
        """The signed settlement of one batch, not yet sent: record its hash and nonce, then
        `broadcast` it, so that a crash in between leaves a record of what may be in flight.

        Resending after a crash: pass the recorded `nonce`, and the recorded hash as `replaces`
        to outbid it if it is still pending; the vault settles a batch id once whatever arrives.
        Raises FeeAboveCeiling rather than bid over `max_fee_per_gas` (wei).
        """
        fn = self._settle_fn(batch_id, accounts, amounts)
        try:
            return self._sign(
                fn, self.settler, nonce=nonce, replaces=replaces, max_fee_per_gas=max_fee_per_gas
            )
        except TransactionRejected:
            if self.is_settled(batch_id):
                raise BatchAlreadySettled(f"batch 0x{_bytes32(batch_id).hex()} is settled already") from None
            raise

    def estimate_settle_gas(
        self, batch_id: BatchId, accounts: Sequence[str], amounts: Sequence[Credit]
    ) -> int:
        with _rpc(TransactionRejected):
            return self._settle_fn(batch_id, accounts, amounts).estimate_gas({"from": self.settler.address})

    # --- users' transactions (a user-side client, tests, benchmarks) ----------------------

    def deposit(self, user: LocalAccount, amount: Credit) -> str:
        """approve (when the allowance is short) and deposit, both signed by `user`."""
        self._ensure_allowance(user, amount)
        return self._send(self._vault_c.functions.deposit(amount), sender=user)

    def request_withdrawal(self, user: LocalAccount, amount: Credit) -> str:
        return self._send(self._vault_c.functions.request_withdrawal(amount), sender=user)

    def withdraw(self, user: LocalAccount) -> str:
        return self._send(self._vault_c.functions.withdraw(), sender=user)

    # --- receipts --------------------------------------------------------------------------

    def wait_confirmed(self, tx_hash: str, timeout_s: float | None = None) -> Receipt:
        """The receipt once `confirmations` blocks include it; raise if it reverted or took too long."""
        deadline = time.monotonic() + (self.receipt_timeout_s if timeout_s is None else timeout_s)
        while True:
            receipt = self._confirmed_receipt(tx_hash)
            if receipt is not None:
                if not receipt.succeeded:
                    raise TransactionReverted(receipt)
                return receipt
            if time.monotonic() >= deadline:
                raise ReceiptTimeout(f"transaction {tx_hash} not confirmed within the timeout")
            time.sleep(self.poll_interval_s)

    def receipt_of(self, tx_hash: str) -> Receipt | None:
        """The receipt if the transaction is mined (at any depth), else None."""
        with _rpc():
            try:
                return receipt_from_web3(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
            except TransactionNotFound:
                return None

    # --- reads -----------------------------------------------------------------------------

    def deposit_of(self, account: str) -> Credit:
        return Credit(_call(self._vault_c.functions.deposits(Web3.to_checksum_address(account))))

    def balances(self, accounts: Iterable[str]) -> ChainBalances:
        """Deposits and pending withdrawals of `accounts`, all as of one block: the block number,
        then one eth_call of the vault's `balances_of` per MAX_READ_ACCOUNTS accounts, each pinned
        to that block, so that a block mined meanwhile cannot mix two states in one snapshot."""
        vault = self._vault_c
        given = list(accounts)
        block = self.block_number()
        deposits: dict[str, Credit] = {}
        pending: dict[str, Credit] = {}
        for start in range(0, len(given), MAX_READ_ACCOUNTS):
            chunk = given[start : start + MAX_READ_ACCOUNTS]
            chunk_deposits, chunk_pending = self._balances_of(vault, chunk, block)
            for account, deposit, withdrawal in zip(chunk, chunk_deposits, chunk_pending, strict=True):
                deposits[account] = Credit(deposit)
                pending[account] = Credit(withdrawal)
        return ChainBalances(block, deposits, pending)

    def _balances_of(
        self, vault: Contract, accounts: Sequence[str], block: int
    ) -> tuple[Sequence[int], Sequence[int]]:
        """One eth_call of `balances_of` at `block`, sent raw: web3's validation middleware asks
        the node for its chain id twice around every eth_call, three round trips instead of one."""
        data = vault.encode_abi("balances_of", [[Web3.to_checksum_address(a) for a in accounts]])
        with _rpc():
            response = self.w3.provider.make_request(
                RPCEndpoint("eth_call"), [{"to": vault.address, "data": data}, hex(block)]
            )
            if "error" in response:
                # Raised as web3 would, so that _rpc tells a transient error from a refusal.
                message = f"eth_call balances_of at block {block}: {response['error']}"
                raise Web3RPCError(message, rpc_response=response)
        try:
            deposits, pending = self.w3.codec.decode(_BALANCES_OF, HexBytes(response["result"]))
        except DecodingError as exc:
            raise NotDeployed(f"no balances_of in the vault at {vault.address}: redeploy") from exc
        return deposits, pending

    def credit_balance_of(self, account: str) -> Credit:
        return Credit(_call(self._credit_c.functions.balanceOf(Web3.to_checksum_address(account))))

    def pending_withdrawal_of(self, account: str) -> PendingWithdrawal:
        address = Web3.to_checksum_address(account)
        amount = _call(self._vault_c.functions.pending_withdrawal(address))
        return PendingWithdrawal(Credit(amount), _call(self._vault_c.functions.withdrawable_at(address)))

    def treasury(self) -> str:
        treasury: str = _call(self._vault_c.functions.treasury())
        return treasury

    def max_batch_total(self) -> Credit:
        """The most one settle may charge in all: the settler sizes its batches to it."""
        return Credit(self._role_call("max_batch_total"))

    def vault_roles(self) -> VaultRoles:
        vault = self._vault_c

        def pending(value: str, ready_at: str) -> PendingChange | None:
            at = int(self._role_call(ready_at))
            return None if at == 0 else PendingChange(self._role_call(value), at)

        return VaultRoles(
            owner=_call(vault.functions.owner()),
            settler=self._role_call("settler"),
            treasury=self.treasury(),
            max_batch_total=self.max_batch_total(),
            admin_delay_s=int(self._role_call("admin_delay")),
            pending_treasury=pending("pending_treasury", "treasury_ready_at"),
            pending_owner=pending("pending_owner", "owner_ready_at"),
            pending_max_batch_total=pending("pending_max_batch_total", "max_batch_total_ready_at"),
        )

    def is_settled(self, batch_id: BatchId) -> bool:
        return bool(_call(self._vault_c.functions.is_settled(_bytes32(batch_id))))

    def credit_nonce(self, owner: str) -> int:
        """The owner's next EIP-2612 permit nonce."""
        return int(_call(self._credit_c.functions.nonces(Web3.to_checksum_address(owner))))

    def permit_domain(self) -> PermitDomain:
        # EIP-5267: (fields, name, version, chainId, verifyingContract, salt, extensions)
        _, name, version, chain_id, contract, _, _ = _call(self._credit_c.functions.eip712Domain())
        return PermitDomain(name, version, chain_id, contract)

    # --- events ----------------------------------------------------------------------------

    def vault_events(
        self,
        name: str,
        from_block: int | None = None,
        to_block: int | None = None,
        batch_id: BatchId | None = None,
    ) -> list[VaultEvent]:
        """Every `name` event of the vault in [from_block, to_block] (default: deployment to head),
        or only those of one `batch_id` (the node filters on the indexed argument)."""
        start = self.deployment.block if from_block is None else from_block
        end = self.block_number() if to_block is None else to_block
        event = self._vault_c.events[name]()
        only = None if batch_id is None else {"batch_id": _bytes32(batch_id)}
        found: list[VaultEvent] = []
        for low in range(start, end + 1, _LOG_RANGE_BLOCKS):
            high = min(end, low + _LOG_RANGE_BLOCKS - 1)
            with _rpc():
                logs = event.get_logs(argument_filters=only, from_block=low, to_block=high)
                found.extend(vault_event_from_web3(log) for log in logs)
        return found

    def settled_events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> list[SettledEvent]:
        return [settled(e) for e in self.vault_events("Settled", from_block, to_block)]

    def charged_events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> list[ChargedEvent]:
        return [charged(e) for e in self.vault_events("Charged", from_block, to_block)]

    def shortfall_events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> list[ShortfallEvent]:
        return [shortfall(e) for e in self.vault_events("Shortfall", from_block, to_block)]

    def settlement_of(self, batch_id: BatchId, tx_hash: str | None = None) -> SettledBatch | None:
        """Where the vault settled `batch_id`, with the shortfalls it logged then; None while no
        settlement of it is found.

        `tx_hash`, the settle transaction sent for it, is where to look first; when it did not
        land (another one at its nonce did, or the batch was settled before a crash), the
        vault's logs are searched from the deployment on.
        """
        receipt = self.receipt_of(tx_hash) if tx_hash is not None else None
        if receipt is not None and receipt.succeeded:
            # A settle that succeeded settled its batch: the vault reverts any repeat.
            block, settled_by = receipt.block_number, receipt.tx_hash
        else:
            found = self.vault_events("Settled", batch_id=batch_id)
            if not found:
                return None
            block, settled_by = found[0].block_number, found[0].tx_hash
        shortfalls = self.vault_events("Shortfall", block, block, batch_id=batch_id)
        return SettledBatch(block, settled_by, tuple(shortfall(e) for e in shortfalls))

    # --- internals -------------------------------------------------------------------------

    @property
    def _credit_c(self) -> Contract:
        if self._credit is None:
            raise NotDeployed(_NO_DEPLOYMENT)
        return self._credit

    @property
    def _vault_c(self) -> Contract:
        if self._vault is None:
            raise NotDeployed(_NO_DEPLOYMENT)
        return self._vault

    def _contract(self, compiled: CompiledContract, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=compiled.abi)

    def _role_call(self, getter: str) -> Any:
        """A read of the settle role, the cap or the time lock, which vaults deployed before them
        lack: their calls revert."""
        try:
            return _call(self._vault_c.functions[getter]())
        except TransactionRejected as exc:
            raise NotDeployed(
                f"the vault at {self._vault_c.address} has no {getter}: it predates the settle role; redeploy"
            ) from exc

    def _factory(self, compiled: CompiledContract) -> type[Contract]:
        return self.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)

    def _settle_fn(
        self, batch_id: BatchId, accounts: Sequence[str], amounts: Sequence[Credit]
    ) -> ContractFunction:
        if len(accounts) != len(amounts):
            raise ValueError(f"{len(accounts)} accounts but {len(amounts)} amounts")
        if len(accounts) > MAX_BATCH_ACCOUNTS:
            raise ValueError(f"{len(accounts)} accounts in one batch; the vault takes {MAX_BATCH_ACCOUNTS}")
        addresses = [Web3.to_checksum_address(a) for a in accounts]
        return self._vault_c.functions.settle(_bytes32(batch_id), addresses, list(amounts))

    def _ensure_allowance(self, owner: LocalAccount, amount: Credit, approve: int | None = None) -> None:
        spender = self.deployment.vault
        allowance = _call(self._credit_c.functions.allowance(owner.address, spender))
        if allowance < amount:
            fn = self._credit_c.functions.approve(spender, amount if approve is None else approve)
            self.wait_confirmed(self._send(fn, sender=owner))

    def _send(
        self,
        fn: _Callable,
        sender: LocalAccount | None = None,
        nonce: int | None = None,
        replaces: str | None = None,
    ) -> str:
        # Only a nonce read here can be read again; a caller's own nonce is the caller's to fix.
        for attempt in range(1, NONCE_ATTEMPTS + 1):
            try:
                return self.broadcast(self._sign(fn, sender, nonce, replaces))
            except NonceTaken:
                if nonce is not None or attempt == NONCE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _sign(
        self,
        fn: _Callable,
        sender: LocalAccount | None = None,
        nonce: int | None = None,
        replaces: str | None = None,
        max_fee_per_gas: int | None = None,
    ) -> SignedTx:
        account = sender or self.operator
        with _rpc(TransactionRejected):
            if nonce is None:
                nonce = self.w3.eth.get_transaction_count(account.address, "pending")
            gas = fn.estimate_gas({"from": account.address})
            fees = self._fees(replaces, max_fee_per_gas)
            params: TxParams = {
                "from": account.address,
                "chainId": self.chain_id,
                "nonce": Nonce(nonce),
                "gas": gas * (100 + _GAS_MARGIN_PCT) // 100,
                "maxFeePerGas": Wei(fees.max_fee_per_gas),
                "maxPriorityFeePerGas": Wei(fees.max_priority_fee_per_gas),
            }
            signed = account.sign_transaction(fn.build_transaction(params))  # type: ignore[arg-type]
        return SignedTx(signed.hash.to_0x_hex(), nonce, bytes(signed.raw_transaction))

    def broadcast(self, signed: SignedTx) -> str:
        """Send a signed transaction; its hash. Sending the same one twice is no error."""
        with _rpc(TransactionRejected):
            try:
                self.w3.eth.send_raw_transaction(signed.raw)
            except Web3RPCError as exc:
                # A resend of the very same signed transaction (same nonce, fees and data): it
                # is in the pool already, which is what the caller wanted.
                if _ALREADY_KNOWN.search(str(exc)):
                    return signed.tx_hash
                if _NONCE_TAKEN.search(str(exc)):
                    raise NonceTaken(str(exc)) from exc
                raise
        return signed.tx_hash

    def _fees(self, replaces: str | None, ceiling: int | None = None) -> Fees:
        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
        tip = self.w3.eth.max_priority_fee
        # Twice the base fee survives six full blocks of base-fee increases before it stalls.
        fees = Fees(2 * base_fee + tip, tip)
        # The least a block takes now; replacing a pending transaction, the least a node takes.
        least = Fees(base_fee + tip, tip)
        if replaces is not None:
            try:
                old = self.w3.eth.get_transaction(HexBytes(replaces))
            except TransactionNotFound:
                old = None  # dropped from the pool: nothing to outbid
            if old is not None:
                bumped = Fees(old.get("maxFeePerGas", 0), old.get("maxPriorityFeePerGas", 0)).bumped()
                fees, least = fees.at_least(bumped), least.at_least(bumped)
        if ceiling is None or fees.max_fee_per_gas <= ceiling:
            return fees
        if least.max_fee_per_gas > ceiling:
            raise FeeAboveCeiling(
                f"a transaction takes {least.max_fee_per_gas} wei per gas now, over the ceiling of {ceiling}"
            )
        return Fees(ceiling, min(fees.max_priority_fee_per_gas, ceiling))

    def _request(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call: only for DevChain's anvil-only methods."""
        with _rpc():
            response = self.w3.provider.make_request(RPCEndpoint(method), params)
        if "error" in response:
            raise ChainError(f"{method}: {response['error']}")
        return response.get("result")

    def _confirmed_receipt(self, tx_hash: str) -> Receipt | None:
        receipt = self.receipt_of(tx_hash)
        if receipt is None or self.block_number() - receipt.block_number + 1 < self.confirmations:
            return None
        # A reorg may have moved the transaction meanwhile; count depth from where it is now.
        again = self.receipt_of(tx_hash)
        return again if again is not None and again.block_hash == receipt.block_hash else None


def connect(config: FleetConfig, signing: bool = True) -> Chain:
    """A Chain for the configured endpoint, operator key and (when written) deployment file.

    A reader (`signing=False`: the gateway, the token manager's balances) gets a fresh key with
    no funds and no role instead of the operator's, so it never needs the keystore password.
    """
    return _connect(config, operator_account(config.chain) if signing else Account.create())


def connect_settler(config: FleetConfig) -> Chain:
    """A Chain that signs with the settler's key alone: the settler never holds the owner's."""
    return _connect(config, settler_account(config))


def _connect(config: FleetConfig, signer: LocalAccount) -> Chain:
    chain = Chain(
        config.chain.rpc_url,
        config.chain.chain_id,
        signer,
        confirmations=config.chain.confirmations,
        receipt_timeout_s=config.chain.receipt_timeout_s,
    )
    if config.chain.deployment_file.exists():
        chain.use(Deployment.load(config.chain.deployment_file))
    return chain


# A URL (its scheme, credentials, host and the rest), and the path requests' errors quote.
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*://)(?:[^@/\s'\"]*@)?([^/\s'\"]+)[^\s'\"]*", re.IGNORECASE)
_QUOTED_PATH = re.compile(r"(with url: )\S+")


def redacted(text: str) -> str:
    """`text` with every URL cut to its scheme and host: RPC providers put their keys in the path
    (or the credentials), and a key must reach neither a log nor an answer."""
    return _QUOTED_PATH.sub(r"\1…", _URL.sub(r"\1\2", text))


@contextmanager
def _rpc(refused: type[ChainError] = ChainError) -> Iterator[None]:
    """Translate web3's and the transport's errors into the ChainError tree, their text redacted."""
    try:
        yield
    except ContractLogicError as exc:
        raise TransactionRejected(f"the contract reverts: {redacted(str(exc))}") from exc
    except (RequestTimedOut, TooManyRequests, ProviderConnectionError) as exc:
        raise ChainUnavailable(redacted(str(exc))) from exc
    except Web3RPCError as exc:
        if _transient(exc):
            raise ChainUnavailable(redacted(str(exc))) from exc
        raise refused(redacted(str(exc))) from exc
    except OSError as exc:
        # requests' errors (refused, reset, timed out, HTTP 5xx) are all OSErrors.
        raise ChainUnavailable(redacted(str(exc))) from exc


def _transient(exc: Web3RPCError) -> bool:
    error = (exc.rpc_response or {}).get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code in _TRANSIENT_CODES or _TRANSIENT.search(str(exc)) is not None


def _call(fn: ContractFunction) -> Any:
    with _rpc():
        return fn.call()


def _bytes32(batch_id: BatchId) -> bytes:
    raw = bytes.fromhex(batch_id.removeprefix("0x")) if isinstance(batch_id, str) else batch_id
    if len(raw) != 32:
        raise ValueError(f"a batch id is 32 bytes, not {len(raw)}")
    return raw
