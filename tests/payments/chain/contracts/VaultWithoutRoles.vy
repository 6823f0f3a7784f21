# pragma version ~=0.4.3
"""
@notice Stands for a PaymentVault deployed before the settle role: it answers
        `balances_of`, as every vault since that read has, but has no
        `settler`, `max_batch_total` nor time lock.
"""


@external
@view
def balances_of(
    accounts: DynArray[address, 1000]
) -> (DynArray[uint256, 1000], DynArray[uint256, 1000]):
    nothing: DynArray[uint256, 1000] = []
    for account: address in accounts:
        nothing.append(0)
    return nothing, nothing
