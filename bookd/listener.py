"""The listener: pySqsListener's SqsListener, with the loop it lacks for production.

Per batch of up to ten input messages: messages are split by FIFO group; groups
are worked on at once by a thread pool, each group strictly in order; stored
books are announced with one batch send and the finished messages removed with
one batch delete. A message whose group stopped on a transient failure is handed
back with a growing delay, and SQS's redrive (or the listener, on the last
allowed delivery) moves it to the dead-letter queue with its reason.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

from sqs_listener import SqsListener

from bookd import metrics
from bookd.aws import BookStore, Message, Outgoing, Queue, make_client
from bookd.books import parse_book
from bookd.config import Settings
from bookd.errors import InvalidBook, TransientError

log = logging.getLogger(__name__)

RETRIES_EXHAUSTED = "retries-exhausted"
"""Dead-letter reason for a message whose last allowed delivery failed transiently."""

MAX_POLL_BACKOFF = 10.0
"""Longest pause, in seconds, between receive attempts while SQS is unreachable."""


@dataclass(frozen=True)
class Stored:
    """A book put in S3, still to be announced."""

    message: Message
    book_id: str
    bucket: str
    key: str
    version_id: str
    uploaded: bool
    """False when an earlier delivery of the same message had already stored it."""

    def announcement(self) -> Outgoing:
        body = {
            "id": self.book_id,
            "file": self.key,
            "bucket": self.bucket,
            "version_id": self.version_id,
            "message_id": self.message.message_id,
        }
        return Outgoing(
            ref=self.message.message_id,
            body=json.dumps(body, ensure_ascii=False),
            # Same group as the input so per-group order carries through; the input's id
            # as deduplication id so a redelivered input is not announced twice.
            group_id=self.message.group_id,
            dedup_id=self.message.message_id,
        )


@dataclass(frozen=True)
class DeadLettered:
    """A message moved to the dead-letter queue, still to be deleted from the input."""

    message: Message
    reason: str


@dataclass(frozen=True)
class HandedBack:
    """A message to leave in the queue, visible again after ``delay`` seconds."""

    message: Message
    reason: str
    delay: int


Result = Stored | DeadLettered | HandedBack


def retry_delay(receive_count: int, visibility_timeout: int) -> int:
    """Seconds before a failed message is tried again: 2, 4, 8... capped at the visibility."""
    return min(visibility_timeout, 2 ** min(receive_count, 16))


class Inflight:
    """Messages held by this listener and when SQS will hand them to someone else."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[str, tuple[Message, float]] = {}

    def add(self, messages: Iterable[Message], deadline: float) -> None:
        with self._lock:
            for m in messages:
                self._deadlines[m.message_id] = (m, deadline)

    def discard(self, messages: Iterable[Message]) -> None:
        with self._lock:
            for m in messages:
                self._deadlines.pop(m.message_id, None)

    def due(self, before: float) -> list[Message]:
        """Messages whose visibility ends before ``before``."""
        with self._lock:
            return [m for m, deadline in self._deadlines.values() if deadline < before]


