"""End to end: supervisord + Gunicorn (4 workers) + the listener, real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from bookd.telemetry.metrics import READ_SECONDS
from bookd.web import checks as health
from harness.proxy import Proxy
from harness.resources import Queues
from harness.waiting import wait_for

pytestmark = pytest.mark.slow

BOOK = {"author": "A. Writer", "year": "1999", "summary": "...", "genre": "scifi"}


def send_books(queues: Queues, prefix: str, count: int, *, groups: int = 5) -> list[str]:
    ids = []
    for n in range(count):
        book_id = f"{prefix}-{n:03d}"
        queues.send({**BOOK, "id": book_id, "title": book_id}, group=f"g{n % groups}")
        ids.append(book_id)
    return ids


def test_four_workers_run_exactly_one_listener_across_reloads_and_recycling(make_stack):
    stack = make_stack(BOOKD_MAX_REQUESTS="10")
    [listener] = stack.processes(kind="listener")
    assert len(stack.processes(kind="gunicorn")) == 5  # master and 4 workers
    status = stack.status()["listener"]
    assert status["pid"] == listener
    # ISO times of one zone and format compare as strings.
    assert status["started_at"] <= status["connected_at"]
    # Connected, it yields the CPU to the web workers (not before: a start is quicker).
    assert os.getpriority(os.PRIO_PROCESS, listener) == os.getpriority(os.PRIO_PROCESS, 0) + 10

    # Given workers recycled every ~10 requests and a HUP reload, when hooks fire in all
    # of them, then the same single listener keeps running.
    for _ in range(120):
        stack.get("/health")
    os.kill(stack.master_pid(), signal.SIGHUP)
    time.sleep(4)
    for _ in range(60):
        stack.get("/metrics")
    assert stack.processes(kind="listener") == [listener]
    assert stack.listener_state() == "running"


def test_every_thread_of_the_listener_yields_the_cpu_once_books_flow(make_stack, queues):
    # Threads take their CPU priority from the thread that makes them; the CRT's event
    # loop (the uploads') must be made after the listener lowered its own.
    stack = make_stack()
    [listener] = stack.processes(kind="listener")
    sent = send_books(queues, "nice", 20)
    assert sorted(o["id"] for o in queues.outputs(len(sent), timeout=30)) == sorted(sent)
    threads = {
        int(tid): (Path(f"/proc/{listener}/task/{tid}/comm").read_text().strip())
        for tid in os.listdir(f"/proc/{listener}/task")
    }
    assert any(name.startswith("AwsEventLoop") for name in threads.values()), threads
    wanted = os.getpriority(os.PRIO_PROCESS, 0) + 10
    priorities = {
        f"{tid} {name}": os.getpriority(os.PRIO_PROCESS, tid) for tid, name in threads.items()
    }
    assert priorities == dict.fromkeys(priorities, wanted)


def test_a_killed_listener_is_back_within_10_s_and_every_message_arrives_once(make_stack, queues):
    stack = make_stack()
    sent = send_books(queues, "before", 40)
    [old] = stack.processes(kind="listener")
    time.sleep(0.3)  # let it take a batch, so the kill lands mid-work
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    sent += send_books(queues, "during", 40)

    def replaced():
        now = stack.processes(kind="listener")
        return now and now != [old] and stack.listener_state() == "running"

    assert wait_for(replaced, timeout=10), stack.log_tail()
    assert time.monotonic() - killed_at <= 10
    sent += send_books(queues, "after", 40)

    outputs = queues.outputs(len(sent), timeout=60)
    ids = [o["id"] for o in outputs]
    assert sorted(ids) == sorted(sent), "every message arrives exactly once"
    assert queues.outputs(1, timeout=3) == []
    assert len(stack.processes(kind="listener")) == 1
    assert stack.metric("bookd_listener_up") == 1, "the killed listener was marked dead"


def test_a_killed_gunicorn_master_is_back_within_15_s_with_one_listener(make_stack, queues):
    stack = make_stack()
    master = stack.master_pid()
    os.kill(master, signal.SIGKILL)
    killed_at = time.monotonic()

    def back():
        try:
            new_master = stack.master_pid()
            owner = json.loads((stack.state_dir / "listener.json").read_text())["owner"]
        except (OSError, ValueError):
            return False
        # The old master's listener must be gone, not running on beside the new one.
        return (
            new_master != master
            and owner == new_master
            and stack.listener_state() == "running"
            and len(stack.processes(kind="listener")) == 1
        )

    assert wait_for(back, timeout=15, interval=0.5), stack.log_tail()
    assert time.monotonic() - killed_at <= 15
    [listener] = stack.processes(kind="listener")
    send_books(queues, "later", 5)
    assert len(queues.outputs(5)) == 5
    assert stack.processes(kind="listener") == [listener]


def test_health_is_503_within_3_s_while_localstack_is_away_and_recovers(
    make_stack, stack_settings, queues
):
    host, port = stack_settings.endpoint_url.rsplit("//", 1)[1].split(":")
    proxy = Proxy((host, int(port))).start()
    try:
        stack = make_stack(stack_settings.replace(endpoint_url=proxy.url))
        assert stack.get("/health").status_code == 200

        proxy.stop()
        went_away = time.monotonic()

        def localstack_down():
            # The listener may notice first (its own calls fail): then "sqs" is down
            # before the cached LocalStack check expires. Both must be within 3 s.
            response = stack.get("/health")
            body = response.json()
            if response.status_code == 503 and "localstack" in body["body"].get("down", []):
                return body
            return None

        body = wait_for(localstack_down, timeout=3, interval=0.1)
        assert body, "health must turn 503 naming LocalStack within 3 s"
        assert time.monotonic() - went_away <= 3.5
        assert body["statusCode"] == 503
        started = time.monotonic()
        assert stack.get("/", timeout=3).status_code == 200
        assert stack.get("/metrics", timeout=3).status_code == 200
        assert time.monotonic() - started < 3, "GET / and /metrics still answer quickly"

        Proxy((host, int(port)), port=proxy.port).start()  # LocalStack is back
        assert wait_for(lambda: stack.get("/health").status_code == 200, timeout=30)
        send_books(queues, "recovered", 3)
        assert len(queues.outputs(3, timeout=30)) == 3
    finally:
        proxy.stop()


def test_a_saturated_localstack_does_not_make_a_slow_health_check(make_stack, stack_settings):
    host, port = stack_settings.endpoint_url.rsplit("//", 1)[1].split(":")
    # Given LocalStack takes a second over every call (as when it is saturated),
    proxy = Proxy((host, int(port)), delay=1.0).start()
    try:
        # One worker, so that every request meets the same cached answers.
        stack = make_stack(stack_settings.replace(endpoint_url=proxy.url), BOOKD_WORKERS="1")

        def quick_health() -> None:
            began = time.monotonic()
            assert stack.get("/health").status_code == 200
            assert time.monotonic() - began < 0.5

        # the first health check finds the answer the worker fetched as it started,
        quick_health()
        # and after a quiet spell, too long for that answer to be served as it is,
        time.sleep(health.CACHE_SECONDS + health.MAX_STALE_SECONDS + 0.5)
        # each health check is answered at once while the refresh takes its second.
        for _ in range(3):
            quick_health()
    finally:
        proxy.stop()


def test_sigterm_stops_the_whole_tree_in_time_and_loses_nothing(make_stack, queues, start_listener):
    stack = make_stack()
    sent = send_books(queues, "term", 60, groups=10)
    wait_for(lambda: stack.metric("bookd_messages_processed_total") >= 10, timeout=20)

    seconds = stack.terminate(timeout=45)
    assert seconds < 40, "within supervisord's stopwaitsecs"
    assert stack.processes() == [], "no process of the stack is left"

    start_listener()  # the next start picks up what was handed back
    outputs = queues.outputs(len(sent), timeout=60)
    assert sorted(o["id"] for o in outputs) == sorted(sent)
    assert queues.outputs(1, timeout=3) == []


def test_an_idle_stack_stops_without_waiting_out_its_long_polls(
    make_stack, stack_settings, queues, start_listener
):
    # Given a stack whose sixteen receive loops sit in 20 s long polls,
    stack = make_stack(stack_settings.replace(wait_time=20))
    time.sleep(3)
    # when it gets SIGTERM, it stops well before any poll would have come back,
    seconds = stack.terminate(timeout=45)
    assert seconds < 10, f"stopped in {seconds:.1f} s: the polls were waited out"
    assert "long polls under way" in stack.log_tail(200)
    # and a book sent then is not lost: it comes back to the next listener.
    sent = send_books(queues, "idle", 3, groups=3)
    start_listener()
    assert sorted(o["id"] for o in queues.outputs(3, timeout=40)) == sent


def test_metrics_count_what_was_sent_and_every_worker_agrees(make_stack, queues):
    stack = make_stack()
    valid = send_books(queues, "m", 7)
    queues.send("not json", group="bad")
    queues.send(json.dumps({"id": "x", "title": "t", "genre": "horror"}), group="bad")
    queues.send(json.dumps({"title": "t", "genre": "scifi"}), group="bad")
    assert len(queues.outputs(len(valid))) == len(valid)
    assert wait_for(lambda: stack.metric("bookd_messages_processed_total") == 10, timeout=15)
    time.sleep(READ_SECONDS)  # each worker reuses its read of the metric files that long

    workers = set()
    for _ in range(16):
        response = stack.get("/metrics")
        workers.add(response.headers["X-Served-By"])
        assert stack.metric("bookd_messages_processed_total", response.text) == 10
        assert stack.metric("bookd_messages_uploaded_total", response.text) == 7
        assert stack.metric("bookd_messages_failed_total", response.text) == 3
        assert stack.metric("bookd_listener_up", response.text) == 1
        assert 'reason="invalid-json"' in response.text
    assert len(workers) >= 2, "scrapes answered by different workers agree"
    assert stack.status()["messages"] == {"processed": 10, "uploaded": 7, "failed": 3}


def test_the_control_token_guards_start_and_stop_and_stop_sticks(make_stack):
    token = uuid.uuid4().hex
    stack = make_stack(BOOKD_CONTROL_TOKEN=token)
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.delete(stack.url + "/", timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.post(stack.url + "/", headers=wrong, timeout=5).status_code == 401
    assert stack.get("/").status_code == 200, "reads stay open"
    [old] = stack.processes(kind="listener")

    assert requests.delete(stack.url + "/", headers=auth, timeout=5).status_code == 202
    assert wait_for(lambda: stack.listener_state() == "stopped", timeout=15)
    time.sleep(3)  # keepers must not bring it back
    assert stack.processes(kind="listener") == []
    assert stack.get("/health").status_code == 503

    response = requests.post(stack.url + "/", headers=auth, timeout=5)
    assert response.status_code == 202
    assert wait_for(lambda: stack.listener_state() == "running", timeout=10)
    assert stack.processes(kind="listener") not in ([], [old])


def test_a_book_sent_with_bookd_send_is_stored_and_shown_by_bookd_peek(make_stack, settings):
    # The README's walk-through, with the real command line against the real stack.
    stack = make_stack()
    book = stack.tmp / "book.json"
    book.write_text(json.dumps({**BOOK, "id": "12345", "title": "LoremIpsum"}))
    bookd = [sys.executable, "-m", "bookd"]
    sent = subprocess.run(
        [*bookd, "send", str(book)], env=stack.env, capture_output=True, text=True, timeout=30
    )
    assert sent.returncode == 0, sent.stderr

    def announced():
        peek = subprocess.run(
            [*bookd, "peek", "output"], env=stack.env, capture_output=True, text=True, timeout=30
        )
        return [json.loads(line) for line in peek.stdout.splitlines()]

    [shown] = wait_for(announced, timeout=15)
    assert json.loads(shown["body"])["file"] == "LoremIpsum.json"
    assert json.loads(shown["body"])["bucket"] == settings.buckets["scifi"]
    # Each worker reuses its read of the counts for up to READ_SECONDS.
    assert wait_for(lambda: stack.status()["messages"]["uploaded"] == 1, timeout=READ_SECONDS + 4)
