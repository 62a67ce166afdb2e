"""How many tries botocore makes of each of bookd's calls."""

from __future__ import annotations

from bookd.aws import clients
from bookd.core.config import Settings


def test_attempts_count_every_try_the_first_included() -> None:
    settings = Settings.from_env({"BOOKD_ENDPOINT_URL": "http://127.0.0.1:9"})
    once = clients.make_client(settings, "s3", attempts=1)
    assert once.meta.config.retries["total_max_attempts"] == 1, "tried once, never retried"
    usual = clients.make_client(settings, "sqs")
    assert usual.meta.config.retries["total_max_attempts"] == 3
