"""How bookd makes its boto3 clients: how many tries of each call, one session a process."""

from __future__ import annotations

import os

from bookd.aws import clients
from bookd.core.config import Settings


def test_attempts_count_every_try_the_first_included() -> None:
    settings = Settings.from_env({"BOOKD_ENDPOINT_URL": "http://127.0.0.1:9"})
    once = clients.make_client(settings, "s3", attempts=1)
    assert once.meta.config.retries["total_max_attempts"] == 1, "tried once, never retried"
    usual = clients.make_client(settings, "sqs")
    assert usual.meta.config.retries["total_max_attempts"] == 3


def test_the_clients_of_a_process_share_one_session_and_a_forked_child_makes_its_own() -> None:
    # One session: each service's model and endpoint rules are loaded once per process.
    settings = Settings.from_env({"BOOKD_ENDPOINT_URL": "http://127.0.0.1:9"})
    first, second = clients.make_client(settings, "s3"), clients.make_client(settings, "sqs")
    assert first._loader is second._loader
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            own = clients.make_client(settings, "s3")._loader is not first._loader
            os.write(write, b"own" if own else b"parent's")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as answer:
        assert answer.read() == b"own"


def test_configured_keys_are_the_credentials_else_the_default_chain(monkeypatch) -> None:
    keyed = Settings.from_env({"AWS_ACCESS_KEY_ID": "AKIDKEYED", "AWS_SECRET_ACCESS_KEY": "s"})
    assert clients.credentials(keyed).access_key == "AKIDKEYED"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setattr(clients, "_shared", clients._Shared())  # a session that reads them
    chained = Settings.from_env({"BOOKD_ENDPOINT_URL": ""})  # AWS: no local keys
    assert (chained.access_key_id, clients.credentials(chained).access_key) == (None, "AKIDCHAIN")
