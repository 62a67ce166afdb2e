"""Books sent as S3 pointers, through the rules offline (memory queues and store, fake clock)."""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from bookd.core.books import MISSING_FIELD, NOT_AN_OBJECT
from bookd.core.ports import MESSAGE_ID_METADATA
from bookd.core.reasons import (
    INVALID_JSON,
    INVALID_POINTER,
    PAYLOAD_MISSING,
    PAYLOAD_TOO_LARGE,
    POINTER_REFUSED,
    RETRIES_EXHAUSTED,
)
from bookd.rules.settling import DELETE_TRIES
from tests.unit.memory import Harness
from tests.unit.test_processing import book, reasons

PAYLOADS = "payloads"
CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"


def pointer(key: str, bucket: str = PAYLOADS, cls: str = CLASS) -> str:
    return json.dumps([cls, {"s3BucketName": bucket, "s3Key": key}])


def harness(**settings: object) -> Harness:
    """Pointers to the bucket PAYLOADS are allowed (unless the test says otherwise)."""
    return Harness(**{"payload_buckets": (PAYLOADS,), **settings})


def send_by_pointer(h: Harness, book_id: str, *, group: str = "g") -> bytes:
    """A producer stores the book as the payload ``<book_id>-payload`` and sends a pointer;
    returns the payload's bytes (spaced and non-ASCII, so a re-encoding would show)."""
    payload = json.dumps(
        {"id": book_id, "title": book_id, "genre": "scifi", "summary": "Łódź " * 3},
        ensure_ascii=False,
        indent=1,
    ).encode()
    h.store.place(PAYLOADS, f"{book_id}-payload", payload)
    h.input.put(pointer(f"{book_id}-payload"), group=group)
    return payload


def letter(h: Harness) -> dict[str, str]:
    [only] = h.dead_letters.letters()
    return {"body": only.body, **(only.attributes or {})}


def fail_its_deletes(h: Harness) -> None:
    """SQS fails the last message's delete entry on its own, every try: it is redelivered."""
    h.input.entry_faults[h.input.messages[-1].message_id] = ("InternalError", DELETE_TRIES)


def payload_left(h: Harness, book_id: str) -> bool:
    return (PAYLOADS, f"{book_id}-payload") in h.store.objects


# --- reading -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [CLASS, "com.amazon.sqs.javamessaging.MessageS3Pointer"])
def test_a_pointer_s_payload_is_stored_byte_for_byte_announced_and_its_message_deleted(cls):
    h = harness()
    payload = json.dumps({"id": "big", "title": "Big Book", "genre": "scifi"}).encode()
    h.store.place(PAYLOADS, "uuid-1", payload)
    message_id = h.input.put(pointer("uuid-1", cls=cls), group="g")
    h.run()
    [version] = h.store.versions("Big Book.json")
    assert version.body == payload
    assert version.metadata[MESSAGE_ID_METADATA] == message_id
    [announced] = [json.loads(b) for b in h.output.bodies()]
    assert (announced["id"], announced["file"]) == ("big", "Big Book.json")
    assert announced["message_id"] == message_id
    assert h.input.bodies() == [] and reasons(h) == {}
    assert (PAYLOADS, "uuid-1") in h.store.objects, "BOOKD_PAYLOAD_DELETE is off by default"


def test_the_stored_book_is_the_payload_exactly_not_a_re_encoding():
    h = harness()
    payload = send_by_pointer(h, "b1")
    h.run()
    [version] = h.store.versions("b1.json")
    assert version.body == payload
    assert b"\n" in payload and "Ł".encode() in payload


def test_by_default_no_payload_bucket_is_allowed_and_a_pointer_is_refused_unread():
    h = Harness()
    send_by_pointer(h, "b1")
    h.input.put(book("after"), group="g")
    h.run()
    assert letter(h)["reason"] == POINTER_REFUSED
    assert "BOOKD_PAYLOAD_BUCKETS" in letter(h)["detail"]
    assert letter(h)["body"] == pointer("b1-payload"), "the dead letter keeps the pointer"
    assert h.store.count("GetObject") == 0, "not one byte read"
    assert h.announced() == ["after"], "its group goes on"


def test_a_pointer_to_a_bucket_not_allowed_is_refused_unread():
    h = harness()
    h.store.place("someone-elses", "secret", b'{"id": "x", "title": "x", "genre": "scifi"}')
    h.input.put(pointer("secret", bucket="someone-elses"))
    h.run()
    assert letter(h)["reason"] == POINTER_REFUSED
    assert h.store.count("GetObject") == 0
    assert h.store.versions("x.json") == []


