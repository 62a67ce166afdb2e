"""The ``bookd`` command: provision, listen, send books, look at the queues, status, dead letters.

Its exit codes, for scripts, are EXIT_CODES (shown by ``bookd --help`` and the README).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import click

from bookd.config import Settings
from bookd.errors import BookdError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bookd.ports import Outgoing, OutputQueue

EXIT_LOCKED = 3
EXIT_DOWN = 4
EXIT_INCOMPLETE = 5
EXIT_CODES = (
    (0, "done; for status: everything is up"),
    (1, "a bookd error (a bad setting, AWS unreachable...): one line says which"),
    (2, "a usage error (an unknown option, a bad argument)"),
    (EXIT_LOCKED, "listen: another listener holds the lock"),
    (EXIT_DOWN, "status: something is down (the listener, S3 or SQS)"),
    (EXIT_INCOMPLETE, "send or dlq redrive: some messages could not be sent or moved"),
)

INPUT_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)

PROGRESS_FROM = 100
"""Inputs of at least this many books get a progress bar (on a terminal)."""


class _Commands(click.Group):
    """Every bookd error, whichever command raised it, ends as one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BookdError as exc:
            raise click.ClickException(str(exc)) from exc


def _epilog() -> str:
    # Generated from the settings' one declaration (bookd.config), like the README's table.
    from bookd.config import describe

    lines = ["Settings (environment variables, with their defaults):", ""]
    for env, default, meaning in describe():
        lines.append(f"\b\n  {env}={default}\n      {meaning}")
    lines += ["", "\b", "Exit codes:"] + [f"  {code}  {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines)


@click.group(
    cls=_Commands, epilog=_epilog(), context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="bookd", prog_name="bookd")
@click.pass_context
def main(ctx: click.Context) -> None:
    """bookd: books from an SQS FIFO queue to S3, announced on a second queue."""
    from bookd import logs

    settings = Settings.from_env()
    logs.setup(settings, stream="stderr")  # the listener's go to stdout (see listen)
    ctx.obj = settings


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's table instead.")
def show_settings(markdown: bool) -> None:
    """List every setting, its default and meaning (and the value in effect)."""
    from bookd.config import describe, markdown_table

    if markdown:
        click.echo(markdown_table())
        return
    current = Settings.from_env().to_env()
    for env, default, meaning in describe():
        value = current.get(env, "")
        shown = "<set>" if value and ("SECRET" in env or "TOKEN" in env) else value
        click.echo(f"{env}={shown}    (default {default}) {meaning}")


@main.command()
@click.pass_obj
def provision(settings: Settings) -> None:
    """Create the buckets and queues (idempotent; against AWS too)."""
    from bookd.provision import provision as run_provision

    result = run_provision(settings)
    click.echo(f"buckets: {', '.join(result.buckets)}")
    click.echo(f"input queue: {result.input_queue_url}")
    click.echo(f"output queue: {result.output_queue_url}")
    click.echo(f"dead-letter queue: {result.dead_letter_queue_url}")


@main.command()
@click.option("--owner", type=int, help="Stop when this pid (the Gunicorn master) is gone.")
@click.pass_obj
def listen(settings: Settings, owner: int | None) -> None:
    """Run the listener in the foreground until SIGTERM or Ctrl-C."""
    from bookd import logs
    from bookd.listener import BookListener, install_stop_signals
    from bookd.supervision import LOCK_WAIT, StateDir, Supervised, hold_listener_lock

    logs.setup(settings)  # a service: its lines go to stdout, as Gunicorn's do
    state = StateDir(settings.state_dir)
    state.path.mkdir(parents=True, exist_ok=True)
    os.nice(settings.listener_nice)
    with hold_listener_lock(state, timeout=LOCK_WAIT) as mine:
        if not mine:
            click.echo(f"bookd: another listener holds {state.lock}; not starting", err=True)
            sys.exit(EXIT_LOCKED)
        listener = BookListener(settings, on_tick=Supervised(settings, owner_pid=owner))
        install_stop_signals(listener)
        listener.listen()


# --- send ------------------------------------------------------------------------------


def read_books(text: str, fmt: str, name: str) -> list[str]:
    """The message bodies in ``text``: one JSON document, a JSON array, JSON Lines or CSV."""
    if fmt == "auto":
        fmt = _guess_format(text, name)
    if fmt == "jsonl":
        # Each line as it is, byte for byte: it is what will be stored.
        return [line for line in text.splitlines() if line.strip()]
    if fmt == "csv":
        rows = csv.DictReader(io.StringIO(text))
        return [json.dumps({k: v for k, v in row.items() if k}, ensure_ascii=False) for row in rows]
    try:
        data = json.loads(text)
    except ValueError:
        return [text]  # one body, sent as it is: the listener dead-letters it with a reason
    if isinstance(data, list):
        return [json.dumps(item, ensure_ascii=False) for item in data]
    return [text]


def _guess_format(text: str, name: str) -> str:
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    if name.endswith(".json"):
        return "json"
    stripped = text.lstrip()
    if stripped.startswith("{") and len([ln for ln in text.splitlines() if ln.strip()]) > 1:
        try:
            json.loads(text)
        except ValueError:
            return "jsonl"
    return "json"


def _group_of(body: str, group: str, group_by: str | None) -> str:
    if group_by is None:
        return group
    try:
        value = json.loads(body).get(group_by)
    except (ValueError, AttributeError):
        return group
    # SQS takes 1-128 printable ASCII characters as a group id.
    text = "".join(c if 0x21 <= ord(c) <= 0x7E else "_" for c in str(value or group))
    return text[:128] or group


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.File("r", encoding="utf-8"))
@click.option(
    "--group",
    default="books",
    show_default=True,
    help="FIFO message group; books in one group are processed in order.",
)
@click.option(
    "--group-by",
    metavar="FIELD",
    help="Use each book's FIELD (say author) as its group instead, for ordering per entity.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "json", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="json: one book or an array of books; jsonl: a book per line; csv: a header row.",
)
@click.pass_obj
def send(
    settings: Settings,
    files: tuple[click.utils.LazyFile, ...],
    group: str,
    group_by: str | None,
    fmt: str,
) -> None:
    """Send books from files (or - for standard input) to the input queue, ten per call at most."""
    from bookd.aws import Queue, make_client
    from bookd.ports import Outgoing, batches

    queue = Queue(make_client(settings, "sqs", purpose="cli"), settings.input_queue)
    bodies: list[str] = []
    for handle in files:
        bodies += read_books(handle.read(), fmt, handle.name)
    # A fresh id per send: sending the same file twice means two books.
    outgoing = [
        Outgoing(
            ref=str(n), body=b, group_id=_group_of(b, group, group_by), dedup_id=uuid.uuid4().hex
        )
        for n, b in enumerate(bodies)
    ]
    sent = failed = 0
    stopped: set[str] = set()
    with click.progressbar(
        length=len(outgoing),
        label="sending",
        file=sys.stderr,
        hidden=len(outgoing) < PROGRESS_FROM or not sys.stderr.isatty(),
    ) as bar:
        for chunk in batches(outgoing):
            problems = send_in_order(queue, chunk, stopped)
            for ref, problem in problems.items():
                click.echo(f"bookd: book {int(ref) + 1} not sent: {problem}", err=True)
            sent += len(chunk) - len(problems)
            failed += len(problems)
            bar.update(len(chunk))
    groups = len({m.group_id for m in outgoing})
    click.echo(
        f"sent {sent} of {len(outgoing)} books to {settings.input_queue} "
        f"in {groups} group{'s' if groups != 1 else ''}" + (f"; {failed} failed" if failed else "")
    )
    if failed:
        sys.exit(EXIT_INCOMPLETE)


