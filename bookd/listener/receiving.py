"""The receive loops: long-poll the input queue, hand what comes to the Processor.

``BOOKD_RECEIVERS`` of them run at once: a FIFO receive hands out one group's
messages, so that is how many groups move at once. None receives while another
problem of S3 or SQS is open (bookd.rules.dependencies): a receive then would charge
new messages a delivery for nothing. A receive that fails goes through the one
retry loop (bookd.rules.retry); a stop ends the loops, and what a last receive
brings after it is handed back at once.

A stop does not wait out the long polls under way (up to BOOKD_WAIT_TIME each): once
no loop works on a batch (``wait_for_batches``), the listener gives the polls
STOP_GRACE seconds and then goes without them. What such a poll still brings is
handed back if the process is still there to do it, or else comes back when its
visibility timeout ends; SQS lets no later message of its group overtake it meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field

from bookd.aws.sqs import Queue
from bookd.core.config import Settings
from bookd.core.ports import Message
from bookd.listener.gauges import QueueGauges
from bookd.rules.dependencies import Dependencies
from bookd.rules.inflight import Inflight
from bookd.rules.processor import Processor
from bookd.rules.retry import Abandoned, Retry
from bookd.telemetry import metrics

log = logging.getLogger(__name__)

RECEIVING = ("sqs", "ReceiveMessage")
"""The receive loops retry their own failing call; only other problems pause them."""

STOP_GRACE = 0.2
"""Seconds a stop gives the long polls under way, once every batch in hand is done."""


@dataclass
class Pulse:
    """When the listener last showed signs of life; its status (and /livez) reads it."""

    alive_at: float = field(default_factory=time.time)
    """When a listener thread last turned."""
    last_poll_at: float | None = None
    """When a receive last came back."""

    def beat(self) -> None:
        self.alive_at = time.time()


class Receivers:
    """The receive loops of one listener; each thread runs ``run``."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue: Queue,
        processor: Processor,
        retry: Retry,
        dependencies: Dependencies,
        inflight: Inflight,
        gauges: QueueGauges,
        groups: Executor,
        stop: threading.Event,
        pulse: Pulse,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.processor = processor
        self.retry = retry
        self.dependencies = dependencies
        self.inflight = inflight
        self.gauges = gauges
        self.groups = groups
        """Runs a receive's groups side by side."""
        self.stop = stop
        self.pulse = pulse
        self._working = 0
        """Loops working on a batch now (not polling)."""
        self._idle = threading.Condition()

    def run(self) -> None:
        """One receive loop, until the listener stops."""
        while True:
            try:
                messages = self.retry.call(
                    self._receive,
                    service="sqs",
                    operation="ReceiveMessage",
                    probe=self.queue.probe,
                    abandon=self._stops,
                    refusable=False,
                )
            except Abandoned:  # the listener stops
                return
            self.pulse.last_poll_at = time.time()
            metrics.LAST_POLL.set(self.pulse.last_poll_at)
            if not messages:
                continue
            self.gauges.received(messages)
            if not self._take(messages):
                return
            tracing = self.retry.tracing
            tracing.received(messages)
            try:
                self.processor.process(messages, map=self.groups.map)
            except Exception:  # logged top-level loop: a bug must not end the listener
                # Whatever was not finished comes back when its visibility ends.
                log.exception("A batch failed unexpectedly; its messages come back")
                self.inflight.release(messages)
            finally:
                tracing.released(messages)
                with self._idle:
                    self._working -= 1
                    self._idle.notify_all()

    def _take(self, messages: list[Message]) -> bool:
        """Whether to work on what a receive brought: not once the listener stops (then it
        is handed back at once). Decided under the lock ``wait_for_batches`` reads, so a
        stop either sees this batch or this loop sees the stop."""
        with self._idle:
            stopping = self.stop.is_set()
            if not stopping:
                self._working += 1
        if stopping:
            self.processor.hand_back(messages)
        return not stopping

    def wait_for_batches(self) -> None:
        """After a stop: wait until no loop works on a batch (the others only poll)."""
        with self._idle:
            self._idle.wait_for(lambda: self._working == 0)

    def _receive(self) -> list[Message]:
        return self.queue.receive(
            wait_time=self.settings.wait_time,
            visibility_timeout=self.settings.visibility_timeout,
            # The producer's trace context costs SQS and us work: asked for only when tracing.
            with_trace=self.retry.tracing.enabled,
        )

    def _stops(self) -> bool:
        """Whether the loops are to end; meanwhile, waits while another problem is open."""
        self.pulse.beat()
        while not self.stop.is_set() and self.dependencies.blocked(ignoring=[RECEIVING]):
            self.dependencies.wait_clear(1.0, ignoring=[RECEIVING])
            self.pulse.beat()
        return self.stop.is_set()
