"""Reaching the queues and the buckets, and waiting until they can be reached.

Replaces pySqsListener's client set-up, which creates missing queues (a standard
dead-letter queue beside a FIFO queue) and ignores the configured endpoint. bookd's
connects, checks that the buckets keep every version, and retries until both work
(the problem shows in /health meanwhile), through the one retry loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bookd.aws.clients import make_client
from bookd.aws.s3 import BookStore
from bookd.aws.sqs import Queue
from bookd.aws.uploads import listener_store
from bookd.core.config import Settings
from bookd.rules.retry import Abandoned, Retry


@dataclass(frozen=True)
class Adapters:
    """The queues and the store, once reached."""

    input: Queue
    output: Queue
    dead_letters: Queue
    store: BookStore

    def queues(self) -> dict[str, Queue]:
        """The queues by the label of their gauges."""
        return {"input": self.input, "output": self.output, "dead-letter": self.dead_letters}


def connect(settings: Settings, retry: Retry, *, stops: Callable[[], bool]) -> Adapters | None:
    """The adapters once everything answers; None if ``stops`` says so first."""
    s = settings
    sqs = make_client(s, "sqs", pool=s.listener_connections, purpose="listener")
    store = listener_store(s, pool=s.listener_connections, traced=retry.tracing.enabled)

    def reach() -> Adapters:
        adapters = Adapters(
            Queue(sqs, s.input_queue),
            Queue(sqs, s.output_queue),
            Queue(sqs, s.dead_letter_queue),
            store,
        )
        for bucket in s.all_buckets:
            store.check_versioning(bucket)
        return adapters

    try:
        # No probe: reaching them is the cheapest call there is; no message to refuse.
        return retry.call(
            reach,
            service="sqs",
            operation="GetQueueUrl",
            probe=None,
            abandon=stops,
            refusable=False,
        )
    except Abandoned:
        return None
