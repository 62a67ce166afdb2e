"""Provisioning on the real LocalStack: idempotent, versioned, with a FIFO dead-letter queue."""

import json

from bookd.aws.clients import make_client
from bookd.aws.provision import provision


def test_provisioning_twice_succeeds_and_leaves_the_same_resources(settings):
    first = provision(settings)
    second = provision(settings.replace(max_receive_count=3))
    assert first == second

    s3 = make_client(settings, "s3")
    sqs = make_client(settings, "sqs")
    for bucket in settings.all_buckets:
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    attrs = sqs.get_queue_attributes(QueueUrl=second.input_queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attrs["FifoQueue"] == "true"
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 3, "a changed setting must reach an existing queue"
    assert redrive["deadLetterTargetArn"].endswith(settings.dead_letter_queue)
    for url in (second.output_queue_url, second.dead_letter_queue_url):
        fifo = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["FifoQueue"])
        assert fifo["Attributes"]["FifoQueue"] == "true"
