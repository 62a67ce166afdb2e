"""The dead-letter queue, for operators: list what is there, and redrive it to the input.

Redriving keeps each message's group, its order within the group and its body byte
for byte. Each message is sent back with a deduplication id made from its
dead-letter message id, and deleted from the dead-letter queue only once it is
back: so a redrive interrupted at any point and run again (within SQS's five-minute
deduplication window) neither loses nor doubles a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from bookd.core.ports import BATCH_LIMIT, BatchSender, Message, Outgoing, WalkedQueue
from bookd.operations.sending import send_in_order

DEAD_LETTER_ATTRIBUTES = frozenset(
    {"reason", "detail", "source_message_id", "source_queue", "bucket", "key", "version_id"}
)
"""What bookd adds to a dead letter; a redriven message goes back without them."""

HOLD_SECONDS = 120
"""How long a listing or redrive keeps the messages it has received invisible."""

IDLE_RECEIVES = 3
"""Receives in a row with only letters newer than a walk (or met already) that end it."""

OTHERS_WAIT = 3.0
"""Seconds a walk that would end waits for letters someone else holds."""
OTHERS_POLL = 0.5


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


@dataclass(frozen=True)
class Letter:
    """One dead letter as an operator reads it."""

    message: Message
    reason: str
    detail: str
    age_seconds: float

    @classmethod
    def of(cls, message: Message, now: float) -> Letter:
        return cls(
            message,
            message.attributes.get(
                "reason", "(none: moved by SQS's redrive, or a body at the size limit)"
            ),
            message.attributes.get("detail", ""),
            max(0.0, now - message.sent_at) if message.sent_at else 0.0,
        )


class Snapshot:
    """The dead letters that were in the queue when the snapshot began, each met once.

    SQS has no way to list a queue but receiving from it, and while a walk goes on,
    dead letters keep coming behind it: new bad input, and, with a listener running,
    the very letters a redrive moves back, dead-lettered again at once. A walk that
    took those too would never end (a redrive once moved one invalid book 2,901 times
    in 40 s). So a snapshot takes only what was there at its start:

    - a letter SQS received after the start (its SentTimestamp against SQS's own
      clock, WalkedQueue.server_time) is left alone;
    - a letter whose ``source_message_id`` is a message this redrive sent back is its
      second dead-lettering, and is left alone even within that first second;
    - each letter is met once, even if its hold ran out and SQS hands it out again;
    - the walk ends when SQS has nothing more to hand out, or after IDLE_RECEIVES
      receives in a row brought nothing of the snapshot: SQS hands out the oldest
      messages first, so nothing older is left behind them.

    Everything received stays invisible while the walk goes on, so that each receive
    moves on; ``release`` hands back what the caller keeps. A FIFO queue hands out no
    more of a group while some of it is held, so a walk that keeps letters sees at
    most the first ten of each group (``list``, ``--dry-run``, or another reason's).
    Letters someone else holds for a moment (another walk, the listener's summary for
    the console) are waited for, up to OTHERS_WAIT seconds, before a walk ends, whether
    the queue looked empty or handed out only newer letters; ``pause`` sleeps in
    between, and ends the walk at once when it returns False (a listener stopping).
    """

    def __init__(
        self,
        queue: WalkedQueue,
        *,
        hold: int = HOLD_SECONDS,
        wait_time: int = 1,
        pause: Callable[[float], bool] = _sleep,
    ) -> None:
        self.queue = queue
        self.hold = hold
        self.wait_time = wait_time
        """Seconds of each receive's long poll (0: none, at the risk of an early end)."""
        self.pause = pause
        self.began = queue.server_time()
        self.sent_back: set[str] = set()
        """Input message ids of the letters moved back by this walk's owner."""
        self.held: list[Message] = []
        """Everything received, in its latest delivery: what ``release`` hands back."""
        self._met: set[str] = set()
        self._gone: set[str] = set()

    def batches(self, *, limit: int | None = None) -> Iterator[list[Message]]:
        """The snapshot's letters, a receive at a time (up to ``limit`` letters in all)."""
        idle = 0
        waited = 0.0
        while limit is None or len(self._met) < limit:
            batch = self.queue.receive(
                wait_time=self.wait_time, visibility_timeout=self.hold, with_message_attributes=True
            )
            self.held += batch
            taken = [m for m in batch if self._in_snapshot(m)]
            taken = taken[: None if limit is None else limit - len(self._met)]
            if taken:
                idle = 0
                self._met.update(m.message_id for m in taken)
                yield taken
                continue
            idle += 1
            if batch and idle < IDLE_RECEIVES:
                continue
            # Empty, or only newer letters: the end, unless someone else holds letters
            # for a moment (the listener's own summary walk holds the old ones while
            # new ones keep coming).
            if waited < OTHERS_WAIT and self._others_hold() and self.pause(OTHERS_POLL):
                waited += OTHERS_POLL
                continue
            return

    def _in_snapshot(self, message: Message) -> bool:
        return (
            message.message_id not in self._met
            and 0 < message.sent_at < self.began
            and message.attributes.get("source_message_id") not in self.sent_back
            and message.message_id not in self.sent_back
        )

    def _others_hold(self) -> bool:
        """Whether letters are in flight beyond those this walk holds."""
        mine = {m.message_id for m in self.held} - self._gone
        return self.queue.depth().in_flight > len(mine)

    def gone(self, message_ids: Iterable[str]) -> None:
        """These letters were deleted: they are not held, nor to be released."""
        self._gone.update(message_ids)

    def release(self) -> None:
        """Make every message received visible again at once, but those gone."""
        back = [m for m in self.held if m.message_id not in self._gone]
        for start in range(0, len(back), BATCH_LIMIT):
            # A handle that a later delivery replaced just fails; the later one works.
            self.queue.change_visibility(back[start : start + BATCH_LIMIT], 0)


def list_letters(queue: WalkedQueue, *, limit: int | None = None) -> list[Letter]:
    """The dead letters (up to ``limit``), oldest group first; the queue is left as it was."""
    snapshot = Snapshot(queue)
    letters: list[Message] = []
    try:
        for batch in snapshot.batches(limit=limit):
            letters += batch
    finally:
        snapshot.release()
    now = time.time()
    return [Letter.of(m, now) for m in letters]


@dataclass
class Redrive:
    """What a redrive did (or, in a dry run, would do)."""

    moved: int = 0
    kept: int = 0
    """Dead letters of another reason, left where they are."""
    failed: int = 0
    """Dead letters that could not be moved this time; they stay, to be redriven again."""


def redrive(
    dead_letters: WalkedQueue,
    input_queue: BatchSender,
    *,
    reason: str | None = None,
    dry_run: bool = False,
    on_moved: Callable[[Letter], None] = lambda _: None,
) -> Redrive:
    """Move the dead letters there now (of ``reason``, if given) back to the input queue,
    group by group, each at most once (see Snapshot), then stop."""
    result = Redrive()
    snapshot = Snapshot(dead_letters)
    now = time.time()
    try:
        for batch in snapshot.batches():
            chosen = [m for m in batch if reason is None or m.attributes.get("reason") == reason]
            result.kept += len(batch) - len(chosen)
            if dry_run:
                result.moved += len(chosen)
                for m in chosen:
                    on_moved(Letter.of(m, now))
                continue
            sent = _send_back(input_queue, chosen, snapshot.sent_back)
            # Delete only what is back; the rest stays a dead letter, to be redriven again.
            undeleted = dead_letters.delete(sent) if sent else {}
            moved = [m for m in sent if m.message_id not in undeleted]
            snapshot.gone(m.message_id for m in moved)
            for m in moved:
                result.moved += 1
                on_moved(Letter.of(m, now))
            result.failed += len(chosen) - len(sent) + len(undeleted)
    finally:
        snapshot.release()
    return result


def _send_back(
    input_queue: BatchSender, messages: list[Message], sent_ids: set[str]
) -> list[Message]:
    """Send in order, each group stopping at its first letter not sent (see
    bookd.operations.sending); return the letters that went back, and add the ids SQS
    gave them to ``sent_ids``."""
    outgoing = [
        Outgoing(
            ref=m.message_id,
            body=m.body,
            group_id=m.group_id,
            dedup_id=f"redrive-{m.message_id}",
            attributes={k: v for k, v in m.attributes.items() if k not in DEAD_LETTER_ATTRIBUTES}
            or None,
        )
        for m in messages
    ]
    sent = send_in_order(input_queue, outgoing)
    sent_ids.update(sent.ids.values())
    return [m for m in messages if m.message_id in sent.ids]
