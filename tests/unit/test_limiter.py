"""The uploads' adaptive limit (bookd.rules.limiter): pure logic, no network."""

from __future__ import annotations

import threading

import pytest

from bookd.rules.limiter import BACKOFF_RATIO, Limiter


def places(limiter: Limiter, count: int):
    taken = [limiter.enter(0) for _ in range(count)]
    assert None not in taken
    return taken


def throttle_one_by_one(limiter: Limiter, times: int) -> None:
    """``times`` uploads, each sent after the last was throttled, each throttled."""
    for _ in range(times):
        [place] = places(limiter, 1)
        limiter.leave(place, throttled=True)


def test_it_starts_at_its_ceiling_and_lets_no_more_in():
    limiter = Limiter(4)
    assert limiter.limit == 4
    places(limiter, 4)
    assert limiter.enter(0) is None, "a fifth upload waits"
    assert limiter.in_flight == 4


def test_a_throttle_cuts_the_limit_once_for_all_the_uploads_sent_before_it():
    changes = []
    limiter = Limiter(16, on_change=lambda limit, throttled: changes.append((limit, throttled)))
    crowd = places(limiter, 10)
    for place in crowd:  # all ten answered SlowDown: one crowd, one cut
        limiter.leave(place, throttled=True)
    assert limiter.limit == int(16 * BACKOFF_RATIO)
    assert changes == [(int(16 * BACKOFF_RATIO), True)]
    # An upload sent after the cut and throttled all the same: S3 wants fewer still.
    [later] = places(limiter, 1)
    limiter.leave(later, throttled=True)
    assert limiter.limit == int(int(16 * BACKOFF_RATIO) * BACKOFF_RATIO)


def test_it_never_goes_below_one():
    limiter = Limiter(3)
    throttle_one_by_one(limiter, 10)
    assert limiter.limit == 1
    assert limiter.enter(0) is not None, "one upload always goes"


def test_a_round_of_uploads_that_worked_adds_one_place_up_to_the_ceiling():
    limiter = Limiter(4)
    throttle_one_by_one(limiter, 3)
    assert limiter.limit == 1
    seen = []
    for _ in range(30):
        [place] = places(limiter, 1)
        limiter.leave(place, worked=True)
        seen.append(limiter.limit)
    # One success at 1, two at 2, three at 3: then at the ceiling, and it stays there.
    assert seen[:6] == [2, 2, 3, 3, 3, 4]
    assert set(seen[6:]) == {4}


def test_a_failure_that_is_not_a_throttle_changes_nothing():
    limiter = Limiter(8)
    throttle_one_by_one(limiter, 2)
    before = limiter.limit
    for _ in range(20):
        [place] = places(limiter, 1)
        limiter.leave(place)
    assert limiter.limit == before
    assert limiter.in_flight == 0


def test_a_waiting_upload_goes_as_soon_as_a_place_is_given_back():
    limiter = Limiter(1)
    [first] = places(limiter, 1)
    got = []
    waiter = threading.Thread(target=lambda: got.append(limiter.enter(5)))
    waiter.start()
    limiter.leave(first, worked=True)
    waiter.join(5)
    assert got and got[0] is not None


def test_a_ceiling_below_one_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="at least 1"):
        Limiter(0)


def test_the_log_says_s3_pushes_back_at_a_readable_rate(caplog):
    from bookd.telemetry.limits import LOG_EVERY_SECONDS, UploadLimit

    now = [0.0]
    told = UploadLimit(clock=lambda: now[0])
    caplog.set_level("INFO", logger="bookd.rules")
    told.upload_limit(16, 16, throttled=False)  # the start: nothing to say
    for step in range(200):  # 20 s of a limit going down and up ten times a second
        now[0] = step / 10
        told.upload_limit(2 + step % 2, 16, throttled=step % 2 == 0)
    told.upload_limit(16, 16, throttled=False)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 20 / LOG_EVERY_SECONDS + 1, lines
    assert "S3 pushes back (SlowDown): 2 uploads at once now, of 16" in lines[0]
    assert lines[-1] == "S3 takes 16 uploads at once again"
