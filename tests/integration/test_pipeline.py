"""The processing contract, end to end through the listener, on the real LocalStack."""

import json
import time

import pytest

from bookd.aws.clients import make_client
from bookd.core import books
from bookd.core.ports import MESSAGE_ID_METADATA
from harness.waiting import wait_for

BOOK = {
    "id": "12345",
    "title": "LoremIpsum",
    "author": "John Doe",
    "year": "1960",
    "genre": "romance",
    "summary": "Lorem ipsum ...",
}


def stored(settings, bucket, key):
    s3 = make_client(settings, "s3")
    return s3.get_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize(
    ("genre", "title", "key"),
    [("romance", "LoremIpsum", "LoremIpsum.json"), ("SciFi", "Dune Messiah", "Dune Messiah.json")],
)
def test_a_valid_book_lands_in_its_bucket_and_is_announced_once(
    settings, queues, start_listener, genre, title, key
):
    body = json.dumps({**BOOK, "genre": genre, "title": title, "isbn": "kept"})
    message_id = queues.send(body)
    start_listener()

    outputs = queues.outputs(1)
    bucket = settings.buckets[genre.lower()]
    assert len(outputs) == 1
    assert outputs[0]["id"] == "12345"
    assert (outputs[0]["file"], outputs[0]["bucket"]) == (key, bucket)
    assert outputs[0]["message_id"] == message_id
    obj = stored(settings, bucket, key)
    assert obj["Body"].read().decode() == body, "the content must be the JSON as received"
    assert obj["ContentType"] == "application/json"
    assert obj["VersionId"] == outputs[0]["version_id"]
    assert queues.outputs(1, timeout=2) == [], "exactly one announcement"
    assert wait_for(lambda: queues.depth(settings.input_queue) == 0, timeout=10)


BAD_INPUTS = [
    ("not json at all", books.INVALID_JSON),
    ('["a", "list"]', books.NOT_AN_OBJECT),
    (json.dumps({k: v for k, v in BOOK.items() if k != "title"}), books.MISSING_FIELD),
    (json.dumps({**BOOK, "id": ""}), books.EMPTY_FIELD),
    (json.dumps({**BOOK, "id": 12345}), books.WRONG_TYPE),
    (json.dumps({**BOOK, "genre": "horror"}), books.UNKNOWN_GENRE),
    (json.dumps({**BOOK, "title": "x" * 1100}), books.UNSAFE_TITLE),
]


def test_every_kind_of_bad_input_is_dead_lettered_with_its_reason_and_the_listener_goes_on(
    settings, queues, start_listener
):
    listener = start_listener()
    sent = {}
    for index, (body, reason) in enumerate(BAD_INPUTS):
        # Each in its own group, then a valid book after it in the same group.
        group = f"bad-{index}"
        sent[queues.send(body, group=group)] = (body, reason)
        queues.send({**BOOK, "title": f"after-{index}"}, group=group)

    letters = queues.dead_letters(len(BAD_INPUTS))
    assert len(letters) == len(BAD_INPUTS)
    for letter in letters:
        attrs = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
        body, reason = sent[attrs["source_message_id"]]
        assert letter["Body"] == body, "the dead letter keeps the body unchanged"
        assert attrs["reason"] == reason
        assert attrs["detail"]
    outputs = queues.outputs(len(BAD_INPUTS))
    assert sorted(o["file"] for o in outputs) == sorted(
        f"after-{i}.json" for i in range(len(BAD_INPUTS))
    ), "the valid book after each bad one is still processed"
    assert wait_for(lambda: queues.depth(settings.input_queue) == 0, timeout=10)
    assert not listener.stopping


def test_a_title_with_a_slash_is_stored_by_the_key_rule_not_in_a_pseudo_folder(
    settings, queues, start_listener
):
    queues.send({**BOOK, "title": "AC/DC"})
    start_listener()
    [output] = queues.outputs(1)
    assert output["file"] == "AC%2FDC.json"
    assert stored(settings, output["bucket"], "AC%2FDC.json")["ContentLength"] > 0