@pytest.mark.parametrize(
    "body",
    [
        json.dumps([CLASS, {"s3BucketName": PAYLOADS}]),
        json.dumps([CLASS, {"s3BucketName": PAYLOADS, "s3Key": ""}]),
        json.dumps([CLASS, {"s3BucketName": PAYLOADS, "s3Key": "k"}, "more"]),
    ],
)
def test_a_malformed_pointer_is_bad_input_and_its_group_goes_on(body):
    h = harness()
    h.input.put(body, group="g")
    h.input.put(book("after"), group="g")
    h.run()
    assert letter(h)["reason"] == INVALID_POINTER
    assert letter(h)["body"] == body
    assert h.announced() == ["after"]
    assert h.store.count("GetObject") == 0


def test_a_missing_payload_is_dead_lettered_with_its_location():
    h = harness()
    h.input.put(pointer("gone"), group="g")
    h.input.put(book("after"), group="g")
    h.run()
    assert letter(h)["reason"] == PAYLOAD_MISSING
    assert "s3://payloads/gone" in letter(h)["detail"]
    assert h.announced() == ["after"]


@pytest.mark.parametrize(("extra", "stored"), [(0, True), (1, False)])
def test_a_payload_over_the_limit_is_dead_lettered_and_one_at_the_limit_is_stored(extra, stored):
    payload = json.dumps({"id": "b", "title": "b", "genre": "scifi"}).encode()
    h = harness(payload_max_bytes=len(payload) - extra, payload_delete=True)
    h.store.place(PAYLOADS, "p", payload)
    h.input.put(pointer("p"))
    h.run()
    if stored:
        assert h.announced() == ["b"] and reasons(h) == {}
        return
    assert letter(h)["reason"] == PAYLOAD_TOO_LARGE
    assert f"{len(payload)} bytes" in letter(h)["detail"]
    assert h.store.versions("b.json") == []
    assert (PAYLOADS, "p") in h.store.objects, "a dead letter's payload is kept, for a redrive"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"id": "b", "title": "\xff", "genre": "scifi"}', INVALID_JSON),
        (b"\xef\xbb\xbf{}", INVALID_JSON),
        (b'{"id": "b", "genre": "scifi"}', MISSING_FIELD),
        (pointer("p").encode(), NOT_AN_OBJECT),  # a pointer to a pointer is not a book
    ],
)
def test_a_payload_is_judged_by_the_book_rules_and_its_pointer_dead_lettered(payload, reason):
    h = harness(payload_delete=True)
    h.store.place(PAYLOADS, "p", payload)
    h.input.put(pointer("p"))
    h.run()
    assert letter(h)["reason"] == reason
    assert letter(h)["body"] == pointer("p")
    assert (PAYLOADS, "p") in h.store.objects


# --- when S3 fails ------------------------------------------------------------------


def test_an_outage_of_the_payload_bucket_dead_letters_nothing_and_costs_no_budget():
    # Any failure that counted against the book would use its budget up at once.
    h = harness(max_attempts=1, retry_for=0)
    send_by_pointer(h, "b1")
    h.store.fail("GetObject")
    h.store.fail("probe", when=lambda bucket: bucket == PAYLOADS)
    seen = []
    h.clock.at(60, lambda: seen.append(h.dependencies.snapshot()["s3"]))
    h.clock.at(3600, h.store.heal)
    h.run()
    assert reasons(h) == {}
    assert h.announced() == ["b1"]
    assert seen[0]["state"] == "down" and seen[0]["cause"] == "GetObject: ServiceUnavailable"
    assert all(s.receive_count == 1 for s in h.input.messages), "held, not handed back"
    assert h.dependencies.snapshot()["s3"] == {"state": "ok"}


@pytest.mark.parametrize("code", ["AccessDenied", "NoSuchBucket", "SlowDown"])
def test_a_payload_bucket_denied_missing_or_busy_holds_the_book_until_it_is_fixed(code):
    h = harness(max_attempts=1, retry_for=0)
    send_by_pointer(h, "b1")
    h.store.fail("GetObject", code)
    h.clock.at(1800, h.store.heal)
    h.run()
    assert reasons(h) == {}
    assert h.announced() == ["b1"]


def test_a_payload_read_that_fails_alone_while_s3_answers_uses_the_book_s_budget():
    h = harness(max_attempts=3, retry_for=20)
    send_by_pointer(h, "b1")
    h.input.put(book("after"), group="g")
    h.store.fail("GetObject", "InternalError")
    h.run()
    assert reasons(h) == {pointer("b1-payload"): RETRIES_EXHAUSTED}
    assert h.store.count("GetObject") >= 3
    assert h.announced() == ["after"]


# --- deleting the payload, and redeliveries -----------------------------------------


