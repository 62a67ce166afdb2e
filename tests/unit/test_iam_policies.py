"""The IAM policies: deploy/iam-policy.json (run time), deploy/iam-provision-policy.json and
deploy/iam-replay-policy.json (operators' `bookd replay`).

parliament (pinned in requirements-dev.txt) lints both, with its community auditors, through its
Python API: its command line also appends to /tmp/parliament.log on every run. The JSON itself
is the list of granted actions, one Statement per queue or bucket role, each with a Sid.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from parliament import analyze_policy_string

from bookd.core.config import Settings

# bookd's defaults, as Settings declares them.
DEFAULTS = Settings()
DEFAULT_BUCKETS = DEFAULTS.to_env()["BOOKD_BUCKETS"]
DEFAULT_DEAD_LETTER_QUEUE = DEFAULTS.dead_letter_queue
DEFAULT_INPUT_QUEUE = DEFAULTS.input_queue
DEFAULT_OUTPUT_QUEUE = DEFAULTS.output_queue
DEFAULT_REGION = DEFAULTS.region

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_POLICY = ROOT / "deploy" / "iam-policy.json"
PROVISION_POLICY = ROOT / "deploy" / "iam-provision-policy.json"
REPLAY_POLICY = ROOT / "deploy" / "iam-replay-policy.json"
POLICIES = (RUNTIME_POLICY, PROVISION_POLICY, REPLAY_POLICY)

ACCOUNT = "123456789012"
"""The placeholder account in the policies (README: "Running on AWS")."""

ACCEPTED_FINDINGS = {
    (PROVISION_POLICY.name, "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        "sqs:CreateQueue and sqs:SetQueueAttributes could also set a queue's access policy; "
        "provisioning needs them for the FIFO and redrive attributes, and IAM has no condition "
        "key that limits which attributes they set. The admin policy is used for provisioning "
        "only, never by the pods."
    ),
}
"""parliament findings accepted on purpose, by (file, issue), each with its reason."""


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{DEFAULT_REGION}:{ACCOUNT}:{name}"


BUCKET_ARNS = sorted(f"arn:aws:s3:::{pair.split('=')[1]}" for pair in DEFAULT_BUCKETS.split(","))
PAYLOAD_BUCKET_ARN = f"arn:aws:s3:::bookd-payloads-{ACCOUNT}"
"""The placeholder of the payload buckets (BOOKD_PAYLOAD_BUCKETS, empty by default): the
account's sed of the README names the bucket bookd-payloads-<account>."""

RUNTIME_RESOURCES = {
    "InputQueue": [queue_arn(DEFAULT_INPUT_QUEUE)],
    "OutputQueue": [queue_arn(DEFAULT_OUTPUT_QUEUE)],
    "DeadLetterQueue": [queue_arn(DEFAULT_DEAD_LETTER_QUEUE)],
    "Buckets": BUCKET_ARNS,
    "Books": [f"{arn}/*" for arn in BUCKET_ARNS],
    "PayloadBuckets": [PAYLOAD_BUCKET_ARN],
    "Payloads": [f"{PAYLOAD_BUCKET_ARN}/*"],
    "PayloadDeletes": [f"{PAYLOAD_BUCKET_ARN}/*"],
}
"""Where each Statement of the runtime policy applies, by Sid. Its actions are checked
against every call bookd made in the test session (tests/e2e/test_iam_policy_is_exact.py)."""


def statements(path: Path) -> list[dict]:
    return json.loads(path.read_text())["Statement"]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def grants(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each Statement's Sid with its sorted actions and resources."""
    return {
        s["Sid"]: (sorted(as_list(s["Action"])), sorted(as_list(s["Resource"])))
        for s in statements(path)
    }


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_passes_parliament_with_its_community_auditors(path):
    policy = analyze_policy_string(path.read_text(), path.name, include_community_auditors=True)
    findings = [
        f"{f.issue}: {f.detail} {f.location}"
        for f in policy.findings
        if (path.name, f.issue) not in ACCEPTED_FINDINGS
    ]
    assert findings == []
    accepted_here = {issue for name, issue in ACCEPTED_FINDINGS if name == path.name}
    assert accepted_here <= {f.issue for f in policy.findings}, "drop the stale acceptance"


def test_parliament_reports_an_object_action_granted_on_a_bucket():
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": BUCKET_ARNS[0]}
            ],
        }
    )
    issues = {f.issue for f in analyze_policy_string(text, "bad.json").findings}
    assert "RESOURCE_MISMATCH" in issues


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_allows_named_actions_on_named_resources_only(path):
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    sids = [s.get("Sid") for s in policy["Statement"]]
    assert all(sids) and len(set(sids)) == len(sids), "one Sid per Statement"
    for statement in policy["Statement"]:
        assert statement.keys() == {"Sid", "Effect", "Action", "Resource"}, statement["Sid"]
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, action
        for resource in as_list(statement["Resource"]):
            assert resource != "*" and resource.startswith("arn:aws:"), resource


def test_runtime_policy_grants_each_queue_and_bucket_role_on_its_own_resources():
    assert {sid: resources for sid, (_, resources) in grants(RUNTIME_POLICY).items()} == (
        RUNTIME_RESOURCES
    )


def test_runtime_policy_grants_no_provisioning_action():
    runtime = {a for actions, _ in grants(RUNTIME_POLICY).values() for a in actions}
    provisioning = {a for actions, _ in grants(PROVISION_POLICY).values() for a in actions}
    # Reading a queue's URL and attributes is shared.
    shared = {"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert runtime & provisioning == shared


def test_provision_policy_creates_the_three_queues_and_the_buckets():
    assert grants(PROVISION_POLICY) == {
        "ProvisionQueues": (
            [
                "sqs:CreateQueue",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:SetQueueAttributes",
            ],
            sorted(
                queue_arn(name)
                for name in (DEFAULT_INPUT_QUEUE, DEFAULT_OUTPUT_QUEUE, DEFAULT_DEAD_LETTER_QUEUE)
            ),
        ),
        "ProvisionBuckets": (
            ["s3:CreateBucket", "s3:PutBucketVersioning"],
            BUCKET_ARNS,
        ),
    }


def test_replay_policy_reads_versions_and_announces_only():
    assert grants(REPLAY_POLICY) == {
        "OutputQueue": (["sqs:GetQueueUrl", "sqs:SendMessage"], [queue_arn(DEFAULT_OUTPUT_QUEUE)]),
        "Buckets": (["s3:ListBucketVersions"], BUCKET_ARNS),
        "Books": (["s3:GetObjectVersion"], [f"{arn}/*" for arn in BUCKET_ARNS]),
    }
