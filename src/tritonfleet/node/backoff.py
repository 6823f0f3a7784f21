"""Exponential back-off, shared by Triton restarts and health-checker registration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float
    max_s: float
    factor: float = 2.0

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first): base, doubling, capped."""
        return min(self.max_s, self.base_s * self.factor ** max(0, attempt - 1))
