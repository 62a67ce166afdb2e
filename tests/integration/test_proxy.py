"""The fault proxy's limited windows (harness/proxy.py), against the real LocalStack: S3
taking N uploads at once, answering SlowDown to the rest or holding them."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from bookd.aws.clients import make_client
from bookd.aws.s3 import BookStore
from bookd.core.errors import AwsFault
from harness.proxy import Fault

UPLOADS = 8
LIMIT = 2
SECONDS = 0.3


def put_at_once(settings, proxy) -> tuple[Counter[str], float]:
    """UPLOADS puts at once, each tried once, as the listener's upload client does."""
    client = make_client(settings.replace(endpoint_url=proxy.url), "s3", attempts=1, pool=16)
    store = BookStore(client)
    bucket = settings.buckets["romance"]
    outcomes: Counter[str] = Counter()

    def put(n: int) -> None:
        try:
            store.put(bucket, f"b{n}.json", b"{}" * 500, metadata={})
            outcomes["stored"] += 1
        except AwsFault as fault:
            outcomes[fault.code] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=put, args=(n,)) for n in range(UPLOADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes, time.monotonic() - began


@pytest.mark.slow
def test_beyond_the_limit_s3_answers_slowdown_and_the_client_reads_it(settings, proxy):
    proxy.inject(
        Fault("slowdown", service="s3", operation="PutObject", limit=LIMIT, seconds=SECONDS)
    )
    outcomes, _ = put_at_once(settings, proxy)
    # The first LIMIT go; the rest are answered SlowDown, read as such (not a reset).
    assert outcomes["stored"] >= LIMIT
    assert outcomes["SlowDown"] >= 1
    assert set(outcomes) <= {"stored", "SlowDown"}, outcomes
    assert outcomes.total() == UPLOADS


@pytest.mark.slow
def test_queue_holds_the_rest_and_refuses_none(settings, proxy):
    proxy.inject(Fault("queue", service="s3", operation="PutObject", limit=LIMIT, seconds=SECONDS))
    outcomes, took = put_at_once(settings, proxy)
    assert outcomes == {"stored": UPLOADS}
    # LIMIT at a time, SECONDS each: the window held them, it did not let them all go.
    assert took >= UPLOADS / LIMIT * SECONDS * 0.9
    assert proxy.seen[("s3", "PutObject", "admitted")] == UPLOADS
