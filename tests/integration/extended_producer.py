"""A producer of large books: one message sent through AWS's SQS extended client.

Run it as a program, in a process of its own (``python -m tests.integration.extended_producer``):
importing ``sqs_extended_client`` replaces boto3's Session class for the whole process, and
a listener under test in the same process would then be given the payload instead of the
pointer, by the library, and prove nothing. Prints the message id it got.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import boto3
from botocore.config import Config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--bucket", required=True, help="where the library offloads payloads")
    parser.add_argument("--group", default="big")
    parser.add_argument("body", type=Path, help="the book, sent as its file's text")
    args = parser.parse_args()

    import sqs_extended_client  # noqa: F401 - patches boto3's Session, as its docs say

    session = boto3.session.Session(region_name=args.region)
    sqs = session.client("sqs", endpoint_url=args.endpoint)
    sqs.large_payload_support = args.bucket
    sqs.use_legacy_attribute = False
    sqs.s3_client = session.client(
        "s3", endpoint_url=args.endpoint, config=Config(s3={"addressing_style": "path"})
    )
    response = sqs.send_message(
        QueueUrl=args.queue_url,
        MessageBody=args.body.read_text(encoding="utf-8"),
        MessageGroupId=args.group,
        MessageDeduplicationId=uuid.uuid4().hex,
    )
    sys.stdout.write(response["MessageId"] + "\n")


if __name__ == "__main__":
    main()
