"""Held messages and the heartbeat, offline (memory queue, fake clock)."""

from __future__ import annotations

from bookd.inflight import Inflight
from tests.unit.memory import FakeClock, MemoryQueue


def held(visibility: int = 30) -> tuple[FakeClock, MemoryQueue, Inflight]:
    clock = FakeClock()
    queue = MemoryQueue("in.fifo", clock)
    return clock, queue, Inflight(visibility, clock=clock)


def test_a_failed_extension_is_not_counted_as_done():
    clock, queue, inflight = held()
    queue.put("{}")
    [m] = queue.receive(wait_time=0, visibility_timeout=30)
    inflight.admit([m])
    clock.advance(20)
    queue.fail("ChangeMessageVisibilityBatch")
    inflight.beat(queue)
    clock.advance(9)
    assert inflight.lapsed(m), "its deadline stayed where SQS has it"
    assert inflight.due() == [], "a lapsed hold is never revived"


def test_an_extension_that_worked_after_one_that_failed_moves_the_deadline():
    clock, queue, inflight = held()
    queue.put("{}")
    [m] = queue.receive(wait_time=0, visibility_timeout=30)
    inflight.admit([m])
    queue.fail("ChangeMessageVisibilityBatch", times=1)
    clock.advance(20)
    inflight.beat(queue)
    inflight.beat(queue)
    clock.advance(25)
    assert not inflight.lapsed(m)


def test_a_message_finished_while_its_extension_was_out_is_never_extended_again():
    clock, queue, inflight = held()
    queue.put("{}")
    [m] = queue.receive(wait_time=0, visibility_timeout=30)
    inflight.admit([m])
    clock.advance(20)
    due = inflight.due()
    inflight.release([m])  # the batch finished while the heartbeat's call was out
    inflight.extended(due, asked_at=clock())
    assert inflight.count() == 0
    assert inflight.due() == []


def test_an_extension_with_an_old_handle_does_not_move_a_newer_hold():
    clock, queue, inflight = held()
    queue.put("{}")
    [m] = queue.receive(wait_time=0, visibility_timeout=30)
    inflight.admit([m])
    clock.advance(31)
    [again] = queue.receive(wait_time=0, visibility_timeout=30)
    inflight.admit([again])
    inflight.extended([m], asked_at=clock() + 1000)  # a late answer for the old handle
    clock.advance(40)
    assert inflight.lapsed(again)


def test_later_messages_of_a_group_still_held_are_handed_back_not_worked():
    clock, queue, inflight = held()
    for n in range(2):
        queue.put(str(n), group="g")
    first = queue.receive(wait_time=0, visibility_timeout=30)
    inflight.admit(first[:1])  # only the first is held (the second finished)
    clock.advance(31)
    queue.put("2", group="g")
    again = queue.receive(wait_time=0, visibility_timeout=30)
    work, back = inflight.admit(again)
    assert work == []
    assert [m.body for m in back] == ["1", "2"]
