"""The listener's status: written by the listener each second, read by the app and the CLI.

The listener writes ``listener.json`` in its state directory on each tick (Supervised),
after checking whether it should stop. Readers (GET /, the probes, ``bookd status``)
combine that file with the lock, the stop flag and the restart record into a
ListenerStatus, so a dead listener's last file never passes for a live one.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bookd.core.config import Settings
from bookd.supervision.keeper import Restarts
from bookd.supervision.lock import StateDir, json_number, lock_is_held, pid_alive
from bookd.telemetry import metrics
from bookd.telemetry.history import History
from bookd.telemetry.history import path_of as history_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenerStatus:
    """What GET /, the probes and ``bookd status`` say of the listener."""

    state: str
    """running, starting, stopping, stopped or restarting."""
    pid: int | None = None
    started_at: str | None = None
    connected_at: str | None = None
    last_poll_at: str | None = None
    alive_at: str | None = None
    alive_seconds_ago: float | None = None
    """Seconds since a listener thread last showed it turns (liveness)."""
    quick_restarts: int = 0
    dependencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    """S3's and SQS's state as the listener sees them ("ok", or the problem and its cause)."""
    uptime_seconds: float | None = None
    queues: dict[str, Any] = field(default_factory=dict)
    """Its queues' depths at the listener's last read ("as_of"), for the console."""
    dead_letters: dict[str, Any] | None = None
    """The dead letters by reason at the listener's last read, for the console."""

    def as_json(self) -> dict[str, Any]:
        """The ``listener`` object of GET / (its keys in this order)."""
        return {
            "state": self.state,
            "pid": self.pid,
            "started_at": self.started_at,
            "connected_at": self.connected_at,
            "last_poll_at": self.last_poll_at,
            "alive_at": self.alive_at,
            "alive_seconds_ago": self.alive_seconds_ago,
            "quick_restarts": self.quick_restarts,
            "dependencies": self.dependencies,
        }


def read_status(settings: Settings) -> ListenerStatus:
    """The listener's status now, from its lock, its status file and the stop flag."""
    state = StateDir(settings.state_dir)
    held = lock_is_held(state)
    written = state.read_json(state.status)
    disabled = state.disabled.exists()
    reported = written.get("state")
    if held:
        if disabled or reported == "stopping":
            name = "stopping"
        else:
            name = "running" if reported == "running" else "starting"
    elif disabled:
        name = "stopped"
    else:
        name = "restarting" if written else "starting"
    restarts = Restarts.read(state)
    dependencies = written.get("dependencies") if held else None
    queues, letters = written.get("queues"), written.get("dead_letters")
    return ListenerStatus(
        state=name,
        pid=json_number(written.get("pid"), int) if held else None,
        started_at=_iso(written.get("started_at")) if held else None,
        connected_at=_iso(written.get("connected_at")) if held else None,
        last_poll_at=_iso(written.get("last_poll_at")),
        alive_at=_iso(written.get("alive_at")) if held else None,
        alive_seconds_ago=_age(written.get("alive_at")) if held else None,
        quick_restarts=restarts.quick_deaths,
        dependencies=dependencies if isinstance(dependencies, dict) else {},
        uptime_seconds=_age(written.get("started_at")) if held else None,
        queues=queues if isinstance(queues, dict) else {},
        dead_letters=letters if isinstance(letters, dict) else None,
    )


def _age(timestamp: Any) -> float | None:
    moment = json_number(timestamp, float)
    return None if moment is None else round(max(0.0, time.time() - moment), 3)


def _iso(timestamp: Any) -> str | None:
    moment = json_number(timestamp, float)
    if moment is None:
        return None
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


class Watched(Protocol):
    """What supervision reads of a listener, and the one thing it may do to it: stop it."""

    started_at: float
    connected_at: float | None
    last_poll_at: float | None
    alive_at: float

    @property
    def stopping(self) -> bool: ...

    @property
    def connected(self) -> bool: ...

    def held(self) -> int:
        """How many messages it holds now."""
        ...

    def dependency_states(self) -> dict[str, dict[str, object]]:
        """S3's and SQS's state as it sees them."""
        ...

    def queue_depths(self) -> dict[str, object]:
        """Its queues' depths at their last read, with when that was ("as_of")."""
        ...

    def dead_letter_summary(self) -> dict[str, object] | None:
        """The dead letters by reason at their last read, if read yet."""
        ...

    def stop(self) -> None: ...


class Supervised:
    """The listener's side of supervision, run on each of its ticks (about once a second).

    Three duties, in this order: stop if an operator asked (DELETE /) or the owner (the
    Gunicorn master) is gone; write the status file that GET / and the probes read;
    sample what bookd counts into the history the console reads (bookd.telemetry.history).
    """

    def __init__(self, settings: Settings, *, owner_pid: int | None) -> None:
        self.settings = settings
        self.state = StateDir(settings.state_dir)
        self.owner_pid = owner_pid
        self.history = History(history_path(settings))

    def __call__(self, listener: Watched) -> None:
        self.stop_if_unwanted(listener)
        self.write_status(listener)
        self.history.sample(lambda: metrics.counts(self.settings))

    def stop_if_unwanted(self, listener: Watched) -> None:
        """Stop the listener if an operator stopped it or its owner is gone."""
        if listener.stopping:
            return
        if self.state.disabled.exists():
            log.info("Stopped on request (DELETE /); stopping")
            listener.stop()
        elif self.owner_pid and not pid_alive(self.owner_pid):
            log.warning("Owner %s is gone; stopping", self.owner_pid)
            listener.stop()

    def write_status(self, listener: Watched) -> None:
        """Write the status file: state, times, books held and the dependencies' states."""
        if listener.stopping:
            state = "stopping"
        else:
            state = "running" if listener.connected else "connecting"
        self.state.write_json(
            self.state.status,
            {
                "pid": os.getpid(),
                "owner": self.owner_pid,
                "state": state,
                "started_at": listener.started_at,
                "connected_at": listener.connected_at,
                "last_poll_at": listener.last_poll_at,
                "alive_at": listener.alive_at,
                "held": listener.held(),
                "dependencies": listener.dependency_states(),
                "queues": listener.queue_depths(),
                "dead_letters": listener.dead_letter_summary(),
            },
        )
