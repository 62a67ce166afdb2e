"""The listener: pySqsListener's SqsListener, with the threads it lacks for production.

Threads only: the per-message rules are bookd.rules', told here what to work on.
The listener connects (bookd.listener.connect), then runs ``BOOKD_RECEIVERS``
receive loops (bookd.listener.receiving) whose receives' groups run side by side on
a pool of ``BOOKD_CONCURRENCY`` threads (and their uploads on a second pool), a
heartbeat thread that extends what is held long, and, in its own thread, a tick
each second: supervision (the stop flag, the owner, the status file) and the queue
gauges.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from sqs_listener import SqsListener

from bookd.core.config import Settings
from bookd.core.outcomes import Broadcast, Outcomes
from bookd.core.tracing import Tracing
from bookd.listener.connect import Adapters, connect
from bookd.listener.gauges import QueueGauges
from bookd.listener.letters import STALE_FILE, LetterSummary, LetterWatch
from bookd.listener.receiving import STOP_GRACE, Pulse, Receivers
from bookd.rules.dependencies import Dependencies
from bookd.rules.inflight import HEARTBEAT_SECONDS, Inflight
from bookd.rules.processor import make_processor
from bookd.rules.retry import Retry
from bookd.telemetry import metrics
from bookd.telemetry.outcomes import telemetry

log = logging.getLogger(__name__)


class BookListener(SqsListener):
    """Moves books from the input queue to S3 and announces them on the output queue."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_tick: Callable[[BookListener], None] | None = None,
        on_connected: Callable[[], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        # The base __init__ is skipped: it demands AWS_ACCOUNT_ID and builds its client
        # without our endpoint, region or credentials. These are the fields listen() reads.
        self._queue_name = settings.input_queue
        self._error_queue_name = None  # ours is a FIFO DLQ that gets the original body
        self.settings = settings
        self._on_tick = on_tick
        self._on_connected = on_connected
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._receivers_done = threading.Event()
        self.dependencies = Dependencies(on_change=self._dependencies_changed)
        self.inflight = Inflight(settings.visibility_timeout)
        self._letter_watch = LetterWatch()
        self.outcomes = outcomes = _outcomes(self._letter_watch, tracing)
        self.retry = Retry(self.dependencies, wait=self._wait, outcomes=outcomes, tracing=tracing)
        # A group's uploads of different titles run here at once.
        self._uploads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="upload")
        self._groups = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="group")
        self.started_at = time.time()
        self.connected_at: float | None = None
        """When the queues were reached and the receive loops could begin."""
        self.pulse = Pulse()
        self._adapters: Adapters | None = None
        self._tick_failed = False
        self._gauges = QueueGauges()
        self._letters: LetterSummary | None = None

    # --- control, and what supervision reads (bookd.supervision.status.Watched) --------

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

    @property
    def alive_at(self) -> float:
        return self.pulse.alive_at

    @property
    def last_poll_at(self) -> float | None:
        return self.pulse.last_poll_at

    def held(self) -> int:
        """How many messages it holds now."""
        return self.inflight.count()

    def dependency_states(self) -> dict[str, dict[str, object]]:
        """S3's and SQS's state as it sees them (bookd.rules.dependencies)."""
        return self.dependencies.snapshot()

    def queue_depths(self) -> dict[str, object]:
        """Its queues' depths at their last read, and when that was (for the console)."""
        return {"as_of": self._gauges.latest_at, **self._gauges.latest}

    def dead_letter_summary(self) -> dict[str, object] | None:
        """The dead letters by reason at their last read (for the console)."""
        return self._letters.latest if self._letters is not None else None

    def _wait(self, seconds: float) -> bool:
        """Sleep; False at once when the listener stops."""
        self.pulse.beat()
        return not self._stop.wait(seconds)

    # --- start and stop ---------------------------------------------------------------

    def _initialize_client(self) -> None:
        # Replaces the base's (see bookd.listener.connect for why).
        self._adapters = connect(self.settings, self.retry, stops=self._connecting_stops)
        if self._adapters is not None:
            if self._on_connected is not None:
                self._on_connected()
            self._letters = LetterSummary(
                self._adapters.dead_letters,
                watch=self._letter_watch,
                stale_file=self.settings.state_dir / STALE_FILE,
                pause=self._wait,
            )
            self.connected_at = time.time()

    def _connecting_stops(self) -> bool:
        # Ticks while connecting too: an operator's stop (DELETE /) is honoured.
        self._tick(gauges=False)
        return self._stop.is_set()

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
        if self._adapters is None:
            return
        for pool in (self._groups, self._uploads):
            _start_threads(pool, self.settings.concurrency)
        receivers = self._receivers(self._adapters)
        threads = [
            threading.Thread(target=receivers.run, name=f"receiver-{i}", daemon=True)
            for i in range(self.settings.receivers)
        ]
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        for thread in [*threads, heartbeat]:
            thread.start()
        metrics.LISTENER_UP.set(1)
        try:
            while not self._stop.wait(1.0):
                self._tick()
        finally:
            self._stop.set()  # whatever ended the loop, the receivers must end too
            receivers.wait_for_batches()
            _join(threads, within=STOP_GRACE)
            self._receivers_done.set()
            heartbeat.join()
            self._groups.shutdown(wait=True)
            self._uploads.shutdown(wait=True)
            metrics.LISTENER_UP.set(0)
            self._tick(gauges=False)  # the status file's last word; no queue read at exit
            log.info("Listener stopped")

    def _receivers(self, a: Adapters) -> Receivers:
        processor = make_processor(
            self.settings,
            input=a.input,
            output=a.output,
            dead_letters=a.dead_letters,
            store=a.store,
            retry=self.retry,
            inflight=self.inflight,
            outcomes=self.outcomes,
            aborting=self._abort.is_set,
            uploads=self._uploads,
        )
        return Receivers(
            self.settings,
            queue=a.input,
            processor=processor,
            retry=self.retry,
            dependencies=self.dependencies,
            inflight=self.inflight,
            gauges=self._gauges,
            groups=self._groups,
            stop=self._stop,
            pulse=self.pulse,
        )

    def _tick(self, *, gauges: bool = True) -> None:
        # Housekeeping (the status file, the owner check, the queue gauges) must never
        # wedge the listener: its failure is logged once, then again only after it
        # worked in between.
        try:
            if self._on_tick is not None:
                self._on_tick(self)
            if self._adapters is not None and self._letters is not None and gauges:
                oldest = self.inflight.oldest_sent_at()
                self._gauges.refresh(self._adapters.queues(), oldest_held=oldest)
                self._letters.refresh(self._gauges.waiting("dead-letter"))
        except Exception:  # logged top-level housekeeping; the listener goes on
            if not self._tick_failed:
                log.exception("Housekeeping failed; going on")
            self._tick_failed = True
        else:
            self._tick_failed = False

    def _heartbeat_loop(self) -> None:
        # Extends messages whose visibility runs low (Inflight.due), so a slow job
        # (or one waiting out an outage) is never handed to a second consumer. Only an
        # extension that worked moves a message's deadline. Runs until receivers end.
        assert self._adapters is not None
        while not self._receivers_done.wait(HEARTBEAT_SECONDS):
            self.inflight.beat(self._adapters.input)

    def _dependencies_changed(self) -> None:
        for service, state in self.dependencies.snapshot().items():
            metrics.DEPENDENCY_UP.labels(dependency=service).set(state["state"] == "ok")


def _outcomes(watch: LetterWatch, tracing: Tracing | None) -> Broadcast:
    """Metrics and log lines, the dead-letter summary's watch, and tracing when it is on
    (last: the log lines read its spans)."""
    traced = [tracing] if isinstance(tracing, Outcomes) else []
    return Broadcast(telemetry(), watch, *traced)


def _join(threads: list[threading.Thread], *, within: float) -> None:
    """Join the threads, all within ``within`` seconds; leave those still in a long poll
    (daemons: they end with the process, or when their poll comes back)."""
    deadline = time.monotonic() + within
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = sum(thread.is_alive() for thread in threads)
    if left:
        log.info("Stopping without %d long polls under way; what they bring comes back", left)


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
