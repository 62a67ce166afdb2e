"""The benchmark's quick mode, as `make test` runs it: one real run, checked and reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.suite]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(360)
def test_small_benchmark_checks_correctness_and_writes_its_report(base_settings, tmp_path):
    # Given a running LocalStack (base_settings checks it), when the quick benchmark runs,
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--small", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=330,
    )

    # then it exits 0 with every correctness check passed,
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "All checks passed." in result.stdout
    # and writes the report, the data and the chart.
    for name in ("latest.md", "latest.json", "latest.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["correctness"] == {"passed": True, "problems": []}
    assert data["contenders"] == ["baseline", "bookd", "floor", "ceiling", "bookd x2", "bookd x4"]
    local, delayed, one_group, scale_out = data["modes"]
    assert data["modes"] == ["local", "20ms", "20ms-one-group", "200ms-scale-out"]
    ran = {(r["mode"], r["contender"], r["round"]) for r in data["runs"] if not r["problems"]}
    # Locally and at 20 ms, each round pairs a bookd run with a floor and a ceiling taken
    # right after it, and the ratios are per round.
    for mode in (local, delayed):
        assert (mode, "baseline", 1) in ran
        for contender in ("bookd", "floor", "ceiling"):
            assert {(mode, contender, 1), (mode, contender, 2)} <= ran, (mode, contender)
        assert len(data["ratios"][mode]["bookd/floor by round"]) == 2
        assert len(data["ratios"][mode]["bookd/ceiling by round"]) == 2
    # One group at 20 ms: the baseline and bookd, on books all in one FIFO group.
    assert {(one_group, "baseline", 1), (one_group, "bookd", 1), (one_group, "bookd", 2)} <= ran
    assert len(data["ratios"][one_group]["bookd by round"]) == 2
    assert {r["groups"] for r in data["runs"] if r["mode"] == one_group} == {1}
    assert data["ratios"][one_group]["bookd/baseline"] > 0
    # Scale-out: one instance, then two on the same queues, each with the receive loops
    # named, timed from when both were ready.
    assert {(scale_out, "bookd", 1), (scale_out, "bookd x2", 1)} <= ran
    assert data["scale_out_env"]["BOOKD_RECEIVERS"] == "4"
    [two] = [r for r in data["runs"] if r["contender"] == "bookd x2"]
    assert two["extra"]["env"]["BOOKD_RECEIVERS"] == "4"
    assert len(two["extra"]["instances"]) == 2
    assert all(not i["listener_restarted"] for i in two["extra"]["instances"])
    assert data["ratios"][scale_out]["two/one instance"] > 0
    # Queue contenders are timed from when they were ready, and their start-up is shown.
    for run in data["runs"]:
        if "-steady-" in run["mode"]:
            continue  # paced: timed by each book's latency, not by a start and an end
        assert run["cpu_ms_per_book"]["consumer"] > 0, run
        if run["contender"] != "ceiling":
            assert 0 < run["startup_seconds"] < 30, run
            assert run["rate"] > run["extra"]["rate_from_process_start"], run
    # The listener's CPU per book shows on each run's line and in the report.
    assert data["listener_cpu_ms_per_book"] > 0
    assert "CPU ms/book" in result.stdout
    assert "Listener CPU per book, local" in (tmp_path / "latest.md").read_text()
    assert data["memory"]["last_mb"] > 0
    assert data["http"]["/health"]["requests"] > 0
    assert {p: h["requests"] > 0 for p, h in data["http_think"].items()} == {
        "/health": True,
        "/": True,
        "/metrics": True,
    }
    # Latency at two steady loads, bookd beside the floor and the baseline.
    for load in ("light", "half"):
        steady = data["steady"][load]
        assert steady["bookd"]["passed"] and steady["floor"]["passed"], steady
        assert 0 < steady["bookd"]["p50"] <= steady["bookd"]["p99"] < 30
        assert steady["bookd/floor p50"] > 0
    assert "## Latency at a steady load" in (tmp_path / "latest.md").read_text()
    # Every bookd run says what its books cost in AWS calls: at least one PutObject each.
    for run in data["runs"]:
        if run["contender"] == "bookd" and not run["problems"]:
            assert run["extra"]["aws_calls"]["PutObject"] >= run["books"], run
    assert "AWS calls/book" in (tmp_path / "latest.md").read_text()
    # Stopping: each bookd run's stack once its queue emptied, and one in full flow.
    assert data["stops"]["idle_seconds"] > 0
    assert data["stops"]["loaded"]["seconds"] > 0
    assert data["stops"]["loaded"]["announced_before_stop"] < data["stops"]["loaded"]["books"]
    assert 0 < data["stops"]["cold_start"]["seconds"] < 30
    assert "## Starting and stopping" in (tmp_path / "latest.md").read_text()
    assert data["targets"] is None  # only the full run evaluates them
