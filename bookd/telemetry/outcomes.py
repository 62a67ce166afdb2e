"""The rules' outcomes (bookd.core.outcomes), counted in Prometheus and written as log lines.

Counted and Logged each implement the seam; ``telemetry()`` gives both, in that order.
Each finished message gets one log line with ``message_id``, ``group_id``,
``book_id``, ``bucket``, ``key``, ``outcome``, ``reason`` and ``duration_seconds``
(JSON keys with BOOKD_LOG_FORMAT=json); every other line about messages names them
(``message_id``, or ``message_ids``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bookd.core.books import Book
from bookd.core.errors import AwsFault
from bookd.core.outcomes import Broadcast, Outcomes
from bookd.core.ports import Message
from bookd.telemetry import metrics
from bookd.telemetry.limits import UploadLimit

log = logging.getLogger("bookd.rules")
"""The rules' lines come under the rules' name, whoever writes them."""


class Counted(Outcomes):
    """The outcomes as Prometheus counts (bookd.telemetry.metrics)."""

    def uploaded(self, message: Message, book: Book) -> None:
        metrics.UPLOADED.inc()

    def dead_lettered(self, message: Message, reason: str) -> None:
        metrics.FAILED.labels(reason=reason).inc()

    def finished(
        self, message: Message, book: Book | None, dead_letter: str | None, seconds: float
    ) -> None:
        metrics.PROCESSED.inc()
        metrics.PROCESSING_SECONDS.observe(seconds)

    def out_of_order(self, refused: Message, overtaken: Sequence[Message]) -> None:
        metrics.ANNOUNCED_OUT_OF_ORDER.inc(len(overtaken))

    def retried(self, fault: AwsFault) -> None:
        metrics.RETRIED.labels(reason=f"{fault.service}-{fault.kind.value}").inc()

    def payload_not_deleted(self, message: Message, location: str, fault: AwsFault) -> None:
        metrics.PAYLOADS_NOT_DELETED.inc()


class Logged(Outcomes):
    """The outcomes as log lines."""

    def dead_lettering(
        self, message: Message, reason: str, detail: str, left_out: Sequence[str]
    ) -> None:
        about = {**_about([message]), "reason": reason}
        log.warning(
            "message %s to the dead-letter queue: %s: %s",
            message.message_id,
            reason,
            detail,
            extra=about,
        )
        if left_out:
            log.warning(
                "message %s goes to the dead-letter queue without %s: its body leaves no "
                "room for them under SQS's size limit (this line has them)",
                message.message_id,
                ", ".join(left_out),
                extra=about,
            )

    def dead_letter_refused(self, message: Message, reason: str, fault: AwsFault) -> None:
        log.error(
            "cannot dead-letter message %s (%s); it stays in the input queue",
            message.message_id,
            fault,
            extra={**_about([message]), "reason": reason},
        )

    def finished(
        self, message: Message, book: Book | None, dead_letter: str | None, seconds: float
    ) -> None:
        outcome = "dead-lettered" if dead_letter else "stored"
        stored = book is not None and not dead_letter
        fields = {
            "message_id": message.message_id,
            "group_id": message.group_id,
            "book_id": book.id if book else None,
            "bucket": book.bucket if stored and book else None,
            "key": book.key if stored and book else None,
            "outcome": outcome,
            "reason": dead_letter,
            "duration_seconds": round(seconds, 4),
        }
        if dead_letter:
            how = f": {dead_letter}"
        elif book is None:
            # A pointer this listener announced before: its payload was not read again.
            how = " (announced by an earlier delivery)"
        else:
            how = f" as {fields['bucket']}/{fields['key']}"
        log.info(
            "message %s (group %s) %s%s in %.3f s",
            message.message_id,
            message.group_id,
            outcome,
            how,
            seconds,
            extra=fields,
        )

    def out_of_order(self, refused: Message, overtaken: Sequence[Message]) -> None:
        log.error(
            "SQS refused announcement %s but took %d after it in group %s; that group's "
            "output order is broken there",
            refused.message_id,
            len(overtaken),
            refused.group_id,
            extra=_about([refused, *overtaken]),
        )

    def not_deleted(self, messages: Sequence[Message], why: str) -> None:
        log.warning(
            "%d finished messages not deleted: %s; SQS redelivers them and their "
            "redelivery finds them done",
            len(messages),
            why,
            extra=_about(messages),
        )

    def not_handed_back(self, messages: Sequence[Message], fault: AwsFault) -> None:
        log.warning(
            "could not hand back %d messages: %s; they come back when their hold ends",
            len(messages),
            fault,
            extra=_about(messages),
        )

    def payload_not_deleted(self, message: Message, location: str, fault: AwsFault) -> None:
        log.warning(
            "payload %s of message %s not deleted (%s); its book is stored and announced, "
            "the payload stays in its bucket",
            location,
            message.message_id,
            fault,
            extra=_about([message]),
        )


def telemetry() -> Outcomes:
    """Every outcome counted, then logged."""
    return Broadcast(Counted(), Logged(), UploadLimit())


def _about(messages: Sequence[Message]) -> dict[str, object]:
    """Log fields naming the messages a line is about (JSON keys with BOOKD_LOG_FORMAT=json)."""
    if len(messages) == 1:
        return {"message_id": messages[0].message_id, "group_id": messages[0].group_id}
    return {
        "message_ids": [m.message_id for m in messages],
        "group_ids": sorted({m.group_id for m in messages}),
    }
