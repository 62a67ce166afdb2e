"""Books sent as S3 pointers, on the real LocalStack: the listener, the S3 adapter, and AWS's
own producer (the SQS extended client, amazon-sqs-extended-client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from bookd.aws.clients import make_client
from bookd.aws.codes import AWS_ERRORS
from bookd.aws.s3 import BookStore
from bookd.core.ports import MESSAGE_ID_METADATA, Payload
from bookd.core.reasons import INVALID_POINTER, PAYLOAD_MISSING, PAYLOAD_TOO_LARGE, POINTER_REFUSED
from harness.proxy import Fault
from harness.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"


def pointer(bucket: str, key: str) -> str:
    return json.dumps([CLASS, {"s3BucketName": bucket, "s3Key": key}])


def large_book(book_id: str, *, size: int, genre: str = "scifi") -> bytes:
    """A book of ``size`` bytes and more (over SQS's 1 MiB), non-ASCII as UTF-8."""
    summary = ("Łódź, ça va: lorem ipsum. " * (size // 20))[:size]
    return json.dumps(
        {"id": book_id, "title": f"Title of {book_id}", "genre": genre, "summary": summary},
        ensure_ascii=False,
    ).encode()


def is_gone(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except AWS_ERRORS:
        return True
    return False


@pytest.fixture
def payload_bucket(settings):
    """The producer's bucket of payloads, allowed by the test's settings (emptied and
    removed with the test's buckets)."""
    [bucket] = settings.payload_buckets
    make_client(settings, "s3").create_bucket(Bucket=bucket)
    return bucket


def test_a_pointer_s_payload_is_stored_byte_for_byte_and_deleted_after_its_message(
    settings, queues, payload_bucket, start_listener
):
    s3 = make_client(settings, "s3")
    payload = large_book("big", size=2 * MiB)
    s3.put_object(Bucket=payload_bucket, Key="big-payload", Body=payload)
    message_id = queues.send(pointer(payload_bucket, "big-payload"), group="g")
    queues.send({"id": "after", "title": "after", "genre": "scifi"}, group="g")
    start_listener(settings.replace(payload_delete=True))
    outputs = queues.outputs(2, timeout=30)
    assert [o["id"] for o in outputs] == ["big", "after"], "in order, as any group's books"
    assert (outputs[0]["file"], outputs[0]["message_id"]) == ("Title of big.json", message_id)
    stored = s3.get_object(Bucket=settings.buckets["scifi"], Key="Title of big.json")
    assert stored["Body"].read() == payload
    assert stored["ContentType"] == "application/json"
    assert stored["Metadata"][MESSAGE_ID_METADATA] == message_id
    assert wait_for(lambda: is_gone(s3, payload_bucket, "big-payload"), timeout=10)
    assert queues.dead_letters(1, timeout=1) == []
    assert wait_for(lambda: queues.depth(settings.input_queue) == 0, timeout=10)


def test_pointers_that_cannot_be_read_are_dead_lettered_with_their_reasons_in_order(
    settings, queues, payload_bucket, start_listener
):
    s3 = make_client(settings, "s3")
    s3.put_object(Bucket=payload_bucket, Key="too-large", Body=large_book("x", size=MiB))
    # A bucket bookd can reach (its own) but that no pointer may name.
    s3.put_object(Bucket=settings.buckets["scifi"], Key="private", Body=b"{}")
    bodies = [
        pointer(settings.buckets["scifi"], "private"),
        pointer(payload_bucket, "no-such-key"),
        pointer(payload_bucket, "too-large"),
        json.dumps([CLASS, {"s3BucketName": payload_bucket}]),
    ]
    for body in bodies:
        queues.send(body, group="g")
    queues.send({"id": "after", "title": "after", "genre": "scifi"}, group="g")
    start_listener(settings.replace(payload_max_bytes=MiB, payload_delete=True))
    assert [o["id"] for o in queues.outputs(1, timeout=30)] == ["after"]
    letters = queues.dead_letters(4, timeout=10)
    assert [m["Body"] for m in letters] == bodies, "each pointer kept as sent, in order"
    assert [m["MessageAttributes"]["reason"]["StringValue"] for m in letters] == [
        POINTER_REFUSED,
        PAYLOAD_MISSING,
        PAYLOAD_TOO_LARGE,
        INVALID_POINTER,
    ]
    assert not is_gone(s3, payload_bucket, "too-large"), "a dead letter's payload is kept"


def test_a_payload_over_the_limit_is_refused_on_its_length_without_being_read(
    settings, payload_bucket
):
    s3 = make_client(settings, "s3")
    s3.put_object(Bucket=payload_bucket, Key="huge", Body=b"x" * (32 * MiB))
    s3.put_object(Bucket=payload_bucket, Key="small", Body=b"y" * MiB)
    store = BookStore(make_client(settings, "s3"))
    store.probe(payload_bucket)  # the connection is made before memory is traced
    tracemalloc.start()
    try:
        answer = store.payload(payload_bucket, "huge", max_bytes=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer == Payload(found=True, size=32 * MiB)
    assert peak < 4 * MiB, f"{peak} bytes allocated: the payload was read"
    assert store.payload(payload_bucket, "small", max_bytes=MiB) == Payload(
        found=True, size=MiB, content=b"y" * MiB
    )
    assert store.payload(payload_bucket, "nothing", max_bytes=MiB) == Payload(found=False)


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        (Fault("unavailable", service="s3"), "down"),
        (Fault("error", service="s3", status=403, code="AccessDenied"), "misconfigured"),
    ],
    ids=["outage", "access-denied"],
)
def test_a_payload_bucket_down_or_denied_holds_the_book_and_dead_letters_nothing(
    settings, queues, payload_bucket, proxy, start_listener, fault, state
):
    s3 = make_client(settings, "s3")
    s3.put_object(Bucket=payload_bucket, Key="held", Body=large_book("held", size=MiB))
    # Only the payload bucket fails (its name is in every request on it); the books'
    # buckets answer. Any failure charged to the book would dead-letter it at once.
    proxy.inject(
        Fault(
            fault.action,
            service="s3",
            match=payload_bucket.encode(),
            status=fault.status,
            code=fault.code,
        )
    )
    listener = start_listener(settings.replace(endpoint_url=proxy.url, max_attempts=1, retry_for=0))
    queues.send(pointer(payload_bucket, "held"), group="g")

    def paused() -> dict:
        s3_state = listener.dependencies.snapshot()["s3"]
        return s3_state if s3_state.get("state") == state else {}

    problem = wait_for(paused, timeout=20)
    assert problem, listener.dependencies.snapshot()
    assert problem["cause"].startswith(f"GetObject on bucket {payload_bucket}: ")
    time.sleep(2)
    proxy.heal()
    assert [o["id"] for o in queues.outputs(1, timeout=40)] == ["held"]
    assert queues.dead_letters(1, timeout=2) == []


def test_a_3_mib_book_sent_by_aws_s_extended_client_is_stored_byte_for_byte(
    settings, queues, payload_bucket, start_listener, tmp_path
):
    text = large_book("tome", size=3 * MiB, genre="romance").decode()
    assert len(text.encode()) > 3 * MiB
    book_file = tmp_path / "tome.json"
    book_file.write_text(text, encoding="utf-8")
    # AWS's library, as a producer runs it: it offloads the body to the bucket and sends
    # a pointer (in a process of its own: it patches boto3 for its whole process).
    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.extended_producer",
            f"--endpoint={settings.endpoint_url}",
            f"--region={settings.region}",
            f"--queue-url={queues.urls[settings.input_queue]}",
            f"--bucket={payload_bucket}",
            str(book_file),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "AWS_ACCESS_KEY_ID": settings.access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": settings.secret_access_key or "",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    message_id = sent.stdout.strip()
    s3 = make_client(settings, "s3")
    [offloaded] = s3.list_objects_v2(Bucket=payload_bucket)["Contents"]
    assert offloaded["Size"] == len(text.encode()), "the library put the book in the bucket"
    start_listener()
    [output] = queues.outputs(1, timeout=30)
    assert (output["id"], output["message_id"]) == ("tome", message_id)
    stored = s3.get_object(Bucket=settings.buckets["romance"], Key="Title of tome.json")
    assert stored["Body"].read() == text.encode("utf-8"), "stored byte for byte"
    assert queues.dead_letters(1, timeout=1) == []
    assert not is_gone(s3, payload_bucket, offloaded["Key"]), "BOOKD_PAYLOAD_DELETE is off"
