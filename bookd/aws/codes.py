"""The one table of AWS errors: every S3 and SQS failure becomes an AwsFault of one kind.

What each kind makes bookd do is decided in bookd.rules.retry; this module only names
things, and ``call`` runs a boto3 call through the table. An error code missing from
the table counts as UNAVAILABLE: retried, never a reason to dead-letter a book.

The codes are those boto3 reports. SQS answers in JSON but also sends its older code
(``x-amzn-query-error``), and botocore reports that one: ``KMS.AccessDeniedException``,
not ``KmsAccessDenied``; LocalStack may send either, so both are listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from bookd.core.errors import AwsFault, FaultKind

T = TypeVar("T")

AWS_ERRORS = (BotoCoreError, ClientError)
"""What a boto3 call raises when S3 or SQS fails; adapters catch this tuple."""

THROTTLED_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "KmsThrottled",
        "KMS.ThrottlingException",
        # SQS: too many messages in flight; it clears as messages finish.
        "OverLimit",
        "429",
    }
)

UNAVAILABLE_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "BadDigest",
        "KmsUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)

MISCONFIGURED_CODES = frozenset(
    {
        # Permissions and credentials.
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "403",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "InvalidSecurity",
        "RequestTimeTooSkewed",
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
        # Resources that are missing or unusable.
        "NoSuchBucket",
        "QueueDoesNotExist",
        "NonExistentQueue",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDeletedRecently",
        "AWS.SimpleQueueService.QueueDeletedRecently",
        "ResourceNotFoundException",
        "InvalidAddress",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        # The KMS key of an encrypted queue or bucket: missing, disabled, denied.
        "KmsAccessDenied",
        "KMS.AccessDeniedException",
        "KmsDisabled",
        "KMS.DisabledException",
        "KmsNotFound",
        "KMS.NotFoundException",
        "KmsInvalidState",
        "KMS.InvalidStateException",
        "KMS.KMSInvalidStateException",
        "KmsInvalidKeyUsage",
        "KMS.InvalidKeyUsageException",
        "KmsOptInRequired",
        "KMS.OptInRequired",
        # bookd's own finding: a bucket without versioning would lose same-title books.
        "BucketNotVersioned",
    }
)

REJECTED_CODES = frozenset(
    {
        "InvalidArgument",
        "KeyTooLongError",
        "EntityTooLarge",
        "MetadataTooLarge",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidMessageContents",
        "MessageTooLong",
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "MissingParameter",
        "InvalidAttributeValue",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        "ParamValidationError",
    }
)

MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
"""A key (or version) that is not there: to HeadObject, an answer, not a failure."""

_TABLE = (
    (THROTTLED_CODES, FaultKind.THROTTLED),
    (MISCONFIGURED_CODES, FaultKind.MISCONFIGURED),
    (REJECTED_CODES, FaultKind.REJECTED),
    (UNAVAILABLE_CODES, FaultKind.UNAVAILABLE),
)


def kind_of(code: str) -> FaultKind:
    """The kind of an AWS error code; unknown codes are UNAVAILABLE (retried, not blamed)."""
    for codes, kind in _TABLE:
        if code in codes:
            return kind
    return FaultKind.UNAVAILABLE


def error_code(exc: BaseException) -> str:
    """The AWS error code of a boto3 failure, or the exception's class name."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        if code:
            return code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(status) if status else "Unknown"
    return type(exc).__name__


def classify(
    exc: BaseException, *, service: str, operation: str, resource: str | None = None
) -> AwsFault:
    """Wrap a boto3 failure as an AwsFault naming the call, what it was on, the code and
    its kind."""
    code = error_code(exc)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | NoRegionError):
        kind = FaultKind.MISCONFIGURED
    elif isinstance(exc, ParamValidationError):
        # botocore refused the request before sending it: this request is malformed.
        kind, code = FaultKind.REJECTED, "ParamValidationError"
    elif isinstance(exc, ClientError):
        kind = kind_of(code)
    else:
        # Connection refused or reset, timeouts, a broken response: the service is away.
        kind = FaultKind.UNAVAILABLE
    return AwsFault(
        kind, service=service, operation=operation, code=code, detail=str(exc), resource=resource
    )


def call(service: str, operation: str, fn: Callable[[], T], *, resource: str) -> T:
    """Run one boto3 call on ``resource`` ("bucket romance"); AwsFault if it fails."""
    try:
        return fn()
    except AWS_ERRORS as exc:
        raise classify(exc, service=service, operation=operation, resource=resource) from exc
