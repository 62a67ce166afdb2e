"""The ``bookd`` command: one group, its subcommands in the modules beside this one.

- ``service``: ``settings``, ``provision``, ``listen``;
- ``queues``: ``send``, ``peek``, ``status``;
- ``dead_letters``: ``dlq list``, ``dlq redrive``;
- ``replay``: ``replay``.

Every bookd error ends as one line and exit code 1; the exit codes, for scripts, are
bookd.core.exits' (shown by ``bookd --help`` and the README).
"""

from __future__ import annotations

import click

from bookd.cli import dead_letters, queues, replay, service
from bookd.core.config import Settings, describe
from bookd.core.errors import BookdError
from bookd.core.exits import EXIT_CODES


class _Commands(click.Group):
    """Every bookd error, whichever command raised it, ends as one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BookdError as exc:
            raise click.ClickException(str(exc)) from exc


def _epilog() -> str:
    # Generated from the settings' one declaration (bookd.core.config), like the README's table.
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
    from bookd.telemetry import logs

    settings = Settings.from_env()
    logs.setup(settings, stream="stderr")  # the listener's go to stdout (see listen)
    ctx.obj = settings


for _command in (
    service.show_settings,
    service.provision,
    service.listen,
    queues.send,
    queues.peek,
    queues.status,
    dead_letters.dlq,
    replay.replay,
):
    main.add_command(_command)
