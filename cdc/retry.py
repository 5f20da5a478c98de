"""Capped exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter")."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.5, cap: float = 30.0, factor: float = 2.0, rng: random.Random | None = None):
        self.initial, self.cap, self.factor = initial, cap, factor
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt: random in [ceiling/2, ceiling], ceiling doubling up to the cap."""
        # Past ~60 doublings the cap always wins; stop exponentiating before floats overflow.
        ceiling = self.cap if self.attempt > 60 else min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0
