"""Outbound checks for /health and GET /: short timeouts, results shared for a moment.

A burst of health checks must not become a burst of calls to LocalStack or AWS,
and a slow dependency must not make a slow health check: each check's result is
kept for ``CACHE_SECONDS`` and refreshed by one background thread per worker, and
a request waits for that call only when there is no answer yet (see Cached).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from bookd.aws.clients import make_client
from bookd.aws.codes import AWS_ERRORS
from bookd.aws.sqs import Queue
from bookd.core.config import Settings
from bookd.core.errors import AwsFault

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
"""How long one check's answer is reused before a refresh is started."""

MAX_STALE_SECONDS = 5.0
"""Up to this long past its period an answer is served at once while a refresh runs."""

PATIENCE_SECONDS = 0.05
"""How long a request waits for a refresh of an older answer before it gets that one."""

READY_STATES = ("available", "running")
"""LocalStack service states in which S3 or SQS answer calls."""


class Cached:
    """A function's result, refreshed at most once per ``ttl`` seconds, in the background.

    A health endpoint that waits on its dependencies turns their slowness into failed
    probes and restarts, so a request waits for a call only when there is no answer
    at all yet. Otherwise one background thread refreshes the answer, however many
    requests come, and a request gets:

    - an answer up to ``ttl + max_stale`` seconds old at once (steady polling);
    - for an older one (a quiet spell), the fresh answer if it comes within
      ``patience`` seconds (as it does when LocalStack is well), else the old one.
      The next request gets the fresh answer once it is in.
    """

    def __init__(
        self,
        compute: Callable[[], Any],
        ttl: float = CACHE_SECONDS,
        max_stale: float = MAX_STALE_SECONDS,
        patience: float = PATIENCE_SECONDS,
    ) -> None:
        self._compute = compute
        self._ttl = ttl
        self._max_stale = max_stale
        self._patience = patience
        self._lock = threading.Lock()
        self._value: Any = None
        self._error: Exception | None = None
        self._expires = 0.0
        self._refreshed: threading.Event | None = None
        """Set when the refresh in progress ends; None while none runs."""

    def prefetch(self) -> None:
        """Start fetching the first answer, so that the first request need not wait."""
        with self._lock:
            if self._value is None:
                self._start_refresh()

    def get(self) -> Any:
        with self._lock:
            now = time.monotonic()
            if self._value is not None and now < self._expires:
                return self._value
            refreshed = self._start_refresh()
            if self._value is not None and now < self._expires + self._max_stale:
                return self._value
            has_value = self._value is not None
        # The check bounds its own time (its timeouts), so the first wait ends.
        refreshed.wait(self._patience if has_value else None)
        with self._lock:
            if self._value is None and self._error is not None:
                raise self._error
            return self._value

    def _start_refresh(self) -> threading.Event:
        # Under the lock. Started here, in the serving process: no thread crosses a fork.
        if self._refreshed is None:
            self._refreshed = threading.Event()
            threading.Thread(target=self._refresh, name="check-refresh", daemon=True).start()
        return self._refreshed

    def _refresh(self) -> None:
        value, error = None, None
        try:
            value = self._compute()
        except Exception as exc:  # handed to the requests that wait for this answer
            name = getattr(self._compute, "__name__", "check")
            log.exception("Check %s failed; its last answer stays", name)
            error = exc
        with self._lock:
            if error is None:
                self._value = value
                self._expires = time.monotonic() + self._ttl
            self._error = error
            refreshed, self._refreshed = self._refreshed, None
        if refreshed is not None:
            refreshed.set()


class Checks:
    """The outbound checks of one web process; clients are made lazily, after the fork."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, Any] = {}
        self._input: Queue | None = None
        self._tls: ssl.SSLContext | None = None
        self.services = Cached(self._check_services)
        self.queue = Cached(self._check_queue)

    def prefetch(self) -> None:
        """Fetch every check's first answer in the background (Gunicorn's post_worker_init)."""
        self.services.prefetch()
        self.queue.prefetch()

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            # One attempt only: the whole check must fit in its timeout.
            self._clients[service] = make_client(
                self.settings,
                service,
                purpose="web",
                read_timeout=self.settings.check_timeout,
                pool=4,
                attempts=1,
            )
        return self._clients[service]

    def _trust(self) -> ssl.SSLContext | None:
        """Over https, what LocalStack's certificate is checked against: AWS_CA_BUNDLE, as
        the S3 and SQS clients check theirs, else the system's; None over http.
        Made once: loading certificates costs 20-30 ms of CPU, which each refresh, every
        second, would take from the requests this worker serves."""
        if not self.settings.over_tls:
            return None
        if self._tls is None:
            bundle = self.settings.ca_bundle
            self._tls = ssl.create_default_context(cafile=str(bundle) if bundle else None)
        return self._tls

    def _check_services(self) -> dict[str, Any]:
        """LocalStack's own health; against AWS, a cheap call to each bucket and queue."""
        if self.settings.endpoint_url:
            return self._localstack_health()
        return self._aws_checks()

    def _localstack_health(self) -> dict[str, Any]:
        url = f"{self.settings.endpoint_url}/_localstack/health"
        try:
            with urllib.request.urlopen(
                url, timeout=self.settings.check_timeout, context=self._trust()
            ) as response:
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
        name = self.settings.input_queue
        try:
            if self._input is None:
                self._input = Queue(self._client("sqs"), name)
            depth = self._input.depth()
        except AwsFault as exc:
            return {"name": name, "error": f"unavailable: {exc}"}
        return {"name": name, "visible": depth.visible, "in_flight": depth.in_flight}
