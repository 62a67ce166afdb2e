"""Settling a group's messages: delete what is finished, hand back what was stopped.

A finished message (announced or dead-lettered) is deleted; a delete SQS refuses for
one entry gets DELETE_TRIES tries, and after them SQS redelivers it, to be found done.
A message whose work stopped because the listener stops is handed back at once
(visibility 0); one whose hold lapsed is left to whoever holds it now. A message is
counted once, by whoever deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bookd.core.errors import AwsFault
from bookd.core.outcomes import Outcomes
from bookd.core.ports import InputQueue, Message
from bookd.rules.inflight import Inflight
from bookd.rules.retry import Abandoned, GaveUp, Retry
from bookd.rules.work import Work

DELETE_TRIES = 3
"""Tries of a delete whose entry failed on its own; after them SQS redelivers it, and
the redelivery finds the book stored and announced."""


class Settler:
    """Deletes finished messages, hands back stopped ones, and lets go of them all."""

    def __init__(
        self,
        input: InputQueue,  # noqa: A002 - the input queue, as everywhere in bookd
        *,
        retry: Retry,
        inflight: Inflight,
        outcomes: Outcomes,
        clock: Callable[[], float],
    ) -> None:
        self.input = input
        self.retry = retry
        self.inflight = inflight
        self.outcomes = outcomes
        self.clock = clock

    def settle(self, items: list[Work], stopped: Abandoned | None) -> list[Work]:
        """The end of a group's work: delete, hand back, let go, count. Returns the
        messages SQS deleted on this listener's handles (not those handed on)."""
        done = [w for w in items if w.finished]
        rest = [w for w in items if not w.finished]
        deleted: list[Work] = []
        handed_on: list[Work] = []
        try:
            if done:
                deleted, handed_on = self.delete(done)
        finally:
            if rest and stopped is not None and stopped.hand_back:
                self.hand_back([self.inflight.current(w.message) for w in rest])
            self.inflight.release(w.message for w in items)
        # Counted once, by whoever deletes it: a message left for redelivery is
        # counted when its redelivery is deleted (and found already done).
        now = self.clock()
        for w in deleted + handed_on:
            self.outcomes.finished(w.message, w.book, w.dead_letter, now - w.received)
        return deleted

    def delete(self, done: list[Work]) -> tuple[list[Work], list[Work]]:
        """Delete finished messages; return those deleted and those whose handle SQS
        found invalid (handed on to another holder). SQS redelivers the rest."""
        remaining = list(done)
        handed_on: set[str] = set()

        def note(pending: Sequence[Work], failed: Mapping[str, AwsFault]) -> None:
            nonlocal remaining
            remaining = [
                w
                for w in pending
                if w.message.message_id in failed and not _handed_on(failed[w.message.message_id])
            ]
            handed_on.update(i for i, fault in failed.items() if _handed_on(fault))

        try:
            self.retry.batch(
                done,
                lambda pending: self.input.delete(
                    [self.inflight.current(w.message) for w in pending]
                ),
                key=lambda w: w.message.message_id,
                service="sqs",
                operation="DeleteMessageBatch",
                probe=self.input.probe,
                abandon=lambda w: self.inflight.lapsed(w.message),
                on_try=note,
                settled=_handed_on,
                max_entry_tries=DELETE_TRIES,
            )
        except (Abandoned, GaveUp) as exc:
            self.outcomes.not_deleted([w.message for w in remaining], f"delete not done ({exc})")
        else:
            if remaining:
                self.outcomes.not_deleted(
                    [w.message for w in remaining], f"SQS failed it {DELETE_TRIES} times"
                )
        gone = [w for w in done if w not in remaining]
        return (
            [w for w in gone if w.message.message_id not in handed_on],
            [w for w in gone if w.message.message_id in handed_on],
        )

    def hand_back(self, messages: Sequence[Message]) -> None:
        """Make messages visible again at once (one try: what fails comes back when its
        hold ends)."""
        try:
            left = self.retry.batch(
                messages,
                lambda pending: self.input.change_visibility(pending, 0),
                key=lambda m: m.message_id,
                service="sqs",
                operation="ChangeMessageVisibilityBatch",
                probe=self.input.probe,
                max_tries=1,
            )
        except Abandoned:  # only a stop during a wait, and one try never waits
            return
        if left.items and left.fault is not None:
            self.outcomes.not_handed_back(left.items, left.fault)


def _handed_on(fault: AwsFault) -> bool:
    """An invalid handle: the message went to someone else, who will find it done."""
    return fault.code == "ReceiptHandleIsInvalid"
