"""Announcing stored books on the output queue, in input order, each once.

A group's ready books go in one SendMessageBatch (bookd.rules.retry's batch loop). If
SQS fails one entry while taking later ones of its group, the order is broken there:
only SQS's own errors can do that (every entry is checked against its rules before
it goes), so it is reported (out_of_order), never hidden. A book whose announcement
keeps failing, within its budget, is dead-lettered with its location.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from bookd.core.errors import AwsFault
from bookd.core.outcomes import Outcomes
from bookd.core.ports import Outgoing, OutputQueue, announcement
from bookd.core.reasons import REJECTED_BY_SQS, RETRIES_EXHAUSTED
from bookd.rules.dead_letters import DeadLetters
from bookd.rules.inflight import Inflight
from bookd.rules.retry import Retry, Verdict
from bookd.rules.work import Work

ANNOUNCED_MEMORY = 100_000
"""Message ids this listener remembers having announced, so a redelivery is not
announced again even after SQS's five-minute deduplication window."""


class Announcer:
    """Sends announcements, in order, and remembers what it announced."""

    def __init__(
        self,
        output: OutputQueue,
        *,
        retry: Retry,
        inflight: Inflight,
        dead_letters: DeadLetters,
        outcomes: Outcomes,
    ) -> None:
        self.output = output
        self.retry = retry
        self.inflight = inflight
        self.dead_letters = dead_letters
        self.outcomes = outcomes
        self._announced: OrderedDict[str, None] = OrderedDict()

    def seen(self, message_id: str) -> bool:
        """Whether this listener announced it before (then only its delete is left)."""
        return message_id in self._announced

    def announce(self, ready: list[Work]) -> None:
        """Announce ``ready`` (a group's stored books, in input order) until each went or
        was dead-lettered; Abandoned if the first one's hold lapses meanwhile."""
        self.retry.batch(
            ready,
            lambda pending: self.output.send([self._announcement(w) for w in pending]),
            key=lambda w: w.message.message_id,
            service="sqs",
            operation="SendMessageBatch",
            probe=self.output.probe,
            budget=lambda w: w.budget,
            abandon=lambda w: self.inflight.lapsed(w.message),
            on_try=self._sent,
            on_refused=self._refused,
        )

    def _announcement(self, w: Work) -> Outgoing:
        """The announcement, with its message's trace context (traceparent) when tracing."""
        outgoing = _announcement(w)
        carried = self.retry.tracing.carried(w.message.message_id)
        return replace(outgoing, attributes=dict(carried)) if carried else outgoing

    def _sent(self, pending: Sequence[Work], failed: Mapping[str, AwsFault]) -> None:
        self._check_order(pending, failed)
        for w in pending:
            if w.message.message_id not in failed:
                w.announced = True
                self._remember(w.message.message_id)

    def _refused(self, w: Work, verdict: Verdict, fault: AwsFault) -> None:
        reason = RETRIES_EXHAUSTED if verdict is Verdict.GIVE_UP else REJECTED_BY_SQS
        self.dead_letters.send(w, reason, str(fault))

    def _check_order(self, pending: Sequence[Work], failed: Mapping[str, AwsFault]) -> None:
        first = next((i for i, w in enumerate(pending) if w.message.message_id in failed), None)
        if first is None:
            return
        overtaken = [w for w in pending[first + 1 :] if w.message.message_id not in failed]
        if overtaken:
            self.outcomes.out_of_order(pending[first].message, [w.message for w in overtaken])

    def _remember(self, message_id: str) -> None:
        self._announced[message_id] = None
        if len(self._announced) > ANNOUNCED_MEMORY:
            self._announced.popitem(last=False)


def _announcement(w: Work) -> Outgoing:
    assert w.book is not None and w.version_id is not None
    return announcement(
        message=w.message,
        book_id=w.book.id,
        bucket=w.book.bucket,
        key=w.book.key,
        version_id=w.version_id,
    )
