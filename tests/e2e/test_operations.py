"""What operators rely on, end to end: a real Prometheus scraping the real stack, the
dashboard's queries answered, liveness under kill -STOP, JSON logs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

from bookd.aws.clients import make_client
from bookd.aws.provision import provision
from bookd.core.exits import EXIT_DOWN
from harness.resources import Queues
from harness.waiting import free_port, wait_for
from tests.terminal import screen_of
from tests.unit.test_monitoring_files import DASHBOARD, dashboard_expressions

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
BOOK = {"author": "A. Writer", "year": "1999", "summary": "...", "genre": "scifi"}
SUPERVISORD_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARN|CRIT|ERRO|DEBG) ")
"""supervisord's own lifecycle lines, which are its format, not bookd's."""


def send_books(queues: Queues, count: int) -> None:
    for n in range(count):
        queues.send({**BOOK, "id": f"ops-{n}", "title": f"ops-{n}"}, group=f"g{n % 3}")


def binary(name: str) -> str:
    path = Path("/usr/bin") / name
    assert path.exists(), f"{name} is missing: `make prometheus` installs Debian's package"
    return str(path)


@pytest.fixture
def prometheus(tmp_path):
    """Start a real Prometheus on a free loopback port; returns (start(target), query)."""
    procs: list[subprocess.Popen] = []
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start(target: str) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "bookd", "static_configs": [{"targets": [target]}]}],
        }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        procs.append(
            subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=open(tmp_path / "prometheus.log", "ab"),  # noqa: SIM115 - closed with it
                stderr=subprocess.STDOUT,
            )
        )
        assert wait_for(lambda: _ready(url), timeout=30), (tmp_path / "prometheus.log").read_text()

    def query(expr: str) -> list:
        response = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    yield start, query
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_prometheus_scrapes_bookd_and_every_dashboard_query_returns_data(
    make_stack, queues, prometheus
):
    start, query = prometheus
    stack = make_stack()
    # Every counter exists before the first message.
    text = stack.get("/metrics").text
    for name in ("bookd_messages_processed_total", "bookd_messages_uploaded_total"):
        assert re.search(rf"^{name} 0\.0$", text, re.M), name
    assert re.search(r'^bookd_messages_failed_total\{reason="invalid-json"\} 0\.0$', text, re.M)
    # promtool accepts the exposition as it is.
    checked = subprocess.run(
        [binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    start(urllib.parse.urlsplit(stack.url).netloc)
    send_books(queues, 12)
    queues.send("not json", group="bad")
    assert len(queues.outputs(12, timeout=30)) == 12
    assert wait_for(lambda: query('up{job="bookd"} == 1'), timeout=30)
    # Give rate() windows a few scrapes after the work, then ask every query.
    time.sleep(8)
    empty = {}
    for where, expr in dashboard_expressions(json.loads(DASHBOARD.read_text())).items():
        if not query(expr):
            empty[where] = expr
    assert not empty, f"dashboard queries without data: {empty}"
    [failed] = query('sum(bookd_messages_failed_total{reason="invalid-json"})')
    assert float(failed["value"][1]) == 1
    assert query("ALERTS") == [] or all(
        a["metric"]["alertname"] != "BookdListenerDown" for a in query("ALERTS")
    )


def test_livez_turns_503_while_the_listener_is_frozen_and_200_once_it_goes_on(
    make_stack, stack_settings
):
    stack = make_stack()
    assert stack.get("/livez").status_code == 200
    [listener] = stack.processes(kind="listener")
    os.kill(listener, signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        assert wait_for(lambda: stack.get("/livez").status_code == 503, timeout=30)
        # Two long polls and a margin: the listener's threads report at least that often.
        assert time.monotonic() - frozen_at >= 2 * stack_settings.wait_time
        assert stack.get("/readyz").status_code == 503
    finally:
        os.kill(listener, signal.SIGCONT)
    assert wait_for(lambda: stack.get("/livez").status_code == 200, timeout=15)
    assert stack.processes(kind="listener") == [listener], "it went on; it was not replaced"


def test_with_json_logs_every_line_is_json_and_message_lines_name_their_message(make_stack, queues):
    stack = make_stack(BOOKD_LOG_FORMAT="json")
    send_books(queues, 3)
    bad_id = queues.send("not json", group="bad")
    assert len(queues.outputs(3, timeout=30)) == 3
    assert queues.dead_letters(1, timeout=30)
    stack.get("/health")
    time.sleep(1.5)
    lines = (stack.tmp / "stack.log").read_text().splitlines()
    records = []
    for line in lines:
        if not line.strip() or SUPERVISORD_LINE.match(line):
            continue
        records.append(json.loads(line))  # raises on any line that is not JSON
    assert all({"asctime", "level", "logger", "pid", "message"} <= r.keys() for r in records)
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert any("/health" in r["message"] for r in access), "the access log is JSON too"
    finished = [r for r in records if r.get("outcome")]
    assert {r["outcome"] for r in finished} == {"stored", "dead-lettered"}
    for r in finished:
        assert r["message_id"] and r["group_id"] and "duration_seconds" in r
    [letter] = [r for r in finished if r["outcome"] == "dead-lettered"]
    assert (letter["message_id"], letter["reason"]) == (bad_id, "invalid-json")
    stored = [r for r in finished if r["outcome"] == "stored"]
    assert all(r["bucket"] and r["key"] and r["book_id"] for r in stored)
    about_messages = [r for r in records if "message" in r and "message " in r["message"]]
    assert all("message_id" in r or "message_ids" in r for r in about_messages)


def test_a_bucket_deleted_under_the_stack_is_named_by_readiness_status_and_the_log(
    make_stack, settings, queues
):
    # Given a running stack whose romance bucket is deleted,
    stack = make_stack()
    bucket = settings.buckets["romance"]
    s3 = make_client(settings, "s3")
    s3.delete_bucket(Bucket=bucket)
    # when a romance book comes,
    queues.send({**BOOK, "id": "lost-bucket", "title": "Waits", "genre": "romance"}, group="r")
    named = f"bucket {bucket}"

    def not_ready() -> bool:
        return stack.get("/readyz").status_code == 503 and named in stack.get("/readyz").text

    # then readiness (for a caller on this machine, who sees causes), GET /,
    assert wait_for(not_ready, timeout=20), stack.get("/readyz").text
    cause = stack.get("/readyz").json()["listener"]["dependencies"]["s3"]["cause"]
    assert cause == f"PutObject on {named}: NoSuchBucket"
    assert stack.status()["listener"]["dependencies"]["s3"]["cause"] == cause
    # bookd status, as a terminal shows it,
    env = {**os.environ, **stack.env}
    code, screen = screen_of([sys.executable, "-m", "bookd", "status"], env)
    assert code == EXIT_DOWN
    assert any(line.startswith("s3 ") and named in line for line in screen), screen
    # and the log line all name the bucket;
    assert f"s3 is misconfigured (PutObject on {named}: NoSuchBucket)" in stack.log_tail(400)
    # once it is back, the book is stored and announced once.
    provision(settings)
    assert [o["id"] for o in queues.outputs(1, timeout=40)] == ["lost-bucket"]
    assert queues.outputs(1, timeout=2) == []
