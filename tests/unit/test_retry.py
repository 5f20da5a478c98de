import random


from cdc.retry import Attempts, Backoff


def ceilings(initial, cap, n, factor=2.0):
    return [min(cap, initial * factor**i) for i in range(n)]


def test_delays_stay_within_half_ceiling_and_ceiling():
    backoff = Backoff(0.5, 30.0, rng=random.Random(0))
    for ceiling in ceilings(0.5, 30.0, 12):
        delay = backoff.next()
        assert ceiling / 2 <= delay <= ceiling


def test_delays_grow_until_capped():
    backoff = Backoff(0.1, 5.0, rng=random.Random(0))
    delays = [backoff.next() for _ in range(12)]
    # Each ceiling doubles, and the lower bound of one step is the upper bound of the last.
    assert delays[:6] == sorted(delays[:6])
    assert delays[5] > delays[0] * 4
    assert all(2.5 <= d <= 5.0 for d in delays[6:])
    assert max(delays) <= 5.0


def test_first_delay_bounded_by_initial():
    backoff = Backoff(1.0, 30.0, rng=random.Random(0))
    assert 0.5 <= backoff.next() <= 1.0
    assert backoff.attempt == 1


def test_cap_below_initial():
    backoff = Backoff(10.0, 2.0, rng=random.Random(0))
    assert all(1.0 <= backoff.next() <= 2.0 for _ in range(5))


def test_factor():
    backoff = Backoff(1.0, 100.0, factor=3.0, rng=random.Random(0))
    for ceiling in ceilings(1.0, 100.0, 6, factor=3.0):
        assert ceiling / 2 <= backoff.next() <= ceiling


def test_reset_starts_over():
    backoff = Backoff(0.5, 30.0, rng=random.Random(0))
    for _ in range(8):
        backoff.next()
    assert backoff.attempt == 8
    backoff.reset()
    assert backoff.attempt == 0
    assert 0.25 <= backoff.next() <= 0.5


def test_same_seed_same_delays():
    a = Backoff(0.5, 30.0, rng=random.Random(0))
    b = Backoff(0.5, 30.0, rng=random.Random(0))
    assert [a.next() for _ in range(10)] == [b.next() for _ in range(10)]


def test_jitter_varies():
    backoff = Backoff(1.0, 1.0, rng=random.Random(0))
    delays = {backoff.next() for _ in range(10)}
    assert len(delays) > 1


def test_many_attempts_stay_capped():
    backoff = Backoff(0.5, 30.0, rng=random.Random(0))
    for _ in range(1100):
        delay = backoff.next()
    assert 15.0 <= delay <= 30.0


def delay(attempts: Attempts) -> float:
    """The wait before the next attempt, where the budget is not spent (None: give up)."""
    wait = attempts.failed()
    assert wait is not None, "gave up"
    return wait


def test_attempts_give_up_after_the_budget_and_reset_on_success():
    from cdc.config import RetryConfig

    attempts = Attempts(RetryConfig(initial_backoff=0.1, max_backoff=1.0, max_attempts=3), rng=random.Random(0))
    assert 0.05 <= delay(attempts) <= 0.1
    assert 0.1 <= delay(attempts) <= 0.2
    assert attempts.failed() is None and attempts.count == 3
    attempts.succeeded()
    assert attempts.count == 0 and 0.05 <= delay(attempts) <= 0.1


def test_attempts_without_a_budget_go_on_at_the_cap():
    from cdc.config import RetryConfig

    attempts = Attempts(RetryConfig(initial_backoff=0.1, max_backoff=1.0), rng=random.Random(0))
    delays = [attempts.failed() for _ in range(100)]
    assert None not in delays and all(d is not None and 0.5 <= d <= 1.0 for d in delays[10:])
