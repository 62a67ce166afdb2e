"""Storing a group's books in S3: one book (Uploader), and the group mode that orders them.

The group mode is chosen once, when the Processor is wired (BOOKD_GROUP_MODE):

- Parallel (the default): a group's books of different titles are uploaded at once;
  books of one title one after another, in input order, so its versions keep that
  order. The announcements still go in input order (Group.ready), whatever finished
  first; while uploads run longer than EARLY_ANNOUNCE_SECONDS, the books stored
  before the slow one are announced without waiting for it.
- Strict: one book stored, then announced alone, before the next is started.

A book already stored by an earlier delivery of its message is found, not stored
again (it is looked up first on a redelivery, or after a put whose outcome is unknown).

Every try to store a book (its lookup, if any, and its put), in either mode, first
takes a place in the uploads' Limiter (bookd.rules.limiter): S3's SlowDown makes
fewer go at once, without pausing receiving; uploads that work let more go again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, wait
from contextlib import contextmanager
from typing import Protocol

from bookd.core.books import Book, metadata_value
from bookd.core.errors import AwsFault, FaultKind
from bookd.core.outcomes import Outcomes
from bookd.core.ports import (
    BOOK_ID_METADATA,
    GROUP_METADATA,
    MESSAGE_ID_METADATA,
    SEQUENCE_METADATA,
    Message,
    Store,
)
from bookd.core.reasons import REJECTED_BY_S3
from bookd.rules.dead_letters import DeadLetters
from bookd.rules.inflight import Inflight
from bookd.rules.limiter import Limiter, Place
from bookd.rules.retry import Abandoned, GaveUp, Retry
from bookd.rules.work import Group, Work

EARLY_ANNOUNCE_SECONDS = 0.5
"""While a group's uploads run longer than this, its stored books before the slow
one are announced without waiting for the rest."""

PLACE_WAIT_SECONDS = 0.5
"""How often an upload waiting for a place in the Limiter checks that it should still wait."""

STRICT = "strict"
"""BOOKD_GROUP_MODE that stores and announces one book of a group at a time."""


class Uploader:
    """Puts one book in S3, or finds the copy an earlier delivery of its message stored."""

    def __init__(
        self,
        store: Store,
        *,
        retry: Retry,
        inflight: Inflight,
        dead_letters: DeadLetters,
        outcomes: Outcomes,
        aborting: Callable[[], bool],
        limiter: Limiter,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.retry = retry
        self.inflight = inflight
        self.dead_letters = dead_letters
        self.outcomes = outcomes
        self.aborting = aborting

    def store_chain(self, chain: list[Work], *, on_wait: Callable[[], None] | None = None) -> None:
        """Store ``chain``'s books one after another; ``on_wait`` before a retry's first wait."""
        for w in chain:
            if not w.storable:  # dead-lettered meanwhile, or stored before
                continue
            if self.aborting():
                raise Abandoned(hand_back=True)
            self._store(w, on_wait=on_wait)

    def _store(self, w: Work, *, on_wait: Callable[[], None] | None) -> None:
        book, m = w.book, w.message
        assert book is not None
        content = w.content()

        def attempt() -> tuple[str, bool]:
            with self._place(m):
                if w.needs_lookup:
                    found = self.store.find(book.bucket, book.key, message_id=m.message_id)
                    if found is not None:
                        return found, False
                w.needs_lookup = True  # if this put fails, the next try looks first
                return self._put(m, book, content), True

        try:
            w.version_id, w.uploaded = self.retry.call(
                attempt,
                service="s3",
                operation="PutObject",
                probe=lambda: self.store.probe(book.bucket),
                budget=w.budget,
                message_id=m.message_id,
                abandon=lambda: self.inflight.lapsed(m),
                on_wait=on_wait,
                backpressure=True,  # the Limiter answers SlowDown; receiving goes on
            )
        except GaveUp as exc:
            self.dead_letters.send(w, exc.reason(REJECTED_BY_S3), str(exc.fault))
            return
        finally:
            w.payload = None  # stored or given up: its bytes are not needed again
        if w.uploaded:
            self.outcomes.uploaded(m, book)

    def _put(self, m: Message, book: Book, content: bytes) -> str:
        return self.store.put(
            book.bucket,
            book.key,
            content,
            metadata={
                MESSAGE_ID_METADATA: m.message_id,
                BOOK_ID_METADATA: metadata_value(book.id),
                # So that `bookd replay` can announce it again as it was.
                GROUP_METADATA: m.group_id,
                SEQUENCE_METADATA: m.sequence_number,
            },
        )

    @contextmanager
    def _place(self, m: Message) -> Iterator[None]:
        """One try of a book's S3 calls (a lookup, a put) in a place of the Limiter; tells
        it whether they worked or were throttled."""
        place = self._enter(m)
        worked = throttled = False
        try:
            yield
            worked = True
        except AwsFault as fault:
            throttled = fault.kind is FaultKind.THROTTLED
            raise
        finally:
            self.limiter.leave(place, worked=worked, throttled=throttled)

    def _enter(self, m: Message) -> Place:
        """A place in the Limiter; Abandoned if the listener aborts or the hold lapses
        meanwhile (a stop that is not an abort waits: the uploads ahead finish)."""
        while True:
            place = self.limiter.enter(PLACE_WAIT_SECONDS)
            if place is not None:
                return place
            if self.aborting():
                raise Abandoned(hand_back=True)
            if self.inflight.lapsed(m):
                raise Abandoned(hand_back=False)


class GroupMode(Protocol):
    """How a group's books are stored, and when they are announced meanwhile."""

    def store(self, group: Group) -> None: ...


class Strict:
    """Each book stored, then announced on its own, before the next is started."""

    def __init__(self, uploader: Uploader) -> None:
        self.uploader = uploader

    def store(self, group: Group) -> None:
        for w in group.items:
            if w.storable:
                self.uploader.store_chain([w])
                group.announce_ready()


class Parallel:
    """Books of different titles at once on ``uploads``; one title's in input order."""

    def __init__(self, uploader: Uploader, uploads: Executor | None) -> None:
        self.uploader = uploader
        self.uploads = uploads
        """None: one chain after another, in the group's thread (tests without threads)."""

    def store(self, group: Group) -> None:
        chains: dict[str, list[Work]] = {}
        for w in group.items:
            if w.storable:
                assert w.book is not None
                chains.setdefault(w.book.key, []).append(w)
        if self.uploads is None or len(chains) < 2:
            # One chain needs no other thread; if it must wait for a retry, the books
            # stored before it need not.
            for chain in chains.values():
                self.uploader.store_chain(chain, on_wait=group.announce_ready)
            return
        pending = {
            self.uploads.submit(self.uploader.store_chain, chain) for chain in chains.values()
        }
        futures = list(pending)
        while pending:
            _, pending = wait(pending, timeout=EARLY_ANNOUNCE_SECONDS)
            if pending:
                # Something is slow (or retried): the books before it need not wait for it.
                group.announce_ready()
        for future in futures:
            future.result()  # re-raises Abandoned (or a bug) from the chain


def group_mode(name: str, uploader: Uploader, uploads: Executor | None) -> GroupMode:
    """The GroupMode that BOOKD_GROUP_MODE names."""
    return Strict(uploader) if name == STRICT else Parallel(uploader, uploads)
