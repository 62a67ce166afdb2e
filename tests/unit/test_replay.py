"""bookd replay, offline: books stored by the rules (tests/unit/memory.py), announced again."""

from __future__ import annotations

import json

from bookd.core.ports import BOOK_ID_METADATA
from bookd.operations.replay import Choice, Replay
from tests.unit.memory import Harness, MemoryQueue


def book(book_id: str, title: str) -> str:
    return json.dumps({"id": book_id, "title": title, "genre": "scifi"})


def stored_and_announced() -> tuple[Harness, list[dict]]:
    """Five books (two versions of one title) stored and announced; the announcements taken."""
    h = Harness()
    for book_id, title, group in [
        ("b1", "Beta", "g1"),
        ("a1", "Alpha", "g2"),
        ("b2", "Beta", "g1"),
        ("c1", "Gamma", "g2"),
        ("a2", "Alpha", "g2"),
    ]:
        h.input.put(book(book_id, title), group=group)
    h.run()
    originals = [json.loads(body) for body in h.output.bodies()]
    for m in h.output.messages:  # the consumer took them, and lost them
        m.deleted = True
    return h, originals


def replay(h: Harness, tmp_path, output: MemoryQueue | None = None) -> Replay:
    return Replay(h.store, output or h.output, group="replay", checkpoints=tmp_path / "replay")


def test_a_replay_announces_each_stored_book_again_as_it_was_in_key_order(tmp_path):
    h, originals = stored_and_announced()
    replaying = replay(h, tmp_path)
    choice = replaying.resolve(Choice("scifi"))
    result = replaying.run(choice, replaying.plan(choice))
    assert result.announced == 5 and result.failed is None
    again = [json.loads(body) for body in h.output.bodies()]
    # Key order, a key's versions oldest first; every field as the first time, plus the flag.
    assert [a["id"] for a in again] == ["a1", "a2", "b1", "b2", "c1"]
    by_id = {a["id"]: a for a in originals}
    assert all(a == {**by_id[a["id"]], "replayed": True} for a in again)
    # In a group of their own, deduplicated by version.
    letters = [m for m in h.output.messages if not m.deleted]
    assert {m.group for m in letters} == {"replay"}
    assert [m.dedup for m in letters] == [f"replay-{a['version_id']}" for a in again]


def test_run_twice_it_announces_nothing_twice_and_a_dry_run_only_counts(tmp_path):
    h, _ = stored_and_announced()
    replaying = replay(h, tmp_path)
    choice = replaying.resolve(Choice("scifi"))
    assert replaying.run(choice, replaying.plan(choice), dry_run=True).announced == 5
    assert h.output.bodies() == [], "a dry run sends nothing"
    for _ in range(2):
        replaying.run(choice, replaying.plan(choice))
    assert len(h.output.bodies()) == 5, "SQS drops the second run's: same deduplication ids"


def test_a_replay_chooses_by_prefix_and_by_when_the_version_was_stored(tmp_path):
    h, _ = stored_and_announced()
    replaying = replay(h, tmp_path)
    times = sorted(v.stored_at for vs in h.store.objects.values() for v in vs)
    for choice, ids in [
        (Choice("scifi", prefix="Al"), ["a1", "a2"]),
        (Choice("scifi", since=times[1], until=times[3]), ["a1", "b2"]),
        (Choice("romance"), []),
    ]:
        assert [v.key for v in replaying.plan(replaying.resolve(choice))] == [
            {"a1": "Alpha.json", "a2": "Alpha.json", "b2": "Beta.json"}[i] for i in ids
        ], choice


def test_a_version_bookd_did_not_store_is_left_out(tmp_path):
    h, _ = stored_and_announced()
    h.store.put("scifi", "Foreign.json", b"{}", metadata={})
    [alpha] = [v for v in h.store.versions("Alpha.json")][:1]
    del alpha.metadata[BOOK_ID_METADATA]
    replaying = replay(h, tmp_path)
    choice = replaying.resolve(Choice("scifi"))
    result = replaying.run(choice, replaying.plan(choice))
    assert (result.announced, result.not_bookds) == (4, 2)


def test_a_replay_stopped_by_a_failure_goes_on_from_where_it_stopped(tmp_path):
    h = Harness()
    for n in range(14):
        h.input.put(book(f"k{n:02d}", f"Key {n:02d}"), group=f"g{n % 3}")
    h.run()
    for m in h.output.messages:
        m.deleted = True
    replaying = replay(h, tmp_path)
    choice = replaying.resolve(Choice("scifi"))
    # Given SQS away for the second batch call (the books after the tenth),
    h.output.fail("SendMessageBatch", times=1, when=lambda batch: len(batch) == 4)
    first = replaying.run(choice, replaying.plan(choice))
    assert (first.announced, first.failed is not None) == (10, True)
    # when it is run again (the same choice: its end is kept in the checkpoint),
    again = replaying.resolve(Choice("scifi"))
    assert again == choice
    second = replaying.run(again, replaying.plan(again))
    # then it goes on after the tenth, and every book is announced once, in key order.
    assert (second.resumed_after, second.announced, second.failed) == (10, 4, None)
    ids = [json.loads(body)["id"] for body in h.output.bodies()]
    assert ids == [f"k{n:02d}" for n in range(14)]
    assert not list((tmp_path / "replay").glob("*.json")), "done: no checkpoint left"
