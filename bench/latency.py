"""Latency from enqueued to announced at a steady offered load, beside the floor and baseline.

A producer sends books one at a time on a schedule (open loop: it never waits for the
consumer), round-robin over the groups, straight to LocalStack (its sends pay no added
delay), while the consumer (bookd's stack, the call floor, the plain baseline) works
through the 20 ms proxy. Each book's latency runs from its send returning (this host's
clock) to its announcement's SentTimestamp (LocalStack's, the same host's clock). A
consumer that cannot keep up shows it as latencies that grow with the run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench.contenders import Consumer, Run
from bench.probes import percentile
from bookd.aws.clients import make_client
from bookd.aws.provision import provision
from bookd.aws.sqs import Queue
from bookd.core.config import Settings
from harness.resources import drain, remove_resources, unique_settings
from harness.waiting import wait_for
from harness.workload import make_workload

Start = Callable[[Settings], contextlib.AbstractContextManager[Consumer]]


def paced_run(
    name: str,
    mode: str,
    base: Settings,
    *,
    endpoint: str,
    start: Start,
    rate: float,
    seconds: float,
    groups: int,
    keeps_up: bool = True,
) -> Run:
    """``rate`` books a second for ``seconds``, over ``groups``, to the consumer ``start``
    makes against ``endpoint``; its latencies and what it announced.

    A consumer that ``keeps_up`` must announce every book within a minute of the last
    send (else the run fails); one that cannot (the baseline, past its rate) is given
    that minute, and the latencies of what it announced are reported.
    """
    count = max(1, round(rate * seconds))
    run = Run(name, mode, count, groups, extra={"offered_rate": rate})
    settings = unique_settings(base)
    books = make_workload(count, groups).books
    try:
        provision(settings)
        with start(settings.replace(endpoint_url=endpoint)) as consumer:
            sent = _produce(settings, books, rate)
            announced = _output_depth(settings)
            done = wait_for(lambda: announced() >= count, timeout=60, interval=0.5)
            run.extra.update(consumer.stop())
        outputs = drain(settings, settings.output_queue, timeout=60)
    finally:
        remove_resources(settings)
    latencies = [o.sent - sent[o.json()["id"]] for o in outputs if o.json().get("id") in sent]
    run.extra["announced"] = len(latencies)
    if keeps_up and (not done or len(latencies) != count):
        run.problems.append(f"{len(latencies)} of {count} books announced")
    run.latency_p50 = percentile(latencies, 50)
    run.latency_p99 = percentile(latencies, 99)
    run.rate = len(latencies) / seconds
    return run


def _produce(settings: Settings, books: list[Any], rate: float) -> dict[str, float]:
    """Send each book at its moment; the wall-clock time each send returned, by book id."""
    sqs = make_client(settings, "sqs", pool=4)
    url = sqs.get_queue_url(QueueName=settings.input_queue)["QueueUrl"]
    sent: dict[str, float] = {}
    began = time.monotonic()
    for n, book in enumerate(books):
        time.sleep(max(0.0, began + n / rate - time.monotonic()))
        sqs.send_message(
            QueueUrl=url,
            MessageBody=book.body,
            MessageGroupId=book.group,
            MessageDeduplicationId=f"paced-{n}",
        )
        sent[book.id] = time.time()
    return sent


def _output_depth(settings: Settings) -> Callable[[], int]:
    """How many announcements wait in the output queue, asked anew at each call."""
    queue = Queue(make_client(settings, "sqs"), settings.output_queue)
    return lambda: queue.depth().visible
