"""``bookd replay``: announce stored books again, for a consumer that lost its messages.

The rules are bookd.operations.replay's; this module only asks and shows.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from bookd.cli.progress import progress
from bookd.core.config import Settings
from bookd.core.exits import EXIT_INCOMPLETE


def _moment(value: str | None) -> float | None:
    """An ISO 8601 time (UTC when it names no zone) as seconds since the epoch."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, like 2026-12-01T09:30"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@click.command()
@click.option("--bucket", required=True, help="The bucket whose books to announce again.")
@click.option("--prefix", default="", help="Only keys that start with this.")
@click.option("--since", metavar="TIME", help="Only versions stored at or after TIME (ISO 8601).")
@click.option("--until", metavar="TIME", help="Only versions stored before TIME (default: now).")
@click.option(
    "--group",
    metavar="GROUP",
    help="FIFO group of the replayed announcements (default: BOOKD_REPLAY_GROUP).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be announced; send nothing.")
@click.option("--restart", is_flag=True, help="Start from the first book, not where a run stopped.")
@click.pass_obj
def replay(
    settings: Settings,
    bucket: str,
    prefix: str,
    since: str | None,
    until: str | None,
    group: str | None,
    dry_run: bool,
    restart: bool,
) -> None:
    """Announce stored books again, as they were announced, with "replayed": true.

    In key order, each key's versions oldest first, in a FIFO group of their own. A
    replay stopped or failed goes on from where it got when run again the same way;
    run twice within five minutes, it announces nothing twice.
    """
    from bookd.aws.clients import make_client
    from bookd.aws.s3 import BookStore
    from bookd.aws.sqs import Queue
    from bookd.operations.replay import Choice, Replay

    store = BookStore(
        make_client(settings, "s3", purpose="replay"), bucket_owner=settings.bucket_owner
    )
    output = Queue(make_client(settings, "sqs", purpose="replay"), settings.output_queue)
    group = group or settings.replay_group
    replaying = Replay(store, output, group=group, checkpoints=settings.state_dir / "replay")
    choice = Choice(bucket, prefix, _moment(since), _moment(until))
    if restart:
        replaying.forget(choice)
    choice = replaying.resolve(choice)
    versions = replaying.plan(choice)
    with progress(len(versions), "replaying") as bar:
        result = replaying.run(choice, versions, dry_run=dry_run, on_batch=bar.update)
    verb = "would announce" if dry_run else "announced"
    resumed = f" (going on after {result.resumed_after})" if result.resumed_after else ""
    others = f"; {result.not_bookds} versions not stored by bookd left out"
    click.echo(
        f"{verb} {result.announced} books of {bucket} again to {settings.output_queue} "
        f"in group {group}{resumed}" + (others if result.not_bookds else "")
    )
    if result.failed:
        click.echo(f"bookd: stopped: {result.failed}; run it again to go on", err=True)
        sys.exit(EXIT_INCOMPLETE)
