"""Client construction and the S3/SQS adapters of bookd.ports. No business logic lives here.

Each adapter method turns a boto3 failure into an AwsFault (bookd.faults names its
kind); what to do about it is bookd.retry's business. Clients are made by whoever
uses them, in the process that uses them: a boto3 client made before a fork must
not be used after it (botocore#1246).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.handlers import add_expect_header

from bookd import metrics
from bookd.config import Settings
from bookd.errors import AwsFault, FaultKind
from bookd.faults import AWS_ERRORS, classify, kind_of
from bookd.ports import BATCH_LIMIT, MESSAGE_ID_METADATA, Message, Outgoing
from bookd.retry import CLIENT_RETRIES

log = logging.getLogger(__name__)

T = TypeVar("T")

VERSION_SCAN_LIMIT = 20
"""Versions of one key read, newest first, when looking for a redelivered book's copy."""


def make_client(
    settings: Settings,
    service: str,
    *,
    read_timeout: float | None = None,
    pool: int = 10,
    attempts: int | None = None,
    purpose: str = "other",
) -> Any:
    """A boto3 client for ``service`` that sends every call to the configured endpoint.

    ``purpose`` names the part of bookd that calls (listener, web, cli, peek,
    provision; "other" for tests and tools) in the BOOKD_AWS_CALL_LOG, which shows
    what IAM permissions each part uses.
    """
    retries = dict(CLIENT_RETRIES)
    if attempts is not None:
        retries["max_attempts"] = attempts
    config = Config(
        region_name=settings.region,
        connect_timeout=settings.check_timeout,
        # A long poll holds the connection for wait_time seconds; the read must outlast it.
        read_timeout=read_timeout if read_timeout is not None else settings.wait_time + 10,
        retries=retries,
        max_pool_connections=pool,
        # LocalStack serves buckets by path; AWS accepts both.
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    session = boto3.session.Session()
    client = session.client(
        service,
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        config=config,
    )
    _time_calls(client)
    if settings.aws_call_log is not None:
        _log_calls(client, settings.aws_call_log, purpose)
    return client


def _log_calls(client: Any, path: Path, purpose: str) -> None:
    """Append each call's service, operation, queue or bucket and ``purpose`` to ``path``."""

    def record(event_name: str, params: dict[str, Any], **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        target = params.get("Bucket") or params.get("QueueName") or params.get("QueueUrl", "")
        line = {
            "purpose": purpose,
            "service": service,
            "operation": operation,
            "target": str(target).rsplit("/", 1)[-1],
            "versioned": "VersionId" in params,
        }
        # One short line per write, appended: lines of several processes never mix.
        with path.open("a") as log_file:
            log_file.write(json.dumps(line) + "\n")

    client.meta.events.register("before-parameter-build", record)


def _time_calls(client: Any) -> None:
    """Record each call's duration and failure (bookd_aws_request_*) through botocore's events."""
    started = "bookd_started"

    def before(context: dict[str, Any], **_: Any) -> None:
        context[started] = time.monotonic()

    def observe(event_name: str, context: dict[str, Any], error: str | None) -> None:
        _, service, operation = event_name.split(".", 2)
        if started in context:
            seconds = time.monotonic() - context.pop(started)
            metrics.AWS_SECONDS.labels(service=service, operation=operation).observe(seconds)
        if error is not None:
            metrics.AWS_ERRORS.labels(service=service, operation=operation, code=error).inc()

    def after(event_name: str, http_response: Any, parsed: Any, context: Any, **_: Any) -> None:
        error = None
        if http_response.status_code >= 300:
            error = str(parsed.get("Error", {}).get("Code") or http_response.status_code)
        observe(event_name, context, error)

    def after_error(event_name: str, exception: Exception, context: Any, **_: Any) -> None:
        observe(event_name, context, type(exception).__name__)

    events = client.meta.events
    events.register("before-call", before)
    events.register("after-call", after)
    events.register("after-call-error", after_error)


def call(service: str, operation: str, fn: Callable[[], T], *, resource: str) -> T:
    """Run one boto3 call on ``resource`` ("bucket romance"); AwsFault if it fails."""
    try:
        return fn()
    except AWS_ERRORS as exc:
        raise classify(exc, service=service, operation=operation, resource=resource) from exc


def _entry_fault(failure: Mapping[str, Any], operation: str, resource: str) -> AwsFault:
    code = str(failure.get("Code") or "Unknown")
    return AwsFault(
        kind_of(code),
        service="sqs",
        operation=operation,
        code=code,
        detail=str(failure.get("Message") or code),
        resource=resource,
    )


def _chunks(items: Sequence[T], size: int = BATCH_LIMIT) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def message_from_sqs(raw: Mapping[str, Any]) -> Message:
    attributes = raw.get("Attributes", {})
    return Message(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw["Body"],
        group_id=attributes.get("MessageGroupId", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        sent_at=int(attributes.get("SentTimestamp", "0")) / 1000,
        attributes={
            name: value.get("StringValue", "")
            for name, value in raw.get("MessageAttributes", {}).items()
        },
    )


def entry(message: Outgoing, index: int) -> dict[str, Any]:
    """The SendMessage(Batch) parameters of one outgoing message."""
    result: dict[str, Any] = {
        "Id": str(index),
        "MessageBody": message.body,
        "MessageGroupId": message.group_id,
        "MessageDeduplicationId": message.dedup_id,
    }
    if message.attributes:
        result["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in message.attributes.items()
        }
    return result


class Queue:
    """One SQS queue, by URL: the InputQueue and OutputQueue ports, plus a plain send."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        self.resource = f"queue {name}"
        self.url: str = call(
            "sqs",
            "GetQueueUrl",
            lambda: client.get_queue_url(QueueName=name)["QueueUrl"],
            resource=self.resource,
        )

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
            # Always the listener's own: a queue whose attribute differs must not hand
            # a message to someone else while it is being worked on.
            kwargs["VisibilityTimeout"] = visibility_timeout
        response = call(
            "sqs",
            "ReceiveMessage",
            lambda: self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=BATCH_LIMIT,
                WaitTimeSeconds=wait_time,
                # Only what the listener reads: each extra attribute is work for SQS and us.
                AttributeNames=["MessageGroupId", "ApproximateReceiveCount", "SentTimestamp"],
                **kwargs,
            ),
            resource=self.resource,
        )
        return [message_from_sqs(raw) for raw in response.get("Messages", [])]

    def send_one(self, message: Outgoing) -> None:
        """Send one message; AwsFault if SQS refused it."""
        params = entry(message, 0)
        del params["Id"]
        call(
            "sqs",
            "SendMessage",
            lambda: self.client.send_message(QueueUrl=self.url, **params),
            resource=self.resource,
        )

    def send(self, messages: Sequence[Outgoing]) -> dict[str, AwsFault]:
        """Send up to ten messages in order, in one call; return the entries not sent, by ref.

        A failure of the whole call raises AwsFault.
        """
        return self.send_batch(messages)[1]

    def send_batch(
        self, messages: Sequence[Outgoing]
    ) -> tuple[dict[str, str], dict[str, AwsFault]]:
        """Like send; also return the message id SQS gave each entry it took, by ref."""
        if len(messages) > BATCH_LIMIT:
            raise ValueError(f"send takes at most {BATCH_LIMIT} messages; split them first")
        entries = [entry(m, i) for i, m in enumerate(messages)]
        response = call(
            "sqs",
            "SendMessageBatch",
            lambda: self.client.send_message_batch(QueueUrl=self.url, Entries=entries),
            resource=self.resource,
        )
        sent = {messages[int(s["Id"])].ref: s["MessageId"] for s in response.get("Successful", [])}
        failed = {
            messages[int(f["Id"])].ref: _entry_fault(f, "SendMessageBatch", self.resource)
            for f in response.get("Failed", [])
        }
        return sent, failed

    def delete(self, messages: Sequence[Message]) -> dict[str, AwsFault]:
        """Delete in batches of ten; return the faults of messages not deleted, by id."""
        return self._per_message(
            "DeleteMessageBatch", self.client.delete_message_batch, messages, {}
        )

    def change_visibility(self, messages: Sequence[Message], timeout: int) -> dict[str, AwsFault]:
        """Set the visibility of messages still held; 0 hands them back at once."""
        return self._per_message(
            "ChangeMessageVisibilityBatch",
            self.client.change_message_visibility_batch,
            messages,
            {"VisibilityTimeout": timeout},
        )

    def _per_message(
        self,
        operation: str,
        method: Callable[..., Any],
        messages: Sequence[Message],
        extra: Mapping[str, Any],
    ) -> dict[str, AwsFault]:
        """A batch call per ten receipt handles; the faults of entries that failed, by id."""
        failed: dict[str, AwsFault] = {}
        for chunk in _chunks(messages):
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, **extra}
                for i, m in enumerate(chunk)
            ]
            response = call(
                "sqs",
                operation,
                lambda entries=entries: method(QueueUrl=self.url, Entries=entries),
                resource=self.resource,
            )
            for failure in response.get("Failed", []):
                failed[chunk[int(failure["Id"])].message_id] = _entry_fault(
                    failure, operation, self.resource
                )
        return failed

    def attributes(self, *names: str) -> dict[str, str]:
        """Queue attributes (counts, ARN...), by name."""
        return call(
            "sqs",
            "GetQueueAttributes",
            lambda: self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=list(names))[
                "Attributes"
            ],
            resource=self.resource,
        )

    def probe(self) -> None:
        """A cheap call that fails when SQS (or this queue) does."""
        self.attributes("QueueArn")

    def server_time(self) -> float:
        """SQS's own clock now, in seconds since the epoch, rounded up to the second.

        From the Date of a cheap call's answer (whole seconds, hence rounded up), so that
        it compares with the SentTimestamp SQS gives messages whatever this host's clock
        says; this host's clock (rounded up too) if SQS sent no Date.
        """
        response = call(
            "sqs",
            "GetQueueAttributes",
            lambda: self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["QueueArn"]
            ),
            resource=self.resource,
        )
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return parsedate_to_datetime(date).timestamp() + 1
        except (TypeError, ValueError):
            return float(math.ceil(time.time()))


class BookStore:
    """The S3 side: put a book's JSON, find the copy an earlier delivery stored, probe."""

    def __init__(self, client: Any, *, bucket_owner: str | None = None) -> None:
        self.client = client
        # ExpectedBucketOwner makes S3 refuse a bucket of the same name in another account.
        self._owner = {"ExpectedBucketOwner": bucket_owner} if bucket_owner else {}
        # Books are small (an SQS body is at most 1 MiB): waiting for "100 Continue"
        # before sending one costs a whole extra round trip per upload.
        client.meta.events.unregister("before-call.s3", add_expect_header)

    def put(self, bucket: str, key: str, body: bytes, *, metadata: Mapping[str, str]) -> str:
        """Store the body and return the new version id ('' if versioning is off)."""
        response = call(
            "s3",
            "PutObject",
            lambda: self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata=dict(metadata),
                **self._owner,
            ),
            resource=f"bucket {bucket}",
        )
        return response.get("VersionId", "")

    def find(self, bucket: str, key: str, *, message_id: str) -> str | None:
        """The version id of ``key`` that ``message_id`` stored, if one did.

        The latest version first (one call, the usual answer); then, since a later
        book of the same title may have been stored on top of it, older versions.
        """
        head = self._head(bucket, key, None)
        if head is None:
            return None
        if head.get("Metadata", {}).get(MESSAGE_ID_METADATA) == message_id:
            return head.get("VersionId", "")
        listing = call(
            "s3",
            "ListObjectVersions",
            lambda: self.client.list_object_versions(
                Bucket=bucket, Prefix=key, MaxKeys=VERSION_SCAN_LIMIT, **self._owner
            ),
            resource=f"bucket {bucket}",
        )
        for version in listing.get("Versions", []):
            if version["Key"] != key or version.get("IsLatest"):
                continue
            older = self._head(bucket, key, version["VersionId"])
            if older and older.get("Metadata", {}).get(MESSAGE_ID_METADATA) == message_id:
                return version["VersionId"]
        return None

    def _head(self, bucket: str, key: str, version_id: str | None) -> dict[str, Any] | None:
        version = {"VersionId": version_id} if version_id else {}
        try:
            return self.client.head_object(Bucket=bucket, Key=key, **version, **self._owner)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise classify(
                exc, service="s3", operation="HeadObject", resource=f"bucket {bucket}"
            ) from exc
        except AWS_ERRORS as exc:
            raise classify(
                exc, service="s3", operation="HeadObject", resource=f"bucket {bucket}"
            ) from exc

    def probe(self, bucket: str) -> None:
        """A cheap call that fails when S3 (or this bucket) does."""
        call(
            "s3",
            "HeadBucket",
            lambda: self.client.head_bucket(Bucket=bucket, **self._owner),
            resource=f"bucket {bucket}",
        )

    def check_versioning(self, bucket: str) -> None:
        """AwsFault (misconfigured) unless the bucket keeps every version of a key."""
        status = call(
            "s3",
            "GetBucketVersioning",
            lambda: self.client.get_bucket_versioning(Bucket=bucket, **self._owner),
            resource=f"bucket {bucket}",
        ).get("Status")
        if status != "Enabled":
            raise AwsFault(
                FaultKind.MISCONFIGURED,
                service="s3",
                operation="GetBucketVersioning",
                code="BucketNotVersioned",
                resource=f"bucket {bucket}",
                detail=f"bucket {bucket} has versioning {status or 'off'}: a second book with "
                "the same title would replace the first; run `bookd provision`",
            )