def send_in_order(
    queue: OutputQueue, chunk: Sequence[Outgoing], stopped: set[str]
) -> dict[str, str]:
    """Send one batch call's worth; return why each message not sent was not, by ref.

    ``stopped`` holds the groups with a book not sent, and grows: a group stops at its
    first such book, since the ones after it would overtake it. A body SQS would refuse
    for its characters is not sent at all, so it cannot fail alone in a batch call.
    """
    from bookd.errors import AwsFault
    from bookd.ports import refused_character

    problems: dict[str, str] = {}
    todo = []
    for m in chunk:
        bad = refused_character(m.body)
        if m.group_id in stopped:
            problems[m.ref] = f"an earlier book of its group ({m.group_id}) was not sent"
        elif bad is not None:
            problems[m.ref] = f"SQS refuses its {bad}"
            stopped.add(m.group_id)
        else:
            todo.append(m)
    try:
        refused: dict[str, AwsFault] = queue.send(todo) if todo else {}
    except AwsFault as exc:
        refused = {m.ref: exc for m in todo}
    for m in todo:
        if m.ref in refused:
            problems[m.ref] = str(refused[m.ref])
            stopped.add(m.group_id)
    return problems


# --- looking ---------------------------------------------------------------------------


@main.command()
@click.argument("which", type=click.Choice(["output", "dead-letter", "input"]))
@click.option("--max", "limit", default=10, show_default=True, help="Messages to show.")
@click.option("--delete", is_flag=True, help="Delete what is shown instead of leaving it.")
@click.pass_obj
def peek(settings: Settings, which: str, limit: int, delete: bool) -> None:
    """Show messages waiting in a queue (with their dead-letter reason, if any).

    For the input queue only its counts are shown: receiving a message, even to look
    at it, costs it one of its deliveries before the dead-letter queue.
    """
    from bookd.aws import Queue, make_client

    name = {
        "output": settings.output_queue,
        "dead-letter": settings.dead_letter_queue,
        "input": settings.input_queue,
    }[which]
    # A development tool: it reads the output queue, which bookd itself never does.
    queue = Queue(make_client(settings, "sqs", purpose="peek"), name)
    if which == "input":
        if delete:
            raise click.UsageError("bookd never deletes from the input queue; the listener does")
        counts = queue.attributes(*INPUT_COUNTS)
        click.echo(json.dumps({"queue": name, **{k: int(v) for k, v in counts.items()}}))
        return
    shown = 0
    while shown < limit:
        # Visibility 0 leaves the messages where they are for the next reader.
        received = queue.receive(
            wait_time=1, visibility_timeout=None if delete else 0, with_message_attributes=True
        )
        batch = received[: limit - shown]
        for m in batch:
            shown_fields = {"group": m.group_id, "body": m.body, **m.attributes}
            click.echo(json.dumps(shown_fields, ensure_ascii=False))
            shown += 1
        if not received or not delete:
            break  # without delete, the next receive would return the same messages
        queue.delete(batch)
    if shown == 0:
        click.echo(f"{name} is empty", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the JSON of GET / instead.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """The listener's state, its dependencies and the queues' depths; exit 4 if one is down."""
    from bookd.aws import Queue, make_client
    from bookd.errors import AwsFault
    from bookd.supervision import listener_status

    listener = listener_status(settings)
    queues: dict[str, Any] = {}
    sqs = make_client(
        settings, "sqs", read_timeout=settings.check_timeout, attempts=1, purpose="cli"
    )
    for label, name in (
        ("input", settings.input_queue),
        ("output", settings.output_queue),
        ("dead-letter", settings.dead_letter_queue),
    ):
        try:
            counts = Queue(sqs, name).attributes(*INPUT_COUNTS[:2])
        except AwsFault as exc:
            queues[label] = {"name": name, "error": exc.cause}
            continue
        queues[label] = {
            "name": name,
            "visible": int(counts["ApproximateNumberOfMessages"]),
            "in_flight": int(counts["ApproximateNumberOfMessagesNotVisible"]),
        }
    down = [] if listener["state"] == "running" else ["listener"]
    down += [s for s, d in sorted(listener["dependencies"].items()) if d.get("state") != "ok"]
    down += [f"queue {q}" for q, info in queues.items() if "error" in info]
    if as_json:
        click.echo(json.dumps({"listener": listener, "queues": queues, "down": down}, indent=2))
    else:
        _print_status(listener, queues, down)
    if down:
        sys.exit(EXIT_DOWN)


def _print_status(listener: dict[str, Any], queues: dict[str, Any], down: list[str]) -> None:
    pid = f" (pid {listener['pid']})" if listener.get("pid") else ""
    rows = [("listener", f"{listener['state']}{pid}")]
    for when in ("started_at", "connected_at", "last_poll_at"):
        if listener.get(when):
            rows.append((f"  {when.replace('_', ' ')}", listener[when]))
    for service, state in sorted(listener["dependencies"].items()):
        cause = f" ({state['cause']})" if state.get("cause") else ""
        rows.append((service, f"{state.get('state')}{cause}"))
    for label, info in queues.items():
        if "error" in info:
            rows.append((f"{label} queue", f"unreachable ({info['error']})"))
        else:
            rows.append(
                (
                    f"{label} queue",
                    f"{info['visible']} waiting, {info['in_flight']} in flight  ({info['name']})",
                )
            )
    # One column of values, two spaces past the longest label, whatever the labels are.
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        click.echo(f"{label:<{width}}{value}")
    click.echo("all up" if not down else f"down: {', '.join(down)}")


# --- dead letters ----------------------------------------------------------------------


@main.group()
def dlq() -> None:
    """List the dead-letter queue, or move its messages back to the input queue."""


@dlq.command("list")
@click.option("--max", "limit", type=int, default=None, help="List at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
@click.pass_obj
def dlq_list(settings: Settings, limit: int | None, as_json: bool) -> None:
    """Reason, detail, age and group of each dead letter (the queue is left as it was)."""
    from bookd.aws import Queue, make_client
    from bookd.dlq import list_letters

    queue = Queue(make_client(settings, "sqs", purpose="cli"), settings.dead_letter_queue)
    letters = list_letters(queue, limit=limit)
    for letter in letters:
        record = {
            "reason": letter.reason,
            "detail": letter.detail,
            "age_seconds": round(letter.age_seconds, 1),
            "group": letter.message.group_id,
            "message_id": letter.message.message_id,
        }
        if as_json:
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo(
                f"{_age(letter.age_seconds):>8}  {letter.message.group_id:<16} "
                f"{letter.reason:<20} {letter.detail}"
            )
    if not as_json:
        click.echo(f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}", err=True)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@dlq.command("redrive")
@click.option("--reason", help="Move only dead letters of this reason (say unknown-genre).")
@click.option("--dry-run", is_flag=True, help="Show what would move; move nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (scripts never are asked anyway).")
@click.pass_obj
def dlq_redrive(settings: Settings, reason: str | None, dry_run: bool, yes: bool) -> None:
    """Move dead letters back to the input queue, each in its group, in order, body unchanged.

    Run it again if it is interrupted (within five minutes): nothing is lost or doubled.
    Asks first only on a terminal, so cron jobs and scripts can run it.
    """
    from bookd.aws import Queue, make_client
    from bookd.dlq import Letter, list_letters, redrive

    sqs = make_client(settings, "sqs", purpose="cli")
    dead_letters = Queue(sqs, settings.dead_letter_queue)
    input_queue = Queue(sqs, settings.input_queue)
    if not dry_run and not yes and sys.stdin.isatty():
        letters = [
            letter for letter in list_letters(dead_letters) if reason in (None, letter.reason)
        ]
        if not letters:
            click.echo("no dead letters to move")
            return
        click.confirm(f"move {len(letters)} dead letters to {settings.input_queue}?", abort=True)

    def moved(letter: Letter) -> None:
        verb = "would move" if dry_run else "moved"
        click.echo(
            f"{verb} {letter.message.message_id} ({letter.reason}, group {letter.message.group_id})"
        )

    began = time.monotonic()
    result = redrive(dead_letters, input_queue, reason=reason, dry_run=dry_run, on_moved=moved)
    click.echo(
        f"{'would move' if dry_run else 'moved'} {result.moved} dead letters to "
        f"{settings.input_queue} in {time.monotonic() - began:.1f} s; {result.kept} of other "
        "reasons left"
        + (f"; {result.failed} could not be moved (run again)" if result.failed else "")
    )
    if result.failed:
        sys.exit(EXIT_INCOMPLETE)
