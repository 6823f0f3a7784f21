# pragma version ~=0.4.3
"""
@title OwnedWallet (tests only)
@notice A contract wallet in the smallest form: no key of its own, it signs by EIP-1271,
        accepting any hash its owner's key has signed (a Safe with one owner, in spirit).
"""

from snekmate.utils import ecdsa

# What isValidSignature answers for a signature it accepts: its own selector.
MAGIC_VALUE: constant(bytes4) = 0x1626BA7E

owner: public(address)


@deploy
def __init__(owner: address):
    self.owner = owner


@external
@view
def isValidSignature(hash: bytes32, signature: Bytes[65]) -> bytes4:
    # ecdsa answers the zero address for a signature it cannot recover: never the owner.
    if ecdsa._recover_sig(hash, signature) == self.owner:
        return MAGIC_VALUE
    return 0xFFFFFFFF
