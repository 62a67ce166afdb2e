"""The `bookd` command, each subcommand against the real LocalStack."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from bookd.aws.clients import make_client
from bookd.cli import main
from bookd.core.exits import EXIT_DOWN, EXIT_INCOMPLETE, EXIT_LOCKED
from bookd.listener import BookListener
from bookd.supervision.lock import StateDir, hold_listener_lock
from bookd.supervision.status import Supervised
from harness.waiting import wait_for
from tests.terminal import screen_of

BOOK = {"id": "1", "title": "t", "author": "A", "year": "1999", "genre": "scifi"}


def bookd(settings, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, list(args), env=settings.to_env(), input=stdin, catch_exceptions=False
    )
    return result.exit_code, result.stdout


@pytest.fixture
def state_settings(settings, tmp_path):
    return settings.replace(state_dir=tmp_path / "state")


def test_every_subcommand_has_help_and_there_is_a_version(settings):
    code, out = bookd(settings, "--version")
    assert code == 0 and out.startswith("bookd, version ")
    for command in (
        ["provision"],
        ["listen"],
        ["send"],
        ["peek"],
        ["status"],
        ["settings"],
        ["dlq"],
        ["dlq", "list"],
        ["dlq", "redrive"],
    ):
        code, out = bookd(settings, *command, "-h")
        assert code == 0 and "Usage: " in out, command


def test_help_lists_every_setting_from_its_one_declaration(settings):
    from bookd.core.config import describe

    code, out = bookd(settings, "--help")
    assert code == 0
    assert all(env in out for env, _, _ in describe())
    code, out = bookd(settings, "settings", "--markdown")
    assert code == 0 and out.startswith("| variable | default | meaning |")


def test_provision_creates_what_the_settings_name(base_settings):
    from harness.resources import remove_resources, unique_settings

    fresh = unique_settings(base_settings)
    try:
        code, out = bookd(fresh, "provision")
        assert code == 0, out
        assert fresh.input_queue in out and fresh.buckets["scifi"] in out
    finally:
        remove_resources(fresh)


def test_peek_input_shows_counts_and_never_costs_a_message_a_delivery(settings, queues):
    queues.send({"id": "1", "title": "peeked", "genre": "scifi"})
    for _ in range(6):
        code, out = bookd(settings, "peek", "input")
        assert code == 0
        assert json.loads(out)["ApproximateNumberOfMessages"] == 1
    [message] = queues.collect(settings.input_queue, 1, timeout=10)
    assert message["Attributes"]["ApproximateReceiveCount"] == "1", "peeking received nothing"


def test_peek_output_shows_and_leaves_announcements(settings, queues, start_listener):
    queues.send(BOOK)
    start_listener()
    assert wait_for(lambda: queues.depth(settings.output_queue) == 1, timeout=20)
    code, out = bookd(settings, "peek", "output")
    assert code == 0 and json.loads(json.loads(out)["body"])["file"] == "t.json"
    assert queues.depth(settings.output_queue) == 1, "left for the next reader"


@pytest.mark.parametrize(
    ("name", "text", "count"),
    [
        ("one.json", json.dumps(BOOK), 1),
        ("many.json", json.dumps([{**BOOK, "id": str(n)} for n in range(3)]), 3),
        ("lines.jsonl", "\n".join(json.dumps({**BOOK, "id": str(n)}) for n in range(4)), 4),
        ("table.csv", "id,title,genre,year\n1,One,scifi,1999\n2,Two,romance,2001\n", 2),
    ],
)
def test_send_reads_json_json_lines_and_csv(settings, queues, tmp_path, name, text, count):
    path = tmp_path / name
    path.write_text(text)
    code, out = bookd(settings, "send", str(path))
    assert code == 0, out
    assert f"sent {count} of {count} books" in out
    got = queues.collect(settings.input_queue, count, timeout=10)
    assert len(got) == count
    bodies = [json.loads(m["Body"]) for m in got]
    assert all(b["genre"] in ("scifi", "romance") for b in bodies)
    if name.endswith(".csv"):
        assert bodies[0] == {"id": "1", "title": "One", "genre": "scifi", "year": "1999"}


def test_send_takes_standard_input_as_it_is_and_groups_by_a_field(settings, queues):
    code, out = bookd(settings, "send", "-", stdin="not json\n")
    assert code == 0 and "sent 1 of 1" in out
    [raw] = queues.collect(settings.input_queue, 1, timeout=10)
    assert raw["Body"] == "not json\n", "byte for byte: the listener dead-letters it"
    lines = "\n".join(json.dumps({**BOOK, "id": str(n), "author": f"A{n % 2}"}) for n in range(4))
    code, out = bookd(
        settings, "send", "--group-by", "author", "--format", "jsonl", "-", stdin=lines
    )
    assert code == 0 and "in 2 groups" in out
    got = queues.collect(settings.input_queue, 4, timeout=10)
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {"A0", "A1"}


def test_status_exits_4_when_the_listener_is_down_and_0_when_all_is_up(state_settings, queues):
    code, out = bookd(state_settings, "status")
    assert code == EXIT_DOWN and "down: listener" in out
    state = StateDir(state_settings.state_dir)
    state.path.mkdir(parents=True)
    with hold_listener_lock(state, timeout=1):
        listener = BookListener(state_settings, on_tick=Supervised(state_settings, owner_pid=None))
        thread = threading.Thread(target=listener.listen, daemon=True)
        thread.start()
        try:
            assert wait_for(lambda: bookd(state_settings, "status")[0] == 0, timeout=20)
            code, out = bookd(state_settings, "status", "--json")
            data = json.loads(out)
            assert data["listener"]["state"] == "running"
            assert data["queues"]["input"]["name"] == state_settings.input_queue
            assert data["down"] == []
        finally:
            listener.stop()
            thread.join(timeout=15)


def test_listen_exits_3_when_another_listener_holds_the_lock(state_settings):
    state = StateDir(state_settings.state_dir)
    state.path.mkdir(parents=True)
    with hold_listener_lock(state, timeout=1):
        result = CliRunner().invoke(main, ["listen"], env=state_settings.to_env())
    assert result.exit_code == EXIT_LOCKED


def test_a_dead_letter_is_listed_then_redriven_into_s3(settings, queues, start_listener):
    # Given a book dead-lettered because its genre had no bucket yet,
    fantasy = {**BOOK, "id": "dragon", "title": "Dragons", "genre": "fantasy"}
    message_id = queues.send(fantasy, group="epic")
    listener = start_listener()
    [letter] = queues.dead_letters(1, timeout=20)
    # (collect deleted it; put it back as it was, as the listener had left it)
    dlq = make_client(settings, "sqs")
    dlq.send_message(
        QueueUrl=queues.urls[settings.dead_letter_queue],
        MessageBody=letter["Body"],
        MessageGroupId="epic",
        MessageDeduplicationId="again",
        MessageAttributes=letter["MessageAttributes"],
    )
    listener.stop()
    # when an operator lists the dead letters,
    code, out = bookd(settings, "dlq", "list", "--json")
    [listed] = [json.loads(line) for line in out.splitlines()]
    assert (listed["reason"], listed["group"]) == ("unknown-genre", "epic")
    assert "fantasy" in listed["detail"] and listed["age_seconds"] >= 0
    assert queues.depth(settings.dead_letter_queue) == 1, "listing leaves it there"
    # fixes the configuration (a bucket for the genre) and redrives,
    fixed = settings.replace(buckets={**settings.buckets, "fantasy": settings.buckets["scifi"]})
    code, out = bookd(fixed, "dlq", "redrive", "--dry-run")
    assert code == 0 and "would move 1" in out
    code, out = bookd(fixed, "dlq", "redrive", "--reason", "unknown-genre")
    assert code == 0 and "moved 1 dead letters" in out
    assert queues.depth(settings.dead_letter_queue) == 0
    # then the book is stored in S3 and announced, in its group, body unchanged.
    start_listener(fixed)
    [output] = queues.collect(settings.output_queue, 1, timeout=30)
    assert output["Attributes"]["MessageGroupId"] == "epic"
    announced = json.loads(output["Body"])
    assert announced["id"] == "dragon" and announced["message_id"] != message_id
    s3 = make_client(settings, "s3")
    stored = s3.get_object(Bucket=announced["bucket"], Key=announced["file"])["Body"].read()
    assert stored.decode() == json.dumps(fantasy)


def big_book(n: int) -> dict:
    """A book of about 600 KB: two fill one SendMessageBatch past SQS's 1 MiB per call."""
    return {**BOOK, "id": str(n), "title": f"Big {n}", "summary": "x" * 600_000}