class BookListener(SqsListener):
    """Moves books from the input queue to S3 and announces them on the output queue."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_tick: Callable[[BookListener], None] | None = None,
    ) -> None:
        # The base __init__ is skipped: it demands AWS_ACCOUNT_ID and builds its client
        # without our endpoint, region or credentials. These are the fields listen() reads.
        self._queue_name = settings.input_queue
        self._error_queue_name = None  # ours is a FIFO DLQ that gets the original body
        self.settings = settings
        self._on_tick = on_tick
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._receivers_done = threading.Event()
        self._inflight = Inflight()
        self.started_at = time.time()
        self.connected_at: float | None = None
        """When the queues were reached and the receive loops could begin."""
        self.last_poll_at: float | None = None

    # --- control ------------------------------------------------------------

    def stop(self) -> None:
        """Stop receiving; work in hand is finished, then listen() returns."""
        self._stop.set()

    def abort(self) -> None:
        """Stop now: messages not yet started are handed back at once."""
        self._abort.set()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def connected(self) -> bool:
        return self.connected_at is not None

    # --- the loop -----------------------------------------------------------

    def _initialize_client(self) -> None:
        # Replaces the base's: that one creates missing queues (a standard DLQ beside a
        # FIFO queue) and ignores our endpoint. Ours only connects, and waits if it can't.
        s = self.settings
        pool = s.concurrency + s.receivers + 2
        self._store = BookStore(make_client(s, "s3", pool=pool))
        sqs = make_client(s, "sqs", pool=pool)
        delay = 1.0
        while not self._stop.is_set():
            try:
                self._input = Queue(sqs, s.input_queue)
                self._output = Queue(sqs, s.output_queue)
                self._dead_letters = Queue(sqs, s.dead_letter_queue)
            except TransientError as exc:
                log.warning(
                    "Listener %s: cannot reach the queues (%s); retrying in %.0fs",
                    os.getpid(),
                    exc,
                    delay,
                )
                self._tick()
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_POLL_BACKOFF)
            else:
                self.connected_at = time.time()
                return

    def _start_listening(self) -> None:
        # Replaces the base's `while True` loop: that one ends on the first receive error,
        # cannot be stopped, skips undecodable bodies without deleting them (redelivered
        # forever), and sleeps 60 s on an empty queue. See the module docstring for ours.
        self._initialize_client()
        if not self.connected:
            return
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="group")
        receivers = [
            threading.Thread(target=self._receive_loop, name=f"receiver-{i}", daemon=True)
            for i in range(self.settings.receivers)
        ]
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        for thread in [*receivers, heartbeat]:
            thread.start()
        metrics.LISTENER_UP.set(1)
        try:
            while not self._stop.wait(1.0):
                self._tick()
        finally:
            for thread in receivers:
                thread.join()
            self._receivers_done.set()
            heartbeat.join()
            self._pool.shutdown(wait=True)
            metrics.LISTENER_UP.set(0)
            self._tick()
            log.info("Listener %s: stopped", os.getpid())

    def _tick(self) -> None:
        if self._on_tick is not None:
            self._on_tick(self)

    def _receive_loop(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                messages = self._input.receive(wait_time=self.settings.wait_time)
            except Exception as exc:  # logged top-level loop: never let one error end it
                log.warning(
                    "Listener %s: receive failed (%s); retrying in %.0fs", os.getpid(), exc, delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_POLL_BACKOFF)
                continue
            delay = 1.0
            self.last_poll_at = time.time()
            if not messages:
                continue
            if self._stop.is_set():
                self._input.change_visibility(messages, 0)
                break
            self._inflight.add(messages, time.monotonic() + self.settings.visibility_timeout)
            try:
                self._work_batch(messages)
            except Exception:  # logged top-level loop: a bug must not end the listener
                # Its messages come back when their visibility ends; SQS counts the tries.
                log.exception("Listener %s: batch failed unexpectedly", os.getpid())
            finally:
                self._inflight.discard(messages)

    def _heartbeat_loop(self) -> None:
        # Extends messages held longer than half the visibility timeout, so a slow
        # job is never handed to a second consumer. Runs until the receivers are done.
        visibility = self.settings.visibility_timeout
        while not self._receivers_done.wait(1.0):
            due = self._inflight.due(time.monotonic() + visibility / 2)
            if due:
                self._input.change_visibility(due, visibility)
                self._inflight.add(due, time.monotonic() + visibility)

    # --- one batch ----------------------------------------------------------

    def _work_batch(self, messages: list[Message]) -> None:
        received = time.monotonic()
        groups: dict[str, list[Message]] = {}
        for m in messages:
            groups.setdefault(m.group_id, []).append(m)
        results: list[Result] = []
        for group_results in self._pool.map(self._work_group, groups.values()):
            results.extend(group_results)

        stored = [r for r in results if isinstance(r, Stored)]
        unannounced = self._output.send_batch([r.announcement() for r in stored])
        done = [r.message for r in results if isinstance(r, DeadLettered)]
        back: list[HandedBack] = [r for r in results if isinstance(r, HandedBack)]
        for r in stored:
            if r.message.message_id in unannounced:
                back.append(self._hand_back(r.message, "aws-send"))
            else:
                done.append(r.message)

        not_deleted = self._input.delete_batch(done)
        finished = [m for m in done if m.message_id not in not_deleted]
        metrics.PROCESSED.inc(len(finished))
        metrics.UPLOADED.inc(sum(r.uploaded for r in stored))
        elapsed = time.monotonic() - received
        for _ in finished:
            metrics.PROCESSING_SECONDS.observe(elapsed)
        for delay in sorted({r.delay for r in back}):
            self._input.change_visibility([r.message for r in back if r.delay == delay], delay)
        for r in back:
            metrics.RETRIED.labels(reason=r.reason).inc()

    def _work_group(self, messages: list[Message]) -> list[Result]:
        results: list[Result] = []
        for index, message in enumerate(messages):
            if self._abort.is_set():
                results.extend(HandedBack(m, "stopping", 0) for m in messages[index:])
                break
            result = self._work_one(message)
            results.append(result)
            if isinstance(result, HandedBack):
                # Strict order within a group: nothing after a failure goes ahead of it.
                results.extend(
                    HandedBack(m, "group-blocked", result.delay) for m in messages[index + 1 :]
                )
                break
        return results

    def _work_one(self, message: Message) -> Result:
        try:
            return self.handle_message(message)
        except InvalidBook as exc:
            return self._dead_letter(message, exc.reason, exc.detail)
        except TransientError as exc:
            if message.receive_count >= self.settings.max_receive_count:
                return self._dead_letter(message, RETRIES_EXHAUSTED, str(exc))
            log.warning(
                "Listener %s: message %s will be retried: %s", os.getpid(), message.message_id, exc
            )
            return self._hand_back(message, exc.reason)

    def _hand_back(self, message: Message, reason: str) -> HandedBack:
        delay = retry_delay(message.receive_count, self.settings.visibility_timeout)
        return HandedBack(message, reason, delay)

    def handle_message(self, message: Message) -> Stored:  # type: ignore[override]
        """Validate one book and put it in S3; raise InvalidBook or TransientError.

        Takes the whole message, unlike the base's (body, attributes, message_attributes),
        whose last two arrive swapped: the message id and receive count are needed here.
        """
        book = parse_book(message.body, self.settings.buckets)
        if message.receive_count > 1:
            # A redelivery may follow an upload whose announce or delete failed.
            version = self._store.stored_version(
                book.bucket, book.key, message_id=message.message_id
            )
            if version is not None:
                return Stored(message, book.id, book.bucket, book.key, version, uploaded=False)
        version = self._store.put(
            book.bucket,
            book.key,
            message.body.encode("utf-8"),
            message_id=message.message_id,
            book_id=book.id,
        )
        return Stored(message, book.id, book.bucket, book.key, version, uploaded=True)

    def _dead_letter(self, message: Message, reason: str, detail: str) -> Result:
        log.warning(
            "Listener %s: message %s to the dead-letter queue: %s: %s",
            os.getpid(),
            message.message_id,
            reason,
            detail,
        )
        try:
            self._dead_letters.send(
                Outgoing(
                    ref=message.message_id,
                    body=message.body,
                    group_id=message.group_id or "bookd",
                    dedup_id=message.message_id,
                    attributes={
                        "reason": reason,
                        # SQS caps one attribute value at the message size; keep it readable.
                        "detail": detail[:1000],
                        "source_message_id": message.message_id,
                        "source_queue": self.settings.input_queue,
                    },
                )
            )
        except TransientError as exc:
            return self._hand_back(message, exc.reason)
        metrics.FAILED.labels(reason=reason).inc()
        return DeadLettered(message, reason)


def install_stop_signals(listener: BookListener) -> None:
    """SIGTERM or SIGINT once: warm stop. Twice: cold stop (hand back what is not started)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only record the request; the listener's threads act on it.
        if listener.stopping:
            listener.abort()
        else:
            listener.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
