"""S3 pointers: a book too large for SQS, sent in the format of AWS's SQS extended client. Pure.

A producer using the extended client stores the book in S3 (the payload) and sends, as
the message body, a pointer to it::

    ["software.amazon.payloadoffloading.PayloadS3Pointer",
     {"s3BucketName": "<bucket>", "s3Key": "<key>"}]

(older producers name the class ``com.amazon.sqs.javamessaging.MessageS3Pointer``), with
the message attribute ``ExtendedPayloadSize`` (legacy: ``SQSLargePayloadSize``). bookd
tells a pointer by its body alone: a JSON array whose first element names a pointer
class. The attribute is neither needed nor trusted; S3 says how large the payload is.

Once the first element says "pointer", anything but exactly that shape (two elements,
the second an object of exactly those two non-empty strings, a key S3 could hold) is
``invalid-pointer``. A pointer to a bucket not in BOOKD_PAYLOAD_BUCKETS is
``pointer-refused``: a message never makes bookd read an object of its choosing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bookd.core.books import MAX_KEY_BYTES, strict_json
from bookd.core.errors import InvalidBook
from bookd.core.reasons import INVALID_JSON, INVALID_POINTER, POINTER_REFUSED

POINTER_CLASSES = (
    "software.amazon.payloadoffloading.PayloadS3Pointer",
    "com.amazon.sqs.javamessaging.MessageS3Pointer",
)
"""The class names a pointer's first element may give: the current one, then the legacy."""

POINTER_FIELDS = ("s3BucketName", "s3Key")

_JSON_SPACE = " \t\n\r"


@dataclass(frozen=True)
class Pointer:
    """Where a book sent by pointer is: its payload's bucket and key."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_pointer(body: str, allowed: Collection[str]) -> Pointer | None:
    """The pointer ``body`` is, or None if it is no pointer (a book's rules judge it then).

    InvalidBook: ``invalid-pointer`` for a pointer of the wrong shape, ``pointer-refused``
    for one whose bucket is not in ``allowed`` (BOOKD_PAYLOAD_BUCKETS).
    """
    if not body.lstrip(_JSON_SPACE).startswith("["):
        return None  # every book is an object: no second parse of the usual body
    data = strict_json(body)
    if not (isinstance(data, list) and data and data[0] in POINTER_CLASSES):
        return None
    if len(data) != 2 or not isinstance(data[1], dict):
        raise InvalidBook(
            INVALID_POINTER, 'a pointer is [class, {"s3BucketName": ..., "s3Key": ...}]'
        )
    fields = data[1]
    if sorted(fields) != sorted(POINTER_FIELDS):
        raise InvalidBook(
            INVALID_POINTER,
            f"pointer fields are {sorted(fields)!r:.200}, not {list(POINTER_FIELDS)}",
        )
    for name in POINTER_FIELDS:
        if not isinstance(fields[name], str) or not fields[name].strip():
            raise InvalidBook(INVALID_POINTER, f"pointer field {name!r} is not a non-empty string")
    pointer = Pointer(fields["s3BucketName"], fields["s3Key"])
    try:
        size = len(pointer.key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidBook(INVALID_POINTER, "pointer key holds a lone surrogate") from None
    if size > MAX_KEY_BYTES:
        raise InvalidBook(
            INVALID_POINTER, f"pointer key is {size} bytes; S3 keys are at most {MAX_KEY_BYTES}"
        )
    if pointer.bucket not in allowed:
        known = ", ".join(allowed) or "none: bookd reads no payloads"
        raise InvalidBook(
            POINTER_REFUSED,
            f"bucket {pointer.bucket!r:.100} is not one of BOOKD_PAYLOAD_BUCKETS ({known})",
        )
    return pointer


def payload_text(content: bytes) -> str:
    """A payload's bytes as text, for the book's rules; InvalidBook(invalid-json) if they are
    not UTF-8 (the encoding RFC 8259 requires of JSON between systems)."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBook(
            INVALID_JSON, f"payload is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
