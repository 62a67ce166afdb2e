"""boto3 clients for S3 and SQS: one factory, with the hooks every client gets.

Every call goes to the configured endpoint and is timed into bookd_aws_request_*;
with BOOKD_AWS_CALL_LOG set, it is also logged (what IAM permissions bookd uses).
Clients are made by whoever uses them, in the process that uses them: a boto3 client
made before a fork must not be used after it (botocore#1246). The clients of one
process share one boto3 session, hence its loaded service models and its credentials.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.handlers import add_expect_header

from bookd.core.config import Settings
from bookd.telemetry import metrics

CLIENT_RETRIES = {"mode": "standard", "total_max_attempts": 3}
"""botocore's own retries of each call (its "standard" mode: three tries in all,
jittered), which absorb blips before bookd's retry policy (bookd.rules.retry) sees a
failure. botocore's other key, ``max_attempts``, counts the retries after the first
try: 3 there would be four tries, and 1 two."""


def make_client(
    settings: Settings,
    service: str,
    *,
    read_timeout: float | None = None,
    pool: int = 10,
    attempts: int | None = None,
    purpose: str = "other",
) -> Any:
    """A boto3 client for ``service`` that sends every call to the configured endpoint.

    ``attempts`` is how many tries botocore makes of each call, the first included
    (default: CLIENT_RETRIES). ``purpose`` names the part of bookd that calls
    (listener, web, cli, peek, provision; "other" for tests and tools) in the
    BOOKD_AWS_CALL_LOG, which shows what IAM permissions each part uses.
    """
    retries = dict(CLIENT_RETRIES)
    if attempts is not None:
        retries["total_max_attempts"] = attempts
    config = Config(
        region_name=settings.region,
        connect_timeout=settings.check_timeout,
        # A long poll holds the connection for wait_time seconds; the read must outlast it.
        read_timeout=read_timeout if read_timeout is not None else settings.wait_time + 10,
        retries=retries,
        max_pool_connections=pool,
        # LocalStack serves buckets by path; AWS accepts both.
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    with _shared.lock:
        client = _shared.session().client(
            service,
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            # None: botocore's default, the system's certificates.
            verify=str(settings.ca_bundle) if settings.ca_bundle else None,
            config=config,
        )
    if service == "s3":
        # bookd's bodies are small (a book: under 1 MiB, or one that came as a pointer, at
        # most BOOKD_PAYLOAD_MAX_BYTES): waiting for "100 Continue" before sending one
        # costs a whole extra round trip, for the rare answer it would spare the bytes of.
        client.meta.events.unregister("before-call.s3", add_expect_header)
    _time_calls(client)
    if settings.aws_call_log is not None:
        _log_calls(client, settings.aws_call_log, purpose)
    return client


class _Shared:
    """This process's boto3 session, made at its first use and again in a forked child.

    Its clients share what it loads once: each service's model and endpoint rules (a
    client made from a session of its own loads them again: 60-80 ms of CPU each on
    two cores, three times at every start of the listener), and the credentials of its
    chain when the settings give none (refreshed by botocore as they expire).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # a session is not thread-safe; its clients are
        self._session: boto3.session.Session | None = None

    def session(self) -> boto3.session.Session:
        """The session; call it holding ``lock``."""
        if self._session is None:
            self._session = boto3.session.Session()
        return self._session


_shared = _Shared()


def _forget_parents_session() -> None:
    # A forked child makes its own: another thread of the parent may have held the lock
    # at the fork (never to release it here), and botocore's objects are not made to
    # cross a fork (botocore#1246).
    global _shared
    _shared = _Shared()


os.register_at_fork(after_in_child=_forget_parents_session)


def credentials(settings: Settings) -> Credentials | None:
    """The credentials that bookd's clients of ``settings`` sign with: the configured
    keys, else those of the default chain (environment, profile, container or instance
    role); None if there are none."""
    if settings.access_key_id and settings.secret_access_key:
        return Credentials(
            settings.access_key_id, settings.secret_access_key, settings.session_token
        )
    with _shared.lock:
        found: Credentials | None = _shared.session().get_credentials()
        return found


def log_call(
    path: Path, purpose: str, service: str, operation: str, target: str, *, versioned: bool = False
) -> None:
    """Append one call's service, operation, queue or bucket and ``purpose`` to ``path``."""
    line = {
        "purpose": purpose,
        "service": service,
        "operation": operation,
        "target": target.rsplit("/", 1)[-1],
        "versioned": versioned,
    }
    # One short line per write, appended: lines of several processes never mix.
    with path.open("a") as log_file:
        log_file.write(json.dumps(line) + "\n")


def observe_call(service: str, operation: str, seconds: float, error: str | None) -> None:
    """Time one call into bookd_aws_request_seconds; count its failure, if it failed."""
    metrics.AWS_SECONDS.labels(service=service, operation=operation).observe(seconds)
    if error is not None:
        metrics.AWS_ERRORS.labels(service=service, operation=operation, code=error).inc()


def _log_calls(client: Any, path: Path, purpose: str) -> None:
    """Log each call of ``client`` (log_call)."""

    def record(event_name: str, params: dict[str, Any], **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        target = params.get("Bucket") or params.get("QueueName") or params.get("QueueUrl", "")
        log_call(path, purpose, service, operation, str(target), versioned="VersionId" in params)

    client.meta.events.register("before-parameter-build", record)


def _time_calls(client: Any) -> None:
    """Record each call's duration and failure (bookd_aws_request_*), and how many messages
    each SQS batch call carried (bookd_batch_messages, bookd_empty_receives), through
    botocore's events."""
    started, entries = "bookd_started", "bookd_entries"

    def count_entries(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if isinstance(params.get("Entries"), list):
            context[entries] = len(params["Entries"])

    def before(context: dict[str, Any], **_: Any) -> None:
        context[started] = time.monotonic()

    def observe(event_name: str, context: dict[str, Any], error: str | None) -> None:
        _, service, operation = event_name.split(".", 2)
        if started in context:
            observe_call(service, operation, time.monotonic() - context.pop(started), error)
        elif error is not None:
            metrics.AWS_ERRORS.labels(service=service, operation=operation, code=error).inc()

    def after(event_name: str, http_response: Any, parsed: Any, context: Any, **_: Any) -> None:
        error = None
        if http_response.status_code >= 300:
            error = str(parsed.get("Error", {}).get("Code") or http_response.status_code)
        observe(event_name, context, error)
        operation = event_name.rsplit(".", 1)[-1]
        if error is None and operation == "ReceiveMessage":
            brought = len(parsed.get("Messages", []))
            metrics.BATCH_MESSAGES.labels(operation=operation).observe(brought)
            if not brought:
                metrics.EMPTY_RECEIVES.inc()
        elif error is None and entries in context:
            metrics.BATCH_MESSAGES.labels(operation=operation).observe(context.pop(entries))

    def after_error(event_name: str, exception: Exception, context: Any, **_: Any) -> None:
        observe(event_name, context, type(exception).__name__)

    events = client.meta.events
    events.register("before-parameter-build", count_entries)
    events.register("before-call", before)
    events.register("after-call", after)
    events.register("after-call-error", after_error)
