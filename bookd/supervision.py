"""One listener per lock file: the lock, starting and restarting it, and its status file.

The listener process holds an exclusive ``flock`` on ``listener.lock`` for as long
as it lives; the OS drops the lock when it dies, however it dies, so there is no
stale pid file to clean up. Every Gunicorn worker runs a Keeper thread that starts
a listener when the lock is free (within a second of a death), unless an operator
stopped it. Starting is serialized by a second lock so that workers firing at once
start one listener, not four. The listener belongs to the Gunicorn master (its
"owner") and stops by itself when the master is gone, so a restarted master never
finds an orphan beside its own listener.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bookd.config import Settings

log = logging.getLogger(__name__)

EXIT_LOCKED = 3
"""Exit code of a listener that found the lock held by another listener."""

STABLE_SECONDS = 10.0
"""A listener that lived this long was healthy: the next restart is immediate."""

MAX_RESTART_DELAY = 60.0
"""Longest wait, in seconds, between starts of a listener that keeps dying at start."""

LOCK_WAIT = 5.0
"""Seconds a new listener tries to take the lock (a status probe may hold it briefly)."""

KEEPER_INTERVAL = 1.0
"""Seconds between a Keeper's checks of the lock."""


class StateDir:
    """The files through which the listener and the Gunicorn workers coordinate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = path / "listener.lock"
        self.spawn_lock = path / "spawn.lock"
        self.status = path / "listener.json"
        self.disabled = path / "listener.disabled"
        self.restarts = path / "restarts.json"

    def read_json(self, path: Path) -> dict[str, Any]:
        """The file's JSON object; {} if it is missing, unreadable or not an object."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("Supervisor %s: ignoring unreadable %s (%s)", os.getpid(), path, exc)
            return {}
        if not isinstance(data, dict):
            log.warning("Supervisor %s: ignoring %s: not a JSON object", os.getpid(), path)
            return {}
        return data

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        # Write then rename, so a reader never sees half a file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


@contextlib.contextmanager
def flock(path: Path, *, timeout: float = 0.0, shared: bool = False) -> Iterator[bool]:
    """Hold an OS lock on ``path`` while inside; yields whether it was taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
            else:
                yield True
                return
    finally:
        os.close(fd)  # closing drops the lock


def lock_is_held(state: StateDir) -> bool:
    """Whether a listener holds the lock now."""
    if not state.path.is_dir():
        return False  # no listener ever ran with this state directory
    with flock(state.lock, shared=True) as free:
        return not free


@contextlib.contextmanager
def hold_listener_lock(state: StateDir, *, timeout: float) -> Iterator[bool]:
    """The listener's side of the lock: hold it while inside, with this pid written in it."""
    with flock(state.lock, timeout=timeout) as mine:
        if mine:
            # For people reading the file; bookd itself asks the kernel (lock_holder).
            state.lock.write_text(f"{os.getpid()}\n")
        yield mine


def lock_holder(state: StateDir) -> int | None:
    """The pid that holds the listener lock now, as the kernel reports it (/proc/locks).

    None when no process holds it, or on a system without /proc/locks. A pid taken
    from a status file may be stale and belong to another process by now; this one
    is the lock's holder at the moment of asking.
    """
    try:
        stat = state.lock.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"; waiters show "->" first.
        if (
            len(fields) >= 6
            and fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"]
            and fields[5] == device
            and fields[4].isdigit()
        ):
            return int(fields[4])
    return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass(frozen=True)
