"""Sign-in's rate limit: a token bucket per client IP.

A challenge costs the service memory until it expires, a verification a signature recovery;
the limit keeps one client from spending either for everyone.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tritonfleet.token_manager.errors import TooManySignIns


@dataclass
class ClientBucket:
    tokens: float
    updated_at: float


class SignInRateLimit:
    """Each client may make `burst` sign-in requests at once, then `rate_per_s` a second.

    At most `max_clients` buckets are kept, in the order their clients were last seen.
    """

    def __init__(self, rate_per_s: float, burst: int, max_clients: int, clock: Callable[[], float]) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        # Least recently seen first.
        self._buckets: OrderedDict[str, ClientBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> None:
        """Spend one of `client`'s sign-in requests, or raise TooManySignIns."""
        now = self.clock()
        self._forget_idle(now)
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = ClientBucket(self.burst, now)
            if len(self._buckets) > self.max_clients:
                # Forgetting the least recently seen gives it a fresh burst should it return;
                # refusing new clients instead would let whoever fills the table lock out all.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        # max(): a wall clock may step back; that refills nothing rather than draining.
        refill = max(0.0, now - bucket.updated_at) * self.rate_per_s
        bucket.tokens, bucket.updated_at = min(self.burst, bucket.tokens + refill), now
        if bucket.tokens < 1:
            retry_after_s = max(1, math.ceil((1 - bucket.tokens) / self.rate_per_s))
            raise TooManySignIns(
                f"too many sign-in requests from {client}; retry in {retry_after_s} s", retry_after_s
            )
        bucket.tokens -= 1

    def _forget_idle(self, now: float) -> None:
        # A bucket idle long enough to have refilled is as good as none. The least recently
        # seen come first, so this stops at the first one still refilling.
        refilled_after_s = self.burst / self.rate_per_s
        while self._buckets:
            client, bucket = next(iter(self._buckets.items()))
            if now - bucket.updated_at < refilled_after_s:
                return
            del self._buckets[client]
