"""The single-listener lock: one listener per lock file, and the kernel says who holds it.

The listener process holds an exclusive ``flock`` on ``listener.lock`` for as long
as it lives; the OS drops the lock when it dies, however it dies, so there is no
stale pid file to clean up. Who holds it is read from /proc/locks, never from a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_WAIT = 5.0
"""Seconds a new listener tries to take the lock (a status probe may hold it briefly)."""


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
            log.warning("Ignoring unreadable %s (%s)", path, exc)
            return {}
        if not isinstance(data, dict):
            log.warning("Ignoring %s: not a JSON object", path)
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


def json_number(value: Any, kind: type) -> Any:
    """``value`` read from a JSON file if it is a number of ``kind`` (bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)
