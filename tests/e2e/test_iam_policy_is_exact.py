"""The IAM policies grant exactly what bookd called in the whole test session, no more, no less.

Every bookd process of the session (listeners in threads and in real stacks, the web
app, the CLI, provisioning) logs each call it makes to BOOKD_AWS_CALL_LOG (see
bookd.aws.make_client); tests' own calls are logged as "other" and left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.resources import PAYLOAD_BUCKET_SUFFIX

pytestmark = pytest.mark.after_all

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_POLICY = ROOT / "deploy" / "iam-policy.json"
PROVISION_POLICY = ROOT / "deploy" / "iam-provision-policy.json"
REPLAY_POLICY = ROOT / "deploy" / "iam-replay-policy.json"

RUNTIME_PURPOSES = {"listener", "web", "cli"}
"""What runs in bookd's container under its role. `bookd peek` is a development tool
that reads the output queue, which bookd never does; it is not granted."""

ACTIONS = {
    "ReceiveMessage": "sqs:ReceiveMessage",
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueUrl": "sqs:GetQueueUrl",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "CreateQueue": "sqs:CreateQueue",
    "SetQueueAttributes": "sqs:SetQueueAttributes",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "CreateBucket": "s3:CreateBucket",
}
"""Each API operation to the IAM action that allows it (reading a version of an object
needs s3:GetObjectVersion, below)."""

OBJECT_OPERATIONS = {"PutObject", "GetObject", "HeadObject"}
QUEUE_ROLES = (
    ("-Input-dlq.fifo", "DeadLetterQueue"),
    ("-Input.fifo", "InputQueue"),
    ("-Output.fifo", "OutputQueue"),
)
PAYLOAD_ROLES = {"GetObject": "Payloads", "DeleteObject": "PayloadDeletes"}
"""The statements of calls on a payload bucket (BOOKD_PAYLOAD_BUCKETS) by operation; the
rest (HeadBucket, the probe) are PayloadBuckets'."""


def statement_of(call: dict, *, provisioning: bool) -> str:
    """The policy statement (Sid) that must allow a call, from its kind and target."""
    if provisioning:
        return "ProvisionQueues" if call["service"] == "sqs" else "ProvisionBuckets"
    if call["service"] == "s3" and call["target"].endswith(PAYLOAD_BUCKET_SUFFIX):
        return PAYLOAD_ROLES.get(call["operation"], "PayloadBuckets")
    if call["service"] == "s3":
        return "Books" if call["operation"] in OBJECT_OPERATIONS else "Buckets"
    for suffix, role in QUEUE_ROLES:
        if call["target"].endswith(suffix):
            return role
    raise AssertionError(f"a call to a queue of no known role: {call}")


def action_of(call: dict) -> str:
    if call["operation"] in ("HeadObject", "GetObject") and call["versioned"]:
        return "s3:GetObjectVersion"
    return ACTIONS[call["operation"]]


def granted(path: Path) -> dict[str, set[str]]:
    policy = json.loads(path.read_text())
    return {s["Sid"]: set(s["Action"]) for s in policy["Statement"]}


def used(calls: list[dict], purposes: set[str], *, provisioning: bool) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for call in calls:
        if call["purpose"] in purposes:
            sid = statement_of(call, provisioning=provisioning)
            found.setdefault(sid, set()).add(action_of(call))
    return found


def test_the_iam_policies_grant_exactly_what_bookd_called(request, aws_call_log):
    collected = {Path(str(item.path)).parent.name for item in request.session.items}
    if not {"integration", "e2e"} <= collected:
        pytest.skip("checks what the integration and e2e tests made bookd call: run them all")
    calls = [json.loads(line) for line in aws_call_log.read_text().splitlines()]
    runtime = used(calls, RUNTIME_PURPOSES, provisioning=False)
    provision = used(calls, {"provision"}, provisioning=True)
    assert runtime == granted(RUNTIME_POLICY), "deploy/iam-policy.json against bookd's calls"
    assert provision == granted(PROVISION_POLICY), (
        "deploy/iam-provision-policy.json against `bookd provision`'s calls"
    )
    replay = used(calls, {"replay"}, provisioning=False)
    assert replay == granted(REPLAY_POLICY), "deploy/iam-replay-policy.json against `bookd replay`"
