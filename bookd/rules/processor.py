"""The per-message rules: validate, store, announce, dead-letter, retry, delete.

No threads of its own and no boto3: it talks to the queues and the store through
bookd.ports, and the listener (bookd.listener) gives it messages and a ``map`` to run
groups side by side. For each receive, per FIFO group, in input order:

1. **Validate.** A message SQS delivered too often, or whose body is not a valid
   book, is dead-lettered now with its reason, and the group goes on.
2. **Store.** Each valid book is put in S3, unless an earlier delivery of the same
   message already did (it is looked up first on a redelivery or after a put whose
   outcome is unknown). Books of different titles are uploaded at once; books of
   one title one after another, in input order, so its versions keep that order
   (``BOOKD_GROUP_MODE=strict``: one book at a time, each announced before the next
   is stored). Failures follow bookd.retry; a message is held and retried in place,
   never handed back for a retry.
3. **Announce** the stored books in input order, in one batch: never one ahead of
   an earlier book that is not stored yet (while one is retried, those before it go
   out at once). A book that cannot be announced, within its budget, is
   dead-lettered with its location.
4. **Delete** what is finished: announced or dead-lettered.

If work on a message stops early (the listener stops: it is handed back; its hold
lapsed: it is left for whoever has it now), the messages after it in its group stop
too and are never announced ahead of it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass, field

from bookd.core.books import Book, metadata_value, parse_book
from bookd.core.config import Settings
from bookd.core.errors import AwsFault, InvalidBook
from bookd.core.ports import (
    BOOK_ID_METADATA,
    MAX_MESSAGE_BYTES,
    MESSAGE_ID_METADATA,
    InputQueue,
    Message,
    Outgoing,
    OutputQueue,
    Store,
    announcement,
    attribute_size,
)
from bookd.rules.inflight import Inflight
from bookd.rules.retry import Abandoned, Backoff, Budget, GaveUp, Retry, Verdict
from bookd.telemetry import metrics

log = logging.getLogger(__name__)

RETRIES_EXHAUSTED = "retries-exhausted"
"""Dead-letter reason: the message's own tries failed until its budget was used up."""
TOO_MANY_DELIVERIES = "too-many-deliveries"
"""Dead-letter reason: SQS delivered it BOOKD_MAX_RECEIVE_COUNT times (it may crash us)."""
REJECTED_BY_S3 = "rejected-by-s3"
REJECTED_BY_SQS = "rejected-by-sqs"
DELIVERY_REASONS = (RETRIES_EXHAUSTED, TOO_MANY_DELIVERIES, REJECTED_BY_S3, REJECTED_BY_SQS)
"""Dead-letter reasons of valid-looking books; the invalid ones are bookd.books'."""

ANNOUNCED_MEMORY = 100_000
"""Message ids this listener remembers having announced, so a redelivery is not
announced again even after SQS's five-minute deduplication window."""

DELETE_TRIES = 3
"""Tries of a delete whose entry failed on its own; after them SQS redelivers it, and
the redelivery finds the book stored and announced."""

MAX_DETAIL = 1000
"""Longest dead-letter detail, in characters."""

STRICT = "strict"
"""BOOKD_GROUP_MODE that stores and announces one book of a group at a time."""

EARLY_ANNOUNCE_SECONDS = 0.5
"""While a group's uploads run longer than this, its stored books before the slow
one are announced without waiting for the rest."""

Mapper = Callable[..., Iterable[None]]
"""Runs a function over groups, like the builtin ``map`` (the listener passes a pool's)."""


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
    log_extra: dict[str, object] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.announced or self.dead_letter is not None


