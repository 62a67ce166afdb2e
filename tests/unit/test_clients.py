"""The clients of one process share one boto3 session; a forked child makes its own."""

from __future__ import annotations

import os

from bookd.aws import clients
from bookd.core.config import Settings


def test_clients_share_the_process_session_but_not_their_hooks() -> None:
    settings = Settings.from_env({"BOOKD_ENDPOINT_URL": "http://127.0.0.1:9"})
    first = clients.make_client(settings, "s3")
    second = clients.make_client(settings, "s3", attempts=1)
    session = clients._session.get()
    assert clients._session.get() is session
    # Each client times its own calls: hooks registered on one never fire for the other.
    assert first.meta.events is not second.meta.events


def test_a_forked_child_makes_its_own_session() -> None:
    parent = clients._session.get()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a session of its own, then leave at once
        os.close(read)
        os.write(write, b"own" if clients._session.get() is not parent else b"shared")
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 16) == b"own"
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_attempts_count_every_try_the_first_included() -> None:
    settings = Settings.from_env({"BOOKD_ENDPOINT_URL": "http://127.0.0.1:9"})
    once = clients.make_client(settings, "s3", attempts=1)
    assert once.meta.config.retries["total_max_attempts"] == 1, "tried once, never retried"
    usual = clients.make_client(settings, "sqs")
    assert usual.meta.config.retries["total_max_attempts"] == 3
