"""Operator control of the listener: stop it (and keep it stopped), let it run again.

Used by ``DELETE /`` and ``POST /``, and on a stop by both sides: Gunicorn's on_exit
waits for the listener to let go of its lock, then the listener for the master to exit.
The stop flag file does the stopping: a listener checks it every second, even one
still starting, which no signal may reach yet; the signal only makes it quicker, and
goes only to the process the kernel says holds the listener lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import asdict

from bookd.core.config import Settings
from bookd.supervision.keeper import Restarts
from bookd.supervision.lock import StateDir, lock_holder, lock_is_held, pid_alive


def stop_listener(settings: Settings) -> int | None:
    """Stop the listener and keep it stopped until enable_listener; returns the pid signalled."""
    state = StateDir(settings.state_dir)
    state.disabled.touch()
    pid = lock_holder(state)
    if pid is not None and pid != os.getpid():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            return pid
    return None


def enable_listener(settings: Settings) -> None:
    """Undo stop_listener: Keepers start the listener again, without a restart delay."""
    state = StateDir(settings.state_dir)
    state.write_json(state.restarts, asdict(Restarts()))  # no restart delay after it
    state.disabled.unlink(missing_ok=True)


def wait_for_listener_exit(settings: Settings, *, timeout: float) -> bool:
    """Wait until no listener holds the lock; False if one still did at the timeout."""
    state = StateDir(settings.state_dir)
    deadline = time.monotonic() + timeout
    while lock_is_held(state):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


OUTLIVE_SECONDS = 1.0
"""How long a stopped listener, its lock released, waits for its master to exit first."""


def wait_for_owner_exit(owner_pid: int, *, timeout: float = OUTLIVE_SECONDS) -> None:
    """The listener's last step: wait until its master has exited (a zombie counts).

    supervisord notices a child's exit when the output it shares with its children
    closes, or else on its next one-second poll; the last of them to exit closes it.
    Were that the master, supervisord would wake an instant before the kernel has the
    master ready to reap, and wait a second more (the bench's idle stop: 2.3 s against
    1.3 s). Exiting once the master is a zombie, whichever process started it (the
    master, or a worker's Keeper), the listener wakes supervisord when it can reap.
    On an operator's stop the master stays, and this returns after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while pid_alive(owner_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
