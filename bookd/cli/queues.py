"""``bookd send``, ``bookd peek`` and ``bookd status``: the queues, as a person uses them."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import click

from bookd.cli.progress import progress
from bookd.core.config import Settings
from bookd.core.exits import EXIT_DOWN, EXIT_INCOMPLETE


@click.command()
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
    from bookd.aws.clients import make_client
    from bookd.aws.sqs import Queue
    from bookd.core.ports import Outgoing
    from bookd.operations.sending import group_of, read_books, send_in_order

    queue = Queue(make_client(settings, "sqs", purpose="cli"), settings.input_queue)
    bodies: list[str] = []
    for handle in files:
        bodies += read_books(handle.read(), fmt, handle.name)
    # A fresh id per send: sending the same file twice means two books.
    outgoing = [
        Outgoing(
            ref=str(n), body=b, group_id=group_of(b, group, group_by), dedup_id=uuid.uuid4().hex
        )
        for n, b in enumerate(bodies)
    ]
    with progress(len(outgoing), "sending") as bar:
        sent = send_in_order(queue, outgoing, on_batch=lambda chunk: bar.update(len(chunk)))
    for ref, problem in sorted(sent.problems.items(), key=lambda item: int(item[0])):
        click.echo(f"bookd: book {int(ref) + 1} not sent: {problem}", err=True)
    failed = len(sent.problems)
    groups = len({m.group_id for m in outgoing})
    click.echo(
        f"sent {len(sent.ids)} of {len(outgoing)} books to {settings.input_queue} "
        f"in {groups} group{'s' if groups != 1 else ''}" + (f"; {failed} failed" if failed else "")
    )
    if failed:
        sys.exit(EXIT_INCOMPLETE)


@click.command()
@click.argument("which", type=click.Choice(["output", "dead-letter", "input"]))
@click.option("--max", "limit", default=10, show_default=True, help="Messages to show.")
@click.option("--delete", is_flag=True, help="Delete what is shown instead of leaving it.")
@click.pass_obj
def peek(settings: Settings, which: str, limit: int, delete: bool) -> None:
    """Show messages waiting in a queue (with their dead-letter reason, if any).

    For the input queue only its counts are shown: receiving a message, even to look
    at it, costs it one of its deliveries before the dead-letter queue.
    """
    from bookd.aws.clients import make_client
    from bookd.aws.sqs import Queue

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
        depth = queue.depth()
        counts = {
            "ApproximateNumberOfMessages": depth.visible,
            "ApproximateNumberOfMessagesNotVisible": depth.in_flight,
            "ApproximateNumberOfMessagesDelayed": depth.delayed,
        }
        click.echo(json.dumps({"queue": name, **counts}))
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the JSON of GET / instead.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """The listener's state, its dependencies and the queues' depths; exit 4 if one is down."""
    from bookd.supervision.status import read_status

    listener = read_status(settings)
    queues = _queue_depths(settings)
    down = [] if listener.state == "running" else ["listener"]
    down += [s for s, d in sorted(listener.dependencies.items()) if d.get("state") != "ok"]
    down += [f"queue {q}" for q, info in queues.items() if "error" in info]
    if as_json:
        body = {"listener": listener.as_json(), "queues": queues, "down": down}
        click.echo(json.dumps(body, indent=2))
    else:
        _print_status(listener.as_json(), queues, down)
    if down:
        sys.exit(EXIT_DOWN)


def _queue_depths(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each of bookd's queues: its name and depth, or why it could not be read."""
    from bookd.aws.clients import make_client
    from bookd.aws.sqs import Queue
    from bookd.core.errors import AwsFault

    sqs = make_client(
        settings, "sqs", read_timeout=settings.check_timeout, attempts=1, purpose="cli"
    )
    queues: dict[str, dict[str, Any]] = {}
    for label, name in (
        ("input", settings.input_queue),
        ("output", settings.output_queue),
        ("dead-letter", settings.dead_letter_queue),
    ):
        try:
            depth = Queue(sqs, name).depth()
        except AwsFault as exc:
            queues[label] = {"name": name, "error": exc.cause}
            continue
        queues[label] = {"name": name, "visible": depth.visible, "in_flight": depth.in_flight}
    return queues


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
            value = f"unreachable ({info['error']})"
        else:
            value = f"{info['visible']} waiting, {info['in_flight']} in flight  ({info['name']})"
        rows.append((f"{label} queue", value))
    # One column of values, two spaces past the longest label, whatever the labels are.
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        click.echo(f"{label:<{width}}{value}")
    click.echo("all up" if not down else f"down: {', '.join(down)}")
