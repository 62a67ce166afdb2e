"""Why a message goes to the dead-letter queue: each reason named once.

A reason is the dead letter's ``reason`` attribute and the ``reason`` label of
``bookd_messages_failed_total`` (every one of them exported from the start).
"""

from __future__ import annotations

# --- the book itself is wrong (bookd.core.books) ----------------------------------
INVALID_JSON = "invalid-json"
NOT_AN_OBJECT = "not-an-object"
MISSING_FIELD = "missing-field"
EMPTY_FIELD = "empty-field"
WRONG_TYPE = "wrong-type"
INVALID_TEXT = "invalid-text"
FIELD_TOO_LONG = "field-too-long"
UNKNOWN_GENRE = "unknown-genre"
UNSAFE_TITLE = "unsafe-title"
INVALID_REASONS = (
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    EMPTY_FIELD,
    WRONG_TYPE,
    INVALID_TEXT,
    FIELD_TOO_LONG,
    UNKNOWN_GENRE,
    UNSAFE_TITLE,
)

# --- a book sent as an S3 pointer (bookd.core.pointers, bookd.rules.payloads) -----
INVALID_POINTER = "invalid-pointer"
"""The body names a pointer class but is not [class, {"s3BucketName", "s3Key"}]."""
POINTER_REFUSED = "pointer-refused"
"""The pointer's bucket is not one of BOOKD_PAYLOAD_BUCKETS: bookd does not read it."""
PAYLOAD_MISSING = "payload-missing"
"""The object the pointer names does not exist."""
PAYLOAD_TOO_LARGE = "payload-too-large"
"""The object is larger than BOOKD_PAYLOAD_MAX_BYTES; it was not read."""
POINTER_REASONS = (INVALID_POINTER, POINTER_REFUSED, PAYLOAD_MISSING, PAYLOAD_TOO_LARGE)

# --- a valid-looking book could not be delivered (bookd.rules) ------------------
RETRIES_EXHAUSTED = "retries-exhausted"
"""Its own tries failed until its budget was used up."""
TOO_MANY_DELIVERIES = "too-many-deliveries"
"""SQS delivered it BOOKD_MAX_RECEIVE_COUNT times (it may crash the listener)."""
REJECTED_BY_S3 = "rejected-by-s3"
REJECTED_BY_SQS = "rejected-by-sqs"
DELIVERY_REASONS = (RETRIES_EXHAUSTED, TOO_MANY_DELIVERIES, REJECTED_BY_S3, REJECTED_BY_SQS)

ALL_REASONS = INVALID_REASONS + POINTER_REASONS + DELIVERY_REASONS
