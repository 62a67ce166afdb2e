"""Held messages and the heartbeat, offline (memory queue, fake clock)."""

from __future__ import annotations

from bookd.core.ports import Message
from bookd.rules.inflight import Inflight
from tests.unit.memory import FakeClock, MemoryQueue


def held(visibility: int = 30) -> tuple[FakeClock, MemoryQueue, Inflight, Message]:
    """A message received with ``visibility`` and held; the clock, queue and registry."""
    clock = FakeClock()
    queue = MemoryQueue("in.fifo", clock)
    inflight = Inflight(visibility, clock=clock)
    queue.put("{}")
    [m] = queue.receive(wait_time=0, visibility_timeout=visibility)
    inflight.admit([m])
    return clock, queue, inflight, m


def test_a_failed_extension_is_not_counted_as_done():
    clock, queue, inflight, m = held()
    clock.advance(20)
    queue.fail("ChangeMessageVisibilityBatch")
    inflight.beat(queue)
    clock.advance(9)
    assert inflight.lapsed(m), "its deadline stayed where SQS has it"
    assert inflight.due() == [], "a lapsed hold is never revived"


def test_an_extension_that_worked_after_one_that_failed_moves_the_deadline():
    clock, queue, inflight, m = held()
    queue.fail("ChangeMessageVisibilityBatch", times=1)
    clock.advance(20)
    inflight.beat(queue)
    inflight.beat(queue)
    clock.advance(25)
    assert not inflight.lapsed(m)


def test_a_message_finished_while_its_extension_was_out_is_never_extended_again():
    clock, queue, inflight, m = held()
    clock.advance(20)
    due = inflight.due()
    inflight.release([m])  # the batch finished while the heartbeat's call was out
    inflight.extended(due, asked_at=clock())
    assert inflight.count() == 0
    assert inflight.due() == []


def test_an_extension_with_an_old_handle_does_not_move_a_newer_hold():
    clock, queue, inflight, m = held()
    clock.advance(31)
    [again] = queue.receive(wait_time=0, visibility_timeout=30)
    inflight.admit([again])
    inflight.extended([m], asked_at=clock() + 1000)  # a late answer for the old handle
    clock.advance(40)
    assert inflight.lapsed(again)


def test_later_messages_of_a_group_still_held_are_handed_back_not_worked():
    clock, queue, inflight, m = held()  # "{}" in group "g", held
    for n in range(2):
        queue.put(str(n), group="g")
    clock.advance(31)  # its visibility ran out; SQS hands the group out again
    again = queue.receive(wait_time=0, visibility_timeout=30)
    work, back = inflight.admit(again)
    assert [x.message_id for x in again][0] == m.message_id
    assert work == []
    assert [x.body for x in back] == ["0", "1"]


def test_the_shortest_visibility_is_kept_whatever_the_heartbeat_s_phase():
    # BOOKD_VISIBILITY_TIMEOUT=5 once left half a second between "due" and "lapsed",
    # less than one heartbeat: a beat landing after the receive's first half second
    # found the message not yet due, and the next one found it lapsed.
    from bookd.rules.inflight import HEARTBEAT_SECONDS

    for tenth in range(10):
        clock, queue, inflight, m = held(visibility=5)
        clock.advance(tenth / 10 * HEARTBEAT_SECONDS)
        for _ in range(30):
            clock.advance(HEARTBEAT_SECONDS)
            inflight.beat(queue)
            assert not inflight.lapsed(m), f"lapsed with the heartbeat at +{tenth / 10:.1f} s"
