"""The messages in hand: each one's progress (Work), and a group's (Group).

A Group holds one FIFO group's messages of a receive, in input order, and owns the
one rule of their announcements: never one ahead of an earlier book not stored yet.
Whoever stores the group's books calls ``announce_ready`` when the books stored so
far need not wait for the rest (a slow or retried upload): that is the early
announce, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bookd.core.books import Book
from bookd.core.pointers import Pointer
from bookd.core.ports import Message
from bookd.rules.retry import Budget


@dataclass
class Work:
    """One message in hand and how far it got."""

    message: Message
    received: float
    budget: Budget
    book: Book | None = None
    version_id: str | None = None
    uploaded: bool = False
    announced: bool = False
    dead_letter: str | None = None
    """The reason it was dead-lettered, once it was."""
    needs_lookup: bool = False
    """Whether S3 may already hold this message's book (redelivered, or a put failed)."""
    pointer: Pointer | None = None
    """Where the book is, if the message is an S3 pointer (bookd.rules.payloads)."""
    payload: bytes | None = None
    """A pointer's payload, read and valid: the book to store, exactly. Dropped once
    stored, so that a group holds one payload at a time."""

    @property
    def finished(self) -> bool:
        return self.announced or self.dead_letter is not None

    @property
    def storable(self) -> bool:
        """A valid book not stored (nor finished) yet."""
        return not self.finished and self.book is not None and self.version_id is None

    def content(self) -> bytes:
        """What is stored for the book: a pointer's payload, or else the body as received."""
        if self.pointer is None:
            return self.message.body.encode("utf-8")
        assert self.payload is not None, "a pointer's book is stored once, from its payload"
        return self.payload


class Group:
    """One FIFO group's messages of a receive, in input order."""

    def __init__(self, items: list[Work], announce: Callable[[list[Work]], None]) -> None:
        self.items = items
        self._announce = announce

    def ready(self) -> list[Work]:
        """The stored books not yet announced, up to the first one not stored: never one ahead."""
        ready = []
        for w in self.items:
            if w.finished:
                continue
            if w.version_id is None:
                break
            ready.append(w)
        return ready

    def announce_ready(self) -> None:
        """Announce the books that may go now (nothing, if none may)."""
        self._announce(self.ready())
