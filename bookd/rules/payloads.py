"""Books sent as S3 pointers (AWS's SQS extended client): read, checked, then cleaned up.

A pointer (bookd.core.pointers) names the object that holds the book, its payload.

- **Only allowed buckets.** A pointer to a bucket not in BOOKD_PAYLOAD_BUCKETS is
  dead-lettered unread (``pointer-refused``).
- **Read through the one retry loop** (GetObject, probed by a HeadBucket of the payload's
  bucket): an outage, throttling, AccessDenied or a missing bucket holds the message and
  is retried in place, exactly as for the books' own buckets; a valid book is never
  dead-lettered for it. A payload that is not there (``payload-missing``) or larger than
  BOOKD_PAYLOAD_MAX_BYTES (``payload-too-large``, known from its length before any of
  its bytes are read) is dead-lettered, its pointer the dead letter's body.
- **The payload is the book.** Its bytes are checked as a body is (they must be UTF-8
  JSON), and stored exactly, as ``<title>.json``; the rest of the rules do not change.
- **One payload in memory per group**: before one is read, the group's books that hold
  theirs are stored and announced (Processor), and a payload is dropped once stored.
- **A redelivery this listener announced before** is only deleted: its payload is not
  read again (it may be gone by then).
- **Deleting the payload** (BOOKD_PAYLOAD_DELETE) is the extended client's convention:
  the receiver deletes it when it deletes the message. bookd does so in the safe order,
  after SQS deleted the message on this listener's handle: a FIFO queue never delivers a
  deleted message again, so no delivery can find its payload gone because bookd deleted
  it. One try; a payload left behind is logged and counted, and the book is untouched.
  The payloads of dead letters are kept, for a redrive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bookd.core.books import Book, parse_book
from bookd.core.config import Settings
from bookd.core.errors import AwsFault, InvalidBook
from bookd.core.outcomes import Outcomes
from bookd.core.pointers import Pointer, parse_pointer, payload_text
from bookd.core.ports import Store
from bookd.core.reasons import (
    PAYLOAD_MISSING,
    PAYLOAD_TOO_LARGE,
    REJECTED_BY_S3,
)
from bookd.rules.dead_letters import DeadLetters
from bookd.rules.inflight import Inflight
from bookd.rules.retry import GaveUp, Retry
from bookd.rules.work import Work


class Payloads:
    """Finds the book a message carries, in its body or at its pointer; deletes payloads."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        retry: Retry,
        inflight: Inflight,
        dead_letters: DeadLetters,
        outcomes: Outcomes,
    ) -> None:
        self.store = store
        self.buckets = settings.buckets
        """The genre-to-bucket map (BOOKD_BUCKETS), for the book's rules."""
        self.allowed = settings.payload_buckets
        self.max_bytes = settings.payload_max_bytes
        self.delete = settings.payload_delete
        self.retry = retry
        self.inflight = inflight
        self.dead_letters = dead_letters
        self.outcomes = outcomes

    def book(self, w: Work, *, before_read: Callable[[], None]) -> Book | None:
        """The book ``w``'s message carries: parsed from its body, or from the payload its
        pointer names (then kept in ``w.payload``, to be stored).

        None when there is nothing to store: announced by this listener before, or
        dead-lettered here (its read gave up). InvalidBook when the body, pointer or
        payload is bad. ``before_read`` runs before a payload is read.
        """
        m = w.message
        pointer = parse_pointer(m.body, self.allowed)
        if pointer is None:
            return parse_book(m.body, self.buckets)
        w.pointer = pointer
        if w.announced:
            return None  # only its delete is left
        before_read()
        content = self._read(w, pointer)
        if content is None:
            return None
        book = parse_book(payload_text(content), self.buckets)
        w.payload = content
        return book

    def _read(self, w: Work, pointer: Pointer) -> bytes | None:
        """The payload's bytes; None if ``w`` was dead-lettered because its read gave up."""
        m = w.message
        try:
            payload = self.retry.call(
                lambda: self.store.payload(pointer.bucket, pointer.key, max_bytes=self.max_bytes),
                service="s3",
                operation="GetObject",
                probe=lambda: self.store.probe(pointer.bucket),
                budget=w.budget,
                message_id=m.message_id,
                abandon=lambda: self.inflight.lapsed(m),
            )
        except GaveUp as exc:
            self.dead_letters.send(w, exc.reason(REJECTED_BY_S3), str(exc.fault))
            return None
        if not payload.found:
            raise InvalidBook(PAYLOAD_MISSING, f"payload {pointer} does not exist")
        if payload.content is None:
            size = f"{payload.size} bytes" if payload.size is not None else "longer"
            raise InvalidBook(
                PAYLOAD_TOO_LARGE,
                f"payload {pointer} is {size}; BOOKD_PAYLOAD_MAX_BYTES is {self.max_bytes}",
            )
        return payload.content

    def discard(self, deleted: Sequence[Work]) -> None:
        """With BOOKD_PAYLOAD_DELETE, delete the payloads of ``deleted`` (messages SQS deleted
        on this listener's handles) whose books were stored and announced."""
        if not self.delete:
            return
        for w in deleted:
            if w.pointer is None or not w.announced:
                continue
            try:
                self.store.delete_payload(w.pointer.bucket, w.pointer.key)
            except AwsFault as fault:
                # The book is stored, announced and its message gone: nothing to retry
                # it for. The payload stays, for a lifecycle rule or a person.
                self.outcomes.payload_not_deleted(w.message, str(w.pointer), fault)
