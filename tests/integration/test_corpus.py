"""The hostile corpus (tests/corpus/hostile.jsonl) through a real listener and LocalStack."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bookd.aws.clients import make_client
from bookd.core.books import from_metadata
from bookd.core.ports import BOOK_ID_METADATA

CORPUS = [
    json.loads(line)
    for line in (Path(__file__).resolve().parents[1] / "corpus" / "hostile.jsonl")
    .read_text()
    .splitlines()
]


def test_every_hostile_message_gets_its_outcome_and_never_holds_up_another_book(
    settings, queues, start_listener
):
    # Each case in a group of its own, with a valid book after it in that group, and
    # all of them sent before the listener starts: so receives mix hostile and valid.
    sent: dict[str, dict] = {}
    pairs = []
    for n, case in enumerate(CORPUS):
        group = f"case-{n:02d}"
        pairs.append((group, case["body"]))
        pairs.append(
            (group, json.dumps({"id": f"after-{n}", "title": f"after-{n}", "genre": "romance"}))
        )
    ids = queues.send_many(pairs)
    for n, case in enumerate(CORPUS):
        sent[ids[2 * n]] = case
    began = time.monotonic()
    start_listener()

    expected_letters = [c for c in CORPUS if c["outcome"] == "dead-letter"]
    expected_stored = [c for c in CORPUS if c["outcome"] == "stored"]
    letters = queues.dead_letters(len(expected_letters), timeout=60)
    outputs = queues.outputs(len(expected_stored) + len(CORPUS), timeout=60)
    elapsed = time.monotonic() - began

    got_reasons = {
        sent[m["MessageAttributes"]["source_message_id"]["StringValue"]]["name"]: m[
            "MessageAttributes"
        ]["reason"]["StringValue"]
        for m in letters
    }
    assert got_reasons == {c["name"]: c["reason"] for c in expected_letters}
    for m in letters:
        case = sent[m["MessageAttributes"]["source_message_id"]["StringValue"]]
        assert m["Body"] == case["body"], f"{case['name']}: the body is kept as sent"

    by_message = {o["message_id"]: o for o in outputs}
    s3 = make_client(settings, "s3")
    for message_id, case in sent.items():
        if case["outcome"] != "stored":
            continue
        output = by_message.get(message_id)
        assert output is not None, f"{case['name']} was not announced"
        bucket = settings.buckets[case["bucket"]]
        assert (output["bucket"], output["file"]) == (bucket, case["key"]), case["name"]
        stored = s3.get_object(Bucket=bucket, Key=case["key"], VersionId=output["version_id"])
        assert stored["Body"].read().decode() == case["body"], case["name"]
        book_id = json.loads(case["body"])["id"]
        assert from_metadata(stored["Metadata"][BOOK_ID_METADATA]) == book_id, case["name"]
    after = sorted(o["id"] for o in outputs if o["id"].startswith("after-"))
    assert after == sorted(f"after-{n}" for n in range(len(CORPUS))), "every valid book went on"
    assert elapsed < 60
