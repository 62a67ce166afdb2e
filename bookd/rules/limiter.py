"""How many uploads go to S3 at once: a limit that adapts to S3's push-back (AIMD).

S3 answers ``503 SlowDown`` when a prefix gets more requests than it can take. That
is back-pressure, not an outage: S3 works, it wants fewer requests at once. So the
uploads take a place in a Limiter first, and:

- the limit starts at its ceiling (BOOKD_CONCURRENCY, the upload threads), so a
  listener that starts meets no slow start;
- a throttled upload (SlowDown, or any THROTTLED answer) cuts it to BACKOFF_RATIO
  of itself, down to one: once per round, since the uploads sent before that cut met
  the same crowd, and their throttles do not cut it again;
- every ``limit`` uploads that work (one round's worth) add one place, up to the
  ceiling.

Why 0.9 and not TCP's halving: with S3 taking two at once, halving fell from three to
one at each probe and kept 75% of the rate those two allow in the fault suite; 0.9
(the default of Netflix's concurrency-limits AIMD) falls back to two and kept 90%.

Pure logic and a lock: no clock, no I/O. The Uploader (bookd.rules.storing) takes and
gives back the places; ``on_change`` hears each new limit (the Outcomes seam counts
and logs it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

BACKOFF_RATIO = 0.9
"""What a throttle leaves of the limit (rounded down, at least one)."""


@dataclass(frozen=True)
class Place:
    """One upload's place; ``round`` is how many times the limit had been cut when it
    was taken."""

    round: int


class Limiter:
    """An adaptive limit on uploads at once; thread-safe."""

    def __init__(
        self, ceiling: int, *, on_change: Callable[[int, bool], None] | None = None
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"the ceiling of uploads at once must be at least 1, not {ceiling}")
        self.ceiling = ceiling
        self._limit = ceiling
        self._in_flight = 0
        self._round = 0
        self._worked = 0
        """Uploads that worked since the limit last changed."""
        self._on_change = on_change
        self._freed = threading.Condition()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def enter(self, timeout: float) -> Place | None:
        """A place for one upload, waiting up to ``timeout`` seconds for one; None if
        none came (the caller checks whether it should still wait, then asks again)."""
        with self._freed:
            if not self._freed.wait_for(lambda: self._in_flight < self._limit, timeout):
                return None
            self._in_flight += 1
            return Place(self._round)

    def leave(self, place: Place, *, worked: bool = False, throttled: bool = False) -> None:
        """Give the place back: the upload ``worked``, was ``throttled``, or neither (it
        failed some other way, which says nothing about how many S3 takes at once)."""
        with self._freed:
            self._in_flight -= 1
            if throttled:
                changed = self._cut(place)
            elif worked:
                changed = self._widen()
            else:
                changed = False
            limit = self._limit
            self._freed.notify_all()
        if changed and self._on_change is not None:
            self._on_change(limit, throttled)

    def _cut(self, place: Place) -> bool:
        self._worked = 0
        if place.round != self._round:
            return False  # sent before the last cut: the same crowd, already answered
        self._round += 1
        limit = max(1, int(self._limit * BACKOFF_RATIO))
        changed, self._limit = limit != self._limit, limit
        return changed

    def _widen(self) -> bool:
        if self._limit >= self.ceiling:
            return False
        self._worked += 1
        if self._worked < self._limit:
            return False
        self._worked = 0
        self._limit += 1
        return True
