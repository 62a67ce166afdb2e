"""Settings: built once from the environment, then passed down to constructors.

This module is the only place in bookd that reads ``os.environ``. Every setting
has its default here, next to its unit and meaning; the README's settings table
is written from this list.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bookd.errors import ConfigError

# --- defaults -------------------------------------------------------------

DEFAULT_ENDPOINT_URL = "http://127.0.0.1:4566"
"""Where S3 and SQS calls go; the host LocalStack. Empty means real AWS."""

DEFAULT_REGION = "us-east-1"

DEFAULT_INPUT_QUEUE = "InputQueue.fifo"
DEFAULT_OUTPUT_QUEUE = "OutputQueue.fifo"
DEFAULT_DEAD_LETTER_QUEUE = "InputQueue-dlq.fifo"

DEFAULT_BUCKETS = "scifi=scifi,romance=romance"
"""Genre-to-bucket map, ``genre=bucket`` pairs separated by commas."""

DEFAULT_MAX_RECEIVE_COUNT = 5
"""Deliveries of one input message before it goes to the dead-letter queue."""

DEFAULT_VISIBILITY_TIMEOUT = 30
"""Seconds a received message stays hidden; heartbeats extend it for long jobs."""

DEFAULT_WAIT_TIME = 10
"""Seconds of one long poll (SQS allows 1-20). Bounds how long a stop waits."""

DEFAULT_CONCURRENCY = 16
"""Threads working on different message groups at once, in the one listener."""

DEFAULT_RECEIVERS = 16
"""Receive loops in flight at once. A FIFO receive returns one group's messages, which
are worked on in order, so this is how many groups move at once. Against a real
network each group mostly waits, so more loops move more books (README: Benchmark)."""

DEFAULT_LISTENER_NICE = 10
"""CPU niceness added to the listener, so the HTTP API wins when the CPU is short."""

DEFAULT_CHECK_TIMEOUT = 2.0
"""Seconds for each outbound check made by /health and GET /."""

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 4
"""Request threads per Gunicorn worker, so one slow check never holds up the rest."""

DEFAULT_MAX_REQUESTS = 0
"""Requests after which a Gunicorn worker is replaced; 0 never replaces it."""

DEFAULT_TIMEOUT = 30
"""Seconds Gunicorn waits for a silent worker before killing it."""

DEFAULT_GRACEFUL_TIMEOUT = 25
"""Seconds workers get to finish on stop; below supervisord's stopwaitsecs (40)."""

DEFAULT_STATE_DIR = "var/run"
"""Lock file, listener status and Prometheus multiprocess files live here."""

LOCAL_CREDENTIALS = ("test", "test")
"""LocalStack accepts any credentials; these are used when none are configured."""


