"""The per-message rules, offline: memory queues and store, a fake clock (tests/unit/memory.py)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookd.core import books
from bookd.core.books import from_metadata
from bookd.core.errors import FaultKind
from bookd.core.ports import (
    BOOK_ID_METADATA,
    GROUP_METADATA,
    MAX_MESSAGE_BYTES,
    MESSAGE_ID_METADATA,
    SEQUENCE_METADATA,
    Outgoing,
)
from bookd.core.reasons import REJECTED_BY_S3, RETRIES_EXHAUSTED, TOO_MANY_DELIVERIES
from bookd.rules.dead_letters import fit_to_size
from tests.unit.memory import Harness


def book(book_id: str, **changes: object) -> str:
    return json.dumps({"id": book_id, "title": book_id, "genre": "scifi", **changes})


def reasons(h: Harness) -> dict[str, str]:
    """Dead letters: book id (or body) -> reason."""
    out = {}
    for letter in h.dead_letters.letters():
        try:
            key = json.loads(letter.body)["id"]
        except (ValueError, KeyError, TypeError, RecursionError):
            key = letter.body
        out[key] = letter.attributes["reason"]
    return out


def test_a_valid_book_is_stored_announced_and_deleted():
    h = Harness()
    message_id = h.input.put(book("b1", author="A"), group="g")
    h.run()
    [version] = h.store.versions("b1.json")
    assert version.body.decode() == book("b1", author="A")
    [announcement] = h.output.letters()
    [received] = [m for m in h.input.messages if m.message_id == message_id]
    assert version.metadata == {
        MESSAGE_ID_METADATA: message_id,
        BOOK_ID_METADATA: "b1",
        GROUP_METADATA: "g",
        SEQUENCE_METADATA: received.sequence,
    }, "all an announcement needs to be made again (bookd replay)"
    assert json.loads(announcement.body) == {
        "id": "b1",
        "file": "b1.json",
        "bucket": "scifi",
        "version_id": version.version_id,
        "message_id": message_id,
        "group": "g",
        "sequence_number": received.sequence,
    }
    assert received.sequence.isdigit()
    assert (announcement.group, announcement.dedup) == ("g", message_id)
    assert h.input.bodies() == []
    assert h.inflight.count() == 0


def test_an_id_s3_metadata_cannot_carry_raw_is_stored_percent_encoded():
    h = Harness()
    h.input.put(book("Łódź\nnaïve\u2028"))
    h.run()
    [version] = h.store.versions("Łódź\nnaïve\u2028.json".replace("\n", "%0A"))
    encoded = version.metadata[BOOK_ID_METADATA]
    assert encoded.isascii() and encoded.isprintable()
    assert from_metadata(encoded) == "Łódź\nnaïve\u2028"
    assert reasons(h) == {}


def test_a_bad_book_is_dead_lettered_with_its_reason_and_its_group_goes_on():
    h = Harness()
    h.input.put("[" * 100_000, group="g")  # nested far deeper than the parser takes
    h.input.put(book("after"), group="g")
    h.run()
    assert reasons(h) == {"[" * 100_000: books.INVALID_JSON}
    assert "deeper" in h.dead_letters.letters()[0].attributes["detail"]
    assert h.announced() == ["after"]
    assert h.input.bodies() == []


def test_an_s3_outage_of_any_length_dead_letters_nothing_and_costs_no_delivery():
    h = Harness(max_attempts=2, retry_for=0)
    for n in range(3):
        h.input.put(book(f"b{n}"), group="g")
    h.store.down()
    h.clock.at(6 * 3600, h.store.heal)  # six hours
    h.run()
    assert h.announced() == ["b0", "b1", "b2"]
    assert reasons(h) == {}
    assert all(s.receive_count == 1 for s in h.input.messages), "no delivery was charged"
    assert not h.dependencies.blocked(), "the outage's problem cleared with the first put"


def test_while_s3_is_down_the_dependency_shows_it_and_receiving_would_pause():
    h = Harness()
    h.input.put(book("b"), group="g")
    seen = []
    h.store.down()
    h.clock.at(30, lambda: seen.append(h.dependencies.snapshot()["s3"]))
    h.clock.at(31, h.store.heal)
    h.run()
    [during] = seen
    assert during["state"] == "down"
    assert during["cause"] == "PutObject: ServiceUnavailable"
    assert h.dependencies.snapshot()["s3"] == {"state": "ok"}


def test_a_message_that_fails_alone_uses_its_budget_then_is_dead_lettered_and_its_group_goes_on():
    h = Harness(max_attempts=3, retry_for=20)
    h.input.put(book("a1"), group="A")
    h.input.put(book("a2-fails"), group="A")
    h.input.put(book("a3"), group="A")
    # S3 answers (the probe works) but refuses this one key with a server error, always.
    h.store.fail("PutObject", "InternalError", when=lambda key: key == "a2-fails.json")
    h.run()
    assert reasons(h) == {"a2-fails": RETRIES_EXHAUSTED}
    assert h.announced("A") == ["a1", "a3"], "a3 after a2's end, never ahead of it"
    tries = h.store.count("PutObject", lambda key: key == "a2-fails.json")
    assert tries >= 3
    letter = h.dead_letters.letters()[0]
    assert "InternalError" in letter.attributes["detail"]


def test_the_budget_needs_both_its_tries_and_its_time():
    h = Harness(max_attempts=2, retry_for=120)
    h.input.put(book("slowly-failing"))
    h.store.fail("PutObject", "InternalError")
    started = h.clock.now
    h.run()
    assert reasons(h) == {"slowly-failing": RETRIES_EXHAUSTED}
    assert h.clock.now - started >= 120
    assert h.store.count("PutObject") > 2


def test_a_request_s3_rejects_is_dead_lettered_at_once_with_a_reason_naming_it():
    h = Harness()
    h.input.put(book("b1"))
    h.store.fail("PutObject", "InvalidArgument", when=lambda key: key == "b1.json")
    h.run()
    assert reasons(h) == {"b1": REJECTED_BY_S3}
    assert "InvalidArgument" in h.dead_letters.letters()[0].attributes["detail"]
    assert h.store.count("PutObject") == 1


def test_three_rejections_in_a_row_are_taken_for_misconfiguration_not_bad_books():
    h = Harness()
    for n in range(5):
        h.input.put(book(f"b{n}"), group=f"g{n}")
    h.store.fail("PutObject", "InvalidArgument")
    h.clock.at(60, h.store.heal)  # the bucket's rule is fixed
    h.run()
    assert len(reasons(h)) == 2, "two dead-lettered before the pattern was clear"
    assert sorted(h.announced()) == ["b2", "b3", "b4"]


def test_a_permission_being_rolled_out_pauses_without_dead_lettering():
    h = Harness()
    for n in range(3):
        h.input.put(book(f"b{n}"), group="g")
    h.store.fail("PutObject", "AccessDenied")
    states = []
    h.clock.at(100, lambda: states.append(h.dependencies.snapshot()["s3"]["state"]))
    h.clock.at(3600, h.store.heal)  # the policy reaches us an hour later
    h.run()
    assert states == ["misconfigured"]
    assert reasons(h) == {}
    assert h.announced() == ["b0", "b1", "b2"]


def test_a_redelivered_book_already_stored_is_not_stored_twice():
    h = Harness()
    h.input.put(book("b1"), group="g")
    h.input.put(book("b2"), group="g")
    # The announcement fails; the listener is stopped while it waits: both handed back.
    h.output.fail("SendMessageBatch", times=1)

    def stop(seconds: float) -> bool:
        h.clock.advance(seconds)
        return False

    h.retry._wait = stop
    h.run(receives=1)
    assert [len(h.store.versions(k)) for k in ("b1.json", "b2.json")] == [1, 1]
    assert h.output.bodies() == []
    assert all(s.visible_at <= h.clock.now for s in h.input.messages), "handed back at once"
    # The next listener finds them stored.
    h.retry._wait = h.clock.wait
    h.run()
    assert [len(h.store.versions(k)) for k in ("b1.json", "b2.json")] == [1, 1]
    assert h.announced() == ["b1", "b2"]


def test_a_redelivery_finds_its_copy_under_a_later_version_of_the_same_title():
    h = Harness()
    first = h.input.put(book("one", title="Same"), group="g")
    # Another book of the same title was stored on top since.
    h.store.put("scifi", "Same.json", b"{}", metadata={MESSAGE_ID_METADATA: first})
    h.store.put("scifi", "Same.json", b"{}", metadata={MESSAGE_ID_METADATA: "later"})
    h.input.messages[0].receive_count = 1  # the next receive is its second delivery
    h.run()
    assert len(h.store.versions("Same.json")) == 2, "not stored a third time"
    assert h.announced() == ["one"]


def test_a_group_s_announcements_keep_their_order_when_a_tail_of_the_batch_fails():
    h = Harness()
    ids = [h.input.put(book(f"b{n}"), group="g") for n in range(4)]
    for message_id in ids[2:]:
        h.output.entry_faults[message_id] = ("InternalError", 2)
    h.run()
    assert h.announced("g") == ["b0", "b1", "b2", "b3"]


def test_an_entry_sqs_fails_alone_ahead_of_later_ones_is_counted_not_hidden():
    from bookd.telemetry import metrics

    h = Harness()
    ids = [h.input.put(book(f"b{n}"), group="g") for n in range(3)]
    h.output.entry_faults[ids[0]] = ("InternalError", 1)
    before = metrics.ANNOUNCED_OUT_OF_ORDER._value.get()
    h.run()
    assert sorted(h.announced("g")) == ["b0", "b1", "b2"]
    assert metrics.ANNOUNCED_OUT_OF_ORDER._value.get() - before == 2


def test_an_announcement_that_keeps_failing_is_dead_lettered_with_the_book_s_location():
    h = Harness(max_attempts=2, retry_for=10)
    [m1, m2] = [h.input.put(book(f"b{n}"), group="g") for n in (1, 2)]
    h.output.entry_faults[m1] = ("InternalError", 10_000)
    h.run()
    [letter] = h.dead_letters.letters()
    [version] = h.store.versions("b1.json")
    assert letter.attributes["reason"] == RETRIES_EXHAUSTED
    assert (letter.attributes["bucket"], letter.attributes["key"]) == ("scifi", "b1.json")
    assert letter.attributes["version_id"] == version.version_id
    assert h.announced("g") == ["b2"]


def test_sqs_down_while_announcing_dead_letters_nothing():
    h = Harness(max_attempts=1, retry_for=0)
    h.input.put(book("b1"), group="g")
    h.output.down()
    h.clock.at(600, h.output.heal)
    h.run()
    assert reasons(h) == {}
    assert h.announced() == ["b1"]


def test_a_hold_that_lapsed_is_abandoned_without_side_effects():
    h = Harness(visibility_timeout=30)
    h.input.put(book("b1"), group="g")
    h.store.down()
    # SQS takes no extension either: the hold lapses, and someone else may have it now.
    h.input.fail("ChangeMessageVisibilityBatch")
    h.clock.at(40, h.store.heal)  # S3 is back only once the hold has lapsed
    h.run(receives=1)
    assert h.store.versions("b1.json") == [], "no put once the hold lapsed"
    assert h.output.bodies() == []
    assert h.inflight.count() == 0
    h.input.heal()
    # The listener gives up a hold a little before SQS lets the message go (a margin
    # against a late beat): wait until SQS hands it out again.
    h.clock.advance(h.settings.visibility_timeout)
    h.run()  # whoever gets it next stores it once
    assert len(h.store.versions("b1.json")) == 1


def test_a_message_delivered_too_often_is_dead_lettered_as_the_redrive_would():
    h = Harness(max_receive_count=3)
    h.input.put(book("poison"), group="g")
    h.input.messages[0].receive_count = 2
    h.run()
    assert reasons(h) == {"poison": TOO_MANY_DELIVERIES}


def test_a_dead_letter_keeps_the_body_and_its_detail_is_printable_ascii():
    h = Harness()
    body = '{"id": "\\uffff", "title": "t", "genre": "horror \uffff"}'
    h.input.put(body, group="g")
    h.run()
    [letter] = h.dead_letters.letters()
    assert letter.body == body
    assert letter.group == "g"
    detail = letter.attributes["detail"]
    assert detail.isascii() and detail.isprintable()
    assert letter.attributes["reason"] == books.UNKNOWN_GENRE


def test_a_dead_letter_is_never_lost_while_sqs_is_down():
    h = Harness()
    h.input.put("not json", group="g")
    h.dead_letters.down()
    h.clock.at(900, h.dead_letters.heal)
    h.run()
    assert reasons(h) == {"not json": books.INVALID_JSON}


def test_a_message_received_again_while_held_is_not_worked_twice():
    h = Harness()
    h.input.put(book("b1"), group="g")
    h.input.put(book("b2"), group="g")
    first = h.input.receive(wait_time=0, visibility_timeout=30)
    work, back = h.inflight.admit(first)
    assert [m.message_id for m in work] == [m.message_id for m in first]
    h.clock.advance(31)  # visibility ran out; SQS hands them out again
    again = h.input.receive(wait_time=0, visibility_timeout=30)
    work, back = h.inflight.admit(again)
    assert work == [] and back == []
    assert h.inflight.current(first[0]).receipt_handle == again[0].receipt_handle
    assert not h.inflight.lapsed(first[0])


@pytest.mark.parametrize("kind", [FaultKind.THROTTLED, FaultKind.UNAVAILABLE])
def test_busy_or_away_s3_never_counts_against_a_message(kind):
    code = {"throttled": "SlowDown", "unavailable": "ServiceUnavailable"}[kind.value]
    h = Harness(max_attempts=1, retry_for=0)
    h.input.put(book("b1"), group="g")
    h.store.down(code)
    h.clock.at(300, h.store.heal)
    h.run()
    assert reasons(h) == {}
    assert h.announced() == ["b1"]


# --- within a group: uploads at once, announcements in order (issue 10) ------------


@pytest.fixture
def uploads():
    with ThreadPoolExecutor(8) as pool:
        yield pool


def test_books_of_one_title_keep_their_order_while_other_titles_upload_at_once(uploads):
    h = Harness(uploads=uploads)
    plan = [("a", "Same"), ("b", "Other"), ("c", "Same"), ("d", "Third"), ("e", "Same")]
    for book_id, title in plan:
        h.input.put(book(book_id, title=title), group="g")
    # The first version of "Same" is the slowest to upload: a naive pool would reorder.
    h.store.slow = {"Same.json": 0.05, "Other.json": 0.0, "Third.json": 0.01}
    h.run()
    versions = [json.loads(v.body)["id"] for v in h.store.versions("Same.json")]
    assert versions == ["a", "c", "e"], "one title's versions in input order"
    assert h.announced("g") == ["a", "b", "c", "d", "e"], "announced in input order"


@pytest.mark.parametrize("mode", ["parallel", "strict"])
def test_a_consumer_sees_each_group_s_order_in_the_sequence_numbers_it_is_given(uploads, mode):
    h = Harness(uploads=uploads, group_mode=mode)
    for n in range(12):
        h.input.put(book(f"b{n}", title=f"T{n % 4}"), group=f"g{n % 2}")
    h.store.slow = {"T0.json": 0.03, "T1.json": 0.02}  # uploads finish out of order
    h.run()
    for group in ("g0", "g1"):
        announced = [json.loads(body) for body in h.output.bodies(group)]
        assert {a["group"] for a in announced} == {group}
        numbers = [int(a["sequence_number"]) for a in announced]
        assert numbers == sorted(numbers) and len(set(numbers)) == 6, numbers


def test_uploads_of_different_titles_overlap(uploads):
    h = Harness(uploads=uploads)
    for n in range(8):
        h.input.put(book(f"b{n}"), group="g")
    h.store.slow = {f"b{n}.json": 0.2 for n in range(8)}
    began = time.monotonic()
    h.run()
    assert time.monotonic() - began < 0.2 * 8 / 2, "eight 0.2 s uploads, side by side"
    assert h.store.most_in_flight > 1, "more than one put under way at once"
    assert h.announced("g") == [f"b{n}" for n in range(8)]


def test_s3_pushing_back_slows_the_uploads_without_pausing_or_dead_lettering(uploads):
    # Issue 17: S3 takes two puts at once and answers SlowDown to the rest.
    h = Harness(uploads=uploads, concurrency=8, max_attempts=1, retry_for=0)
    for n in range(40):
        h.input.put(book(f"b{n}", title=f"T{n}"), group=f"g{n % 2}")
    h.store.slow = {f"T{n}.json": 0.01 for n in range(40)}
    h.store.takes_at_once = 2
    paused = []
    report = h.dependencies.report
    h.dependencies.report = lambda fault, **kw: (paused.append(fault), report(fault, **kw))
    h.run()
    assert h.store.slowed_down > 0, "S3 did push back"
    assert paused == [], "back-pressure, not an outage: receiving never paused"
    assert reasons(h) == {}
    for group in ("g0", "g1"):
        assert h.announced(group) == [f"b{n}" for n in range(40) if n % 2 == int(group[1])]
    assert all(len(h.store.versions(f"T{n}.json")) == 1 for n in range(40))
    limiter = h.processor.mode.uploader.limiter
    assert limiter.limit < 8 and limiter.in_flight == 0


def test_an_upload_waiting_for_a_place_is_handed_back_when_the_listener_aborts():
    h = Harness(concurrency=1)
    h.input.put(book("b1"), group="g")
    uploader = h.processor.mode.uploader
    taken = uploader.limiter.enter(0)  # S3's one place is busy with another upload
    answers = iter([False])  # the abort comes while b1 waits for the place
    uploader.aborting = lambda: next(answers, True)
    h.run(receives=1)
    assert taken is not None and uploader.limiter.in_flight == 1
    assert h.store.versions("b1.json") == [] and h.output.bodies() == []
    assert h.inflight.count() == 0
    [message] = h.input.messages
    assert message.visible_at <= h.clock.now, "handed back at once, for the next listener"


def test_a_failure_in_the_middle_holds_back_only_the_books_after_it(uploads):
    h = Harness(uploads=uploads, max_attempts=3, retry_for=60)
    for n in range(5):
        h.input.put(book(f"b{n}"), group="g")
    h.store.fail("PutObject", "InternalError", when=lambda key: key == "b2.json")
    h.run()
    assert reasons(h) == {"b2": RETRIES_EXHAUSTED}
    assert h.announced("g") == ["b0", "b1", "b3", "b4"]
    # b3 and b4 were stored while b2 was retried, each once.
    assert [len(h.store.versions(f"b{n}.json")) for n in (3, 4)] == [1, 1]


def test_a_redelivery_after_a_partial_success_stores_nothing_twice(uploads):
    h = Harness(uploads=uploads)
    for n in range(4):
        h.input.put(book(f"b{n}"), group="g")
    h.store.fail("PutObject", "ServiceUnavailable", when=lambda key: key == "b1.json")

    def stop(seconds: float) -> bool:
        return False  # the listener is stopped while b1 waits for its retry

    h.retry._wait = stop
    h.run(receives=1)
    assert h.announced("g") == ["b0"], "nothing after b1 went ahead of it"
    assert [len(h.store.versions(f"b{n}.json")) for n in range(4)] == [1, 0, 1, 1]
    # The next listener: b1 is stored, b2 and b3 are found, not stored again.
    h.store.heal()
    h.retry._wait = h.clock.wait
    h.run()
    assert h.announced("g") == ["b0", "b1", "b2", "b3"]
    assert [len(h.store.versions(f"b{n}.json")) for n in range(4)] == [1, 1, 1, 1]


def test_strict_mode_announces_each_book_alone_before_storing_the_next():
    h = Harness(group_mode="strict")
    for n in range(3):
        h.input.put(book(f"b{n}"), group="g")
    h.run()
    calls = [op for _, op in h.journal if op in ("PutObject", "SendMessageBatch")]
    assert calls == ["PutObject", "SendMessageBatch"] * 3, "interleaved, one by one"
    # An entry SQS refuses on its own can never let a later one overtake it.
    assert [len(subject) for op, subject in h.output.calls if op == "SendMessageBatch"] == [1, 1, 1]


@pytest.mark.parametrize(
    ("room", "kept"),
    [
        (0, []),
        (40, ["reason"]),
        (200, ["reason", "source_message_id", "source_queue", "detail"]),
    ],
)
def test_bad_input_at_sqs_s_size_limit_is_dead_lettered_with_what_fits_and_its_group_goes_on(
    room, kept
):
    h = Harness()
    padding = "x" * (MAX_MESSAGE_BYTES - room - len('{"id": "big", "title": ""}'))
    big = f'{{"id": "big", "title": "{padding}"}}'  # no genre
    assert len(big) == MAX_MESSAGE_BYTES - room
    h.input.put(big, group="g")
    h.input.put(book("after"), group="g")
    h.run()
    [letter] = h.dead_letters.letters()
    assert letter.body == big
    assert list(letter.attributes or {}) == kept
    assert h.announced("g") == ["after"]


@given(
    body_bytes=st.integers(min_value=0, max_value=MAX_MESSAGE_BYTES),
    reason=st.sampled_from([books.INVALID_JSON, books.UNKNOWN_GENRE, RETRIES_EXHAUSTED]),
    detail=st.text(max_size=2000),
    located=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_a_fitted_dead_letter_never_exceeds_sqs_s_limit_and_keeps_its_body(
    body_bytes, reason, detail, located
):
    attributes = {"reason": reason, "source_message_id": "m" * 36, "source_queue": "In.fifo"}
    if located:
        attributes.update(bucket="scifi", key="k" * 1024, version_id="v" * 32)
    letter = Outgoing("m", "x" * body_bytes, "g", "m", attributes)
    fitted = fit_to_size(letter, detail)
    assert fitted.body == letter.body
    assert fitted.size() <= MAX_MESSAGE_BYTES
    names = [n for n in fitted.attributes or {} if n != "detail"]
    assert names == list(attributes)[: len(names)], "the most telling attributes first"
    if body_bytes < MAX_MESSAGE_BYTES - 2000:
        assert names == list(attributes)
