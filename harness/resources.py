"""Queues and buckets of one test or run, on the real LocalStack: unique names, removal,
sending books in and reading what came out."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bookd.aws.clients import make_client
from bookd.aws.codes import AWS_ERRORS
from bookd.aws.sqs import Queue
from bookd.core.config import Settings

DRAIN_THREADS = 4
"""Threads draining a queue; FIFO hands each a different group at a time."""

PAYLOAD_BUCKET_SUFFIX = "-payloads"
"""How a test's payload bucket (BOOKD_PAYLOAD_BUCKETS) is named: tests/e2e's IAM check
tells its calls from those on the books' buckets by it."""


def unique_settings(base: Settings, **changes: Any) -> Settings:
    """Settings whose queues and buckets belong to one test or run only.

    Its payload bucket is named (allowed) but not made: provisioning makes bookd's own
    buckets, and a payload bucket is the producer's.
    """
    tag = f"t{uuid.uuid4().hex[:10]}"
    return base.replace(
        input_queue=f"{tag}-Input.fifo",
        output_queue=f"{tag}-Output.fifo",
        dead_letter_queue=f"{tag}-Input-dlq.fifo",
        buckets={"scifi": f"{tag}-scifi", "romance": f"{tag}-romance"},
        payload_buckets=(f"{tag}{PAYLOAD_BUCKET_SUFFIX}",),
        **changes,
    )


def remove_resources(settings: Settings) -> None:
    """Delete the queues and the buckets (every object version first) of ``settings``,
    its payload buckets too if a test made them."""
    sqs = make_client(settings, "sqs")
    s3 = make_client(settings, "s3")
    for name in (settings.input_queue, settings.output_queue, settings.dead_letter_queue):
        with contextlib.suppress(*AWS_ERRORS):
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
    for bucket in [*settings.all_buckets, *settings.payload_buckets]:
        _empty_and_delete_bucket(s3, bucket)


def _empty_and_delete_bucket(s3: Any, bucket: str, *, rounds: int = 100) -> None:
    # Page by page until nothing is left: LocalStack 4.14.0's version listing repeats
    # or skips entries across pages for some keys, so one paginated pass is not enough.
    for _ in range(rounds):
        try:
            page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
        except AWS_ERRORS:
            return  # no such bucket
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if not doomed:
            break
        s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
    with contextlib.suppress(*AWS_ERRORS):
        s3.delete_bucket(Bucket=bucket)


def queue_depth(sqs: Any, name: str) -> int:
    """Visible plus in-flight messages of queue ``name`` (both approximate, exact once the
    queue is idle), read as bookd reads it."""
    return Queue(sqs, name).depth().waiting


@dataclass(frozen=True)
class Received:
    """One message taken off a queue, as the checks need it."""

    body: str
    group: str
    sequence: int
    sent: float
    """LocalStack's SentTimestamp, in seconds."""
    attributes: dict[str, str]

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


def drain(settings: Settings, queue: str, *, timeout: float) -> list[Received]:
    """Receive and delete every message of ``queue`` until a receive comes back empty."""
    sqs = make_client(settings, "sqs", pool=DRAIN_THREADS)
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    got: list[Received] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def one_drainer() -> None:
        while time.monotonic() < deadline:
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                AttributeNames=["SentTimestamp", "MessageGroupId", "SequenceNumber"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return
            with lock:
                got.extend(
                    Received(
                        body=m["Body"],
                        group=m["Attributes"]["MessageGroupId"],
                        sequence=int(m["Attributes"]["SequenceNumber"]),
                        sent=int(m["Attributes"]["SentTimestamp"]) / 1000,
                        attributes={
                            k: v.get("StringValue", "")
                            for k, v in m.get("MessageAttributes", {}).items()
                        },
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
        for future in [pool.submit(one_drainer) for _ in range(DRAIN_THREADS)]:
            future.result()
    return got


def stored_versions(settings: Settings) -> Counter[tuple[str, str]]:
    """How many versions each (bucket, key) has."""
    s3 = make_client(settings, "s3")
    seen: set[tuple[str, str, str]] = set()
    for bucket in settings.all_buckets:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            # Distinct version ids: a page boundary that repeats an entry (as LocalStack's
            # can) must not read as a second version.
            seen.update((bucket, v["Key"], v["VersionId"]) for v in page.get("Versions", []))
    return Counter((bucket, key) for bucket, key, _ in seen)


class Queues:
    """Test-side access to one test's queues: send books, collect what comes out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sqs = make_client(settings, "sqs")
        self.queues = {
            name: Queue(self.sqs, name)
            for name in (settings.input_queue, settings.output_queue, settings.dead_letter_queue)
        }
        self.urls = {name: queue.url for name, queue in self.queues.items()}

    def send(
        self,
        body: str | dict,
        *,
        group: str = "g1",
        attributes: Mapping[str, str] | None = None,
        system_attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send one message (string message attributes and system attributes, if given)."""
        text = body if isinstance(body, str) else json.dumps(body)
        extra: dict[str, Any] = {}
        if attributes:
            extra["MessageAttributes"] = {
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            }
        if system_attributes:
            extra["MessageSystemAttributes"] = {
                k: {"DataType": "String", "StringValue": v} for k, v in system_attributes.items()
            }
        response = self.sqs.send_message(
            QueueUrl=self.urls[self.settings.input_queue],
            MessageBody=text,
            MessageGroupId=group,
            MessageDeduplicationId=uuid.uuid4().hex,
            **extra,
        )
        return response["MessageId"]

    def send_many(self, bodies: Sequence[tuple[str, str]]) -> list[str]:
        """Send (group, body) pairs in order, ten per call; return their message ids."""
        ids: list[str] = []
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            response = self.sqs.send_message_batch(
                QueueUrl=self.urls[self.settings.input_queue],
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": body,
                        "MessageGroupId": group,
                        "MessageDeduplicationId": uuid.uuid4().hex,
                    }
                    for i, (group, body) in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                raise RuntimeError(f"SendMessageBatch refused {response['Failed']}")
            by_index = {int(s["Id"]): s["MessageId"] for s in response["Successful"]}
            ids += [by_index[i] for i in range(len(chunk))]
        return ids

    def collect(self, name: str, count: int, *, timeout: float = 30.0) -> list[dict]:
        """Receive and delete messages from queue ``name`` until ``count`` came or time is up."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            response = self.sqs.receive_message(
                QueueUrl=self.urls[name],
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            for m in response.get("Messages", []):
                got.append(m)
                self.sqs.delete_message(QueueUrl=self.urls[name], ReceiptHandle=m["ReceiptHandle"])
        return got

    def outputs(self, count: int, **kw: Any) -> list[dict]:
        return [
            json.loads(m["Body"]) for m in self.collect(self.settings.output_queue, count, **kw)
        ]

    def dead_letters(self, count: int, **kw: Any) -> list[dict]:
        return self.collect(self.settings.dead_letter_queue, count, **kw)

    def depth(self, name: str) -> int:
        return self.queues[name].depth().waiting
