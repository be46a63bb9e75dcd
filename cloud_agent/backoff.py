"""Exponential backoff with jitter.

Full jitter spreads retries of many devices that lost the same bucket at the
same moment, instead of having them hammer it in lock-step when it returns.
"""
from __future__ import annotations

import random


class Backoff:
    """First retry after ``base``, then a random delay in ``[base/2, min(cap, base * 2**attempt)]``.

    The floor of ``base/2`` keeps a flapping endpoint from being retried in a hot
    loop; ``reset()`` after a success.
    """

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None):
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """Largest delay the next call may return."""
        return min(self.cap_s, self.base_s * (2 ** min(self.attempt, 30)))

    def next(self) -> float:
        delay = self._rng.uniform(self.base_s / 2, self.ceiling()) if self.attempt else self.base_s
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
