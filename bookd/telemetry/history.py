"""The last hour of what bookd counts, for the console: sampled by the listener, summed up
by whoever reads it.

Every SAMPLE_SECONDS the listener appends the totals of what bookd counts
(metrics.Counts: summed over every process, so a listener restart loses nothing) to
``history.json`` in the state directory, and keeps an hour and a minute of them. The
console (bookd.web) turns the samples into books stored and dead-lettered per
minute, processing-time percentiles and AWS calls per book. None of it makes an AWS
call, and one file serves every Gunicorn worker and every browser tab.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bookd.core.config import Settings
from bookd.telemetry.metrics import Counts

log = logging.getLogger(__name__)

FILE = "history.json"
"""In the state directory (BOOKD_STATE_DIR)."""
SAMPLE_SECONDS = 5.0
KEEP_SECONDS = 3660.0
"""An hour and a minute; beyond the last WINDOW_SECONDS, one sample a minute is kept."""
MINUTES = 60
"""Minutes of books stored and dead-lettered the console shows."""
WINDOW_SECONDS = 300.0
"""The span of the processing-time percentiles and of the calls per book."""


@dataclass(frozen=True)
class Sample:
    """The totals at one moment (seconds since the epoch)."""

    at: float
    counts: Counts = field(default_factory=Counts)


def path_of(settings: Settings) -> Path:
    return settings.state_dir / FILE


class History:
    """The listener's side: a sample every SAMPLE_SECONDS, written to the history file."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._samples = read(path)  # the hour before this listener, if another ran

    def sample(self, counts: Callable[[], Counts]) -> None:
        """Take a sample if one is due (``counts`` is read only then) and write the file."""
        now = self._clock()
        if self._samples and now - self._samples[-1].at < SAMPLE_SECONDS:
            return
        self._samples = _thinned([*self._samples, Sample(now, counts())], now)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps([_encode(s) for s in self._samples]))
        tmp.replace(self.path)  # a reader never sees half a file


def _thinned(samples: list[Sample], now: float) -> list[Sample]:
    """The last hour's samples: all of the last WINDOW_SECONDS (and a sample more), and
    the first of each minute before them (all the per-minute counts need)."""
    kept: list[Sample] = []
    for sample in samples:
        age = now - sample.at
        if age > KEEP_SECONDS:
            continue
        recent = age <= WINDOW_SECONDS + SAMPLE_SECONDS
        if recent or not kept or sample.at // 60 != kept[-1].at // 60:
            kept.append(sample)
    return kept


def read(path: Path) -> list[Sample]:
    """The samples in the file, oldest first; none if it is missing or unreadable."""
    try:
        raw = json.loads(path.read_text())
        return [_decode(item) for item in raw]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("Ignoring the unreadable history %s (%s)", path, exc)
        return []


def _encode(sample: Sample) -> dict[str, Any]:
    data = asdict(sample.counts)
    data["processing"] = [[_bound(le), n] for le, n in sample.counts.processing]
    return {"at": sample.at, **data}


def _decode(item: dict[str, Any]) -> Sample:
    counts = Counts(
        processed=float(item["processed"]),
        uploaded=float(item["uploaded"]),
        failed=float(item["failed"]),
        processing=tuple((float(le), float(n)) for le, n in item["processing"]),
        calls={str(k): float(v) for k, v in item["calls"].items()},
    )
    return Sample(float(item["at"]), counts)


def _bound(le: float) -> float | str:
    return "+Inf" if math.isinf(le) else le  # JSON has no infinity


# --- what the console shows ---------------------------------------------------------


def per_minute(samples: Sequence[Sample], now: float) -> dict[str, Any]:
    """Books stored and dead-lettered in each of the last MINUTES minutes, oldest first
    (None for a minute before the first sample)."""
    this_minute = math.floor(now / 60) * 60
    start = this_minute - (MINUTES - 1) * 60
    stored: list[float | None] = []
    dead: list[float | None] = []
    for minute in range(MINUTES):
        begin, end = start + minute * 60, start + (minute + 1) * 60
        # From the last sample before the minute (or its first, for the minute the
        # history began in) to its last one.
        base = _at(samples, begin) or next((s for s in samples if s.at >= begin), None)
        until = _at(samples, min(end, now))
        if base is None or until is None or base.at > until.at:
            stored.append(None)
            dead.append(None)
            continue
        stored.append(_growth(base.counts.uploaded, until.counts.uploaded))
        dead.append(_growth(base.counts.failed, until.counts.failed))
    return {"step_seconds": 60, "start": start, "stored": stored, "dead_lettered": dead}


def latency(samples: Sequence[Sample], now: float) -> dict[str, Any]:
    """Processing-time p50 and p99 over the last WINDOW_SECONDS, from the histogram."""
    first, last = _window(samples, now)
    if first is None or last is None:
        return {"p50_seconds": None, "p99_seconds": None, "window_seconds": None}
    earlier = dict(first.counts.processing)
    buckets = [(le, _growth(earlier.get(le, 0.0), n)) for le, n in last.counts.processing]
    return {
        "p50_seconds": _quantile(0.5, buckets),
        "p99_seconds": _quantile(0.99, buckets),
        "window_seconds": round(last.at - first.at),
    }


def calls_per_book(samples: Sequence[Sample], now: float) -> dict[str, float]:
    """S3 and SQS calls per book stored over the last WINDOW_SECONDS, by operation."""
    first, last = _window(samples, now)
    if first is None or last is None:
        return {}
    books = _growth(first.counts.uploaded, last.counts.uploaded)
    if books <= 0:
        return {}
    return {
        operation: round(_growth(first.counts.calls.get(operation, 0.0), calls) / books, 3)
        for operation, calls in sorted(last.counts.calls.items())
    }


def _at(samples: Sequence[Sample], moment: float) -> Sample | None:
    """The last sample taken at or before ``moment``."""
    found = None
    for sample in samples:
        if sample.at > moment:
            break
        found = sample
    return found


def _window(samples: Sequence[Sample], now: float) -> tuple[Sample | None, Sample | None]:
    """The first and last samples of the last WINDOW_SECONDS (or of all, if fewer)."""
    recent = [s for s in samples if now - s.at <= WINDOW_SECONDS + SAMPLE_SECONDS]
    if len(recent) < 2:
        return None, None
    return recent[0], recent[-1]


def _growth(before: float, after: float) -> float:
    # Counters start again at 0 when Gunicorn's master restarts (the metrics are wiped).
    return after - before if after >= before else after


def _quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile on cumulative buckets: linear within the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(le):
                return lower  # beyond the last bound: the last bound is all that is known
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return lower + (le - lower) * share
        lower, below = le, cumulative
    return lower