def _parse_buckets(text: str) -> dict[str, str]:
    buckets: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        genre, sep, bucket = pair.partition("=")
        if not sep or not genre.strip() or not bucket.strip():
            raise ConfigError(
                f"BOOKD_BUCKETS entry {pair!r} is not 'genre=bucket'; "
                f"write it like {DEFAULT_BUCKETS!r}"
            )
        buckets[genre.strip().lower()] = bucket.strip()
    if not buckets:
        raise ConfigError("BOOKD_BUCKETS is empty; give at least one 'genre=bucket' pair")
    return buckets


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be above 0")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything bookd can be told, with defaults that work against the host LocalStack."""

    endpoint_url: str | None = DEFAULT_ENDPOINT_URL
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    input_queue: str = DEFAULT_INPUT_QUEUE
    output_queue: str = DEFAULT_OUTPUT_QUEUE
    dead_letter_queue: str = DEFAULT_DEAD_LETTER_QUEUE
    buckets: Mapping[str, str] = field(default_factory=lambda: _parse_buckets(DEFAULT_BUCKETS))
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    wait_time: int = DEFAULT_WAIT_TIME
    concurrency: int = DEFAULT_CONCURRENCY
    receivers: int = DEFAULT_RECEIVERS
    listener_nice: int = DEFAULT_LISTENER_NICE
    check_timeout: float = DEFAULT_CHECK_TIMEOUT
    bind: str = DEFAULT_BIND
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS
    max_requests: int = DEFAULT_MAX_REQUESTS
    timeout: int = DEFAULT_TIMEOUT
    graceful_timeout: int = DEFAULT_GRACEFUL_TIMEOUT
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    control_token: str | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``BOOKD_*`` and the standard ``AWS_*`` variables; ConfigError if one is bad."""
        env = os.environ if env is None else env
        endpoint = env.get("BOOKD_ENDPOINT_URL", DEFAULT_ENDPOINT_URL).strip() or None
        access_key = env.get("AWS_ACCESS_KEY_ID") or None
        secret_key = env.get("AWS_SECRET_ACCESS_KEY") or None
        if endpoint and not (access_key and secret_key):
            # An emulator takes any credentials; real AWS gets boto3's own chain instead.
            access_key, secret_key = LOCAL_CREDENTIALS
        return cls(
            endpoint_url=endpoint,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            access_key_id=access_key,
            secret_access_key=secret_key,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            input_queue=env.get("BOOKD_INPUT_QUEUE") or DEFAULT_INPUT_QUEUE,
            output_queue=env.get("BOOKD_OUTPUT_QUEUE") or DEFAULT_OUTPUT_QUEUE,
            dead_letter_queue=env.get("BOOKD_DEAD_LETTER_QUEUE") or DEFAULT_DEAD_LETTER_QUEUE,
            buckets=_parse_buckets(env.get("BOOKD_BUCKETS") or DEFAULT_BUCKETS),
            max_receive_count=_int(
                env, "BOOKD_MAX_RECEIVE_COUNT", DEFAULT_MAX_RECEIVE_COUNT, low=1, high=1000
            ),
            visibility_timeout=_int(
                env, "BOOKD_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT, low=5, high=43200
            ),
            wait_time=_int(env, "BOOKD_WAIT_TIME", DEFAULT_WAIT_TIME, low=1, high=20),
            concurrency=_int(env, "BOOKD_CONCURRENCY", DEFAULT_CONCURRENCY, low=1, high=256),
            receivers=_int(env, "BOOKD_RECEIVERS", DEFAULT_RECEIVERS, low=1, high=64),
            listener_nice=_int(env, "BOOKD_LISTENER_NICE", DEFAULT_LISTENER_NICE, low=0, high=19),
            check_timeout=_float(env, "BOOKD_CHECK_TIMEOUT", DEFAULT_CHECK_TIMEOUT),
            bind=env.get("BOOKD_BIND") or DEFAULT_BIND,
            workers=_int(env, "BOOKD_WORKERS", DEFAULT_WORKERS, low=1, high=64),
            threads=_int(env, "BOOKD_THREADS", DEFAULT_THREADS, low=1, high=64),
            max_requests=_int(
                env, "BOOKD_MAX_REQUESTS", DEFAULT_MAX_REQUESTS, low=0, high=10_000_000
            ),
            timeout=_int(env, "BOOKD_TIMEOUT", DEFAULT_TIMEOUT, low=1, high=3600),
            graceful_timeout=_int(
                env, "BOOKD_GRACEFUL_TIMEOUT", DEFAULT_GRACEFUL_TIMEOUT, low=1, high=3600
            ),
            state_dir=Path(env.get("BOOKD_STATE_DIR") or DEFAULT_STATE_DIR).absolute(),
            control_token=env.get("BOOKD_CONTROL_TOKEN") or None,
            log_level=(env.get("BOOKD_LOG_LEVEL") or "INFO").upper(),
        )

    def replace(self, **changes: object) -> Settings:
        """A copy with some settings changed; tests use it for unique queue and bucket names."""
        return dataclasses.replace(self, **changes)

    @property
    def metrics_dir(self) -> Path:
        """prometheus-client's multiprocess directory, wiped at each Gunicorn start."""
        return self.state_dir / "metrics"

    @property
    def all_buckets(self) -> list[str]:
        """Each bucket once, in a stable order."""
        return sorted(set(self.buckets.values()))
