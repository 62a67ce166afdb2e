"""The AWS error table: what boto3 reports for a failure, and the kind bookd makes of it.

The responses are parsed by botocore's own parsers, as AWS sends them: SQS answers in
JSON with the legacy code in ``x-amzn-query-error`` (botocore reports that one), S3
in XML. So the table is checked against the codes boto3 really shows, not our guess.
"""

from __future__ import annotations

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from bookd.aws.codes import classify
from bookd.core.errors import FaultKind

SESSION = botocore.session.get_session()


def aws_error(service: str, operation: str, status: int, headers: dict, body: str) -> ClientError:
    """What boto3 raises for this HTTP answer, parsed by botocore's parser for ``service``."""
    model = SESSION.get_service_model(service)
    parsed = create_parser(model.protocol).parse(
        {"status_code": status, "headers": headers, "body": body.encode()},
        model.operation_model(operation).output_shape,
    )
    return ClientError(parsed, operation)


def sqs_error(shape: str, query_code: str) -> ClientError:
    """An SQS error as AWS answers it (JSON protocol, query-compatible header)."""
    body = f'{{"__type": "com.amazonaws.sqs#{shape}", "message": "test"}}'
    headers = {"x-amzn-query-error": f"{query_code};Sender"}
    return aws_error("sqs", "SendMessageBatch", 400, headers, body)


def s3_error(code: str) -> ClientError:
    """An S3 error as AWS answers it (XML)."""
    body = f"<Error><Code>{code}</Code><Message>test</Message></Error>"
    return aws_error("s3", "PutObject", 400, {}, body)


# SQS's errors by their model name and the legacy code AWS sends (the SDKs' models).
SQS_ERRORS = [
    ("KmsAccessDenied", "KMS.AccessDeniedException", FaultKind.MISCONFIGURED),
    ("KmsDisabled", "KMS.DisabledException", FaultKind.MISCONFIGURED),
    ("KmsInvalidKeyUsage", "KMS.InvalidKeyUsageException", FaultKind.MISCONFIGURED),
    ("KmsInvalidState", "KMS.InvalidStateException", FaultKind.MISCONFIGURED),
    ("KmsNotFound", "KMS.NotFoundException", FaultKind.MISCONFIGURED),
    ("KmsOptInRequired", "KMS.OptInRequired", FaultKind.MISCONFIGURED),
    ("KmsThrottled", "KMS.ThrottlingException", FaultKind.THROTTLED),
    ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", FaultKind.MISCONFIGURED),
    (
        "QueueDeletedRecently",
        "AWS.SimpleQueueService.QueueDeletedRecently",
        FaultKind.MISCONFIGURED,
    ),
    (
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        FaultKind.MISCONFIGURED,
    ),
    ("ResourceNotFoundException", "ResourceNotFoundException", FaultKind.MISCONFIGURED),
    ("InvalidAddress", "InvalidAddress", FaultKind.MISCONFIGURED),
    ("InvalidSecurity", "InvalidSecurity", FaultKind.MISCONFIGURED),
    ("RequestThrottled", "RequestThrottled", FaultKind.THROTTLED),
    ("OverLimit", "OverLimit", FaultKind.THROTTLED),
    ("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", FaultKind.REJECTED),
]


@pytest.mark.parametrize(
    ("shape", "query_code", "kind"), SQS_ERRORS, ids=[e[0] for e in SQS_ERRORS]
)
def test_each_sqs_error_is_of_its_kind_under_the_code_boto3_reports(shape, query_code, kind):
    fault = classify(sqs_error(shape, query_code), service="sqs", operation="SendMessageBatch")
    assert fault.code == query_code, "boto3 reports the legacy code"
    assert fault.kind is kind


@pytest.mark.parametrize(
    "code",
    [
        "KMS.DisabledException",
        "KMS.InvalidKeyUsageException",
        "KMS.KMSInvalidStateException",
        "KMS.NotFoundException",
        "AccessDenied",
        "NoSuchBucket",
    ],
)
def test_an_s3_bucket_whose_key_or_policy_is_wrong_is_a_misconfiguration(code):
    # A valid book is never dead-lettered for these: receiving pauses until they are fixed.
    fault = classify(s3_error(code), service="s3", operation="PutObject")
    assert (fault.code, fault.kind) == (code, FaultKind.MISCONFIGURED)
