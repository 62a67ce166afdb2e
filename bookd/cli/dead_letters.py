"""``bookd dlq list`` and ``bookd dlq redrive``: the dead letters, for a person at a terminal.

The work is bookd.operations.dead_letters'; this module only shows it.
"""

from __future__ import annotations

import json
import sys
import time

import click

from bookd.core.config import Settings
from bookd.core.exits import EXIT_INCOMPLETE


@click.group()
def dlq() -> None:
    """List the dead-letter queue, or move its messages back to the input queue."""


@dlq.command("list")
@click.option("--max", "limit", type=int, default=None, help="List at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
@click.pass_obj
def dlq_list(settings: Settings, limit: int | None, as_json: bool) -> None:
    """Reason, detail, age and group of each dead letter (the queue is left as it was)."""
    from bookd.aws.clients import make_client
    from bookd.aws.sqs import Queue
    from bookd.operations.dead_letters import list_letters

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
    from bookd.aws.clients import make_client
    from bookd.aws.sqs import Queue
    from bookd.operations.dead_letters import Letter, list_letters, redrive

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
