"""The console's history: per-minute counts, percentiles and calls per book, offline.

The percentiles are held equal to Prometheus' own histogram_quantile, evaluated by a
real promtool on the same buckets.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
import yaml

from bookd.telemetry import history
from bookd.telemetry.history import History, Sample
from bookd.telemetry.metrics import Counts

BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, math.inf)
NOW = 1_800_000_000.0 + 45  # 45 s into a minute


def counts(uploaded: float = 0, failed: float = 0, done: tuple = (), **calls: float) -> Counts:
    """Counts with ``done``: processing times, each put in its histogram bucket."""
    cumulative = tuple((le, float(sum(1 for t in done if t <= le))) for le in BOUNDS)
    return Counts(uploaded=uploaded, failed=failed, processing=cumulative, calls=calls)


def test_books_stored_and_dead_lettered_per_minute_over_the_last_hour():
    minute = 60
    samples = [
        Sample(NOW - 3 * minute, counts(uploaded=10, failed=1)),
        Sample(NOW - 2 * minute, counts(uploaded=13, failed=1)),
        Sample(NOW - 1 * minute, counts(uploaded=20, failed=4)),
        Sample(NOW, counts(uploaded=21, failed=4)),
    ]
    shown = history.per_minute(samples, NOW)
    assert shown["step_seconds"] == 60 and len(shown["stored"]) == history.MINUTES
    assert shown["start"] == math.floor(NOW / 60) * 60 - 59 * 60
    # Minutes before the first sample are unknown, not zero.
    assert shown["stored"][:56] == [None] * 56
    assert shown["stored"][-4:] == [0, 3, 7, 1]
    assert shown["dead_lettered"][-4:] == [0, 0, 3, 0]


def test_a_restart_of_the_counters_is_not_a_negative_minute():
    samples = [Sample(NOW - 60, counts(uploaded=500)), Sample(NOW, counts(uploaded=4))]
    assert history.per_minute(samples, NOW)["stored"][-2:] == [0, 4]


def test_calls_per_book_over_the_last_five_minutes():
    samples = [
        Sample(NOW - 400, counts(uploaded=0, PutObject=0)),
        Sample(NOW - 300, counts(uploaded=10, PutObject=10, ReceiveMessage=2)),
        Sample(NOW, counts(uploaded=30, PutObject=30, ReceiveMessage=4, SendMessageBatch=2)),
    ]
    assert history.calls_per_book(samples, NOW) == {
        "PutObject": 1.0,
        "ReceiveMessage": 0.1,
        "SendMessageBatch": 0.1,
    }
    assert history.calls_per_book(samples[:1], NOW) == {}, "one sample: nothing to compare"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `make prometheus` installs Debian's package"
    return found


@pytest.mark.parametrize(
    "done",
    [
        (0.02, 0.03, 0.04, 0.06, 0.2),
        tuple(0.001 * n for n in range(1, 400)),
        (0.3,) * 99 + (5.0,),
    ],
)
def test_percentiles_are_prometheus_histogram_quantile(tmp_path, promtool, done):
    samples = [Sample(NOW - 300, counts()), Sample(NOW, counts(done=done))]
    shown = history.latency(samples, NOW)
    assert shown["window_seconds"] == 300
    # The same buckets as a series, and promtool's histogram_quantile of them.
    last = counts(done=done).processing
    series = [
        {
            "series": f'h_bucket{{le="{"+Inf" if math.isinf(le) else le}"}}',
            "values": f"{int(n)}",
        }
        for le, n in last
    ]
    tests = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": f"histogram_quantile({q}, h_bucket)",
                        "eval_time": "0m",
                        "exp_samples": [{"labels": "{}", "value": shown[key]}],
                    }
                    for q, key in ((0.5, "p50_seconds"), (0.99, "p99_seconds"))
                ],
            }
        ],
    }
    path = tmp_path / "quantiles_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_listener_samples_every_few_seconds_and_keeps_one_a_minute_beyond_the_window(
    tmp_path,
):
    clock = [NOW - 3600]
    path = tmp_path / history.FILE
    kept = History(path, clock=lambda: clock[0])
    reads = 0

    def read() -> Counts:
        nonlocal reads
        reads += 1
        return counts(uploaded=reads)

    while clock[0] <= NOW:
        kept.sample(read)
        clock[0] += 1
    samples = history.read(path)
    assert reads == 3601 // history.SAMPLE_SECONDS + 1, "counts read only when a sample is due"
    recent = [s for s in samples if NOW - s.at <= history.WINDOW_SECONDS]
    assert len(recent) == history.WINDOW_SECONDS // history.SAMPLE_SECONDS + 1
    older = [s for s in samples if NOW - s.at > history.WINDOW_SECONDS + history.SAMPLE_SECONDS]
    assert len({s.at // 60 for s in older}) == len(older), "one a minute beyond the window"
    # A new listener goes on from the file.
    again = History(path, clock=lambda: NOW + 10)
    again.sample(lambda: counts(uploaded=9999))
    assert history.read(path)[-1].counts.uploaded == 9999
    assert history.read(path)[0].at == samples[0].at, "the hour before it is kept"
