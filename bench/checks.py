"""Correctness under speed: what a contender left in S3 and on the output queue.

Checked after every run, against the workload: each input made exactly one S3
object version and exactly one output message, and each group's outputs came out
in the order its inputs went in. The consumer is stopped before the output queue
is drained, so the drain sees everything it will ever send.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.workload import Workload
from bookd.aws import make_client
from bookd.config import Settings

DRAIN_THREADS = 4
"""Threads draining the output queue; FIFO hands each a different group at a time."""


@dataclass(frozen=True)
class Output:
    """One output message as the checks need it."""

    body: dict[str, Any]
    group: str
    sequence: int
    sent: float
    """LocalStack's SentTimestamp, in seconds."""


@dataclass
class Verdict:
    """The problems found in one run; none means it passed."""

    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def queue_depth(sqs: Any, url: str) -> int:
    """Visible plus in-flight messages (both approximate, exact once the queue is idle)."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def drain_outputs(settings: Settings, *, timeout: float) -> list[Output]:
    """Receive and delete every message of the output queue until a receive comes back empty."""
    sqs = make_client(settings, "sqs", pool=DRAIN_THREADS)
    url = sqs.get_queue_url(QueueName=settings.output_queue)["QueueUrl"]
    got: list[Output] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def drain() -> None:
        while time.monotonic() < deadline:
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                AttributeNames=["SentTimestamp", "MessageGroupId", "SequenceNumber"],
            ).get("Messages", [])
            if not messages:
                return
            with lock:
                got.extend(
                    Output(
                        body=json.loads(m["Body"]),
                        group=m["Attributes"]["MessageGroupId"],
                        sequence=int(m["Attributes"]["SequenceNumber"]),
                        sent=int(m["Attributes"]["SentTimestamp"]) / 1000,
                    )
                    for m in messages
                )
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )

    with ThreadPoolExecutor(DRAIN_THREADS) as pool:
        for future in [pool.submit(drain) for _ in range(DRAIN_THREADS)]:
            future.result()
    return got


def stored_versions(settings: Settings) -> Counter[tuple[str, str]]:
    """How many versions each (bucket, key) has."""
    s3 = make_client(settings, "s3")
    seen: set[tuple[str, str, str]] = set()
    for bucket in settings.all_buckets:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            # Distinct version ids: a page boundary that repeats an entry (as LocalStack's
            # can, see workload.py) must not read as a second version.
            seen.update((bucket, v["Key"], v["VersionId"]) for v in page.get("Versions", []))
    return Counter((bucket, key) for bucket, key, _ in seen)


def check_objects(settings: Settings, workload: Workload, verdict: Verdict) -> None:
    """Exactly one version of each book's object, and nothing else in the buckets."""
    expected = {(settings.buckets[b.genre], b.key) for b in workload.books}
    versions = stored_versions(settings)
    missing = expected - versions.keys()
    extra = versions.keys() - expected
    repeated = [k for k, n in versions.items() if n != 1]
    verdict.expect(
        not missing, f"{len(missing)} books have no S3 object, e.g. {sorted(missing)[:2]}"
    )
    verdict.expect(not extra, f"{len(extra)} unexpected S3 objects, e.g. {sorted(extra)[:2]}")
    verdict.expect(not repeated, f"{len(repeated)} objects have several versions: {repeated[:2]}")


def check_outputs(
    settings: Settings, workload: Workload, outputs: list[Output], verdict: Verdict
) -> None:
    """Exactly one output per book, naming its object, in input order within each group."""
    books = {b.id: b for b in workload.books}
    counts = Counter(o.body.get("id") for o in outputs)
    missing = books.keys() - counts.keys()
    verdict.expect(not missing, f"{len(missing)} books were never announced")
    verdict.expect(
        all(counts[i] == 1 for i in counts) and counts.keys() <= books.keys(),
        f"{len(outputs) - len(counts)} duplicate or unknown output messages",
    )
    wrong = [
        o.body
        for o in outputs
        if o.body.get("id") in books
        and (
            o.body.get("file") != books[o.body["id"]].key
            or o.body.get("bucket") != settings.buckets[books[o.body["id"]].genre]
            or o.group != books[o.body["id"]].group
        )
    ]
    verdict.expect(not wrong, f"{len(wrong)} outputs name the wrong object or group: {wrong[:2]}")
    # Order: each group's outputs, by the queue's sequence number, against its inputs.
    announced: dict[str, list[str]] = {}
    for o in sorted(outputs, key=lambda o: o.sequence):
        announced.setdefault(o.group, []).append(o.body.get("id"))
    out_of_order = [
        group
        for group, members in workload.by_group().items()
        if announced.get(group) != [b.id for b in members]
    ]
    verdict.expect(not out_of_order, f"output order differs from input order in {out_of_order}")
