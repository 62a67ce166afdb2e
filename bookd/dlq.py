"""The dead-letter queue, for operators: list what is there, and redrive it to the input.

Redriving keeps each message's group, its order within the group and its body byte
for byte. Each message is sent back with a deduplication id made from its
dead-letter message id, and deleted from the dead-letter queue only once it is
back: so a redrive interrupted at any point and run again (within SQS's five-minute
deduplication window) neither loses nor doubles a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bookd.aws import Queue
from bookd.errors import AwsFault
from bookd.ports import BATCH_LIMIT, Message, Outgoing, batches

DEAD_LETTER_ATTRIBUTES = frozenset(
    {"reason", "detail", "source_message_id", "source_queue", "bucket", "key", "version_id"}
)
"""What bookd adds to a dead letter; a redriven message goes back without them."""

HOLD_SECONDS = 120
"""How long a listing or redrive keeps the messages it has received invisible."""


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


def walk(queue: Queue, *, limit: int | None = None) -> Iterator[list[Message]]:
    """Every message of the queue once, a receive at a time (one group's run each).

    Received messages stay invisible while the walk goes on, so that the next receive
    moves to the next group; the caller hands back what it keeps (``release``).
    """
    seen = 0
    while limit is None or seen < limit:
        batch = queue.receive(
            wait_time=1, visibility_timeout=HOLD_SECONDS, with_message_attributes=True
        )
        if not batch:
            return
        seen += len(batch)
        yield batch


def release(queue: Queue, messages: list[Message]) -> None:
    """Make messages visible again at once."""
    for start in range(0, len(messages), BATCH_LIMIT):
        queue.change_visibility(messages[start : start + BATCH_LIMIT], 0)


def list_letters(queue: Queue, *, limit: int | None = None) -> list[Letter]:
    """The dead letters (up to ``limit``), oldest group first; the queue is left as it was."""
    held: list[Message] = []
    try:
        for batch in walk(queue, limit=limit):
            held += batch
    finally:
        release(queue, held)
    now = time.time()
    return [Letter.of(m, now) for m in held[:limit]]


@dataclass
class Redrive:
    """What a redrive did (or, in a dry run, would do)."""

    moved: int = 0
    kept: int = 0
    """Dead letters of another reason, left where they are."""
    failed: int = 0
    """Dead letters that could not be moved this time; they stay, to be redriven again."""


def redrive(
    dead_letters: Queue,
    input_queue: Queue,
    *,
    reason: str | None = None,
    dry_run: bool = False,
    on_moved: Callable[[Letter], None] = lambda _: None,
) -> Redrive:
    """Move dead letters (of ``reason``, if given) back to the input queue, group by group."""
    result = Redrive()
    keep: list[Message] = []
    now = time.time()
    try:
        for batch in walk(dead_letters):
            chosen = [m for m in batch if reason is None or m.attributes.get("reason") == reason]
            keep += [m for m in batch if m not in chosen]
            result.kept += len(batch) - len(chosen)
            if dry_run:
                keep += chosen
                result.moved += len(chosen)
                for m in chosen:
                    on_moved(Letter.of(m, now))
                continue
            sent = _send_back(input_queue, chosen)
            # Delete only what is back; the rest stays a dead letter, to be redriven again.
            undeleted = dead_letters.delete(sent) if sent else {}
            keep += [m for m in chosen if m not in sent]
            for m in sent:
                if m.message_id not in undeleted:
                    result.moved += 1
                    on_moved(Letter.of(m, now))
            result.failed += len(chosen) - len(sent) + len(undeleted)
    finally:
        release(dead_letters, keep)
    return result


def _send_back(input_queue: Queue, messages: list[Message]) -> list[Message]:
    """Send in order, in as many calls as SQS needs; return the messages that went back
    (a prefix: order is kept)."""
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
    by_id = {m.message_id: m for m in messages}
    sent: list[Message] = []
    for batch in batches(outgoing):
        try:
            failed = input_queue.send(batch)
        except AwsFault:
            return sent
        # Never past the first one refused: the ones after it would overtake it.
        for letter in batch:
            if letter.ref in failed:
                return sent
            sent.append(by_id[letter.ref])
    return sent
