"""Restart delays, state files and check caching: pure logic, no network."""

import threading
import time

import pytest

from bookd.supervision.keeper import STABLE_SECONDS, Restarts
from bookd.web.checks import Cached
from harness.waiting import wait_for


def test_a_listener_that_ran_long_enough_is_restarted_at_once():
    restarts = Restarts(last_start_at=100.0, quick_deaths=3).noticed_dead(100.0 + STABLE_SECONDS)
    assert restarts.wait_before_start(100.0 + STABLE_SECONDS) == 0


def test_a_listener_that_keeps_dying_at_start_waits_longer_each_time():
    now = 1000.0
    restarts = Restarts()
    waits = []
    for _ in range(6):
        restarts = restarts.started(now)
        now += 0.5  # it dies half a second after each start
        restarts = restarts.noticed_dead(now).noticed_dead(now + 0.1)  # counted once
        wait = restarts.wait_before_start(now)
        waits.append(wait)
        now += wait
    assert waits == [1, 2, 4, 8, 16, 32]


class CountingCheck:
    """A check whose answer is how often it has run; with ``slow``, every run after
    the first waits (up to 5 s) for ``release``, as a call to an unreachable or
    saturated LocalStack does."""

    def __init__(self, *, slow: bool = False) -> None:
        self.calls = 0
        self.slow = slow
        self.release = threading.Event()

    def __call__(self) -> int:
        self.calls += 1
        if self.slow and self.calls > 1:
            self.release.wait(5)
        return self.calls


def test_a_cached_check_runs_once_per_period_however_often_it_is_asked():
    check = CountingCheck()
    cached = Cached(check, ttl=60)
    assert [cached.get() for _ in range(50)] == [1] * 50
    assert check.calls == 1


def test_a_stale_check_is_answered_at_once_while_one_refresh_runs_behind_it():
    check = CountingCheck(slow=True)
    cached = Cached(check, ttl=0, max_stale=60)
    assert cached.get() == 1  # only the first call waits
    began = time.monotonic()
    answers = [cached.get() for _ in range(20)]
    assert time.monotonic() - began < 0.5
    assert answers == [1] * 20, "stale value while the refresh runs"
    assert check.calls == 2, "one refresh at a time, however many requests"
    check.release.set()
    assert wait_for(lambda: cached.get() == 2, timeout=2)


def test_an_answer_older_than_max_stale_is_refreshed_before_it_is_served():
    cached = Cached(CountingCheck(), ttl=0, max_stale=0, patience=5)
    assert [cached.get(), cached.get(), cached.get()] == [1, 2, 3]


def test_a_slow_refresh_of_an_old_answer_holds_a_request_only_for_its_patience():
    check = CountingCheck(slow=True)
    cached = Cached(check, ttl=0, max_stale=0, patience=0.2)
    assert cached.get() == 1
    began = time.monotonic()
    assert [cached.get() for _ in range(3)] == [1, 1, 1], "the old answer, not a wait"
    assert 0.2 <= time.monotonic() - began < 1.5, "each waited its patience, no more"
    assert check.calls == 2, "one refresh for all of them"
    check.release.set()
    assert wait_for(lambda: cached.get() == 2, timeout=2)


def test_a_prefetched_check_answers_its_first_request_without_a_call():
    check = CountingCheck()
    cached = Cached(check, ttl=60)
    cached.prefetch()
    assert wait_for(lambda: check.calls == 1, timeout=2)
    assert cached.get() == 1
    assert check.calls == 1


def test_a_first_check_that_fails_raises_to_the_caller():
    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Cached(broken).get()
