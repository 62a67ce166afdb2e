"""Outbound checks for /health and GET /: short timeouts, results shared for a moment.

A burst of health checks must not become a burst of calls to LocalStack or AWS,
so each check's result is kept for ``CACHE_SECONDS`` and only one thread of a
worker makes the call while the others wait for its answer.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from bookd.aws import AWS_ERRORS, make_client
from bookd.config import Settings

CACHE_SECONDS = 1.0
"""How long one check's answer is reused before a refresh is started."""

MAX_STALE_SECONDS = 5.0
"""An answer older than this (nobody asked for a while) is not served: the call waits."""

READY_STATES = ("available", "running")
"""LocalStack service states in which S3 or SQS answer calls."""


class Cached:
    """A function's result, refreshed at most once per ``ttl`` seconds.

    A value up to ``max_stale`` seconds old is answered at once while one background
    thread fetches the next, so under steady polling a slow or unreachable LocalStack
    never holds a request up, and a burst of requests makes one call. Only the first
    call, or one after a quiet spell, waits (at most the check's own timeout).
    """

    def __init__(
        self,
        compute: Callable[[], Any],
        ttl: float = CACHE_SECONDS,
        max_stale: float = MAX_STALE_SECONDS,
    ) -> None:
        self._compute = compute
        self._ttl = ttl
        self._max_stale = max_stale
        self._lock = threading.Lock()
        self._value: Any = None
        self._expires = 0.0
        self._refreshing = False

    def get(self) -> Any:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now >= self._expires + self._max_stale:
                self._store(self._compute())
            elif now >= self._expires and not self._refreshing:
                self._refreshing = True
                # Started here, in the serving process: no thread crosses a fork.
                threading.Thread(target=self._refresh, name="check-refresh", daemon=True).start()
            return self._value

    def _refresh(self) -> None:
        try:
            value = self._compute()
            with self._lock:
                self._store(value)
        finally:
            with self._lock:
                self._refreshing = False

    def _store(self, value: Any) -> None:
        self._value = value
        self._expires = time.monotonic() + self._ttl


class Checks:
    """The outbound checks of one web process; clients are made lazily, after the fork."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, Any] = {}
        self.services = Cached(self._check_services)
        self.queue = Cached(self._check_queue)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            # One attempt only: the whole check must fit in its timeout.
            self._clients[service] = make_client(
                self.settings,
                service,
                read_timeout=self.settings.check_timeout,
                pool=4,
                attempts=1,
            )
        return self._clients[service]

    def _check_services(self) -> dict[str, Any]:
        """LocalStack's own health; against AWS, a cheap call to each bucket and queue."""
        if self.settings.endpoint_url:
            return self._localstack_health()
        return self._aws_checks()

    def _localstack_health(self) -> dict[str, Any]:
        url = f"{self.settings.endpoint_url}/_localstack/health"
        try:
            with urllib.request.urlopen(url, timeout=self.settings.check_timeout) as response:
                health = json.load(response)
        except (OSError, ValueError) as exc:
            return {"ok": False, "error": f"LocalStack at {url} did not answer: {exc}"}
        services = health.get("services", {})
        down = [name for name in ("s3", "sqs") if services.get(name) not in READY_STATES]
        body = {
            "edition": health.get("edition"),
            "services": services,
            "version": health.get("version"),
        }
        if down:
            body["error"] = f"not available: {', '.join(down)}"
        return {"ok": not down, **body}

    def _aws_checks(self) -> dict[str, Any]:
        checks: dict[str, str] = {}
        for bucket in self.settings.all_buckets:
            checks[f"s3:{bucket}"] = self._try(
                lambda b=bucket: self._client("s3").head_bucket(Bucket=b)
            )
        checks[f"sqs:{self.settings.input_queue}"] = self._try(
            lambda: self._client("sqs").get_queue_url(QueueName=self.settings.input_queue)
        )
        ok = all(v == "ok" for v in checks.values())
        return {"ok": ok, "checks": checks, **({} if ok else {"error": "a check failed"})}

    @staticmethod
    def _try(call: Callable[[], Any]) -> str:
        try:
            call()
        except AWS_ERRORS as exc:
            return f"failed: {exc}"
        return "ok"

    def _check_queue(self) -> dict[str, Any]:
        """Approximate depth and in-flight count of the input queue."""
        sqs = self._client("sqs")
        name = self.settings.input_queue
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
        except AWS_ERRORS as exc:
            return {"name": name, "error": f"unavailable: {exc}"}
        return {
            "name": name,
            "visible": int(attrs["ApproximateNumberOfMessages"]),
            "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        }
