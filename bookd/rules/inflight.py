"""Messages this listener holds: their latest receipt handle and when SQS frees them.

The heartbeat extends what is due (``due``/``extended``); the rules ask ``lapsed``
before each side effect, since a message whose visibility ran out (SQS was away, so
no extension got through) may be held by another consumer now. A message received
again while still held (its visibility ran out, then this listener got it back) is
not worked twice: the held copy takes the new handle and goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from bookd.core.errors import AwsFault
from bookd.core.ports import InputQueue, Message

log = logging.getLogger(__name__)

MAX_HOLD_SECONDS = 12 * 3600 - 120
"""SQS keeps a message invisible at most 12 hours after a receive; stop extending before."""

LAPSE_MARGIN = 2.0
"""Seconds before its visibility ends that a message counts as lapsed (clocks, latency)."""

HEARTBEAT_SECONDS = 1.0
"""How often the listener's heartbeat looks for messages to extend."""


@dataclass
class _Held:
    message: Message
    received_at: float
    deadline: float


class Inflight:
    """Held messages by id; thread-safe. Times are from ``clock`` (monotonic seconds)."""

    def __init__(
        self, visibility_timeout: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.visibility_timeout = visibility_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}
        self._beat_failing = False

    def admit(self, messages: Iterable[Message]) -> tuple[list[Message], list[Message]]:
        """Take a receive's messages: (to work on, to hand back at once).

        A message already held is refreshed and dropped. Later messages of its group in
        the same receive are handed back: its group is still being worked, and they must
        not overtake it.
        """
        now = self._clock()
        work: list[Message] = []
        back: list[Message] = []
        busy_groups: set[str] = set()
        with self._lock:
            for m in messages:
                held = self._held.get(m.message_id)
                if held is not None:
                    held.message = replace(held.message, receipt_handle=m.receipt_handle)
                    held.received_at = now
                    held.deadline = now + self.visibility_timeout
                    busy_groups.add(m.group_id)
                elif m.group_id in busy_groups:
                    back.append(m)
                else:
                    self._held[m.message_id] = _Held(m, now, now + self.visibility_timeout)
                    work.append(m)
        return work, back

    def current(self, message: Message) -> Message:
        """The message with its latest receipt handle (it may have been received again)."""
        with self._lock:
            held = self._held.get(message.message_id)
            return held.message if held is not None else message

    def lapsed(self, message: Message) -> bool:
        """Whether the message's visibility has (nearly) run out, so someone else may hold it."""
        with self._lock:
            held = self._held.get(message.message_id)
            if held is None:
                return True
            return self._clock() > held.deadline - LAPSE_MARGIN

    def due(self) -> list[Message]:
        """Messages to extend now: less than half the visibility left, and still extendable.

        Never later than two heartbeats before a message would count as lapsed, so a
        short visibility (5 s) still leaves a beat, and a slow call, to extend it.
        """
        now = self._clock()
        extend_below = max(self.visibility_timeout / 2, LAPSE_MARGIN + 2 * HEARTBEAT_SECONDS)
        with self._lock:
            return [
                h.message
                for h in self._held.values()
                if h.deadline - now < extend_below
                and now + self.visibility_timeout < h.received_at + MAX_HOLD_SECONDS
                and h.deadline - LAPSE_MARGIN > now  # a lapsed hold is never revived
            ]

    def extended(self, messages: Iterable[Message], *, asked_at: float) -> None:
        """Record extensions that worked; ``asked_at`` is when the call was made.

        Only messages still held with the same handle are updated: a message finished
        (or received again) while the call was out is never extended in the books.
        """
        with self._lock:
            for m in messages:
                held = self._held.get(m.message_id)
                if held is not None and held.message.receipt_handle == m.receipt_handle:
                    held.deadline = max(held.deadline, asked_at + self.visibility_timeout)

    def release(self, messages: Iterable[Message]) -> None:
        """Forget messages: finished, handed back, or given up."""
        with self._lock:
            for m in messages:
                self._held.pop(m.message_id, None)

    def beat(self, queue: InputQueue) -> None:
        """One heartbeat: extend what is due; only an extension that worked counts.

        A failure does not pause receiving by itself: the calls that need SQS (receive,
        announce, delete) meet the same trouble and pause it while it lasts.
        """
        due = self.due()
        if not due:
            return
        asked = self._clock()
        try:
            failed = queue.change_visibility(due, self.visibility_timeout)
        except AwsFault as fault:
            failed = {m.message_id: fault for m in due}
        self.extended([m for m in due if m.message_id not in failed], asked_at=asked)
        if failed and not self._beat_failing:
            log.warning(
                "Could not extend %d held messages: %s",
                len(failed),
                next(iter(failed.values())),
                extra={"message_ids": sorted(failed)},
            )
        self._beat_failing = bool(failed)

    def count(self) -> int:
        with self._lock:
            return len(self._held)

    def oldest_sent_at(self) -> float | None:
        """The producer's send time of the oldest message held, if any is known."""
        with self._lock:
            times = [h.message.sent_at for h in self._held.values() if h.message.sent_at]
        return min(times, default=None)
