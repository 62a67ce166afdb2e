"""One read of every process's metric files serves many requests: the text and the
totals are made once per read, and a stale read is replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from bookd.core.config import Settings
from bookd.telemetry import metrics


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # One process's file, as prometheus-client writes it: 7 messages processed.
    written = MmapedDict(str(tmp_path / "counter_4242.db"))
    name = "bookd_messages_processed"
    key = mmap_key(name, f"{name}_total", [], [], "Input messages finished.")
    written.write_value(key, 7.0, 0.0)
    written.close()
    return Settings.from_env({}).replace(prometheus_multiproc_dir=tmp_path)


@pytest.fixture(autouse=True)
def fresh_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_recent", metrics._Recent())


def test_requests_within_a_read_share_its_text_and_totals(settings: Settings) -> None:
    text = metrics.render(settings)
    assert b"bookd_messages_processed_total 7.0" in text
    assert text is metrics.render(settings), "the text is rendered once per read"
    assert metrics.counts(settings) is metrics.counts(settings)
    assert metrics.counts(settings).processed == 7


def test_a_read_older_than_read_seconds_is_replaced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = metrics.counts(settings)
    monkeypatch.setattr(metrics, "READ_SECONDS", -1.0)
    second = metrics.counts(settings)
    assert second is not first
    assert second == first, "nothing was counted in between"


def test_without_a_metrics_folder_every_request_reads_this_process(settings: Settings) -> None:
    alone = settings.replace(prometheus_multiproc_dir=None)
    before = metrics.counts(alone).processed
    metrics.PROCESSED.inc()
    assert metrics.counts(alone).processed == before + 1
    assert b"bookd_messages_processed_total" in metrics.render(alone)
