"""``bookd settings``, ``bookd provision`` and ``bookd listen``: running bookd itself."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from bookd.core.config import Settings, describe, markdown_table
from bookd.core.exits import EXIT_LOCKED
from bookd.core.tracing import Tracing


@click.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's table instead.")
def show_settings(markdown: bool) -> None:
    """List every setting, its default and meaning (and the value in effect)."""
    if markdown:
        click.echo(markdown_table())
        return
    current = Settings.from_env().to_env()
    for env, default, meaning in describe():
        value = current.get(env, "")
        shown = "<set>" if value and ("SECRET" in env or "TOKEN" in env) else value
        click.echo(f"{env}={shown}    (default {default}) {meaning}")


@click.command()
@click.pass_obj
def provision(settings: Settings) -> None:
    """Create the buckets and queues (idempotent; against AWS too)."""
    from bookd.aws.provision import provision as run_provision

    result = run_provision(settings)
    click.echo(f"buckets: {', '.join(result.buckets)}")
    click.echo(f"input queue: {result.input_queue_url}")
    click.echo(f"output queue: {result.output_queue_url}")
    click.echo(f"dead-letter queue: {result.dead_letter_queue_url}")


@click.command()
@click.option("--owner", type=int, help="Stop when this pid (the Gunicorn master) is gone.")
@click.pass_obj
def listen(settings: Settings, owner: int | None) -> None:
    """Run the listener in the foreground until SIGTERM or Ctrl-C."""
    from bookd.listener import BookListener, install_stop_signals
    from bookd.supervision.lock import LOCK_WAIT, StateDir, hold_listener_lock
    from bookd.supervision.status import Supervised
    from bookd.telemetry import logs

    logs.setup(settings)  # a service: its lines go to stdout, as Gunicorn's do
    state = StateDir(settings.state_dir)
    state.path.mkdir(parents=True, exist_ok=True)
    with hold_listener_lock(state, timeout=LOCK_WAIT) as mine:
        if not mine:
            click.echo(f"bookd: another listener holds {state.lock}; not starting", err=True)
            sys.exit(EXIT_LOCKED)
        with _tracing(settings) as tracing:
            listener = BookListener(
                settings,
                on_tick=Supervised(settings, owner_pid=owner),
                on_connected=lambda: _connected(settings),
                tracing=tracing,
            )
            install_stop_signals(listener)
            listener.listen()
    if owner is not None:
        from bookd.supervision.control import wait_for_owner_exit

        wait_for_owner_exit(owner)  # its lock released: the master exits first


def _connected(settings: Settings) -> None:
    # Yield to the web workers once connected, not before: a start (a restart, a new
    # replica) is then not held back by the workers booting beside it. Its clients
    # made, what the start left on the heap is frozen (bookd.supervision.heap).
    from bookd.supervision.heap import freeze_startup_heap

    os.nice(settings.listener_nice)
    freeze_startup_heap()


@contextmanager
def _tracing(settings: Settings) -> Iterator[Tracing]:
    """Tracing in this process, when OTEL_TRACES_EXPORTER asks for it; its spans are
    flushed when the listener stops. Off, OpenTelemetry is not even imported."""
    if settings.traces_exporter is None:
        yield Tracing()
        return
    from bookd.telemetry.tracing import tracing

    with tracing(settings) as traces:
        yield traces
