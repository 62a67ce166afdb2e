"""The fault suite's small version, as `make test` runs it: every scenario, really broken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faults.scenarios import SCENARIOS

pytestmark = [pytest.mark.slow, pytest.mark.suite]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(720)  # eleven scenarios, about 5 minutes on 2 shared cores
def test_every_fault_scenario_loses_duplicates_reorders_and_dead_letters_nothing(
    base_settings, tmp_path
):
    result = subprocess.run(
        [sys.executable, "-m", "faults.run", "--small", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=700,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    assert [r["scenario"] for r in data["results"]] == list(SCENARIOS)
    for r in data["results"]:
        outcome = r["outcome"]
        assert outcome["sent"] > 0 and outcome["stored"] == outcome["sent"], r
        assert outcome["lost"] == outcome["duplicated"] == outcome["out_of_order"] == 0, r
        assert outcome["valid_dead_lettered"] == 0, r
        assert not r["failures"], r
    assert "All scenarios passed." in (tmp_path / "latest.md").read_text()
