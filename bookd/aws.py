"""Client construction and thin S3/SQS adapters. No business logic lives here.

Clients are made by whoever uses them, in the process that uses them: a boto3
client made before a fork must not be used after it (botocore#1246).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from bookd.config import Settings
from bookd.errors import TransientError

log = logging.getLogger(__name__)

AWS_ERRORS = (BotoCoreError, ClientError)
"""What a boto3 call raises when S3 or SQS fails; callers catch this tuple."""

BATCH_LIMIT = 10
"""SQS takes at most ten entries per batch call."""


def transient(exc: Exception, action: str) -> TransientError:
    """Wrap a boto3 failure so it names the call and the AWS error code."""
    code = (
        exc.response.get("Error", {}).get("Code", "Unknown")
        if isinstance(exc, ClientError)
        else type(exc).__name__
    )
    return TransientError(f"aws-{action}", f"{action} failed: {code}: {exc}")


def make_client(
    settings: Settings,
    service: str,
    *,
    read_timeout: float | None = None,
    pool: int = 10,
    attempts: int = 3,
) -> Any:
    """A boto3 client for ``service`` that sends every call to the configured endpoint."""
    config = Config(
        region_name=settings.region,
        connect_timeout=settings.check_timeout,
        # A long poll holds the connection for wait_time seconds; the read must outlast it.
        read_timeout=read_timeout if read_timeout is not None else settings.wait_time + 10,
        retries={"mode": "standard", "max_attempts": attempts},
        max_pool_connections=pool,
        # LocalStack serves buckets by path; AWS accepts both.
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    session = boto3.session.Session()
    return session.client(
        service,
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        config=config,
    )


@dataclass(frozen=True)
class Message:
    """One received SQS message, with the attributes bookd relies on pulled out."""

    message_id: str
    receipt_handle: str
    body: str
    group_id: str
    receive_count: int
    attributes: dict[str, str]
    message_attributes: dict[str, Any]

    @classmethod
    def from_sqs(cls, raw: dict[str, Any]) -> Message:
        attributes = raw.get("Attributes", {})
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw["Body"],
            group_id=attributes.get("MessageGroupId", ""),
            receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
            attributes=attributes,
            message_attributes=raw.get("MessageAttributes", {}),
        )


@dataclass(frozen=True)
class Outgoing:
    """A message to send to a FIFO queue."""

    ref: str
    body: str
    group_id: str
    dedup_id: str
    attributes: dict[str, str] | None = None

    def entry(self, index: int) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Id": str(index),
            "MessageBody": self.body,
            "MessageGroupId": self.group_id,
            "MessageDeduplicationId": self.dedup_id,
        }
        if self.attributes:
            entry["MessageAttributes"] = {
                name: {"DataType": "String", "StringValue": value}
                for name, value in self.attributes.items()
            }
        return entry


def _chunks(items: Sequence[Any], size: int = BATCH_LIMIT) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Queue:
    """One SQS queue, by URL, with the calls the listener makes."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        try:
            self.url: str = client.get_queue_url(QueueName=name)["QueueUrl"]
        except AWS_ERRORS as exc:
            raise transient(exc, "get-queue-url") from exc

    def receive(
        self,
        *,
        wait_time: int,
        visibility_timeout: int | None = None,
        with_message_attributes: bool = False,
    ) -> list[Message]:
        """Long-poll for up to ten messages, with the system attributes bookd reads."""
        kwargs: dict[str, Any] = {}
        if with_message_attributes:
            kwargs["MessageAttributeNames"] = ["All"]
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        response = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=BATCH_LIMIT,
            WaitTimeSeconds=wait_time,
            # Only what the listener reads: each extra attribute is work for SQS and us.
            AttributeNames=["MessageGroupId", "ApproximateReceiveCount"],
            **kwargs,
        )
        return [Message.from_sqs(raw) for raw in response.get("Messages", [])]

    def send(self, message: Outgoing) -> None:
        """Send one message; raise TransientError if SQS refused it."""
        entry = message.entry(0)
        del entry["Id"]
        try:
            self.client.send_message(QueueUrl=self.url, **entry)
        except AWS_ERRORS as exc:
            raise transient(exc, "send") from exc

    def send_batch(self, messages: Sequence[Outgoing]) -> set[str]:
        """Send in batches of ten, in order; return the refs of the messages that failed.

        A failed entry is tried once more on its own before it is reported, since a
        batch can succeed as a whole while some of its entries fail.
        """
        failed: set[str] = set()
        for chunk in _chunks(messages):
            entries = [m.entry(i) for i, m in enumerate(chunk)]
            try:
                response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
                bad = {int(f["Id"]) for f in response.get("Failed", [])}
            except AWS_ERRORS as exc:
                log.warning("Queue %s: send batch failed, sending one by one: %s", self.name, exc)
                bad = set(range(len(chunk)))
            for index in sorted(bad):
                try:
                    self.send(chunk[index])
                except TransientError as exc:
                    log.warning("Queue %s: %s", self.name, exc)
                    failed.add(chunk[index].ref)
        return failed

    def delete_batch(self, messages: Sequence[Message]) -> set[str]:
        """Delete in batches of ten; return the ids of the messages that stayed."""
        failed: set[str] = set()
        for chunk in _chunks(messages):
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)
            ]
            try:
                response = self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
                bad = {int(f["Id"]) for f in response.get("Failed", [])}
            except AWS_ERRORS as exc:
                log.warning(
                    "Queue %s: delete batch failed, deleting one by one: %s", self.name, exc
                )
                bad = set(range(len(chunk)))
            for index in sorted(bad):
                try:
                    self.client.delete_message(
                        QueueUrl=self.url, ReceiptHandle=chunk[index].receipt_handle
                    )
                except AWS_ERRORS as exc:
                    log.warning(
                        "Queue %s: delete of %s failed: %s", self.name, chunk[index].message_id, exc
                    )
                    failed.add(chunk[index].message_id)
        return failed

    def change_visibility(self, messages: Sequence[Message], timeout: int) -> None:
        """Set the visibility of messages still held; 0 hands them back at once."""
        for chunk in _chunks(messages):
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": timeout}
                for i, m in enumerate(chunk)
            ]
            try:
                response = self.client.change_message_visibility_batch(
                    QueueUrl=self.url, Entries=entries
                )
            except AWS_ERRORS as exc:
                log.warning("Queue %s: visibility change failed: %s", self.name, exc)
                continue
            for failure in response.get("Failed", []):
                # A message already deleted or expired can no longer be changed; nothing to do.
                log.debug("Queue %s: visibility change refused: %s", self.name, failure)


class BookStore:
    """The S3 side: put a book's JSON and find a copy stored by an earlier delivery."""

    METADATA_KEY = "bookd-message-id"

    def __init__(self, client: Any) -> None:
        self.client = client
        # Books are small (an SQS body is at most 1 MiB): waiting for "100 Continue"
        # before sending one costs a whole extra round trip per upload.
        client.meta.events.unregister("before-call.s3", add_expect_header)

    def put(self, bucket: str, key: str, body: bytes, *, message_id: str, book_id: str) -> str:
        """Store the body and return the new version id ('' if versioning is off)."""
        try:
            response = self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata={self.METADATA_KEY: message_id, "bookd-book-id": book_id},
            )
        except AWS_ERRORS as exc:
            raise transient(exc, "put-object") from exc
        return response.get("VersionId", "")

    def stored_version(self, bucket: str, key: str, *, message_id: str) -> str | None:
        """The version id of ``key`` if its latest version came from ``message_id``."""
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise transient(exc, "head-object") from exc
        except BotoCoreError as exc:
            raise transient(exc, "head-object") from exc
        if head.get("Metadata", {}).get(self.METADATA_KEY) == message_id:
            return head.get("VersionId", "")
        return None