class Restarts:
    """When the listener last started and died, and how many short lives came in a row."""

    last_start_at: float = 0.0
    died_at: float = 0.0
    quick_deaths: int = 0

    @classmethod
    def read(cls, state: StateDir) -> Restarts:
        """From the restarts file; a malformed one is replaced by a fresh record, with a warning."""
        data = state.read_json(state.restarts)
        try:
            restarts = cls(
                last_start_at=float(data.get("last_start_at", 0.0)),
                died_at=float(data.get("died_at", 0.0)),
                quick_deaths=int(data.get("quick_deaths", 0)),
            )
        except (TypeError, ValueError):
            restarts = None
        if restarts is None or set(data) - {"last_start_at", "died_at", "quick_deaths"}:
            log.warning("Supervisor %s: %s was malformed; rewritten", os.getpid(), state.restarts)
            restarts = restarts or cls()
            state.write_json(state.restarts, asdict(restarts))
        return restarts

    def noticed_dead(self, now: float) -> Restarts:
        """Record a death, once per start; a short life counts towards the delay."""
        if not self.last_start_at or self.died_at >= self.last_start_at:
            return self
        quick = now - self.last_start_at < STABLE_SECONDS
        return replace(self, died_at=now, quick_deaths=self.quick_deaths + 1 if quick else 0)

    def wait_before_start(self, now: float) -> float:
        """Seconds still to wait: none after a healthy life, then 1, 2, 4... up to a minute."""
        if self.quick_deaths == 0:
            return 0.0
        delay = min(2 ** (self.quick_deaths - 1), MAX_RESTART_DELAY)
        return max(0.0, self.died_at + delay - now)

    def started(self, now: float) -> Restarts:
        return replace(self, last_start_at=now)


# Listener processes started by this process, reaped by its Keeper so none is a zombie.
_children: list[subprocess.Popen[bytes]] = []
_children_lock = threading.Lock()


def reap_children() -> None:
    """Collect the exit status of listeners this process started and that have ended."""
    with _children_lock:
        for proc in list(_children):
            code = proc.poll()
            if code is not None:
                _children.remove(proc)
                if code not in (0, EXIT_LOCKED):
                    log.warning(
                        "Supervisor %s: listener %s exited with %s", os.getpid(), proc.pid, code
                    )


def start_listener(settings: Settings, *, owner_pid: int) -> int | None:
    """Start a listener unless one runs, an operator stopped it, or a restart delay is due.

    Returns the new pid, if any.
    """
    state = StateDir(settings.state_dir)
    with flock(state.spawn_lock) as mine:
        if not mine or state.disabled.exists() or lock_is_held(state):
            return None
        previous = _number(state.read_json(state.status).get("pid"), int)
        if previous and not pid_alive(previous):
            from bookd import metrics  # imported late: the multiprocess dir must be set first

            metrics.mark_dead(previous)
        moment = time.time()
        restarts = Restarts.read(state).noticed_dead(moment)
        if restarts.wait_before_start(moment) > 0:
            state.write_json(state.restarts, asdict(restarts))
            return None
        state.write_json(state.restarts, asdict(restarts.started(moment)))
        command = [sys.executable, "-m", "bookd", "listen", "--owner", str(owner_pid)]
        proc = subprocess.Popen(command)
        with _children_lock:
            _children.append(proc)
        # Hold the spawn lock until the new listener holds its own, so no one starts a second.
        deadline = time.monotonic() + LOCK_WAIT + 5
        while proc.poll() is None and not lock_is_held(state) and time.monotonic() < deadline:
            time.sleep(0.05)
        log.info("Supervisor %s: started listener %s", os.getpid(), proc.pid)
        return proc.pid


def stop_listener(settings: Settings) -> int | None:
    """Stop the listener and keep it stopped until start; returns the pid signalled.

    The flag file does it in any case: a listener checks it every second, even one
    still starting, which no signal may reach yet. The signal only makes it quicker,
    and goes only to the process the kernel says holds the listener lock.
    """
    state = StateDir(settings.state_dir)
    state.disabled.touch()
    pid = lock_holder(state)
    if pid is not None and pid != os.getpid():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            return pid
    return None


