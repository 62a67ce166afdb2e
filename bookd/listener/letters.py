"""The dead letters by reason, for the console: read by the listener when they change.

The listener walks the dead-letter queue (bookd.operations.dead_letters.Snapshot,
each letter held for an instant and handed back at once) and notes, per reason, how
many it met, the oldest one's age and one letter's detail. It reads it again on the
tick after it dead-lettered a book itself (LetterWatch, one of its outcomes), after
a redrive from the console (``mark_stale``: a flag file in the state directory),
when the queue's depth changed, and at least every SUMMARY_SECONDS while the queue
holds letters; never while it is empty. The status file carries the summary to the
console, so a browser tab costs no AWS call, however many are open. A FIFO queue
hands out at most ten letters of a group at a time: with more, the summary counts
the first ten of each group, and says how many it met.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bookd.aws.sqs import Queue
from bookd.core.config import Settings
from bookd.core.errors import AwsFault
from bookd.core.outcomes import Outcomes
from bookd.core.ports import Message
from bookd.operations.dead_letters import Letter, Snapshot

log = logging.getLogger(__name__)

SUMMARY_SECONDS = 30.0
HOLD_SECONDS = 30
"""How long a summary walk may hold a letter; it hands each back as soon as it is done."""
STALE_FILE = "dead-letters.stale"
"""In the state directory: the console's redrive asks for a fresh summary."""


def mark_stale(settings: Settings) -> None:
    """Ask the listener for a fresh summary on its next tick (after a redrive elsewhere)."""
    (settings.state_dir / STALE_FILE).touch()


class LetterWatch(Outcomes):
    """Told when the listener dead-letters a book: its summary is stale then."""

    def __init__(self) -> None:
        self.stale = threading.Event()

    def dead_lettered(self, message: Message, reason: str) -> None:
        self.stale.set()


class LetterSummary:
    """The latest summary of the dead-letter queue, refreshed on the listener's ticks."""

    def __init__(
        self,
        queue: Queue,
        *,
        watch: LetterWatch,
        stale_file: Path,
        pause: Callable[[float], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.watch = watch
        self.stale_file = stale_file
        self.pause = pause
        """Sleeps while letters are held elsewhere; False when the listener stops."""
        self._clock = clock
        self._next = 0.0
        self._waiting: int | None = None
        self.latest: dict[str, Any] | None = None

    def refresh(self, waiting: int | None) -> None:
        """Read the queue again if it changed or it is time; ``waiting``: its depth, as the
        gauges last saw it (None before their first read)."""
        now = self._clock()
        stale = self.watch.stale.is_set() or self._asked()
        if waiting is None or not (stale or waiting != self._waiting or now >= self._next):
            return
        self.watch.stale.clear()
        self.stale_file.unlink(missing_ok=True)
        self._waiting, self._next = waiting, now + SUMMARY_SECONDS
        try:
            # An empty queue needs no walk, unless a letter went there since its depth was read.
            letters = self._walk() if waiting or stale else []
        except AwsFault as fault:
            log.warning("Could not read the dead-letter queue for the console: %s", fault.cause)
            return
        self.latest = {"as_of": now, **summarize(letters)}

    def _asked(self) -> bool:
        return self.stale_file.exists()

    def _walk(self) -> list[Letter]:
        # No long poll, and no wait for letters held elsewhere once the listener stops:
        # the walk runs in the listener's tick, which a stop must not wait for.
        snapshot = Snapshot(self.queue, hold=HOLD_SECONDS, wait_time=0, pause=self.pause)
        letters = []
        try:
            for batch in snapshot.batches():
                letters += [Letter.of(m, self._clock()) for m in batch]
        finally:
            snapshot.release()
        return letters


def summarize(letters: list[Letter]) -> dict[str, Any]:
    """How many letters of each reason, the oldest one's age, and one letter's detail."""
    reasons: dict[str, dict[str, Any]] = {}
    for letter in letters:
        entry = reasons.setdefault(
            letter.reason,
            {"reason": letter.reason, "count": 0, "oldest_age_seconds": 0.0, "sample_detail": ""},
        )
        entry["count"] += 1
        if letter.age_seconds >= entry["oldest_age_seconds"]:
            entry["oldest_age_seconds"] = round(letter.age_seconds, 1)
            entry["sample_detail"] = letter.detail
    ordered = sorted(reasons.values(), key=lambda r: (-r["count"], r["reason"]))
    return {"seen": len(letters), "reasons": ordered}
