"""A dead-letter walk (bookd.operations.dead_letters.Snapshot) against a scripted queue.

The integration tests in tests/integration/test_cli.py walk LocalStack's queue while a
listener runs; these pin down, without timing, the walk's rule for when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bookd.core.errors import AwsFault
from bookd.core.ports import Depth, Message
from bookd.operations import dead_letters
from bookd.operations.dead_letters import Snapshot

BEGAN = 1_000.0


def letter(message_id: str, sent_at: float) -> Message:
    return Message(message_id, f"handle-{message_id}", "not json", message_id, 1, sent_at)


class ScriptedQueue:
    """Hands out the batches it was given, one per receive, then nothing; and reports
    ``others`` letters in flight beyond those received, while ``others_for`` receives."""

    name = "dead-letters"

    def __init__(self, batches: list[list[Message]], *, others: int, others_for: int) -> None:
        self.batches = batches
        self.others = others
        self.others_for = others_for
        self.receives = 0
        self.received: set[str] = set()

    def receive(self, **_: object) -> list[Message]:
        self.receives += 1
        batch = self.batches.pop(0) if self.batches else []
        self.received.update(m.message_id for m in batch)
        return batch

    def depth(self) -> Depth:
        others = self.others if self.receives <= self.others_for else 0
        return Depth(visible=0, in_flight=len(self.received) + others)

    def server_time(self) -> float:
        return BEGAN

    def delete(self, messages: Sequence[Message]) -> dict[str, AwsFault]:
        return {}

    def change_visibility(self, messages: Sequence[Message], timeout: int) -> dict[str, AwsFault]:
        return {}


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(dead_letters.time, "sleep", lambda _: None)


def newer(n: int) -> list[Message]:
    return [letter(f"new{n}", BEGAN + n)]


def test_a_walk_waits_for_old_letters_someone_else_holds_while_new_ones_keep_coming():
    # Given three old letters held elsewhere (the listener's summary walk) for a moment,
    # while new letters keep coming and are all the queue hands out meanwhile,
    old = [letter(f"old{n}", BEGAN - 10) for n in range(3)]
    queue = ScriptedQueue([newer(n) for n in range(5)] + [old], others=3, others_for=5)
    # when an operator's walk lists the queue,
    met = [m.message_id for batch in Snapshot(queue).batches() for m in batch]
    # then it met each old letter, and none of the new ones.
    assert met == ["old0", "old1", "old2"]


def test_a_walk_of_only_new_letters_ends_after_its_idle_receives_and_its_wait():
    # Given only new letters, coming without end, and nobody else holding any,
    queue = ScriptedQueue([newer(n) for n in range(100)], others=0, others_for=0)
    # when a walk lists the queue, then it ends with nothing, after IDLE_RECEIVES receives.
    assert list(Snapshot(queue).batches()) == []
    assert queue.receives == dead_letters.IDLE_RECEIVES


def test_a_walk_gives_up_waiting_for_letters_held_elsewhere_for_good():
    # Given letters held elsewhere for as long as the walk goes on (another walk's hold),
    queue = ScriptedQueue([newer(n) for n in range(100)], others=3, others_for=10_000)
    # when a walk lists the queue, then it ends, after waiting OTHERS_WAIT at most.
    assert list(Snapshot(queue).batches()) == []
    waits = dead_letters.OTHERS_WAIT / dead_letters.OTHERS_POLL
    assert queue.receives == dead_letters.IDLE_RECEIVES + waits


def test_a_walk_waiting_for_letters_held_elsewhere_ends_at_once_when_its_pause_says_stop():
    # Given letters held elsewhere for good, and a walk whose pause reports a stop
    # (the listener's summary walk, when the listener is told to stop),
    queue = ScriptedQueue([newer(n) for n in range(100)], others=3, others_for=10_000)
    pauses: list[float] = []

    def stopping(seconds: float) -> bool:
        pauses.append(seconds)
        return False

    # when it walks the queue, then it ends after its first pause, without waiting more.
    assert list(Snapshot(queue, pause=stopping).batches()) == []
    assert pauses == [dead_letters.OTHERS_POLL]
    assert queue.receives == dead_letters.IDLE_RECEIVES