def test_two_books_with_the_same_title_keep_both_versions(settings, queues, start_listener):
    queues.send({**BOOK, "id": "first"})
    queues.send({**BOOK, "id": "second"})
    start_listener()
    outputs = queues.outputs(2)
    assert [o["id"] for o in outputs] == ["first", "second"]
    s3 = make_client(settings, "s3")
    versions = s3.list_object_versions(Bucket=settings.buckets["romance"], Prefix="LoremIpsum.json")
    bodies = [
        json.loads(
            s3.get_object(
                Bucket=settings.buckets["romance"], Key="LoremIpsum.json", VersionId=v["VersionId"]
            )["Body"].read()
        )["id"]
        for v in versions["Versions"]
    ]
    assert sorted(bodies) == ["first", "second"]


def test_order_within_each_group_carries_through_to_the_output_queue(
    settings, queues, start_listener
):
    groups = [f"author-{g}" for g in range(5)]
    expected = {g: [] for g in groups}
    for n in range(12):
        for g in groups:  # interleaved sends across groups
            book_id = f"{g}-{n:02d}"
            expected[g].append(book_id)
            queues.send(
                {**BOOK, "id": book_id, "title": book_id, "genre": "scifi" if n % 2 else "romance"},
                group=g,
            )
    start_listener()
    messages = queues.collect(settings.output_queue, 60)
    seen = {g: [] for g in groups}
    for m in messages:
        seen[m["Attributes"]["MessageGroupId"]].append(json.loads(m["Body"])["id"])
    assert seen == expected


def test_a_redelivered_book_is_found_under_a_later_version_of_its_title_not_stored_again(
    settings, queues, start_listener
):
    # Given a delivery that stored its book and then died before announcing it,
    body = json.dumps({**BOOK, "id": "first", "title": "Shared"})
    message_id = queues.send(body)
    sqs = make_client(settings, "sqs")
    taken = sqs.receive_message(
        QueueUrl=queues.urls[settings.input_queue], VisibilityTimeout=2, WaitTimeSeconds=2
    )
    assert len(taken["Messages"]) == 1
    s3 = make_client(settings, "s3")
    bucket = settings.buckets["romance"]
    earlier = s3.put_object(
        Bucket=bucket, Key="Shared.json", Body=body, Metadata={MESSAGE_ID_METADATA: message_id}
    )["VersionId"]
    # and a later book of the same title stored on top of it since,
    s3.put_object(Bucket=bucket, Key="Shared.json", Body=b"{}", Metadata={MESSAGE_ID_METADATA: "x"})
    time.sleep(2.5)  # its visibility ends; SQS delivers it again
    start_listener()
    # when the redelivery is worked, it finds its own version and stores nothing.
    [output] = queues.outputs(1)
    assert (output["id"], output["version_id"]) == ("first", earlier)
    versions = s3.list_object_versions(Bucket=bucket, Prefix="Shared.json")["Versions"]
    assert len(versions) == 2, "not stored a third time"


def test_each_announcement_carries_its_input_s_group_and_sequence_number(
    settings, queues, start_listener
):
    # Given books of two groups, each taken by SQS with a sequence number,
    sent = {}
    for n in range(8):
        group = f"g{n % 2}"
        answer = queues.sqs.send_message(
            QueueUrl=queues.urls[settings.input_queue],
            MessageBody=json.dumps({**BOOK, "id": f"s{n}", "title": f"Seq {n % 3}"}),
            MessageGroupId=group,
            MessageDeduplicationId=f"seq-{n}",
        )
        sent[f"s{n}"] = (group, answer["SequenceNumber"])
    # when they are stored and announced,
    start_listener()
    outputs = queues.collect(settings.output_queue, 8, timeout=30)
    # then each announcement names its input's group and sequence number, and a
    # consumer sees each group's order in them.
    announced = [json.loads(m["Body"]) for m in outputs]
    assert {a["id"]: (a["group"], a["sequence_number"]) for a in announced} == sent
    for group in ("g0", "g1"):
        numbers = [int(a["sequence_number"]) for a in announced if a["group"] == group]
        assert numbers == sorted(numbers)
