"""Helpers shared by the tests: real LocalStack, unique names, free ports, linters."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bookd.aws import AWS_ERRORS, make_client
from bookd.config import Settings


def unique_settings(base: Settings, **changes: Any) -> Settings:
    """Settings whose queues and buckets belong to one test only."""
    tag = f"t{uuid.uuid4().hex[:10]}"
    return base.replace(
        input_queue=f"{tag}-Input.fifo",
        output_queue=f"{tag}-Output.fifo",
        dead_letter_queue=f"{tag}-Input-dlq.fifo",
        buckets={"scifi": f"{tag}-scifi", "romance": f"{tag}-romance"},
        **changes,
    )


def remove_resources(settings: Settings) -> None:
    """Delete the queues and the buckets (every object version first) of ``settings``."""
    sqs = make_client(settings, "sqs")
    s3 = make_client(settings, "s3")
    for name in (settings.input_queue, settings.output_queue, settings.dead_letter_queue):
        with contextlib.suppress(AWS_ERRORS):
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
    for bucket in settings.all_buckets:
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


class Queues:
    """Test-side access to one test's queues: send books, collect what comes out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sqs = make_client(settings, "sqs")
        self.urls = {
            name: self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            for name in (settings.input_queue, settings.output_queue, settings.dead_letter_queue)
        }

    def send(self, body: str | dict, *, group: str = "g1") -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        response = self.sqs.send_message(
            QueueUrl=self.urls[self.settings.input_queue],
            MessageBody=text,
            MessageGroupId=group,
            MessageDeduplicationId=uuid.uuid4().hex,
        )
        return response["MessageId"]

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
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.urls[name],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )


def wait_for(check: Callable[[], Any], *, timeout: float, interval: float = 0.2) -> Any:
    """Call ``check`` until it returns something true; return it, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tool(name: str, package: str) -> str:
    """A linter binary installed by requirements-dev.txt, next to this interpreter first."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} is missing: pip install -r requirements-dev.txt (package {package})"
    return found


def lint(*command: str) -> None:
    """Run a linter; fail with its output unless it passes."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
