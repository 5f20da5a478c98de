"""Retrying one operation: capped exponential backoff with *equal* jitter, and the attempt budget.

Equal jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the
delay is random in [ceiling/2, ceiling]. Unlike full jitter ([0, ceiling]) it
never retries at once, which matters here: a retry storm against an
Elasticsearch that answered 429 is what backoff exists to prevent.

`Attempts` is the one retry loop's bookkeeping that source, delivery and
start-up share: each failure asks it for the delay before the next attempt,
and it says when `retry.max_attempts` is used up. What counts as retriable is
decided by the caller's error types (cdc/errors.py), not here.
"""

from __future__ import annotations

import random
from typing import Protocol


class RetrySettings(Protocol):
    """What `Attempts` needs of `config.RetryConfig`."""

    initial_backoff: float
    max_backoff: float
    max_attempts: int | None


# One generator for every Backoff: seeding one from os.urandom costs more than a bulk request's other
# bookkeeping, and BulkWriter makes an `Attempts` per request (its `random()` is safe across threads).
_RNG = random.Random()


class Backoff:
    def __init__(self, initial: float = 0.5, cap: float = 30.0, factor: float = 2.0, rng: random.Random | None = None):
        self.initial, self.cap, self.factor = initial, cap, factor
        self.attempt = 0
        self._rng = rng or _RNG

    def next(self) -> float:
        """The delay before the next attempt: random in [ceiling/2, ceiling], ceiling doubling up to the cap."""
        # Past ~60 doublings the cap always wins; stop exponentiating before floats overflow.
        ceiling = self.cap if self.attempt > 60 else min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


class Attempts:
    """Failed attempts of one operation, since its last success."""

    def __init__(self, retry: RetrySettings, rng: random.Random | None = None):
        self.max_attempts = retry.max_attempts
        self.backoff = Backoff(retry.initial_backoff, retry.max_backoff, rng=rng)
        self.count = 0

    def failed(self) -> float | None:
        """Count a failure; the delay before trying again, or None when the budget is used up."""
        self.count += 1
        if self.max_attempts and self.count >= self.max_attempts:
            return None
        return self.backoff.next()

    def succeeded(self) -> None:
        self.count = 0
        self.backoff.reset()
