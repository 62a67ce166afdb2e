"""Create the buckets and queues bookd needs; safe to run again and again, and against AWS."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from bookd.aws.clients import make_client
from bookd.aws.codes import AWS_ERRORS
from bookd.core.config import Settings
from bookd.core.errors import ProvisionError

log = logging.getLogger(__name__)

RETENTION_SECONDS = 14 * 24 * 3600
"""How long SQS keeps an unconsumed message: its maximum, 14 days (the default is 4).

A listener stopped, or an outage, must not cost books; every queue keeps them as
long as SQS allows."""


@dataclass(frozen=True)
class Provisioned:
    """What provisioning made sure of."""

    buckets: list[str]
    input_queue_url: str
    output_queue_url: str
    dead_letter_queue_url: str


def _ensure_bucket(s3: Any, name: str, region: str) -> None:
    kwargs: dict[str, Any] = {}
    if region != "us-east-1":
        # us-east-1 refuses a LocationConstraint; every other region requires one.
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(Bucket=name, **kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    # Versioning keeps every book with the same title instead of the last one only.
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _ensure_fifo_queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    attributes = {"FifoQueue": "true", **attributes}
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "QueueAlreadyExists",
            "QueueNameExists",
            "AWS.SimpleQueueService.QueueNameExists",
        ):
            raise
    # The queue exists with other attributes (say a new maxReceiveCount): bring them in line.
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    changeable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
    sqs.set_queue_attributes(QueueUrl=url, Attributes=changeable)
    return url


def provision(settings: Settings) -> Provisioned:
    """Create buckets (versioned) and the FIFO queues with the dead-letter redrive."""
    # Settings already refuse queue names without '.fifo': bookd relies on FIFO ordering.
    s3 = make_client(settings, "s3", purpose="provision")
    sqs = make_client(settings, "sqs", purpose="provision")
    try:
        for bucket in settings.all_buckets:
            _ensure_bucket(s3, bucket, settings.region)
        dlq_url = _ensure_fifo_queue(
            sqs,
            settings.dead_letter_queue,
            # Dead letters wait for a person.
            {"MessageRetentionPeriod": str(RETENTION_SECONDS)},
        )
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
        input_url = _ensure_fifo_queue(
            sqs,
            settings.input_queue,
            {
                "VisibilityTimeout": str(settings.visibility_timeout),
                "MessageRetentionPeriod": str(RETENTION_SECONDS),
                # The backstop for messages that crash the listener; the listener's own
                # retry budget (BOOKD_MAX_ATTEMPTS, BOOKD_RETRY_FOR) dead-letters first.
                "RedrivePolicy": json.dumps(redrive, separators=(",", ":")),
            },
        )
        output_url = _ensure_fifo_queue(
            sqs, settings.output_queue, {"MessageRetentionPeriod": str(RETENTION_SECONDS)}
        )
    except AWS_ERRORS as exc:
        raise ProvisionError(
            f"provisioning against {settings.endpoint_url or 'AWS'} failed: {exc}; "
            "is LocalStack up (make localstack-up) and are the credentials right?"
        ) from exc
    log.info(
        "Provisioned buckets %s and queues %s, %s, %s",
        ", ".join(settings.all_buckets),
        settings.input_queue,
        settings.output_queue,
        settings.dead_letter_queue,
    )
    return Provisioned(settings.all_buckets, input_url, output_url, dlq_url)
