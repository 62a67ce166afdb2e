"""The uploads' adaptive limit (bookd.rules.limiter) as a gauge and a few log lines.

Under SlowDown the limit changes many times a second; the log gets at most one line
per LOG_EVERY_SECONDS while S3 pushes back (the limit now, the lowest since the last
line, the cuts), and one when the limit is back at its ceiling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bookd.core.outcomes import Outcomes
from bookd.telemetry import metrics

log = logging.getLogger("bookd.rules")

LOG_EVERY_SECONDS = 10.0
"""Seconds between two log lines about S3 pushing back."""


class UploadLimit(Outcomes):
    """Sets bookd_upload_limit at each change; logs them at a readable rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self._cuts = 0
        self._lowest: int | None = None
        self._warned = False
        """A line said S3 pushes back, and none since said the limit is back at its ceiling."""

    def upload_limit(self, limit: int, ceiling: int, *, throttled: bool) -> None:
        metrics.UPLOAD_LIMIT.set(limit)
        with self._lock:
            self._cuts += throttled
            self._lowest = limit if self._lowest is None else min(self._lowest, limit)
            now = self._clock()
            if limit >= ceiling:
                back, self._warned = self._warned, False
                self._cuts, self._lowest = 0, None
                if back:
                    self._logged_at = now
                    log.info("S3 takes %d uploads at once again", limit)
                return
            if not throttled or (
                self._logged_at is not None and now - self._logged_at < LOG_EVERY_SECONDS
            ):
                return
            cuts, lowest = self._cuts, self._lowest
            self._cuts, self._lowest = 0, None
            self._logged_at, self._warned = now, True
        log.warning(
            "S3 pushes back (SlowDown): %d uploads at once now, of %d (lowest %d, cut "
            "%d times since the last line); receiving goes on",
            limit,
            ceiling,
            lowest,
            cuts,
        )
