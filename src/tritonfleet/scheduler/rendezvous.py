"""Rendezvous (highest-random-weight) hashing: the node of a sequence, agreed without talking.

Each candidate node gets a score, a hash of (key, node id), and the highest score wins
(Thaler and Ravishankar 1998). Every gateway that sees the same candidates computes the same
node, with no state shared between them; a node that leaves moves only the keys it had won (each
to the runner-up of its own scores), and a node that joins takes, from every other node, only
the keys on which it now scores highest: about 1/n of them each time. The hash is BLAKE2b of
fixed bytes, never Python's `hash()`, which differs from one process to the next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def sequence_key(model: str, sequence_id: int | str) -> str:
    """The key of a sequence: its model and its correlation id, numeric and string ids apart
    (Triton keeps the sequence 5 and the sequence "5" apart as well)."""
    kind = "i" if isinstance(sequence_id, int) else "s"
    return f"{model}\x00{kind}:{sequence_id}"


def score(key: str, node_id: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous(key: str, candidates: Iterable[str]) -> str:
    """The candidate with the highest score for `key`; a tie (64-bit scores: all but impossible)
    goes to the greater node id, so that the answer never depends on the candidates' order."""
    best = max(candidates, key=lambda node_id: (score(key, node_id), node_id), default=None)
    if best is None:
        raise ValueError("rendezvous over no candidates")
    return best
