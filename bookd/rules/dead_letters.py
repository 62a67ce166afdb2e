"""Dead-lettering: a message to the dead-letter queue, body unchanged, with its reason.

The letter carries ``reason``, ``detail`` (printable ASCII), ``source_message_id``
and ``source_queue``; for a book stored but never announced, its ``bucket``, ``key``
and ``version_id`` too. SQS counts attributes against its 1 MiB limit, so a body near
it goes with as many attributes as fit, the reason first (fit_to_size).
"""

from __future__ import annotations

from bookd.core.outcomes import Outcomes
from bookd.core.ports import MAX_MESSAGE_BYTES, Outgoing, OutputQueue, attribute_size
from bookd.rules.inflight import Inflight
from bookd.rules.retry import GaveUp, Retry
from bookd.rules.work import Work

MAX_DETAIL = 1000
"""Longest dead-letter detail, in characters."""


class DeadLetters:
    """Sends messages to the dead-letter queue, each with its reason."""

    def __init__(
        self,
        queue: OutputQueue,
        *,
        source_queue: str,
        retry: Retry,
        inflight: Inflight,
        outcomes: Outcomes,
    ) -> None:
        self.queue = queue
        self.source_queue = source_queue
        self.retry = retry
        self.inflight = inflight
        self.outcomes = outcomes

    def send(self, w: Work, reason: str, detail: str) -> None:
        """Dead-letter ``w``'s message; marks it so once the dead-letter queue took it.

        If SQS refuses even the letter, the message stays where it is: SQS's own
        redrive moves it after BOOKD_MAX_RECEIVE_COUNT deliveries.
        """
        m = w.message
        attributes = {
            "reason": reason,
            "source_message_id": m.message_id,
            "source_queue": self.source_queue,
        }
        if w.book is not None and w.version_id is not None:
            # Stored but never announced: say where the book is.
            attributes.update(bucket=w.book.bucket, key=w.book.key, version_id=w.version_id)
        # Its trace context too (when tracing), after what says why and where, before the
        # detail (shortened to the room left). At most 9 attributes: SQS takes 10.
        attributes.update(self.retry.tracing.carried(m.message_id))
        letter = fit_to_size(
            Outgoing(m.message_id, m.body, m.group_id or "bookd", m.message_id, attributes),
            detail,
        )
        left_out = [name for name in attributes if name not in (letter.attributes or {})]
        self.outcomes.dead_lettering(m, reason, detail, left_out)
        try:
            self.retry.batch(
                [letter],
                self.queue.send,
                key=lambda outgoing: outgoing.ref,
                service="sqs",
                operation="SendMessageBatch",
                probe=self.queue.probe,
                abandon=lambda _: self.inflight.lapsed(m),
            )
        except GaveUp as exc:
            self.outcomes.dead_letter_refused(m, reason, exc.fault)
            return
        w.dead_letter = reason
        self.outcomes.dead_lettered(m, reason)


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
