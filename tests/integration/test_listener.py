"""The listener under concurrency and failure, on the real LocalStack (faults by harness.proxy)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from bookd.aws.clients import make_client
from bookd.aws.provision import provision
from bookd.aws.sqs import Queue
from bookd.core.ports import MAX_MESSAGE_BYTES, Message, Outgoing
from bookd.core.reasons import RETRIES_EXHAUSTED
from bookd.listener import BookListener
from bookd.supervision.lock import StateDir
from bookd.supervision.status import Supervised
from harness.proxy import Fault
from harness.waiting import wait_for

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
    settings, queues, proxy, start_listener
):
    # S3 answers everything but the puts of one book, which it fails with a server error.
    proxy.inject(
        Fault(
            "error",
            service="s3",
            operation="PutObject",
            match=b"a2-fails",
            status=500,
            code="InternalError",
        )
    )
    settings = settings.replace(endpoint_url=proxy.url, max_attempts=3, retry_for=10)
    queues.send(book("a1"), group="A")
    queues.send(book("a2-fails"), group="A")
    queues.send(book("a3"), group="A")
    for n in range(1, 4):
        queues.send(book(f"b{n}"), group="B")
    start_listener(settings)

    first = by_group(queues.collect(settings.output_queue, 4, timeout=20))
    assert first == {"A": ["a1"], "B": ["b1", "b2", "b3"]}, "B goes on, A waits behind a2"

    # Once its own tries are used up the failing book is dead-lettered with a reason,
    # and only then does a3 go ahead.
    [letter] = queues.dead_letters(1, timeout=60)
    assert json.loads(letter["Body"])["id"] == "a2-fails"
    assert letter["MessageAttributes"]["reason"]["StringValue"] == RETRIES_EXHAUSTED
    assert "InternalError" in letter["MessageAttributes"]["detail"]["StringValue"]
    assert by_group(queues.collect(settings.output_queue, 1, timeout=30)) == {"A": ["a3"]}


def test_puts_failing_for_every_book_while_s3_answers_probes_dead_letter_nothing(
    settings, queues, proxy, start_listener
):
    # HeadBucket (the probe) answers, but every PutObject gets a server error, for
    # longer than the books' budget: a partial outage of S3, not the books' fault.
    proxy.inject(
        Fault("error", service="s3", operation="PutObject", status=500, code="InternalError")
    )
    settings = settings.replace(endpoint_url=proxy.url, max_attempts=2, retry_for=1)
    for n in range(6):
        queues.send(book(f"p{n}"), group=f"g{n}")
    listener = start_listener(settings)

    def down():
        return listener.dependencies.snapshot()["s3"].get("state") == "down"

    assert wait_for(down, timeout=20), listener.dependencies.snapshot()
    time.sleep(3)  # well past each book's budget
    proxy.heal()
    outputs = queues.outputs(6, timeout=40)
    assert sorted(o["id"] for o in outputs) == [f"p{n}" for n in range(6)]
    assert queues.dead_letters(1, timeout=2) == [], "no valid book dead-lettered"


def test_a_missing_bucket_pauses_the_listener_until_it_exists_and_dead_letters_nothing(
    settings, queues, start_listener
):
    s3 = make_client(settings, "s3")
    bucket = settings.buckets["romance"]
    listener = start_listener(settings.replace(max_attempts=1, retry_for=0))
    assert wait_for(lambda: listener.connected, timeout=10)
    s3.delete_bucket(Bucket=bucket)  # as if someone removed it while bookd ran
    queues.send(book("waits"), group="A")

    def paused():
        return listener.dependencies.snapshot()["s3"].get("state") == "misconfigured"

    assert wait_for(paused, timeout=20), listener.dependencies.snapshot()
    # The cause names the bucket: S3's own text ("The specified bucket does not exist") does not.
    cause = listener.dependencies.snapshot()["s3"]["cause"]
    assert cause == f"PutObject on bucket {bucket}: NoSuchBucket"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert [o["id"] for o in queues.outputs(1, timeout=40)] == ["waits"]
    assert queues.dead_letters(1, timeout=2) == []
    assert wait_for(lambda: not listener.dependencies.blocked(), timeout=5)


def test_a_missing_output_queue_is_named_and_pauses_the_listener_until_it_exists(
    settings, queues, start_listener
):
    sqs = make_client(settings, "sqs")
    listener = start_listener(settings.replace(max_attempts=1, retry_for=0))
    assert wait_for(lambda: listener.connected, timeout=10)
    sqs.delete_queue(QueueUrl=queues.urls[settings.output_queue])  # removed while bookd ran
    queues.send(book("waits"), group="A")

    def paused():
        return listener.dependencies.snapshot()["sqs"].get("state") == "misconfigured"

    assert wait_for(paused, timeout=20), listener.dependencies.snapshot()
    cause = listener.dependencies.snapshot()["sqs"]["cause"]
    assert f"on queue {settings.output_queue}: " in cause, cause
    provision(settings)
    assert [o["id"] for o in queues.outputs(1, timeout=40)] == ["waits"]
    assert queues.dead_letters(1, timeout=2) == []


def test_a_job_slower_than_the_visibility_timeout_is_processed_once(
    settings, queues, proxy, start_listener
):
    # S3 takes 2.5 visibility timeouts over this one book: the heartbeat must keep it.
    settings = settings.replace(endpoint_url=proxy.url, visibility_timeout=5, wait_time=5)
    proxy.inject(Fault("stall", service="s3", operation="PutObject", match=b"slow", seconds=12.5))
    queues.send(book("slow"), group="slow")
    start_listener(settings)
    start_listener(settings)  # would take it if the heartbeat failed
    outputs = queues.outputs(1, timeout=40)
    assert [o["id"] for o in outputs] == ["slow"]
    assert queues.outputs(1, timeout=settings.visibility_timeout + 2) == []
    s3 = make_client(settings, "s3")
    versions = s3.list_object_versions(Bucket=settings.buckets["romance"], Prefix="slow.json")
    assert len(versions["Versions"]) == 1


def test_the_listener_s_visibility_timeout_holds_whatever_the_queue_s_attribute_says(
    settings, queues, proxy, start_listener
):
    # The queue was provisioned with a 5 s visibility; the listener is told 30 s.
    listener_settings = settings.replace(endpoint_url=proxy.url, visibility_timeout=30, wait_time=2)
    proxy.inject(Fault("stall", service="s3", operation="PutObject", match=b"eight", seconds=8))
    sqs = make_client(settings, "sqs")
    sqs.set_queue_attributes(
        QueueUrl=queues.urls[settings.input_queue], Attributes={"VisibilityTimeout": "5"}
    )
    queues.send(book("eight"), group="g")
    start_listener(listener_settings)
    start_listener(listener_settings)
    assert [o["id"] for o in queues.outputs(1, timeout=40)] == ["eight"]
    assert queues.outputs(1, timeout=8) == [], "announced once"
    s3 = make_client(settings, "s3")
    versions = s3.list_object_versions(Bucket=settings.buckets["romance"], Prefix="eight.json")
    assert len(versions["Versions"]) == 1, "stored once: nobody else got it at 5 s"


def test_a_failing_housekeeping_step_never_wedges_the_listener(settings, queues):
    ticks: list[float] = []

    def flaky_tick(listener: BookListener) -> None:
        ticks.append(time.monotonic())
        if len(ticks) <= 3:
            raise OSError("status file cannot be written")  # say the disk was full

    listener = BookListener(settings, on_tick=flaky_tick)
    thread = threading.Thread(target=listener.listen, daemon=True)
    thread.start()
    queues.send(book("still-works"), group="g")
    assert [o["id"] for o in queues.outputs(1, timeout=20)] == ["still-works"]
    # Housekeeping goes on after its failures: the status file, the owner check and the
    # operator's stop flag are all in it.
    assert wait_for(lambda: len(ticks) >= 6, timeout=15), ticks
    listener.stop()
    thread.join(timeout=15)
    assert not thread.is_alive(), "stop() ended the listener"


def test_a_stop_requested_while_the_listener_starts_is_honoured(settings, tmp_path):
    state = StateDir(tmp_path / "state")
    state.path.mkdir()
    state.disabled.touch()  # DELETE / came before the listener had written anything
    supervised = Supervised(settings.replace(state_dir=state.path), owner_pid=None)
    listener = BookListener(settings, on_tick=supervised)
    thread = threading.Thread(target=listener.listen, daemon=True)
    began = time.monotonic()
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the listener stopped by itself"
    assert time.monotonic() - began < 10


def test_a_batch_send_with_one_bad_entry_sends_the_rest_and_reports_that_one(settings, queues):
    queue = Queue(make_client(settings, "sqs"), settings.output_queue)
    messages = [
        Outgoing(ref=f"m{n}", body=f"body {n}", group_id="g", dedup_id=f"d{n}") for n in range(5)
    ]
    # A group id over SQS's 128-character limit fails that entry alone.
    messages[2] = Outgoing(ref="bad", body="body bad", group_id="g" * 200, dedup_id="dbad")
    assert set(queue.send(messages)) == {"bad"}
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
    assert set(queue.delete([received[0], stale, received[2], received[3]])) == {stale.message_id}
    queue.change_visibility([received[1]], 0)
    assert wait_for(lambda: queues.depth(settings.input_queue) == 1, timeout=10)


@pytest.mark.parametrize("room", [0, 60, 200], ids=["no-room", "room-for-a-reason", "room-for-all"])
def test_bad_input_at_sqs_s_size_limit_is_dead_lettered_at_once_and_its_group_goes_on(
    settings, queues, start_listener, room
):
    # A body SQS takes (1 MiB), but one the dead letter's attributes no longer fit beside.
    padding = MAX_MESSAGE_BYTES - room - len(json.dumps(book("big", genre="poetry", summary="")))
    big = json.dumps(book("big", genre="poetry", summary="x" * padding))
    assert len(big.encode()) == MAX_MESSAGE_BYTES - room
    big_id = queues.send(big, group="g")
    queues.send(book("after"), group="g")
    start_listener()
    [output] = queues.outputs(1, timeout=20)
    assert output["id"] == "after", "the book after it in its group went on"
    [letter] = queues.dead_letters(1, timeout=5)
    assert letter["Body"] == big, "the body is kept as sent"
    attributes = {k: v["StringValue"] for k, v in letter.get("MessageAttributes", {}).items()}
    if room >= 60:
        assert attributes["reason"] == "unknown-genre"
    if room >= 200:
        assert attributes["source_message_id"] == big_id
        assert attributes["source_queue"] == settings.input_queue


def metric_samples() -> dict[tuple[str, str], float]:
    """This process's samples of bookd's batch and receive metrics, by (name, operation)."""
    from prometheus_client import REGISTRY

    wanted = ("bookd_empty_receives_total", "bookd_batch_messages_sum")
    return {
        (s.name, s.labels.get("operation", "")): s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name in wanted
    }


def test_the_listener_counts_its_empty_receives_and_what_each_batch_call_carried(
    settings, queues, start_listener
):
    before = metric_samples()
    for n in range(4):
        queues.send(book(f"cost{n}"), group="A")
    start_listener()
    assert len(queues.outputs(4, timeout=20)) == 4
    time.sleep(2.5)  # long polls of a second that find nothing
    after = metric_samples()

    def grew(name: str, operation: str = "") -> float:
        return after[name, operation] - before.get((name, operation), 0.0)

    assert grew("bookd_empty_receives_total") >= 2
    assert grew("bookd_batch_messages_sum", "SendMessageBatch") == 4, "four announcements"
    assert grew("bookd_batch_messages_sum", "DeleteMessageBatch") == 4, "four deletes"
    assert grew("bookd_batch_messages_sum", "ReceiveMessage") >= 4, "four books received"
