"""The ``bookd`` command: provision, listen, send a book, look at a queue."""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid

import click

from bookd.config import Settings
from bookd.errors import BookdError

log = logging.getLogger("bookd")

INPUT_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    # botocore logs every retry at INFO; our own lines already say what failed.
    logging.getLogger("botocore").setLevel(logging.WARNING)


class _Commands(click.Group):
    """Every bookd error, whichever command raised it, ends as one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BookdError as exc:
            raise click.ClickException(str(exc)) from exc


def _settings_help() -> str:
    # Generated from the settings' one declaration (bookd.config), like the README's table.
    from bookd.config import describe

    lines = ["Settings (environment variables, with their defaults):", ""]
    for env, default, meaning in describe():
        lines.append(f"\b\n  {env}={default}\n      {meaning}")
    return "\n".join(lines)


@click.group(
    cls=_Commands, epilog=_settings_help(), context_settings={"help_option_names": ["-h", "--help"]}
)
@click.pass_context
def main(ctx: click.Context) -> None:
    """bookd: books from an SQS FIFO queue to S3, announced on a second queue."""
    settings = Settings.from_env()
    _setup_logging(settings)
    ctx.obj = settings


@main.command("settings")
@click.option("--markdown", is_flag=True, help="The README's table.")
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
    """Create the buckets and queues (idempotent)."""
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
    from bookd.listener import BookListener, install_stop_signals
    from bookd.supervision import (
        EXIT_LOCKED,
        LOCK_WAIT,
        StateDir,
        StatusReporter,
        hold_listener_lock,
    )

    state = StateDir(settings.state_dir)
    state.path.mkdir(parents=True, exist_ok=True)
    os.nice(settings.listener_nice)
    with hold_listener_lock(state, timeout=LOCK_WAIT) as mine:
        if not mine:
            click.echo(f"bookd: another listener holds {state.lock}; not starting", err=True)
            sys.exit(EXIT_LOCKED)
        listener = BookListener(settings, on_tick=StatusReporter(settings, owner_pid=owner))
        install_stop_signals(listener)
        listener.listen()


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.File("r"))
@click.option(
    "--group",
    default="books",
    show_default=True,
    help="FIFO message group; books in one group are processed in order.",
)
@click.pass_obj
def send(settings: Settings, files: tuple[click.utils.LazyFile, ...], group: str) -> None:
    """Send book JSON files (or - for standard input) to the input queue."""
    from bookd.aws import Outgoing, Queue, make_client

    queue = Queue(make_client(settings, "sqs"), settings.input_queue)
    for handle in files:
        body = handle.read()
        # A fresh id per send: sending the same file twice means two books.
        queue.send_one(Outgoing(ref="cli", body=body, group_id=group, dedup_id=uuid.uuid4().hex))
        click.echo(f"sent {handle.name} to {settings.input_queue} (group {group})")


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
    queue = Queue(make_client(settings, "sqs"), name)
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
            click.echo(
                json.dumps(
                    {"group": m.group_id, "body": m.body, **m.attributes}, ensure_ascii=False
                )
            )
            shown += 1
        if not received or not delete:
            break  # without delete, the next receive would return the same messages
        queue.delete(batch)
    if shown == 0:
        click.echo(f"{name} is empty", err=True)
