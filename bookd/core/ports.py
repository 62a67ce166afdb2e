"""What the per-message rules need from the queues and the store, as small protocols.

bookd.aws implements them on boto3; tests implement them in memory, so the rules in
bookd.rules can be tested offline. No boto3 here. Every method raises
bookd.errors.AwsFault when its call fails as a whole; batch methods also report the
entries that failed on their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bookd.core.errors import AwsFault

BATCH_LIMIT = 10
"""SQS takes at most ten entries per batch call."""

MAX_MESSAGE_BYTES = 1_048_576
"""The largest SQS message, body and attributes together (1 MiB, also LocalStack's); a
batch call's entries together may not be larger either."""

_REFUSED_BY_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters SQS refuses in a message (its allowed set is XML 1.0's)."""

MESSAGE_ID_METADATA = "bookd-message-id"
"""S3 metadata naming the input message a stored book came from (Store.find reads it)."""
BOOK_ID_METADATA = "bookd-book-id"
"""S3 metadata holding the book's id, percent-encoded (bookd.core.books.metadata_value)."""
GROUP_METADATA = "bookd-group"
"""S3 metadata holding the input message's FIFO group (printable ASCII already)."""
SEQUENCE_METADATA = "bookd-sequence-number"
"""S3 metadata holding the input message's FIFO sequence number."""


@dataclass(frozen=True)
class Message:
    """One received SQS message, with the attributes bookd relies on pulled out."""

    message_id: str
    receipt_handle: str
    body: str
    group_id: str
    receive_count: int
    sent_at: float = 0.0
    """The producer's send time (SentTimestamp), in seconds since the epoch; 0 if unknown."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Message attributes (name to string value), as sent."""
    sequence_number: str = ""
    """SQS's FIFO SequenceNumber: it grows within a group, in the order SQS took the
    messages (a string of digits, up to 128 of them; compare as integers)."""
    trace: Mapping[str, str] = field(default_factory=dict)
    """The producer's trace context, when tracing asked SQS for it: the ``traceparent``
    (and ``tracestate``) message attributes, and SQS's ``AWSTraceHeader``."""


@dataclass(frozen=True)
class Outgoing:
    """A message to send to a FIFO queue."""

    ref: str
    """The caller's name for it; a batch send reports failures by it."""
    body: str
    group_id: str
    dedup_id: str
    attributes: Mapping[str, str] | None = None

    def size(self) -> int:
        """Bytes SQS counts against its limit: the body plus each attribute's name, type, value."""
        attributes = (self.attributes or {}).items()
        return len(self.body.encode("utf-8")) + sum(attribute_size(n, v) for n, v in attributes)


def attribute_size(name: str, value: str) -> int:
    """Bytes one string attribute adds to a message's size: its name, type and value."""
    return len(name.encode()) + len(b"String") + len(value.encode("utf-8"))


def refused_character(text: str) -> str | None:
    """The first character of ``text`` SQS would refuse, as ``U+XXXX at offset N``; None if none."""
    found = _REFUSED_BY_SQS.search(text)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at offset {found.start()}"


def batches(messages: Sequence[Outgoing]) -> list[Sequence[Outgoing]]:
    """The messages in order, cut into batch calls SQS takes: at most BATCH_LIMIT entries
    and MAX_MESSAGE_BYTES together (two books of 600 KB need two calls)."""
    result: list[Sequence[Outgoing]] = []
    start, size = 0, 0
    for end, message in enumerate(messages):
        if end > start and (
            end - start == BATCH_LIMIT or size + message.size() > MAX_MESSAGE_BYTES
        ):
            result.append(messages[start:end])
            start, size = end, 0
        size += message.size()
    if start < len(messages):
        result.append(messages[start:])
    return result


def announcement(
    *, message: Message, book_id: str, bucket: str, key: str, version_id: str
) -> Outgoing:
    """What the output queue gets for a stored book, in the input's group.

    ASCII JSON: any character of a title or id travels as a JSON escape, so SQS never
    refuses an announcement for its characters (it refuses U+FFFF and the like raw).
    The input's message id is the deduplication id, so a redelivered input is not
    announced twice within SQS's five-minute window. ``group`` and ``sequence_number``
    are the input's, so that a consumer can check a group's order for itself: within a
    group, each announcement's sequence number is greater than the one before.
    """
    body = announcement_body(
        book_id=book_id,
        key=key,
        bucket=bucket,
        version_id=version_id,
        message_id=message.message_id,
        group=message.group_id,
        sequence_number=message.sequence_number,
    )
    return Outgoing(
        ref=message.message_id,
        body=json.dumps(body, ensure_ascii=True),
        group_id=message.group_id,
        dedup_id=message.message_id,
    )


def announcement_body(
    *,
    book_id: str,
    key: str,
    bucket: str,
    version_id: str,
    message_id: str,
    group: str | None,
    sequence_number: str | None,
) -> dict[str, object]:
    """The fields of an announcement (its body as JSON), the first time or a replay."""
    body: dict[str, object] = {
        "id": book_id,
        "file": key,
        "bucket": bucket,
        "version_id": version_id,
        "message_id": message_id,
    }
    # Books stored before announcements carried them have neither in their metadata.
    if group is not None:
        body["group"] = group
    if sequence_number is not None:
        body["sequence_number"] = sequence_number
    return body


@dataclass(frozen=True)
class Depth:
    """A queue's approximate counts, as SQS gives them."""

    visible: int
    """Waiting to be received (ApproximateNumberOfMessages)."""
    in_flight: int
    """Received and not yet deleted or handed back (ApproximateNumberOfMessagesNotVisible)."""
    delayed: int = 0
    """Sent with a delay not yet over (ApproximateNumberOfMessagesDelayed)."""

    @property
    def waiting(self) -> int:
        """Visible or in flight: not done yet."""
        return self.visible + self.in_flight


class InputQueue(Protocol):
    name: str

    def receive(
        self, *, wait_time: int, visibility_timeout: int, with_trace: bool = False
    ) -> list[Message]: ...

    def delete(self, messages: Sequence[Message]) -> dict[str, AwsFault]:
        """Delete; return the faults of messages not deleted, by message id."""
        ...

    def change_visibility(self, messages: Sequence[Message], timeout: int) -> dict[str, AwsFault]:
        """Set the visibility of messages still held; return faults by message id."""
        ...

    def probe(self) -> None:
        """A cheap call that fails when SQS does."""
        ...


class OutputQueue(Protocol):
    name: str

    def send(self, messages: Sequence[Outgoing]) -> dict[str, AwsFault]:
        """Send in order (at most BATCH_LIMIT); return the faults of entries not sent, by ref."""
        ...

    def probe(self) -> None: ...


@dataclass(frozen=True)
class Payload:
    """The object an S3 pointer names, as S3 answered (Store.payload)."""

    found: bool
    size: int | None = None
    """Its size in bytes, as S3 said it (None if it is missing, or S3 did not say)."""
    content: bytes | None = None
    """Its bytes; None if it is missing or larger than the reader's limit (then unread)."""


class Store(Protocol):
    def put(self, bucket: str, key: str, body: bytes, *, metadata: Mapping[str, str]) -> str:
        """Store a new version; return its version id."""
        ...

    def find(self, bucket: str, key: str, *, message_id: str) -> str | None:
        """The version id of ``key`` stored for ``message_id``, if any version was."""
        ...

    def payload(self, bucket: str, key: str, *, max_bytes: int) -> Payload:
        """The object an S3 pointer names: its bytes, or that it is missing, or that it
        is larger than ``max_bytes`` (known before its bytes are read, never held)."""
        ...

    def delete_payload(self, bucket: str, key: str) -> None:
        """Delete the object an S3 pointer names (done, too, if it is gone already)."""
        ...

    def probe(self, bucket: str) -> None:
        """A cheap call that fails when S3 (or this bucket) does."""
        ...


class BatchSender(Protocol):
    """A queue that books are sent to by hand (``bookd send``, a redrive)."""

    name: str

    def send_batch(
        self, messages: Sequence[Outgoing]
    ) -> tuple[dict[str, str], dict[str, AwsFault]]:
        """Send in order (at most BATCH_LIMIT, at most MAX_MESSAGE_BYTES in all); return
        the message id of each entry sent and the fault of each entry not sent, by ref."""
        ...


class WalkedQueue(Protocol):
    """A queue read by hand (the dead letters): received with attributes, held, let go."""

    name: str

    def receive(
        self,
        *,
        wait_time: int,
        visibility_timeout: int | None = None,
        with_message_attributes: bool = False,
    ) -> list[Message]: ...

    def delete(self, messages: Sequence[Message]) -> dict[str, AwsFault]: ...

    def change_visibility(
        self, messages: Sequence[Message], timeout: int
    ) -> dict[str, AwsFault]: ...

    def server_time(self) -> float:
        """SQS's clock now (seconds since the epoch), to compare with SentTimestamp."""
        ...

    def depth(self) -> Depth: ...


@dataclass(frozen=True)
class StoredVersion:
    """One version of a stored book, as a listing of its bucket shows it."""

    key: str
    version_id: str
    stored_at: float
    """When S3 stored it (LastModified), in seconds since the epoch."""


class VersionStore(Protocol):
    """The stored books' versions, read by hand (``bookd replay``)."""

    def list_versions(self, bucket: str, *, prefix: str = "") -> Iterator[StoredVersion]:
        """Every version of every key under ``prefix``, delete markers left out."""
        ...

    def metadata(self, bucket: str, key: str, version_id: str) -> Mapping[str, str]:
        """The user metadata of one version."""
        ...
