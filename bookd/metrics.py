"""Prometheus metrics: written by the listener process, served by any Gunicorn worker.

In production ``PROMETHEUS_MULTIPROC_DIR`` is set (by gunicorn_conf.py, before
anything imports prometheus_client) so every process writes its values to files
there and a scrape sums them. Without it (unit tests, a bare ``bookd listen``) the
values live in this process's default registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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
    "Input messages left for redelivery after a transient failure, by reason.",
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
DEPENDENCY_UP = Gauge(
    "bookd_dependency_up",
    "0 while the listener pauses for a problem of this dependency (outage, throttling, "
    "misconfiguration), else 1.",
    ["dependency"],
    multiprocess_mode="livemax",
)
LISTENER_UP = Gauge(
    "bookd_listener_up",
    "1 while a listener process is running and polling.",
    # Summed over live processes: a listener killed without being marked dead would
    # show as 2 here, so the sum also checks the marking.
    multiprocess_mode="livesum",
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

SERVICES = ("s3", "sqs")


def init_labels() -> None:
    """Export every known label at 0, so rate() reads 0 instead of "no data" from the start."""
    from bookd.books import INVALID_REASONS  # late: processing imports this module
    from bookd.errors import FaultKind
    from bookd.processing import DELIVERY_REASONS

    for reason in (*INVALID_REASONS, *DELIVERY_REASONS):
        FAILED.labels(reason=reason)
    for service in SERVICES:
        for kind in FaultKind:
            if kind is not FaultKind.REJECTED:
                RETRIED.labels(reason=f"{service}-{kind.value}")


def _multiprocess_dir() -> str | None:
    # prometheus_client's own variable; it already chose its value class from it at import.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _registry() -> CollectorRegistry:
    if _multiprocess_dir() is None:
        return REGISTRY
    # A fresh registry per read: the collector reads the files as they are now.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def render() -> bytes:
    """The text exposition of every process's metrics."""
    return generate_latest(_registry())


def mark_dead(pid: int) -> None:
    """Drop a dead process's live gauges; its counters stay so totals survive restarts."""
    if _multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def totals() -> dict[str, float]:
    """Processed, uploaded and failed counts summed over all processes, for GET /."""
    wanted = {
        "bookd_messages_processed_total": "processed",
        "bookd_messages_uploaded_total": "uploaded",
        "bookd_messages_failed_total": "failed",
    }
    counts = dict.fromkeys(wanted.values(), 0.0)
    for family in _registry().collect():
        for sample in family.samples:
            if sample.name in wanted:
                counts[wanted[sample.name]] += sample.value
    return counts
