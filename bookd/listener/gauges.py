"""The queue gauges: each queue's depth, and the age of the oldest book waiting.

The listener reads its queues' depths at most every QUEUE_REFRESH_SECONDS (three
calls each time) and tracks the oldest book it has seen waiting, so that
``bookd_queue_oldest_message_age_seconds`` needs no call of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from bookd.aws.sqs import Queue
from bookd.core.ports import Message
from bookd.telemetry import metrics


class QueueGauges:
    """The queue depth and oldest-message gauges, read at most every QUEUE_REFRESH_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self._received_sent_at: float | None = None
        self._age = 0.0
        self._age_at = time.time()
        self.latest: dict[str, dict[str, object]] = {}
        """The last depths read, by label: the queue's name, visible, in flight (the console)."""
        self.latest_at: float | None = None

    def received(self, messages: list[Message]) -> None:
        """Note what a receive returned: the oldest of it is the oldest waiting, then."""
        oldest = min((m.sent_at for m in messages if m.sent_at), default=None)
        if oldest is None:
            return
        with self._lock:
            if self._received_sent_at is None or oldest < self._received_sent_at:
                self._received_sent_at = oldest

    def refresh(self, queues: Mapping[str, Queue], *, oldest_held: float | None) -> None:
        """Read the queues' depths (at most every QUEUE_REFRESH_SECONDS) into the gauges.

        ``queues`` by label (input, output, dead-letter); ``oldest_held``: the send time
        of the oldest message the listener holds, if any.
        """
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + metrics.QUEUE_REFRESH_SECONDS
        waiting = 0
        latest: dict[str, dict[str, object]] = {}
        for label, queue in queues.items():
            depth = queue.depth()
            metrics.QUEUE_MESSAGES.labels(queue=label, state="visible").set(depth.visible)
            metrics.QUEUE_MESSAGES.labels(queue=label, state="in_flight").set(depth.in_flight)
            latest[label] = {
                "name": queue.name,
                "visible": depth.visible,
                "in_flight": depth.in_flight,
            }
            if label == "input":
                waiting = depth.waiting
        age = self._oldest_age(oldest_held, waiting)
        metrics.OLDEST_AGE.labels(queue="input").set(age)
        latest.setdefault("input", {})["oldest_age_seconds"] = round(age, 1)
        self.latest, self.latest_at = latest, time.time()

    def waiting(self, label: str) -> int | None:
        """Visible plus in flight in the queue of ``label`` at the last read (None before)."""
        depth = self.latest.get(label)
        if depth is None:
            return None
        return int(depth["visible"]) + int(depth["in_flight"])  # type: ignore[call-overload]

    def _oldest_age(self, oldest_held: float | None, waiting: int) -> float:
        wall = time.time()
        with self._lock:
            received, self._received_sent_at = self._received_sent_at, None
        candidates = [t for t in (received, oldest_held) if t]
        if waiting == 0:
            age = 0.0
        elif candidates:
            age = wall - min(candidates)
        else:
            # Nothing received or held, yet messages wait: they have waited at least as
            # long as before, and all the time since.
            age = self._age + (wall - self._age_at)
        self._age, self._age_at = max(age, 0.0), wall
        return self._age
