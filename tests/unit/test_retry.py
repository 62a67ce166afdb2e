"""The retry policy: jittered backoff, the budget, and what each kind of failure costs."""

from __future__ import annotations

import random

from bookd.rules.dependencies import Dependencies
from bookd.rules.retry import MAX_DELAY, Backoff, Budget, Retry, Verdict
from tests.unit.memory import FakeClock, fault


def test_backoff_grows_to_its_cap_and_never_gets_hot():
    backoff = Backoff(first=0.5, cap=15, rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    assert all(0.25 <= d <= MAX_DELAY for d in delays)
    assert delays[-1] >= MAX_DELAY / 2
    assert delays[0] < delays[5]


def test_sixteen_loops_do_not_retry_in_lockstep():
    # Each loop with a random source of its own,
    loops = [Backoff(rng=random.Random(seed)) for seed in range(16)]
    retried_at = [sum(b.next() for _ in range(6)) for b in loops]
    assert len(set(retried_at)) == 16
    assert max(retried_at) - min(retried_at) > 1.0, "their sixth retries spread over seconds"
    # and, as in the listener, all drawing from the random module's shared one.
    shared = [Backoff() for _ in range(16)]
    assert len({b.next() for b in shared}) == 16


def test_a_budget_is_used_up_only_when_both_its_tries_and_its_time_are():
    budget = Budget(max_attempts=3, retry_for=60)
    for moment in (0, 1, 2):
        budget.failed(moment)
    assert not budget.exhausted(2), "three tries, but in two seconds"
    assert budget.exhausted(60)
    assert not Budget(3, 0).exhausted(1000), "no failure yet"


def judge(code: str, *, probe_works: bool, budget: Budget | None = None):
    clock = FakeClock()
    dependencies = Dependencies()
    retry = Retry(dependencies, wait=clock.wait, clock=clock)

    def probe() -> None:
        if not probe_works:
            raise fault("ServiceUnavailable")

    verdict = retry.judge(fault(code), probe=probe, budget=budget, message_id="m", owner=retry)
    return verdict, dependencies


def test_a_throttle_of_an_adaptive_call_is_back_pressure_not_a_pause():
    clock = FakeClock()
    dependencies = Dependencies()
    retry = Retry(dependencies, wait=clock.wait, clock=clock)
    budget = Budget(1, 0)
    slowdown = fault("SlowDown")
    verdict = retry.judge(
        slowdown, probe=None, budget=budget, message_id="m", owner=retry, backpressure=True
    )
    assert verdict is Verdict.RETRY
    assert not dependencies.blocked(), "receiving goes on: the uploads' limit adapts"
    assert budget.attempts == 0, "never counted against the book"
    # Without an adaptive limit, throttling still pauses receiving.
    retry.judge(slowdown, probe=None, budget=budget, message_id="m", owner=retry)
    assert dependencies.blocked()


def test_an_error_while_the_service_answers_probes_counts_against_the_message():
    budget = Budget(5, 0)
    verdict, dependencies = judge("InternalError", probe_works=True, budget=budget)
    assert verdict is Verdict.RETRY and budget.attempts == 1
    assert not dependencies.blocked()


def test_an_error_while_the_service_is_away_is_an_outage_and_costs_nothing():
    budget = Budget(5, 0)
    verdict, dependencies = judge("InternalError", probe_works=False, budget=budget)
    assert verdict is Verdict.RETRY and budget.attempts == 0
    assert dependencies.snapshot()["s3"]["state"] == "down"


def test_throttling_and_misconfiguration_pause_and_never_count():
    for code, state in (("SlowDown", "throttled"), ("AccessDenied", "misconfigured")):
        budget = Budget(1, 0)
        verdict, dependencies = judge(code, probe_works=True, budget=budget)
        assert verdict is Verdict.RETRY and budget.attempts == 0
        assert dependencies.snapshot()["s3"]["state"] == state


def test_a_rejected_request_is_refused_at_once():
    verdict, _ = judge("KeyTooLongError", probe_works=True, budget=Budget(5, 60))
    assert verdict is Verdict.REFUSED


def test_one_call_failing_for_three_books_in_a_row_is_an_outage_whatever_the_probe_says():
    # S3's HeadBucket (the probe) answers, but every PutObject gets a server error:
    # a partial outage, not three books each at fault.
    clock = FakeClock()
    dependencies = Dependencies()
    retry = Retry(dependencies, wait=clock.wait, clock=clock)
    budgets = {m: Budget(max_attempts=2, retry_for=0) for m in ("b0", "b1", "b2")}

    def fails(message: str) -> Verdict:
        return retry.judge(
            fault("InternalError"),
            probe=lambda: None,
            budget=budgets[message],
            message_id=message,
            owner=message,
        )

    # Given the first two books charged, as books failing alone are,
    assert [fails("b0"), fails("b1")] == [Verdict.RETRY, Verdict.RETRY]
    assert [b.attempts for b in budgets.values()] == [1, 1, 0]
    # when a third book fails the same way, the call is taken to be down:
    assert fails("b2") is Verdict.RETRY
    assert dependencies.snapshot()["s3"]["state"] == "down", "receiving paused meanwhile"
    # then no book is charged again, however long it lasts: none is dead-lettered.
    verdicts = [fails(m) for m in ("b0", "b1", "b2") * 20]
    assert set(verdicts) == {Verdict.RETRY}, "no valid book dead-lettered"
    assert [b.attempts for b in budgets.values()] == [1, 1, 0]
    # The first success ends it, and a book failing alone is charged again.
    retry.succeeded("s3", "PutObject")
    for owner in budgets:
        dependencies.release(owner)
    assert dependencies.snapshot()["s3"]["state"] == "ok"
    assert fails("b0") is Verdict.GIVE_UP


def test_a_single_book_failing_again_and_again_is_never_a_streak():
    budget = Budget(max_attempts=3, retry_for=0)
    clock = FakeClock()
    retry = Retry(Dependencies(), wait=clock.wait, clock=clock)
    verdicts = [
        retry.judge(
            fault("InternalError"), probe=lambda: None, budget=budget, message_id="b", owner=1
        )
        for _ in range(3)
    ]
    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.GIVE_UP]
