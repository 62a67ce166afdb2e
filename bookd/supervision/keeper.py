"""Starting and restarting the one listener: the Keeper in every Gunicorn worker.

Every Gunicorn worker runs a Keeper thread that starts a listener when the lock is
free (within a second of a death), unless an operator stopped it. Starting is
serialized by a second lock, so workers firing at once start one listener, not
four. A listener that keeps dying within STABLE_SECONDS of its start is restarted
after 1, 2, 4... up to MAX_RESTART_DELAY seconds. The listener belongs to the
Gunicorn master (its "owner") and stops by itself when the master is gone, so a
restarted master never finds an orphan beside its own listener.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from bookd.core.config import Settings
from bookd.core.exits import EXIT_LOCKED
from bookd.supervision.lock import (
    LOCK_WAIT,
    StateDir,
    flock,
    json_number,
    lock_is_held,
    pid_alive,
)

log = logging.getLogger(__name__)

STABLE_SECONDS = 10.0
"""A listener that lived this long was healthy: the next restart is immediate."""

MAX_RESTART_DELAY = 60.0
"""Longest wait, in seconds, between starts of a listener that keeps dying at start."""

KEEPER_INTERVAL = 1.0
"""Seconds between a Keeper's checks of the lock."""


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
            log.warning("%s was malformed; rewritten", state.restarts)
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


class Spawner:
    """Starts listener processes for one owner, and reaps those it started.

    Gunicorn's master reaps any child of its own (its listener from when_ready), so
    ``reap`` matters in the workers, whose Keepers call it: without it every listener
    a worker started would stay a zombie once it ended.
    """

    def __init__(self, settings: Settings, *, owner_pid: int) -> None:
        self.settings = settings
        self.owner_pid = owner_pid
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def start(self) -> int | None:
        """Start a listener unless one runs, an operator stopped it, or a restart delay is due.

        Returns the new pid, if any.
        """
        state = StateDir(self.settings.state_dir)
        with flock(state.spawn_lock) as mine:
            if not mine or state.disabled.exists() or lock_is_held(state):
                return None
            self._mark_dead_predecessor(state)
            moment = time.time()
            restarts = Restarts.read(state).noticed_dead(moment)
            if restarts.wait_before_start(moment) > 0:
                state.write_json(state.restarts, asdict(restarts))
                return None
            state.write_json(state.restarts, asdict(restarts.started(moment)))
            command = [sys.executable, "-m", "bookd", "listen", "--owner", str(self.owner_pid)]
            proc = subprocess.Popen(command)
            with self._lock:
                self._children.append(proc)
            # Hold the spawn lock until the new listener holds its own, so no one starts a second.
            deadline = time.monotonic() + LOCK_WAIT + 5
            while proc.poll() is None and not lock_is_held(state) and time.monotonic() < deadline:
                time.sleep(0.05)
            log.info("Started listener %s", proc.pid)
            return proc.pid

    def reap(self) -> None:
        """Collect the exit status of listeners this spawner started and that have ended."""
        with self._lock:
            for proc in list(self._children):
                code = proc.poll()
                if code is not None:
                    self._children.remove(proc)
                    if code not in (0, EXIT_LOCKED):
                        log.warning("Listener %s exited with %s", proc.pid, code)

    def _mark_dead_predecessor(self, state: StateDir) -> None:
        previous = json_number(state.read_json(state.status).get("pid"), int)
        if previous and not pid_alive(previous):
            from bookd.telemetry import metrics  # late: the multiprocess dir must be set first

            metrics.mark_dead(self.settings, previous)


def start_listener(settings: Settings, *, owner_pid: int) -> int | None:
    """Start a listener now (Gunicorn's when_ready), unless one runs or is unwanted."""
    return Spawner(settings, owner_pid=owner_pid).start()


class Keeper(threading.Thread):
    """Runs in each Gunicorn worker: starts a listener whenever the lock is free."""

    def __init__(self, settings: Settings, *, owner_pid: int, alive: Callable[[], bool]) -> None:
        super().__init__(name="listener-keeper", daemon=True)
        self.spawner = Spawner(settings, owner_pid=owner_pid)
        self.alive = alive
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(KEEPER_INTERVAL) and self.alive():
            try:
                self.spawner.reap()
                self.spawner.start()
            except Exception:  # logged top-level loop: the keeper must outlive any one error
                log.exception("Keeper check failed; going on")

    def stop(self) -> None:
        self.stopped.set()
