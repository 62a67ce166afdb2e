"""Prometheus metrics: written by the listener process, served by any Gunicorn worker.

In production ``PROMETHEUS_MULTIPROC_DIR`` is set (by gunicorn_conf.py, before
anything imports prometheus_client) so every process writes its values to files
there and a scrape sums them; the settings carry it
(``Settings.prometheus_multiproc_dir``). Without it (unit tests, a bare ``bookd
listen``) the values live in this process's default registry.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    generate_latest,
    multiprocess,
)

from bookd.core.config import Settings
from bookd.core.errors import SERVICES, FaultKind
from bookd.core.reasons import ALL_REASONS

PROCESSED = Counter(
    "bookd_messages_processed",
    "Input messages finished: stored and announced, or dead-lettered.",
)
UPLOADED = Counter("bookd_messages_uploaded", "Books stored in S3.")
FAILED = Counter(
    "bookd_messages_failed",
    "Input messages sent to the dead-letter queue, by reason.",
    ["reason"],
)
RETRIED = Counter(
    "bookd_messages_retried",
    "Failed S3 or SQS calls the listener retries, by service and kind of failure.",
    ["reason"],
)
PROCESSING_SECONDS = Histogram(
    "bookd_message_processing_seconds",
    "Seconds from receiving an input message to its delete.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ANNOUNCED_OUT_OF_ORDER = Counter(
    "bookd_announcements_out_of_order",
    "Announcements SQS took ahead of an earlier one of their group that it refused.",
)
PAYLOADS_NOT_DELETED = Counter(
    "bookd_payloads_not_deleted",
    "Payloads of S3 pointers left in their bucket after their book was stored, announced "
    "and its message deleted: BOOKD_PAYLOAD_DELETE's delete failed.",
)
DEPENDENCY_UP = Gauge(
    "bookd_dependency_up",
    "0 while the listener pauses for a problem of this dependency (outage, throttling, "
    "misconfiguration), else 1.",
    ["dependency"],
    multiprocess_mode="livemax",
)
UPLOAD_LIMIT = Gauge(
    "bookd_upload_limit",
    "Uploads the listener lets go to S3 at once: BOOKD_CONCURRENCY, cut to 90% at each S3 "
    "SlowDown (throttling), widened by one per round of uploads that worked.",
    multiprocess_mode="livemax",
)
LISTENER_UP = Gauge(
    "bookd_listener_up",
    "1 while a listener process is running and polling.",
    # Summed over live processes: a listener killed without being marked dead would
    # show as 2 here, so the sum also checks the marking.
    multiprocess_mode="livesum",
)

LAST_POLL = Gauge(
    "bookd_listener_last_poll_timestamp_seconds",
    "Unix time of the listener's last completed receive.",
    multiprocess_mode="livemax",
)
QUEUE_MESSAGES = Gauge(
    "bookd_queue_messages",
    "Approximate messages in bookd's queues, visible or in flight (read every "
    "QUEUE_REFRESH_SECONDS by the listener).",
    ["queue", "state"],
    multiprocess_mode="livemax",
)
OLDEST_AGE = Gauge(
    "bookd_queue_oldest_message_age_seconds",
    "Age of the oldest message waiting in the input queue, as the listener sees it: its "
    "oldest message held or last received, growing while the queue is not empty and "
    "nothing is received; 0 when the queue is empty.",
    ["queue"],
    multiprocess_mode="livemax",
)
AWS_SECONDS = Histogram(
    "bookd_aws_request_duration_seconds",
    "Seconds of each S3 or SQS call, botocore's own retries included.",
    ["service", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25),
)
AWS_ERRORS = Counter(
    "bookd_aws_request_errors",
    "S3 or SQS calls that failed, by AWS error code (or the connection error's name).",
    ["service", "operation", "code"],
)
EMPTY_RECEIVES = Counter(
    "bookd_empty_receives",
    "Receives from SQS that brought no message: long polls that waited in vain, a cost of idling.",
)
BATCH_MESSAGES = Histogram(
    "bookd_batch_messages",
    "Messages each SQS batch call carried (for ReceiveMessage: brought), by operation.",
    ["operation"],
    buckets=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
)
BATCH_OPERATIONS = (
    "ReceiveMessage",
    "SendMessageBatch",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
)
BUILD_INFO = Gauge(
    "bookd_build_info",
    "Always 1; the labels say which bookd and Python run.",
    ["version", "python"],
    multiprocess_mode="max",
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

QUEUE_REFRESH_SECONDS = 5.0
"""How often the listener reads its queues' depths for the gauges and the console: three
calls each time."""


def init_labels() -> None:
    """Export every known label at 0, so rate() reads 0 instead of "no data" from the start."""
    for reason in ALL_REASONS:
        FAILED.labels(reason=reason)
    for service in SERVICES:
        for kind in FaultKind:
            if kind is not FaultKind.REJECTED:
                RETRIED.labels(reason=f"{service}-{kind.value}")
    for operation in BATCH_OPERATIONS:
        BATCH_MESSAGES.labels(operation=operation)
    BUILD_INFO.labels(version=version(), python=platform.python_version()).set(1)


def version() -> str:
    """Which bookd this is."""
    try:
        return importlib.metadata.version("bookd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


READ_SECONDS = 1.0
"""How long one process reuses a read of every process's metric files.