def test_send_splits_its_calls_by_size_as_well_as_by_count(settings, queues, tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps(big_book(n)) for n in range(3)))
    code, out = bookd(settings, "send", str(path))
    assert code == 0, out
    assert "sent 3 of 3 books" in out
    got = queues.collect(settings.input_queue, 3, timeout=10)
    assert [json.loads(m["Body"])["id"] for m in got] == ["0", "1", "2"], "in order"


def test_redrive_moves_dead_letters_too_big_to_go_back_together(settings, queues):
    dlq = make_client(settings, "sqs")
    for n in range(3):
        dlq.send_message(
            QueueUrl=queues.urls[settings.dead_letter_queue],
            MessageBody=json.dumps(big_book(n)),
            MessageGroupId="big",
            MessageDeduplicationId=f"big-{n}",
            MessageAttributes={"reason": {"DataType": "String", "StringValue": "unknown-genre"}},
        )
    code, out = bookd(settings, "dlq", "redrive")
    assert code == 0, out
    assert "moved 3 dead letters" in out
    got = queues.collect(settings.input_queue, 3, timeout=10)
    assert [json.loads(m["Body"])["id"] for m in got] == ["0", "1", "2"], "in order"
    assert queues.depth(settings.dead_letter_queue) == 0


def test_send_stops_a_group_at_its_first_book_sqs_refuses_and_goes_on_with_the_others(
    settings, queues, tmp_path
):
    books = [
        {**BOOK, "id": "a1", "author": "A"},
        {**BOOK, "id": "a2", "author": "A", "summary": "\uffff"},  # SQS refuses it raw
        {**BOOK, "id": "a3", "author": "A"},
        {**BOOK, "id": "b1", "author": "B"},
    ]
    path = tmp_path / "books.jsonl"
    path.write_text("\n".join(json.dumps(b, ensure_ascii=False) for b in books))
    result = CliRunner().invoke(
        main, ["send", "--group-by", "author", str(path)], env=settings.to_env()
    )
    assert result.exit_code == EXIT_INCOMPLETE, result.output
    assert "sent 2 of 4 books" in result.stdout
    assert "book 2 not sent: SQS refuses its U+FFFF at offset" in result.stderr
    assert "book 3 not sent: an earlier book of its group (A) was not sent" in result.stderr
    got = queues.collect(settings.input_queue, 2, timeout=10)
    assert sorted(json.loads(m["Body"])["id"] for m in got) == ["a1", "b1"]


