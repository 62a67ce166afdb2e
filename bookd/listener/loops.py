"""The listener: pySqsListener's SqsListener, with the threads it lacks for production.

Threads only; the per-message rules are bookd.processing's and the retry policy
bookd.retry's. ``BOOKD_RECEIVERS`` receive loops each long-poll the input queue and
hand what they get to the Processor, whose groups run side by side on a pool of
``BOOKD_CONCURRENCY`` threads. A heartbeat thread extends what is held long. While
S3 or SQS has an open problem (bookd.dependencies) the receive loops take nothing
new, so no message is charged a delivery for an outage; they resume by themselves
once the calls that failed work again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from sqs_listener import SqsListener

from bookd.aws.clients import make_client
from bookd.aws.s3 import BookStore
from bookd.aws.sqs import Queue
from bookd.core.books import Book, parse_book
from bookd.core.config import Settings
from bookd.core.errors import SERVICES, AwsFault
from bookd.listener.gauges import QueueGauges
from bookd.rules.dependencies import Dependencies
from bookd.rules.inflight import HEARTBEAT_SECONDS, Inflight
from bookd.rules.processor import Processor
from bookd.rules.retry import Backoff, Retry
from bookd.telemetry import metrics

log = logging.getLogger(__name__)

RECEIVING = ("sqs", "ReceiveMessage")
"""The receive loops retry their own failing call; only other problems pause them."""


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
        self.dependencies = Dependencies(on_change=self._dependencies_changed)
        self.inflight = Inflight(settings.visibility_timeout)
        self.retry = Retry(self.dependencies, wait=self._wait)
        # A group's uploads of different titles run here at once (threads start lazily).
        self._uploads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="upload")
        self.started_at = time.time()
        self.connected_at: float | None = None
        """When the queues were reached and the receive loops could begin."""
        self.last_poll_at: float | None = None
        """When a receive last came back."""
        self.alive_at = time.time()
        """When a listener thread last showed it is not stuck (liveness, see /livez)."""
        self._tick_failed = False
        self._gauges = QueueGauges()

    # --- control ------------------------------------------------------------

    def stop(self) -> None:
        """Stop receiving; work in hand is finished (retries waiting are handed back)."""
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

    def held(self) -> int:
        """How many messages it holds now."""
        return self.inflight.count()

    def dependency_states(self) -> dict[str, dict[str, object]]:
        """S3's and SQS's state as it sees them (bookd.rules.dependencies)."""
        return self.dependencies.snapshot()

    def _wait(self, seconds: float) -> bool:
        """Sleep; False at once when the listener stops."""
        self.alive_at = time.time()
        return not self._stop.wait(seconds)

    # --- the loop -----------------------------------------------------------

    def _initialize_client(self) -> None:
        # Replaces the base's: that one creates missing queues (a standard DLQ beside a
        # FIFO queue) and ignores our endpoint. Ours connects, checks the buckets keep
        # versions, and waits (problem shown in /health) until both work.
        s = self.settings
        pool = s.listener_connections
        store = BookStore(
            make_client(s, "s3", pool=pool, purpose="listener"), bucket_owner=s.bucket_owner
        )
        sqs = make_client(s, "sqs", pool=pool, purpose="listener")
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self._input = Queue(sqs, s.input_queue)
                self._output = Queue(sqs, s.output_queue)
                self._dead_letters = Queue(sqs, s.dead_letter_queue)
                for bucket in s.all_buckets:
                    store.check_versioning(bucket)
            except AwsFault as fault:
                self.dependencies.report(fault, owner=self)
                self._tick()
                self._wait(backoff.next())
            else:
                for service in SERVICES:
                    for operation in ("GetQueueUrl", "GetBucketVersioning"):
                        self.dependencies.clear(service, operation)
                break
        else:
            return
        self.processor = Processor(
            s,
            input=self._input,
            output=self._output,
            dead_letters=self._dead_letters,
            store=store,
            retry=self.retry,
            inflight=self.inflight,
            aborting=self._abort.is_set,
            uploads=self._uploads,
        )
        self.connected_at = time.time()

    def _start_listening(self) -> None:
        # Replaces the base's `while True` loop: that one ends on the first receive error,
        # cannot be stopped, skips undecodable bodies without deleting them (redelivered
        # forever), and sleeps 60 s on an empty queue. See the module docstring for ours.
        metrics.init_labels()
        self._dependencies_changed()
        self._initialize_client()
        # At once: an operator's stop (DELETE /) during the start is honoured. The queue
        # gauges wait for the next tick: their three calls would hold up the first receive.
        self._tick(gauges=False)
        if not self.connected:
            return
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="group")
        for pool in (self._pool, self._uploads):
            _start_threads(pool, self.settings.concurrency)
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
            self._stop.set()  # whatever ended the loop, the receivers must end too
            for thread in receivers:
                thread.join()
            self._receivers_done.set()
            heartbeat.join()
            self._pool.shutdown(wait=True)
            self._uploads.shutdown(wait=True)
            metrics.LISTENER_UP.set(0)
            self._tick()
            log.info("Listener %s: stopped", os.getpid())

    def _tick(self, *, gauges: bool = True) -> None:
        # Housekeeping (the status file, the owner check, the queue gauges) must never
        # wedge the listener: its failure is logged once, then again only after it
        # worked in between.
        try:
            if self._on_tick is not None:
                self._on_tick(self)
            if self.connected and gauges:
                queues = {
                    "input": self._input,
                    "output": self._output,
                    "dead-letter": self._dead_letters,
                }
                self._gauges.refresh(queues, oldest_held=self.inflight.oldest_sent_at())
        except Exception:  # logged top-level housekeeping; the listener goes on
            if not self._tick_failed:
                log.exception("Listener %s: housekeeping failed; going on", os.getpid())
            self._tick_failed = True
        else:
            self._tick_failed = False

    def _receive_loop(self) -> None:
        backoff = Backoff()
        me = object()  # the owner of this loop's receive problems: it retries until one works
        while not self._stop.is_set():
            self.alive_at = time.time()
            if self.dependencies.blocked(ignoring=[RECEIVING]):
                # Receiving now would charge new messages a delivery for nothing.
                self.dependencies.wait_clear(1.0, ignoring=[RECEIVING])
                continue
            try:
                messages = self._input.receive(
                    wait_time=self.settings.wait_time,
                    visibility_timeout=self.settings.visibility_timeout,
                )
            except AwsFault as fault:
                self.retry.judge(
                    fault, probe=self._input.probe, budget=None, message_id=None, owner=me
                )
                self._wait(backoff.next())
                continue
            backoff = Backoff()
            self.retry.succeeded(*RECEIVING)
            self.last_poll_at = time.time()
            metrics.LAST_POLL.set(self.last_poll_at)
            if not messages:
                continue
            self._gauges.received(messages)
            if self._stop.is_set():
                self._hand_back(messages)
                break
            try:
                self.processor.process(messages, map=self._pool.map)
            except Exception:  # logged top-level loop: a bug must not end the listener
                # Whatever was not finished comes back when its visibility ends.
                log.exception("Listener %s: batch failed unexpectedly", os.getpid())
                self.inflight.release(messages)

    def _heartbeat_loop(self) -> None:
        # Extends messages whose visibility runs low (Inflight.due), so a slow job
        # (or one waiting out an outage) is never handed to a second consumer. Only an
        # extension that worked moves a message's deadline. Runs until receivers end.
        while not self._receivers_done.wait(HEARTBEAT_SECONDS):
            self.inflight.beat(self._input)

    def _hand_back(self, messages: list[Any]) -> None:
        try:
            self._input.change_visibility(messages, 0)
        except AwsFault as exc:
            log.warning("Listener %s: could not hand back messages: %s", os.getpid(), exc)

    def _dependencies_changed(self) -> None:
        for service, state in self.dependencies.snapshot().items():
            metrics.DEPENDENCY_UP.labels(dependency=service).set(state["state"] == "ok")

    def handle_message(
        self, body: str, attributes: Any = None, messages_attributes: Any = None
    ) -> Book:  # type: ignore[override]
        """Validate one body into a Book (InvalidBook if it is not one).

        The base class calls this per message from its own loop, which bookd replaces;
        the rules of a message's whole life are bookd.processing's.
        """
        return parse_book(body, self.settings.buckets)


def _start_threads(pool: ThreadPoolExecutor, count: int) -> None:
    """Start ``count`` threads of the pool now, before the receive loops run.

    A ThreadPoolExecutor starts its threads one per submit, each under a lock that
    every pool of the process shares, and waits for the thread to run: on the first
    receives, with dozens of threads wanting the GIL, those starts queued up for a
    fifth of a second before the first upload. Tasks that wait for each other make
    the pool start a thread for each.
    """
    gate = threading.Barrier(count + 1)
    for _ in range(count):
        pool.submit(gate.wait, timeout=10)
    # Only an optimisation: if the threads are slow to come, the pool works anyway.
    with contextlib.suppress(threading.BrokenBarrierError):
        gate.wait(timeout=10)


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