class Processor:
    """Works through received messages by the rules above."""

    def __init__(
        self,
        settings: Settings,
        *,
        input: InputQueue,
        output: OutputQueue,
        dead_letters: OutputQueue,
        store: Store,
        retry: Retry,
        inflight: Inflight,
        aborting: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        uploads: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.input = input
        self.output = output
        self.dead_letters = dead_letters
        self.store = store
        self.retry = retry
        self.inflight = inflight
        self._aborting = aborting
        self._clock = clock
        self._uploads = uploads
        """Runs a group's uploads of different keys at once; None: one after another."""
        self._announced: OrderedDict[str, None] = OrderedDict()

    # --- a receive ------------------------------------------------------------

    def process(self, messages: Sequence[Message], *, map: Mapper = map) -> None:  # noqa: A002
        """Work through one receive's messages; groups side by side through ``map``."""
        work, back = self.inflight.admit(messages)
        if back:
            self._hand_back(back)
        now = self._clock()
        groups: dict[str, list[Work]] = {}
        for m in work:
            budget = Budget(self.settings.max_attempts, self.settings.retry_for)
            groups.setdefault(m.group_id, []).append(
                Work(m, now, budget, needs_lookup=m.receive_count > 1)
            )
        for _ in map(self._group, groups.values()):
            pass

    def _group(self, items: list[Work]) -> None:
        stopped: Abandoned | None = None
        try:
            try:
                for w in items:
                    self._validate(w)
                if self.settings.group_mode == STRICT:
                    self._one_at_a_time(items)
                else:
                    self._store_all(items)
            except Abandoned as exc:
                stopped = exc
            self._announce(_ready(items))
        except Abandoned as exc:
            stopped = stopped or exc
        finally:
            self._finish(items, stopped)

    def _one_at_a_time(self, items: list[Work]) -> None:
        """Strict: each book stored, then announced on its own, before the next is started."""
        for w in items:
            if w.finished or w.book is None:
                continue
            if self._aborting():
                raise Abandoned(hand_back=True)
            self._store(w)
            self._announce(_ready(items))

    def _store_all(self, items: list[Work]) -> None:
        """Store the group's books, those of different keys at once.

        Books of one key stay in input order, so its versions keep that order; the
        announcements come after, in input order (_ready), whatever finished first.
        """
        chains: dict[str, list[Work]] = {}
        for w in items:
            if not w.finished and w.book is not None:
                chains.setdefault(w.book.key, []).append(w)
        if self._uploads is None or len(chains) < 2:
            for chain in chains.values():
                # If one has to wait for retries, the stored books before it need not.
                self._store_chain(chain, before_waiting=lambda: self._announce(_ready(items)))
            return
        pending = {self._uploads.submit(self._store_chain, chain) for chain in chains.values()}
        futures = list(pending)
        while pending:
            _, pending = wait(pending, timeout=EARLY_ANNOUNCE_SECONDS)
            if pending:
                # Something is slow (or retried): the books before it need not wait for it.
                self._announce(_ready(items))
        for future in futures:
            future.result()  # re-raises Abandoned (or a bug) from the chain

    def _store_chain(
        self, chain: list[Work], *, before_waiting: Callable[[], None] | None = None
    ) -> None:
        for w in chain:
            if w.finished:
                continue
            if self._aborting():
                raise Abandoned(hand_back=True)
            self._store(w, before_waiting=before_waiting)

    # --- the steps ------------------------------------------------------------

    def _validate(self, w: Work) -> None:
        m = w.message
        if m.receive_count >= self.settings.max_receive_count:
            self._dead_letter(
                w,
                TOO_MANY_DELIVERIES,
                f"delivered {m.receive_count} times; each delivery ended without a result, "
                "as when the listener is killed while working on it",
            )
            return
        try:
            w.book = parse_book(m.body, self.settings.buckets)
        except InvalidBook as exc:
            self._dead_letter(w, exc.reason, exc.detail)
            return
        # Announced by this listener before (its delete failed): only the delete is left.
        w.announced = m.message_id in self._announced

    def _store(self, w: Work, *, before_waiting: Callable[[], None] | None = None) -> None:
        book, m = w.book, w.message
        assert book is not None

        def attempt() -> tuple[str, bool]:
            if w.needs_lookup:
                found = self.store.find(book.bucket, book.key, message_id=m.message_id)
                if found is not None:
                    return found, False
            w.needs_lookup = True  # if this put fails, the next try looks first
            version = self.store.put(
                book.bucket,
                book.key,
                m.body.encode("utf-8"),
                metadata={
                    MESSAGE_ID_METADATA: m.message_id,
                    BOOK_ID_METADATA: metadata_value(book.id),
                },
            )
            return version, True

        try:
            w.version_id, w.uploaded = self.retry.run(
                attempt,
                service="s3",
                operation="PutObject",
                probe=lambda: self.store.probe(book.bucket),
                budget=w.budget,
                message_id=m.message_id,
                abandon=lambda: self.inflight.lapsed(m),
                before_waiting=before_waiting,
            )
        except GaveUp as exc:
            reason = RETRIES_EXHAUSTED if exc.verdict is Verdict.GIVE_UP else REJECTED_BY_S3
            self._dead_letter(w, reason, str(exc.fault))
            return
        if w.uploaded:
            metrics.UPLOADED.inc()

    def _announce(self, ready: list[Work]) -> None:
        pending = list(ready)
        backoff = Backoff()
        me = object()
        try:
            self._announce_all(pending, backoff, me)
        finally:
            self.retry.dependencies.release(me)

    def _announce_all(self, pending: list[Work], backoff: Backoff, me: object) -> None:
        while pending:
            head = pending[0]
            if self.inflight.lapsed(head.message):
                raise Abandoned(hand_back=False)
            try:
                failed = self.output.send([self._announcement(w) for w in pending])
            except AwsFault as fault:
                failed = {w.message.message_id: fault for w in pending}
            sent = [w for w in pending if w.message.message_id not in failed]
            if sent:
                self.retry.succeeded("sqs", "SendMessageBatch")
            self._check_order(pending, failed)
            for w in sent:
                w.announced = True
                self._remember(w.message.message_id)
            pending = [w for w in pending if w.message.message_id in failed]
            if not pending:
                return
            head = pending[0]
            verdict = self.retry.judge(
                failed[head.message.message_id],
                probe=self.output.probe,
                budget=head.budget,
                message_id=head.message.message_id,
                owner=me,
            )
            if verdict is Verdict.RETRY:
                self.retry.pause(backoff)
                continue
            reason = RETRIES_EXHAUSTED if verdict is Verdict.GIVE_UP else REJECTED_BY_SQS
            self._dead_letter(head, reason, str(failed[head.message.message_id]))
            pending.pop(0)

    def _check_order(self, pending: list[Work], failed: dict[str, AwsFault]) -> None:
        first = next((i for i, w in enumerate(pending) if w.message.message_id in failed), None)
        if first is None:
            return
        overtaken = [w for w in pending[first + 1 :] if w.message.message_id not in failed]
        if overtaken:
            # Only SQS failing one entry on its own while taking later ones can do this:
            # every entry bookd sends is checked against SQS's rules before it goes.
            metrics.ANNOUNCED_OUT_OF_ORDER.inc(len(overtaken))
            log.error(
                "Listener %s: SQS refused announcement %s but took %d after it in group %s; "
                "that group's output order is broken there",
                os.getpid(),
                pending[first].message.message_id,
                len(overtaken),
                pending[first].message.group_id,
                extra=_about([w.message for w in pending[first:]]),
            )

    def _announcement(self, w: Work) -> Outgoing:
        assert w.book is not None and w.version_id is not None
        return announcement(
            message=w.message,
            book_id=w.book.id,
            bucket=w.book.bucket,
            key=w.book.key,
            version_id=w.version_id,
        )

    def _dead_letter(self, w: Work, reason: str, detail: str) -> None:
        m = w.message
        attributes = {
            "reason": reason,
            "source_message_id": m.message_id,
            "source_queue": self.input.name,
        }
        if w.book is not None and w.version_id is not None:
            # Stored but never announced: say where the book is.
            attributes.update(bucket=w.book.bucket, key=w.book.key, version_id=w.version_id)
        letter = fit_to_size(
            Outgoing(
                ref=m.message_id,
                body=m.body,
                group_id=m.group_id or "bookd",
                dedup_id=m.message_id,
                attributes=attributes,
            ),
            detail,
        )
        log.warning(
            "Listener %s: message %s to the dead-letter queue: %s: %s",
            os.getpid(),
            m.message_id,
            reason,
            detail,
            extra={**_about([m]), "reason": reason},
        )
        left_out = [name for name in attributes if name not in (letter.attributes or {})]
        if left_out:
            log.warning(
                "Listener %s: message %s goes to the dead-letter queue without %s: its body "
                "leaves no room for them under SQS's size limit (this line has them)",
                os.getpid(),
                m.message_id,
                ", ".join(left_out),
                extra={**_about([m]), "reason": reason},
            )

        def send() -> None:
            failed = self.dead_letters.send([letter])
            if failed:
                raise failed[letter.ref]

        try:
            self.retry.run(
                send,
                service="sqs",
                operation="SendMessageBatch",
                probe=self.dead_letters.probe,
                message_id=m.message_id,
                abandon=lambda: self.inflight.lapsed(m),
            )
        except GaveUp as exc:
            # SQS refused even the dead letter: leave the message where it is; SQS's
            # redrive moves it after BOOKD_MAX_RECEIVE_COUNT.
            log.error(
                "Listener %s: cannot dead-letter message %s (%s); it stays in %s",
                os.getpid(),
                m.message_id,
                exc.fault,
                self.input.name,
                extra={**_about([m]), "reason": reason},
            )
            return
        w.dead_letter = reason
        metrics.FAILED.labels(reason=reason).inc()

    # --- the end of a group's work -----------------------------------------------

    def _finish(self, items: list[Work], stopped: Abandoned | None) -> None:
        done = [w for w in items if w.finished]
        rest = [w for w in items if not w.finished]
        deleted: list[Work] = []
        try:
            if done:
                deleted = self._delete(done)
        finally:
            if rest and stopped is not None and stopped.hand_back:
                self._hand_back([self.inflight.current(w.message) for w in rest])
            self.inflight.release(w.message for w in items)
        # Counted once, by whoever deletes it: a message left for redelivery is
        # counted when its redelivery is deleted (and found already done).
        now = self._clock()
        for w in deleted:
            metrics.PROCESSING_SECONDS.observe(now - w.received)
            self._log_outcome(w, now - w.received)
        metrics.PROCESSED.inc(len(deleted))

    def _delete(self, done: list[Work]) -> list[Work]:
        """Delete finished messages; return those deleted (the rest SQS redelivers)."""
        pending = list(done)
        backoff = Backoff()
        for _ in range(DELETE_TRIES):
            messages = [self.inflight.current(w.message) for w in pending]
            first = pending[0].message
            try:
                failed = self.retry.run(
                    lambda messages=messages: self.input.delete(messages),
                    service="sqs",
                    operation="DeleteMessageBatch",
                    probe=self.input.probe,
                    abandon=lambda first=first: self.inflight.lapsed(first),
                )
            except (Abandoned, GaveUp) as exc:
                log.warning(
                    "Listener %s: delete not done (%s); SQS redelivers",
                    os.getpid(),
                    exc,
                    extra=_about(messages),
                )
                break
            # An invalid handle means the message went to someone else, who will find it done.
            pending = [
                w
                for w in pending
                if w.message.message_id in failed
                and failed[w.message.message_id].code != "ReceiptHandleIsInvalid"
            ]
            if not pending:
                break
            try:
                self.retry.pause(backoff)
            except Abandoned:
                break
        if pending:
            log.warning(
                "Listener %s: %d finished messages not deleted; SQS redelivers them and their "
                "redelivery finds them done",
                os.getpid(),
                len(pending),
                extra=_about([w.message for w in pending]),
            )
        return [w for w in done if w not in pending]

    def _hand_back(self, messages: list[Message]) -> None:
        try:
            self.input.change_visibility(messages, 0)
        except AwsFault as exc:
            log.warning(
                "Listener %s: could not hand back %d messages: %s",
                os.getpid(),
                len(messages),
                exc,
                extra=_about(messages),
            )

    def _remember(self, message_id: str) -> None:
        self._announced[message_id] = None
        if len(self._announced) > ANNOUNCED_MEMORY:
            self._announced.popitem(last=False)

    def _log_outcome(self, w: Work, seconds: float) -> None:
        m = w.message
        outcome = "dead-lettered" if w.dead_letter else "stored"
        fields = {
            "message_id": m.message_id,
            "group_id": m.group_id,
            "book_id": w.book.id if w.book else None,
            "bucket": w.book.bucket if w.book and not w.dead_letter else None,
            "key": w.book.key if w.book and not w.dead_letter else None,
            "outcome": outcome,
            "reason": w.dead_letter,
            "duration_seconds": round(seconds, 4),
        }
        log.info(
            "message %s (group %s) %s%s in %.3f s",
            m.message_id,
            m.group_id,
            outcome,
            f": {w.dead_letter}" if w.dead_letter else f" as {fields['bucket']}/{fields['key']}",
            seconds,
            extra=fields,
        )


def _about(messages: Sequence[Message]) -> dict[str, object]:
    """Log fields naming the messages a line is about (JSON keys with BOOKD_LOG_FORMAT=json)."""
    if len(messages) == 1:
        return {"message_id": messages[0].message_id, "group_id": messages[0].group_id}
    return {
        "message_ids": [m.message_id for m in messages],
        "group_ids": sorted({m.group_id for m in messages}),
    }


def _ready(items: list[Work]) -> list[Work]:
    """The stored books not yet announced, up to the first one not stored: never one ahead."""
    ready = []
    for w in items:
        if w.finished:
            continue
        if w.version_id is None:
            break
        ready.append(w)
    return ready


def fit_to_size(letter: Outgoing, detail: str) -> Outgoing:
    """The letter with as many of its attributes as SQS's size limit leaves room for.

    The body always goes, unchanged (it came in under the same limit). Attributes go in
    the order given (the reason first), each only while all before it went; then the
    detail, printable ASCII, shortened to the room left. A body at the limit thus goes
    with fewer attributes or none, rather than not at all: a letter SQS refuses for its
    size would keep its whole group waiting.
    """
    # Printable ASCII only: SQS refuses some characters raw, and a detail may quote input.
    safe = detail.encode("ascii", "backslashreplace").decode("ascii")
    safe = "".join(c if " " <= c <= "~" else "?" for c in safe)[:MAX_DETAIL]
    room = MAX_MESSAGE_BYTES - len(letter.body.encode("utf-8"))
    attributes: dict[str, str] = {}
    for name, value in (letter.attributes or {}).items():
        cost = attribute_size(name, value)
        if cost > room:
            break
        attributes[name] = value
        room -= cost
    else:
        room -= attribute_size("detail", "")
        if room > 0 and safe:
            attributes["detail"] = safe[:room]
    return Outgoing(letter.ref, letter.body, letter.group_id, letter.dedup_id, attributes)
