"""SQS queues, by URL: bookd.core.ports' InputQueue and OutputQueue on boto3.

No business logic: each method turns a boto3 failure into an AwsFault
(bookd.aws.codes names its kind, and the queue it was on); what to do about it is
bookd.rules.retry's business.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from bookd.aws.codes import call, kind_of
from bookd.core.errors import AwsFault
from bookd.core.ports import BATCH_LIMIT, Depth, Message, Outgoing
from bookd.core.tracing import TRACE_ATTRIBUTES, TRACE_HEADER

T = TypeVar("T")


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
    message_attributes = {
        name: value.get("StringValue", "")
        for name, value in raw.get("MessageAttributes", {}).items()
    }
    trace = {n: message_attributes[n] for n in TRACE_ATTRIBUTES if n in message_attributes}
    if TRACE_HEADER in attributes:
        trace[TRACE_HEADER] = attributes[TRACE_HEADER]
    return Message(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw["Body"],
        group_id=attributes.get("MessageGroupId", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        sent_at=int(attributes.get("SentTimestamp", "0")) / 1000,
        attributes=message_attributes,
        sequence_number=attributes.get("SequenceNumber", ""),
        trace=trace,
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
        with_trace: bool = False,
    ) -> list[Message]:
        """Long-poll for up to ten messages, with the system attributes bookd reads;
        ``with_trace``: and the producer's trace context (Message.trace), when tracing."""
        kwargs: dict[str, Any] = {}
        names = ["MessageGroupId", "ApproximateReceiveCount", "SentTimestamp", "SequenceNumber"]
        if with_message_attributes:
            kwargs["MessageAttributeNames"] = ["All"]
        if with_trace:
            kwargs.setdefault("MessageAttributeNames", list(TRACE_ATTRIBUTES))
            names.append(TRACE_HEADER)
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
                AttributeNames=names,
                **kwargs,
            ),
            resource=self.resource,
        )
        return [message_from_sqs(raw) for raw in response.get("Messages", [])]

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

    def depth(self) -> Depth:
        """How many messages wait, are in flight, and are delayed (SQS's approximations)."""
        counts = self.attributes(
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
        return Depth(
            visible=int(counts["ApproximateNumberOfMessages"]),
            in_flight=int(counts["ApproximateNumberOfMessagesNotVisible"]),
            delayed=int(counts.get("ApproximateNumberOfMessagesDelayed", 0)),
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