Reading them (prometheus-client's MultiProcessCollector: every file of every process,
dead ones' counters included) is what /metrics, GET / and the console cost; under 50
clients a second apart it queued requests for hundreds of milliseconds. A second old
at most is fresh enough for a scrape every few seconds and for a person."""


class _Read:
    """One read of every process's metrics, and what is made of it: the text exposition
    and the totals, each made once per read (under load, rendering the text for every
    request cost more than the read itself)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:  # what generate_latest takes
        return self.families

    @functools.cached_property
    def text(self) -> bytes:
        return generate_latest(self)  # type: ignore[arg-type]

    @functools.cached_property
    def counts(self) -> Counts:
        return _count(self.families)


class _Recent:
    """The last read of every process's metrics, reused for READ_SECONDS (per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: tuple[float, _Read] | None = None

    def read(self, settings: Settings) -> _Read:
        if settings.prometheus_multiproc_dir is None:
            return _Read(list(REGISTRY.collect()))  # this process's own: nothing to read
        with self._lock:  # one read at a time; whoever waited takes the fresh one
            now = time.monotonic()
            if self._read is None or now - self._read[0] > READ_SECONDS:
                registry = CollectorRegistry()
                path = str(settings.prometheus_multiproc_dir)
                multiprocess.MultiProcessCollector(registry, path=path)
                self._read = (now, _Read(list(registry.collect())))
            return self._read[1]


_recent = _Recent()


def render(settings: Settings) -> bytes:
    """The text exposition of every process's metrics (read at most READ_SECONDS ago)."""
    return _recent.read(settings).text


def mark_dead(settings: Settings, pid: int) -> None:
    """Drop a dead process's live gauges; its counters stay so totals survive restarts."""
    if settings.prometheus_multiproc_dir is not None:
        multiprocess.mark_process_dead(pid, str(settings.prometheus_multiproc_dir))


@dataclass(frozen=True)
class Counts:
    """Totals of what bookd counts, summed over every process, at one moment."""

    processed: float = 0.0
    uploaded: float = 0.0
    failed: float = 0.0
    processing: tuple[tuple[float, float], ...] = ()
    """The processing-time histogram: (upper bound in seconds, cumulative count), in order."""
    calls: dict[str, float] = field(default_factory=dict)
    """S3 and SQS calls, by operation."""


_TOTALS = {
    "bookd_messages_processed_total": "processed",
    "bookd_messages_uploaded_total": "uploaded",
    "bookd_messages_failed_total": "failed",
}


def counts(settings: Settings) -> Counts:
    """What bookd has counted so far, in every process (for GET / and the console)."""
    return _recent.read(settings).counts


def _count(families: list[Metric]) -> Counts:
    totals = dict.fromkeys(_TOTALS.values(), 0.0)
    buckets: dict[float, float] = {}
    calls: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name in _TOTALS:
                totals[_TOTALS[sample.name]] += sample.value
            elif sample.name == "bookd_message_processing_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == "bookd_aws_request_duration_seconds_count":
                operation = sample.labels["operation"]
                calls[operation] = calls.get(operation, 0.0) + sample.value
    return Counts(**totals, processing=tuple(sorted(buckets.items())), calls=calls)


def totals(settings: Settings) -> dict[str, float]:
    """Processed, uploaded and failed counts summed over all processes, for GET /."""
    now = counts(settings)
    return {"processed": now.processed, "uploaded": now.uploaded, "failed": now.failed}
