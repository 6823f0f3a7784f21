"""How long a text-to-image request is likely to take, learnt from the ones served.

The page draws its progress bar from this; Triton's HTTP protocol gives no progress of a
running request, so an estimate is the honest best.
"""

from __future__ import annotations

# Weight of the newest observation in the moving average.
ALPHA = 0.3


class StepTimes:
    """Seconds per denoising step and sample, per model, as an exponential moving average."""

    def __init__(self) -> None:
        self._per_step_s: dict[str, float] = {}

    def observe(self, model: str, latency_s: float, steps: int, samples: int) -> None:
        work = max(steps * samples, 1)
        seen = latency_s / work
        known = self._per_step_s.get(model)
        self._per_step_s[model] = seen if known is None else known + ALPHA * (seen - known)

    def per_step_s(self, model: str) -> float | None:
        return self._per_step_s.get(model)
