"""What the listener knows of S3 and SQS right now: the problems that pause receiving.

A problem is kept per (service, operation): an outage, throttling or a configuration
fault such as AccessDenied or a missing bucket. While any is open the listener takes
no new messages (each receive would cost them a delivery for nothing). A problem has
owners: the callers retrying the failing call (bookd.rules.retry). The first success
clears it; when the last owner stops retrying (its message was handed on), the
problem is dropped, since no one could ever see it clear, and receiving resumes (a
receive then meets the problem again if it lasts). Each problem is logged once when
it opens and once when it ends; /health and /readyz show the open ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from bookd.core.errors import SERVICES, AwsFault, FaultKind

log = logging.getLogger(__name__)

STATES = {
    FaultKind.UNAVAILABLE: "down",
    FaultKind.THROTTLED: "throttled",
    FaultKind.MISCONFIGURED: "misconfigured",
    FaultKind.REJECTED: "misconfigured",
}
"""How a service with an open problem of each kind is shown."""

SEVERITY = (FaultKind.MISCONFIGURED, FaultKind.REJECTED, FaultKind.UNAVAILABLE, FaultKind.THROTTLED)
"""Which problem a service shows when it has several: what needs a person first."""


@dataclass(frozen=True)
class Problem:
    """One failing kind of call, since when, and why."""

    service: str
    operation: str
    kind: FaultKind
    cause: str
    """Operation and error code, e.g. "PutObject: AccessDenied"."""
    detail: str
    since: float
    """Wall-clock time it opened."""


class Dependencies:
    """Open problems by (service, operation); thread-safe; ``on_change`` after each change."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], Problem] = {}
        self._owners: dict[tuple[str, str], set[object]] = {}
        self._cleared = threading.Condition(self._lock)
        self._on_change = on_change

    def report(self, fault: AwsFault, *, owner: object, kind: FaultKind | None = None) -> None:
        """Open (or update) the problem of the fault's call, retried by ``owner``.

        Logged when it opens.
        """
        kind = kind or fault.kind
        key = (fault.service, fault.operation)
        with self._lock:
            known = self._open.get(key)
            since = known.since if known else time.time()
            self._open[key] = Problem(
                fault.service, fault.operation, kind, fault.cause, fault.detail, since
            )
            self._owners.setdefault(key, set()).add(owner)
        if known is None or known.kind != kind:
            log.warning(
                "%s is %s (%s); receiving pauses until it works again: %s",
                fault.service,
                STATES[kind],
                fault.cause,
                fault.detail,
            )
            self._changed()

    def clear(self, service: str, operation: str) -> None:
        """The call worked: close its problem, if one was open."""
        key = (service, operation)
        with self._lock:
            if key not in self._open:
                return
            problem = self._open.pop(key)
            self._owners.pop(key, None)
            self._cleared.notify_all()
        log.warning(
            "%s works again (%s, after %.0f s)",
            service,
            problem.cause,
            time.time() - problem.since,
        )
        self._changed()

    def release(self, owner: object) -> None:
        """``owner`` no longer retries; drop the problems no one retries any more."""
        with self._lock:
            dropped = []
            for key, owners in list(self._owners.items()):
                owners.discard(owner)
                if not owners:
                    del self._owners[key]
                    dropped.append(self._open.pop(key))
            if dropped:
                self._cleared.notify_all()
        for problem in dropped:
            log.warning(
                "No one retries %s now (%s, for %.0f s); receiving resumes",
                problem.service,
                problem.cause,
                time.time() - problem.since,
            )
        if dropped:
            self._changed()

    def is_open(self, service: str) -> bool:
        """Whether a problem of ``service`` is open."""
        with self._lock:
            return any(p.service == service for p in self._open.values())

    def blocked(self, *, ignoring: Collection[tuple[str, str]] = ()) -> bool:
        """Whether a problem is open, other than those of the calls in ``ignoring``."""
        with self._lock:
            return any(key not in ignoring for key in self._open)

    def wait_clear(self, timeout: float, *, ignoring: Collection[tuple[str, str]] = ()) -> bool:
        """Wait up to ``timeout`` seconds for every problem (but ``ignoring``) to clear."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(key not in ignoring for key in self._open):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cleared.wait(left)
        return True

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Each service's state ("ok" or its worst problem's), cause, detail and since."""
        with self._lock:
            problems = list(self._open.values())
        result: dict[str, dict[str, object]] = {}
        for service in SERVICES:
            mine = [p for p in problems if p.service == service]
            if not mine:
                result[service] = {"state": "ok"}
                continue
            worst = min(mine, key=lambda p: SEVERITY.index(p.kind))
            result[service] = {
                "state": STATES[worst.kind],
                "cause": worst.cause,
                "detail": worst.detail,
                "since": worst.since,
            }
        return result

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
