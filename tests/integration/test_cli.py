"""The `bookd` command against the real LocalStack."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bookd.cli import main


def bookd(settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=settings.to_env(), catch_exceptions=False)
    return result.exit_code, result.output


def test_peek_input_shows_counts_and_never_costs_a_message_a_delivery(settings, queues):
    queues.send({"id": "1", "title": "peeked", "genre": "scifi"})
    for _ in range(6):
        code, out = bookd(settings, "peek", "input")
        assert code == 0
        assert json.loads(out)["ApproximateNumberOfMessages"] == 1
    [message] = queues.collect(settings.input_queue, 1, timeout=10)
    assert message["Attributes"]["ApproximateReceiveCount"] == "1", "peeking received nothing"


def test_settings_lists_every_setting_and_prints_the_readme_table(settings):
    code, out = bookd(settings, "settings", "--markdown")
    assert code == 0 and out.startswith("| variable | default | meaning |")
    code, out = bookd(settings, "--help")
    assert "BOOKD_RETRY_FOR" in out and "BOOKD_CONTROL_TOKEN_FILE" in out