def wait_for_listener_exit(settings: Settings, *, timeout: float) -> bool:
    """Wait until no listener holds the lock; False if one still did at the timeout."""
    state = StateDir(settings.state_dir)
    deadline = time.monotonic() + timeout
    while lock_is_held(state):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def enable_listener(settings: Settings) -> None:
    """Undo stop_listener: Keepers start the listener again, without a restart delay."""
    state = StateDir(settings.state_dir)
    state.write_json(state.restarts, asdict(Restarts()))
    state.disabled.unlink(missing_ok=True)


def listener_status(settings: Settings) -> dict[str, Any]:
    """State (running, starting, stopping, stopped, restarting), pid and times of the listener."""
    state = StateDir(settings.state_dir)
    held = lock_is_held(state)
    status = state.read_json(state.status)
    disabled = state.disabled.exists()
    reported = status.get("state")
    if held:
        if disabled or reported == "stopping":
            name = "stopping"
        else:
            name = "running" if reported == "running" else "starting"
    elif disabled:
        name = "stopped"
    else:
        name = "restarting" if status else "starting"
    restarts = Restarts.read(state)
    dependencies = status.get("dependencies") if held else None
    return {
        "state": name,
        "pid": _number(status.get("pid"), int) if held else None,
        "started_at": _iso(status.get("started_at")) if held else None,
        "connected_at": _iso(status.get("connected_at")) if held else None,
        "last_poll_at": _iso(status.get("last_poll_at")),
        "alive_at": _iso(status.get("alive_at")) if held else None,
        "alive_seconds_ago": _age(status.get("alive_at")) if held else None,
        "quick_restarts": restarts.quick_deaths,
        "dependencies": dependencies if isinstance(dependencies, dict) else {},
    }


def _number(value: Any, kind: type) -> Any:
    """``value`` if it is a number of ``kind`` (bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)


def _age(timestamp: Any) -> float | None:
    moment = _number(timestamp, float)
    return None if moment is None else round(max(0.0, time.time() - moment), 3)


def _iso(timestamp: Any) -> str | None:
    moment = _number(timestamp, float)
    if moment is None:
        return None
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


class Keeper(threading.Thread):
    """Runs in each Gunicorn worker: starts a listener whenever the lock is free."""

    def __init__(self, settings: Settings, *, owner_pid: int, alive: Callable[[], bool]) -> None:
        super().__init__(name="listener-keeper", daemon=True)
        self.settings = settings
        self.owner_pid = owner_pid
        self.alive = alive
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(KEEPER_INTERVAL) and self.alive():
            try:
                reap_children()
                start_listener(self.settings, owner_pid=self.owner_pid)
            except Exception:  # logged top-level loop: the keeper must outlive any one error
                log.exception("Supervisor %s: keeper check failed", os.getpid())

    def stop(self) -> None:
        self.stopped.set()


class Supervised:
    """The listener's side of supervision, run on each of its ticks (about once a second).

    Two duties, in this order: stop if an operator asked (DELETE /) or the owner (the
    Gunicorn master) is gone, then write the status file that GET / and the probes read.
    """

    def __init__(self, settings: Settings, *, owner_pid: int | None) -> None:
        self.state = StateDir(settings.state_dir)
        self.owner_pid = owner_pid

    def __call__(self, listener: Any) -> None:
        self.stop_if_unwanted(listener)
        self.write_status(listener)

    def stop_if_unwanted(self, listener: Any) -> None:
        """Stop the listener if an operator stopped it or its owner is gone."""
        if listener.stopping:
            return
        if self.state.disabled.exists():
            log.info("Listener %s: stopped on request (DELETE /); stopping", os.getpid())
            listener.stop()
        elif self.owner_pid and not pid_alive(self.owner_pid):
            log.warning("Listener %s: owner %s is gone; stopping", os.getpid(), self.owner_pid)
            listener.stop()

    def write_status(self, listener: Any) -> None:
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
                "held": listener.inflight.count(),
                "dependencies": listener.dependencies.snapshot(),
            },
        )
