"""The generated workload: valid books spread over message groups, and preloading them.

Every contender gets the same books (same seed), in the same order, into a fresh
input queue. Titles are unique and need no escaping, so ``<title>.json`` is the key
both for bookd's key rule and for the baseline's plain one. They are ASCII without
spaces: LocalStack 4.14.0 pages ListObjectVersions wrongly when the key marker holds
a space (entries repeated) or a non-ASCII letter (entries skipped), and
ListObjectsV2 fails on the latter; the checks and the clean-up both page.
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bookd.aws.clients import make_client
from bookd.core.books import key_for_title
from bookd.core.config import Settings

WORDS = (
    "Dune", "Foundation", "Solaris", "Hyperion", "Neuromancer", "Persuasion", "Emma",
    "Rebecca", "Jane", "Eyre", "Middlemarch", "Ubik", "Kindred", "Station", "Eleven",
    "Sphinx", "Angstrom", "Cafe", "Nino", "Senora", "Uber",
)  # fmt: skip

PRELOAD_THREADS = 4
"""Threads sending the preload; each owns whole groups, so per-group order holds."""


@dataclass(frozen=True)
class Book:
    """One input message and where it must end up."""

    index: int
    id: str
    title: str
    genre: str
    group: str
    body: str

    @property
    def key(self) -> str:
        return key_for_title(self.title)


@dataclass(frozen=True)
class Workload:
    """``count`` books over ``groups`` FIFO groups, book n in group n % groups."""

    books: list[Book]
    groups: int

    def by_group(self) -> dict[str, list[Book]]:
        """Each group's books in send order."""
        groups: dict[str, list[Book]] = {}
        for book in self.books:
            groups.setdefault(book.group, []).append(book)
        return groups


def make_workload(count: int, groups: int, *, seed: int = 4, first: int = 0) -> Workload:
    """The same ``count`` valid books for every contender: about 400 bytes each.

    Books are numbered from ``first``, so a second workload for the same queues
    (a later phase of a run) has ids and titles of its own.
    """
    rng = random.Random(seed + first)
    books = []
    for n in range(first, first + count):
        title = f"{'-'.join(rng.sample(WORDS, 3))}-{n:05d}"
        genre = ("scifi", "romance")[n % 2]
        data: dict[str, Any] = {
            "id": f"book-{n:05d}",
            "title": title,
            "author": f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
            "year": str(rng.randint(1800, 2025)),
            "genre": genre,
            "summary": " ".join(rng.choices(WORDS, k=40)),
        }
        books.append(
            Book(
                n,
                data["id"],
                title,
                genre,
                f"g{n % groups:02d}",
                json.dumps(data, ensure_ascii=False),
            )
        )
    return Workload(books, groups)


def preload(settings: Settings, workload: Workload) -> dict[str, float]:
    """Send every book to the input queue with SendMessageBatch; return id -> sent time.

    The sent time is the client's wall clock when the batch call returned (same host
    clock as LocalStack's SentTimestamp, at most one call later than the real send).
    """
    sqs = make_client(settings, "sqs", pool=PRELOAD_THREADS)
    url = sqs.get_queue_url(QueueName=settings.input_queue)["QueueUrl"]
    sent: dict[str, float] = {}
    groups = list(workload.by_group().values())

    def send(share: list[list[Book]]) -> None:
        # This thread's groups, interleaved in workload order, ten books per call.
        mine = sorted((b for group in share for b in group), key=lambda b: b.index)
        for start in range(0, len(mine), 10):
            chunk = mine[start : start + 10]
            response = sqs.send_message_batch(
                QueueUrl=url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": b.body,
                        "MessageGroupId": b.group,
                        "MessageDeduplicationId": b.id,
                    }
                    for i, b in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                # A lost entry would shift its group's order: give up on the whole run.
                raise RuntimeError(f"preload: SendMessageBatch refused {response['Failed']}")
            now = time.time()
            sent.update((b.id, now) for b in chunk)

    with ThreadPoolExecutor(PRELOAD_THREADS) as pool:
        list(pool.map(send, [groups[t::PRELOAD_THREADS] for t in range(PRELOAD_THREADS)]))
    return sent
