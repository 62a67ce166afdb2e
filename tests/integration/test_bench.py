"""The benchmark's quick mode, as `make test` runs it: one real run, checked and reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_small_benchmark_checks_correctness_and_writes_its_report(base_settings, tmp_path):
    # Given a running LocalStack (base_settings checks it), when the quick benchmark runs,
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--small", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )

    # then it exits 0 with every correctness check passed,
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "All checks passed." in result.stdout
    # and writes the report, the data and the chart, with every contender in both modes.
    for name in ("latest.md", "latest.json", "latest.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["correctness"] == {"passed": True, "problems": []}
    assert data["contenders"] == ["baseline", "bookd", "ceiling"]
    ran = {(run["mode"], run["contender"]) for run in data["runs"] if not run["problems"]}
    assert {(m, c) for m in data["modes"] for c in data["contenders"]} <= ran
    # Local rounds pair each bookd run with a ceiling taken right after it.
    local = [r for r in data["runs"] if r["mode"] == "local" and r["contender"] != "baseline"]
    assert sorted((r["contender"], r["round"]) for r in local) == [
        ("bookd", 1),
        ("bookd", 2),
        ("ceiling", 1),
        ("ceiling", 2),
    ]
    assert len(data["ratios"]["local"]["bookd/ceiling by round"]) == 2
    # Queue contenders are timed from when they were ready, and their start-up is shown.
    for run in data["runs"]:
        assert run["cpu_ms_per_book"]["consumer"] > 0, run
        if run["contender"] != "ceiling":
            assert 0 < run["startup_seconds"] < 30, run
            assert run["rate"] > run["extra"]["rate_from_process_start"], run
    assert data["memory"]["last_mb"] > 0
    assert data["http"]["/health"]["requests"] > 0
    assert data["targets"] is None  # only the full run evaluates them
