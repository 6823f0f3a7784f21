# pragma version ~=0.4.3
"""
@title FleetCredit
@notice The credit that users spend on inferences: an ERC-20 token with
        EIP-2612 `permit`, minted by the operator (the owner, who is
        also the first minter). On development chains the faucet hands
        it out by minting.
@dev Everything is snekmate's audited `erc20` (with `ownable`); this
     file only fixes the token's name and decimals.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: erc20.__interface__


# Prices are integers of base units; six decimals leave room for
# sub-credit prices while a credit stays a readable number in wallets.
DECIMALS: constant(uint8) = 6


@deploy
def __init__():
    ownable.__init__()
    erc20.__init__("TritonFleet Credit", "FLEET", DECIMALS, "TritonFleet Credit", "1")
