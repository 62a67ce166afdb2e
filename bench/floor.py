"""The call floor: only the calls bookd must make, through bookd's own adapters.

``BOOKD_RECEIVERS`` receive loops at once, each: a receive of up to ten messages
(long poll, bookd's visibility timeout); one PutObject per book, the receive's books
all at once on a pool of ``BOOKD_CONCURRENCY`` threads (as bookd uploads a group's
titles); per FIFO group, one SendMessageBatch of its announcements in input order
(bookd.core.ports.announcement: bookd's body and deduplication id); one
DeleteMessageBatch. The clients are bookd.aws's (make_client, Queue, and the
listener's BookStore, whose puts go through the CRT), so the floor pays bookd's
client costs, and it runs at the listener's CPU priority
(``BOOKD_LISTENER_NICE``); nothing else: no validation, no retries, no heartbeat,
no metrics of its own, no logs. bookd's rate over the floor's is what bookd's own
work costs it.

Run as ``python -m bench.floor`` with bookd's environment variables; like the
baseline it never returns, and the bench terminates it once every output has
arrived. Any failed call ends the process (exit 1): the floor does not retry, and
the bench notices a dead consumer.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from bookd.aws.clients import make_client
from bookd.aws.sqs import Queue
from bookd.aws.uploads import listener_store
from bookd.core.books import metadata_value
from bookd.core.config import Settings
from bookd.core.ports import (
    BATCH_LIMIT,
    BOOK_ID_METADATA,
    MESSAGE_ID_METADATA,
    Message,
    announcement,
)

READY = "floor ready at"
"""Printed with the wall-clock time once the clients exist, just before the first receive."""


class Floor:
    """The receive loops and the upload pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        pool = settings.listener_connections  # as many as bookd's listener opens
        sqs = make_client(settings, "sqs", pool=pool)
        self.store = listener_store(settings, pool=pool, purpose="other")
        self.input = Queue(sqs, settings.input_queue)
        self.output = Queue(sqs, settings.output_queue)
        self.uploads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="upload")

    def loop(self) -> None:
        """One receive loop; a failure ends the whole process."""
        try:
            while True:
                messages = self.input.receive(
                    wait_time=self.settings.wait_time,
                    visibility_timeout=self.settings.visibility_timeout,
                )
                if messages:
                    self.move(messages)
        except BaseException:  # the floor has no retries: any failure is the end
            traceback.print_exc()
            os._exit(1)

    def move(self, messages: list[Message]) -> None:
        """Store every book at once, announce each group's in order, delete them all."""
        versions = list(self.uploads.map(self.put, messages))
        groups: dict[str, list[tuple[Message, dict[str, str]]]] = {}
        for m, where in zip(messages, versions, strict=True):
            groups.setdefault(m.group_id, []).append((m, where))
        for books in groups.values():
            for start in range(0, len(books), BATCH_LIMIT):
                batch = books[start : start + BATCH_LIMIT]
                failed = self.output.send([announcement(message=m, **where) for m, where in batch])
                if failed:
                    raise RuntimeError(f"announcements refused: {failed}")
        failed = self.input.delete(messages)
        if failed:
            raise RuntimeError(f"deletes refused: {failed}")

    def put(self, m: Message) -> dict[str, str]:
        # The workload's titles need no escaping: <title>.json is bookd's key for them.
        book = json.loads(m.body)
        bucket = self.settings.buckets[book["genre"].strip().lower()]
        key = f"{book['title']}.json"
        version = self.store.put(
            bucket,
            key,
            m.body.encode("utf-8"),
            metadata={
                MESSAGE_ID_METADATA: m.message_id,
                BOOK_ID_METADATA: metadata_value(book["id"]),
            },
        )
        return {"book_id": book["id"], "bucket": bucket, "key": key, "version_id": version}


def main() -> None:
    settings = Settings.from_env()
    # The listener's CPU priority too: on a machine it shares with LocalStack, who yields
    # the CPU to whom changes both rates, and only bookd's own work should tell them apart.
    os.nice(settings.listener_nice)
    floor = Floor(settings)
    print(f"{READY} {time.time():.6f}", flush=True)
    loops = [
        threading.Thread(target=floor.loop, name=f"receiver-{i}", daemon=True)
        for i in range(settings.receivers)
    ]
    for thread in loops:
        thread.start()
    for thread in loops:
        thread.join()


if __name__ == "__main__":
    main()
