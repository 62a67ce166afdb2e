"""Fixtures: a real LocalStack (started by `make localstack-up`), unique names per test."""

from __future__ import annotations

import threading

import pytest

from bookd.aws.provision import provision
from bookd.core.config import Settings
from bookd.listener import BookListener
from harness import localstack
from harness.proxy import Proxy
from harness.resources import Queues, remove_resources, unique_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked after_all run once every other test has."""
    last = [item for item in items if item.get_closest_marker("after_all")]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def aws_call_log(tmp_path_factory: pytest.TempPathFactory):
    """Where every bookd process of the session logs its AWS calls (BOOKD_AWS_CALL_LOG)."""
    return tmp_path_factory.mktemp("aws-calls") / "calls.jsonl"


@pytest.fixture(scope="session")
def base_settings(aws_call_log) -> Settings:
    """Settings from the environment, with a short long-poll so listeners stop quickly."""
    settings = Settings.from_env().replace(wait_time=1, aws_call_log=aws_call_log)
    if not localstack.is_ready(settings.endpoint_url):
        pytest.exit(
            f"LocalStack is not answering at {settings.endpoint_url}, or S3 and SQS are not "
            "available there; run `make localstack-up` first",
            returncode=3,
        )
    return settings


@pytest.fixture
def settings(base_settings: Settings):
    """Provisioned queues and buckets of this test only, removed afterwards."""
    settings = unique_settings(base_settings, visibility_timeout=10)
    try:
        provision(settings)
        yield settings
    finally:
        remove_resources(settings)


@pytest.fixture
def queues(settings: Settings) -> Queues:
    return Queues(settings)


@pytest.fixture
def proxy(settings: Settings):
    """A fault-injecting proxy in front of the real LocalStack; listeners go through it."""
    host, port = settings.endpoint_url.rsplit("//", 1)[1].split(":")
    proxy = Proxy((host, int(port))).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def start_listener(settings: Settings):
    """Start BookListeners in threads of this process; all are stopped after the test."""
    started: list[tuple[BookListener, threading.Thread]] = []

    def start(listener_settings: Settings | None = None, cls: type = BookListener) -> BookListener:
        listener = cls(listener_settings or settings)
        thread = threading.Thread(target=listener.listen, daemon=True)
        thread.start()
        started.append((listener, thread))
        return listener

    yield start
    for listener, _ in started:
        listener.stop()
    for _, thread in started:
        thread.join(timeout=30)
        assert not thread.is_alive(), "the listener did not stop within 30 s of stop()"
