"""The listener under concurrency and failure, on the real LocalStack (issue: throughput)."""

from __future__ import annotations

import json
import threading
import time

from bookd.aws import Message, Outgoing, Queue, make_client
from bookd.listener import RETRIES_EXHAUSTED, BookListener
from tests.support import wait_for

BOOK = {"author": "A. Writer", "year": "2001", "summary": "...", "genre": "romance"}


def book(book_id: str, **changes: str) -> dict:
    return {**BOOK, "id": book_id, "title": book_id, **changes}


def by_group(messages: list[dict]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for m in messages:
        groups.setdefault(m["Attributes"]["MessageGroupId"], []).append(json.loads(m["Body"])["id"])
    return groups


def test_two_listeners_on_the_same_queues_keep_order_within_every_group(
    settings, queues, start_listener
):
    expected: dict[str, list[str]] = {f"g{g:02d}": [] for g in range(20)}
    for n in range(8):
        for group, ids in expected.items():  # interleaved across 20 groups
            ids.append(f"{group}-{n}")
            queues.send(book(f"{group}-{n}"), group=group)
    start_listener()
    start_listener()  # a second container's worth, on the same queues
    outputs = queues.collect(settings.output_queue, 160, timeout=60)
    assert by_group(outputs) == expected


def test_a_failure_in_the_middle_of_a_group_holds_back_that_group_only(
    settings, queues, start_listener
):
    # "fantasy" maps to a bucket that does not exist: a real S3 failure on every try.
    settings = settings.replace(
        buckets={**settings.buckets, "fantasy": f"{settings.buckets['scifi']}-missing"},
        max_receive_count=3,
        visibility_timeout=5,
    )
    queues.send(book("a1"), group="A")
    queues.send(book("a2-fails", genre="fantasy"), group="A")
    queues.send(book("a3"), group="A")
    for n in range(1, 4):
        queues.send(book(f"b{n}"), group="B")
    start_listener(settings)

    first = by_group(queues.collect(settings.output_queue, 4, timeout=20))
    assert first == {"A": ["a1"], "B": ["b1", "b2", "b3"]}, "B goes on, A waits behind a2"

    # After its last allowed delivery the failing book is dead-lettered with a reason,
    # and only then does a3 go ahead.
    [letter] = queues.dead_letters(1, timeout=60)
    assert json.loads(letter["Body"])["id"] == "a2-fails"
    assert letter["MessageAttributes"]["reason"]["StringValue"] == RETRIES_EXHAUSTED
    assert "NoSuchBucket" in letter["MessageAttributes"]["detail"]["StringValue"]
    assert by_group(queues.collect(settings.output_queue, 1, timeout=30)) == {"A": ["a3"]}


class SlowListener(BookListener):
    """Takes longer than the visibility timeout over one book, counting its attempts."""

    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def handle_message(self, message: Message):
        book_id = json.loads(message.body)["id"]
        with self.lock:
            self.attempts[book_id] = self.attempts.get(book_id, 0) + 1
        if book_id == "slow":
            time.sleep(self.settings.visibility_timeout * 2.5)
        return super().handle_message(message)


def test_a_job_slower_than_the_visibility_timeout_is_processed_once(
    settings, queues, start_listener
):
    settings = settings.replace(visibility_timeout=5)
    SlowListener.attempts = {}
    queues.send(book("slow"), group="slow")
    start_listener(settings, cls=SlowListener)
    start_listener(settings, cls=SlowListener)  # would take it if the heartbeat failed
    outputs = queues.outputs(1, timeout=30)
    assert [o["id"] for o in outputs] == ["slow"]
    assert queues.outputs(1, timeout=settings.visibility_timeout + 2) == []
    assert SlowListener.attempts == {"slow": 1}
    s3 = make_client(settings, "s3")
    versions = s3.list_object_versions(Bucket=settings.buckets["romance"], Prefix="slow.json")
    assert len(versions["Versions"]) == 1


def test_a_batch_send_with_one_bad_entry_sends_the_rest_and_reports_that_one(settings, queues):
    queue = Queue(make_client(settings, "sqs"), settings.output_queue)
    messages = [
        Outgoing(ref=f"m{n}", body=f"body {n}", group_id="g", dedup_id=f"d{n}") for n in range(5)
    ]
    # A group id over SQS's 128-character limit fails that entry alone.
    messages[2] = Outgoing(ref="bad", body="body bad", group_id="g" * 200, dedup_id="dbad")
    assert queue.send_batch(messages) == {"bad"}
    got = queues.collect(settings.output_queue, 4, timeout=10)
    assert [m["Body"] for m in got] == ["body 0", "body 1", "body 3", "body 4"]


def test_a_batch_delete_with_one_stale_handle_deletes_the_rest_and_reports_that_one(
    settings, queues
):
    for n in range(4):
        queues.send(book(f"d{n}"), group="del")
    queue = Queue(make_client(settings, "sqs"), settings.input_queue)
    received = queue.receive(wait_time=2)
    assert len(received) == 4
    stale = Message(**{**received[1].__dict__, "receipt_handle": "not-a-real-handle"})
    assert queue.delete_batch([received[0], stale, received[2], received[3]]) == {stale.message_id}
    queue.change_visibility([received[1]], 0)
    assert wait_for(lambda: queues.depth(settings.input_queue) == 1, timeout=10)
