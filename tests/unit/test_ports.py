"""SQS's limits as bookd.core.ports knows them: batch calls cut to size, characters SQS refuses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bookd.core.ports import BATCH_LIMIT, MAX_MESSAGE_BYTES, Outgoing, batches, refused_character


def outgoing(n: int, size: int) -> Outgoing:
    return Outgoing(ref=str(n), body="x" * size, group_id="g", dedup_id=str(n))


@given(st.lists(st.integers(min_value=0, max_value=MAX_MESSAGE_BYTES), max_size=40))
def test_batches_keep_the_order_and_each_fits_one_call(sizes):
    messages = [outgoing(n, size) for n, size in enumerate(sizes)]
    cut = batches(messages)
    assert [m for batch in cut for m in batch] == messages, "every message once, in order"
    for batch in cut:
        assert 1 <= len(batch) <= BATCH_LIMIT
        assert sum(m.size() for m in batch) <= MAX_MESSAGE_BYTES


def test_small_messages_go_ten_to_a_call_and_big_ones_alone():
    assert [len(b) for b in batches([outgoing(n, 100) for n in range(25)])] == [10, 10, 5]
    assert [len(b) for b in batches([outgoing(n, 600_000) for n in range(3)])] == [1, 1, 1]


def test_refused_characters_are_named_with_their_offset():
    assert refused_character('{"id": "1", "title": "Dune 🚀 é\t\n"}') is None
    assert refused_character("ab\uffffc") == "U+FFFF at offset 2"
    assert refused_character("\x00") == "U+0000 at offset 0"
    assert refused_character("a\ud800") == "U+D800 at offset 1"
