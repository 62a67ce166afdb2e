"""The baseline: a plain pySqsListener consumer, as the library's README would have it.

One message at a time: receive, PutObject ``<title>.json`` to the genre's bucket,
send one output message, and the library deletes the input. Run as
``python -m bench.baseline`` with bookd's environment variables (the bench's
Stack helper writes them); the library's loop never returns, so the bench
terminates this process once every output has arrived.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqs_listener import SqsListener

from bookd.aws.clients import make_client
from bookd.core.config import Settings

READY = "baseline ready at"
"""Printed with the wall-clock time once the clients exist, just before the first receive."""


class BaselineListener(SqsListener):
    """Moves one book per handle_message call; no batching, no parallelism."""

    def __init__(self, settings: Settings) -> None:
        self.buckets = settings.buckets
        self.s3 = make_client(settings, "s3")
        self.sqs = make_client(settings, "sqs")
        self.output_url = self.sqs.get_queue_url(QueueName=settings.output_queue)["QueueUrl"]
        super().__init__(
            settings.input_queue,
            endpoint_name=settings.endpoint_url,
            region_name=settings.region,
            wait_time=1,
            # The library sleeps this long after an empty receive; its default is 60 s.
            interval=0.1,
            max_number_of_messages=1,
            # The raw body, so the stored object is byte for byte what was sent.
            deserializer=str,
            attribute_names=["MessageGroupId"],
        )

    def handle_message(self, body: str, attributes: Any, messages_attributes: Any) -> None:
        # The library passes Attributes as its third argument, despite the name.
        group = messages_attributes["MessageGroupId"]
        book = json.loads(body)
        bucket = self.buckets[book["genre"].strip().lower()]
        key = f"{book['title']}.json"
        self.s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body.encode("utf-8"),
            ContentType="application/json",
        )
        self.sqs.send_message(
            QueueUrl=self.output_url,
            MessageBody=json.dumps({"id": book["id"], "file": key, "bucket": bucket}),
            MessageGroupId=group,
            # The library does not pass the message id; the book id is unique in the bench.
            MessageDeduplicationId=book["id"],
        )


if __name__ == "__main__":
    listener = BaselineListener(Settings.from_env())
    print(f"{READY} {time.time():.6f}", flush=True)
    listener.listen()