@pytest.mark.parametrize("delete", [False, True])
def test_the_payload_is_deleted_only_if_asked_and_only_after_its_message(delete):
    h = harness(payload_delete=delete)
    send_by_pointer(h, "b1")
    h.run()
    assert h.announced() == ["b1"]
    assert payload_left(h, "b1") is not delete
    calls = [op for _, op in h.journal if op in ("DeleteMessageBatch", "DeleteObject")]
    assert calls == ["DeleteMessageBatch", "DeleteObject"] if delete else ["DeleteMessageBatch"]


def test_a_payload_that_cannot_be_deleted_is_counted_and_the_book_is_done_once():
    from bookd.telemetry import metrics

    h = harness(payload_delete=True)
    send_by_pointer(h, "b1")
    h.store.fail("DeleteObject", "AccessDenied")
    before = metrics.PAYLOADS_NOT_DELETED._value.get()
    h.run()
    assert metrics.PAYLOADS_NOT_DELETED._value.get() - before == 1
    assert h.announced() == ["b1"] and len(h.store.versions("b1.json")) == 1
    assert h.input.bodies() == [] and reasons(h) == {}
    assert payload_left(h, "b1")
    assert not h.dependencies.blocked(), "receiving never paused for it"


def test_a_message_sqs_did_not_delete_keeps_its_payload_for_its_redelivery():
    h = harness(payload_delete=True)
    send_by_pointer(h, "b1")
    fail_its_deletes(h)
    h.run(receives=1)
    assert payload_left(h, "b1"), "its message is still there: so is its payload"
    # SQS redelivers it once its visibility ends; this listener remembers announcing it.
    h.clock.advance(h.settings.visibility_timeout)
    h.run()
    assert h.store.count("GetObject") == 1, "the payload was not read again"
    assert h.input.bodies() == []
    assert not payload_left(h, "b1"), "deleted with its message"
    assert len(h.store.versions("b1.json")) == 1 and h.announced() == ["b1"]
    assert reasons(h) == {}


def test_a_redelivery_whose_payload_is_gone_after_its_book_was_announced_ends_well():
    # Stored and announced, then the message's delete failed; meanwhile the payload was
    # deleted (by a producer-side cleanup or an extended-client receiver that deletes
    # payloads first). This listener announced it: only the delete is left.
    h = harness(payload_delete=True)
    send_by_pointer(h, "b1")
    fail_its_deletes(h)
    h.run(receives=1)
    h.store.objects.pop((PAYLOADS, "b1-payload"))
    h.clock.advance(h.settings.visibility_timeout)
    h.run()
    assert reasons(h) == {}, "not dead-lettered for a payload it no longer needs"
    assert h.input.bodies() == []
    assert len(h.store.versions("b1.json")) == 1 and h.announced() == ["b1"]


def test_a_new_listener_given_a_redelivery_finds_the_stored_copy_before_storing_again():
    h = harness(payload_delete=True)
    send_by_pointer(h, "b1")
    fail_its_deletes(h)
    h.run(receives=1)
    h.restart()  # the listener that announced it is gone, and its memory with it
    h.clock.advance(h.settings.visibility_timeout)
    h.run()
    assert len(h.store.versions("b1.json")) == 1, "found by its message id, not stored again"
    assert h.announced() == ["b1"], "announced once: SQS drops the repeated deduplication id"
    assert h.input.bodies() == [] and reasons(h) == {}
    assert not payload_left(h, "b1"), "deleted after the message, by the new listener"


def test_a_message_handed_on_to_another_holder_keeps_its_payload():
    h = harness(payload_delete=True)
    send_by_pointer(h, "b1")
    h.input.fail("DeleteMessageBatch", "ReceiptHandleIsInvalid", times=1)
    h.run(receives=1)
    assert payload_left(h, "b1"), "whoever holds it now needs it to find the book"


# --- memory ---------------------------------------------------------------------------


def test_a_group_holds_one_payload_at_a_time_and_keeps_its_order():
    with ThreadPoolExecutor(8) as uploads:
        h = harness(uploads=uploads)
        h.input.put(book("plain0"), group="g")
        for n in range(1, 4):
            send_by_pointer(h, f"big{n}", group="g")
            h.input.put(book(f"plain{n}"), group="g")
        h.run()
    # Between two payload reads, the book of the first was put (and its payload dropped).
    reads_and_puts = [op for _, op in h.journal if op in ("GetObject", "PutObject")]
    gets = [n for n, op in enumerate(reads_and_puts) if op == "GetObject"]
    assert all(reads_and_puts[a:b].count("PutObject") >= 1 for a, b in itertools.pairwise(gets))
    assert h.announced("g") == ["plain0", "big1", "plain1", "big2", "plain2", "big3", "plain3"]
    assert reasons(h) == {}