def run_bookd(settings, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`bookd ...` as a user runs it, in a process of its own: a hang ends in TimeoutExpired."""
    return subprocess.run(
        [sys.executable, "-m", "bookd", *args],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dead_letter_ids(queues) -> set[str]:
    """The ids of the dead letters waiting now, left in place (visibility 0)."""
    response = queues.sqs.receive_message(
        QueueUrl=queues.urls[queues.settings.dead_letter_queue],
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        VisibilityTimeout=0,
    )
    return {m["MessageId"] for m in response.get("Messages", [])}


@pytest.mark.parametrize("reason", [None, "invalid-json"])
def test_a_redrive_moves_each_dead_letter_once_and_ends_while_the_listener_runs(
    settings, queues, start_listener, reason
):
    # Given a running listener and a book it dead-lettered as invalid,
    queues.send("not json", group="bad")
    start_listener()
    assert wait_for(lambda: queues.depth(settings.dead_letter_queue) == 1, timeout=20)
    [first] = dead_letter_ids(queues)
    # when an operator redrives (and the listener dead-letters the book again at once),
    args = ["--reason", reason] if reason else []
    result = run_bookd(settings, "dlq", "redrive", "-y", *args, timeout=60)
    # then the redrive moved it once and ended,
    assert result.returncode == 0, result.stderr
    assert "moved 1 dead letters" in result.stdout, result.stdout
    # and the dead-letter queue holds one letter again: the book's second dead-lettering.
    assert wait_for(lambda: queues.depth(settings.dead_letter_queue) == 1, timeout=20)
    [again] = queues.dead_letters(1, timeout=10)
    assert again["MessageId"] != first
    assert again["MessageAttributes"]["reason"]["StringValue"] == "invalid-json"


@pytest.mark.parametrize("command", [["dlq", "list", "--json"], ["dlq", "redrive", "--dry-run"]])
def test_listing_ends_with_what_was_there_while_bad_input_keeps_coming(
    settings, queues, start_listener, command
):
    # Given three dead letters, and bad input that keeps coming for 40 s,
    for n in range(3):
        queues.send(f"bad {n}", group=f"g{n}")
    start_listener()
    assert wait_for(lambda: queues.depth(settings.dead_letter_queue) == 3, timeout=20)
    there = dead_letter_ids(queues)
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        deadline = time.monotonic() + 40
        n = 0
        while feeding.is_set() and time.monotonic() < deadline:
            queues.send(f"more bad {n}", group=f"more{n}")
            n += 1
            time.sleep(0.2)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(1.5)  # the listener dead-letters the new ones as they come
        # when an operator lists them (or tries a redrive),
        result = run_bookd(settings, *command, timeout=25)
    finally:
        feeding.clear()
        feeder.join()
    # then it ends, having met each letter that was there.
    assert result.returncode == 0, result.stderr
    if command[1] == "list":
        listed = {json.loads(line)["message_id"] for line in result.stdout.splitlines()}
        assert there <= listed, (there, listed)
    else:
        assert "would move" in result.stdout


@contextlib.contextmanager
def running_listener(settings):
    """A listener in a thread of this process, holding the lock of settings' state dir."""
    state = StateDir(settings.state_dir)
    state.path.mkdir(parents=True, exist_ok=True)
    with hold_listener_lock(state, timeout=1):
        listener = BookListener(settings, on_tick=Supervised(settings, owner_pid=None))
        thread = threading.Thread(target=listener.listen, daemon=True)
        thread.start()
        try:
            yield listener
        finally:
            listener.stop()
            thread.join(timeout=15)


STATUS_LABELS = (
    "listener",
    "started at",
    "connected at",
    "last poll at",
    "s3",
    "sqs",
    "input queue",
    "output queue",
    "dead-letter queue",
)


def test_status_shows_its_values_in_one_column_on_a_terminal(state_settings, queues):
    with running_listener(state_settings):

        def polled() -> bool:
            code, out = bookd(state_settings, "status", "--json")
            return code == 0 and json.loads(out)["listener"]["last_poll_at"] is not None

        assert wait_for(polled, timeout=20)
        env = {**os.environ, **state_settings.to_env()}
        code, screen = screen_of([sys.executable, "-m", "bookd", "status"], env, columns=80)
    assert code == 0, screen
    rows = {}
    for line in screen:
        label = next((name for name in STATUS_LABELS if line.strip().startswith(name)), None)
        if label is not None:
            rows[label] = line
    assert set(rows) == set(STATUS_LABELS), screen
    # Every value starts in one column, at least two spaces after the longest label.
    starts = set()
    for label, line in rows.items():
        after = line.index(label) + len(label)
        gap = len(line[after:]) - len(line[after:].lstrip(" "))
        assert gap >= 2, f"{label!r} runs into its value: {line!r}"
        starts.add(after + gap)
    assert len(starts) == 1, screen
    assert screen[-1] == "all up"
    assert all(len(line) < 80 for line in screen), "no line fills the terminal's width"


def test_replay_announces_stored_books_again_as_they_were_and_once(
    settings, state_settings, queues, start_listener
):
    # Given books stored and announced, whose announcements a consumer took and lost,
    for n, title in enumerate(["Beta", "Alpha", "Beta"]):
        queues.send({**BOOK, "id": f"r{n}", "title": title}, group="rg")
    start_listener()
    originals = {o["id"]: o for o in queues.outputs(3, timeout=20)}
    bucket = settings.buckets["scifi"]
    # when an operator replays the bucket, a dry run first,
    code, out = bookd(state_settings, "replay", "--bucket", bucket, "--dry-run")
    assert code == 0 and "would announce 3 books" in out, out
    assert queues.outputs(1, timeout=2) == [], "a dry run sends nothing"
    code, out = bookd(state_settings, "replay", "--bucket", bucket)
    assert code == 0 and "announced 3 books" in out, out
    # then each is announced again as it was, with "replayed", in key order (a title's
    # versions oldest first), in a group of its own,
    got = queues.collect(settings.output_queue, 3, timeout=10)
    again = [json.loads(m["Body"]) for m in got]
    assert [a["id"] for a in again] == ["r1", "r0", "r2"]
    assert all(a == {**originals[a["id"]], "replayed": True} for a in again)
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {state_settings.replay_group}
    # and run again within five minutes, it announces nothing twice.
    code, out = bookd(state_settings, "replay", "--bucket", bucket)
    assert code == 0 and "announced 3 books" in out
    assert queues.outputs(1, timeout=3) == []


def test_send_shows_a_bar_at_a_terminal_for_many_books_and_none_for_few(settings, queues, tmp_path):
    env = {**os.environ, **settings.to_env()}
    many = tmp_path / "many.jsonl"
    many.write_text("\n".join(json.dumps({**BOOK, "id": str(n)}) for n in range(150)))
    code, screen = screen_of([sys.executable, "-m", "bookd", "send", str(many)], env, columns=100)
    assert code == 0, screen
    [bar] = [line for line in screen if line.startswith("sending")]
    assert bar.rstrip().endswith("100%") and "#" in bar, screen
    assert screen[-1].startswith("sent 150 of 150 books to "), screen
    assert screen.index(bar) < len(screen) - 1, "the bar ends before the answer"

    few = tmp_path / "few.jsonl"
    few.write_text("\n".join(json.dumps({**BOOK, "id": str(n)}) for n in range(3)))
    code, screen = screen_of([sys.executable, "-m", "bookd", "send", str(few)], env, columns=100)
    assert code == 0, screen
    assert not any(line.startswith("sending") for line in screen), screen
    assert screen[-1].startswith("sent 3 of 3 books to "), screen
    assert len(queues.collect(settings.input_queue, 153, timeout=20)) == 153
