"""How long bookd's stack takes to start and to stop.

Start: ``cold_start`` starts a whole stack (supervisord, Gunicorn, the listener: a new
replica's cost) with books waiting, and times its start to the first book announced.
Stop (SIGTERM to the last process gone): idle, every bookd run of the benchmark ends
with its stack stopped after the queue emptied (``shutdown_seconds``; its receive
loops then sit in long polls, which a stop does not wait out); busy, ``loaded_stop``
stops a stack saturated with books, which finishes the batches in hand and hands
back what it holds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.contenders import Run
from bookd.aws.clients import make_client
from bookd.aws.provision import provision
from bookd.aws.sqs import Queue
from bookd.core.config import Settings
from harness.resources import drain, remove_resources, unique_settings
from harness.stack import Stack
from harness.waiting import wait_for
from harness.workload import Workload, make_workload, preload

BUSY_AFTER = 0.1
"""The loaded stop comes once this share of the books is announced: in full flow."""


def idle_stop_seconds(runs: list[Run]) -> float | None:
    """The median of the one-instance bookd runs' stops, each after its queue emptied."""
    found = [
        r.extra["shutdown_seconds"]
        for r in runs
        if r.contender == "bookd" and r.passed and "shutdown_seconds" in r.extra
    ]
    return statistics.median(found) if found else None


def loaded_stop(
    base: Settings, workload: Workload, work: Path, env: Mapping[str, str]
) -> dict[str, Any]:
    """SIGTERM to a stack in full flow: how long until it is gone, and how far it got."""
    settings = unique_settings(base)
    try:
        provision(settings)
        preload(settings, workload)
        stack = Stack(settings, work / "loaded-stop", **env)
        stack.tmp.mkdir(parents=True, exist_ok=True)
        try:
            stack.start()
            outputs = Queue(make_client(settings, "sqs"), settings.output_queue)
            count = len(workload.books)
            wait_for(lambda: outputs.depth().visible >= count * BUSY_AFTER, timeout=120)
            began = time.monotonic()
            seconds = stack.terminate()
            announced = outputs.depth().visible
        finally:
            stack.cleanup()
    finally:
        remove_resources(settings)
    return {
        "seconds": seconds,
        "books": count,
        "announced_before_stop": announced,
        "stopped_at": began,
    }


START_BOOKS = 20


def cold_start(base: Settings, work: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """A whole stack started with books waiting: seconds from its start to the first book
    announced (the output's SentTimestamp, LocalStack's clock, which is this host's)."""
    settings = unique_settings(base)
    try:
        provision(settings)
        preload(settings, make_workload(START_BOOKS, 5))
        stack = Stack(settings, work / "cold-start", **env)
        stack.tmp.mkdir(parents=True, exist_ok=True)
        try:
            began = time.time()
            stack.start()
            outputs = Queue(make_client(settings, "sqs"), settings.output_queue)
            wait_for(lambda: outputs.depth().visible >= START_BOOKS, timeout=30)
            first = min(o.sent for o in drain(settings, settings.output_queue, timeout=30))
        finally:
            stack.cleanup()
    finally:
        remove_resources(settings)
    return {"seconds": first - began, "books": START_BOOKS}
