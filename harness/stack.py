"""The real stack: supervisord, Gunicorn with 4 workers, the listener.

Each Stack runs on a free port with its own state directory and its own queues
and buckets. Processes are found through /proc by the stack's unique state
directory in their environment, so a test only ever signals what it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from bookd.core.config import Settings
from harness.procfs import live_processes
from harness.waiting import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a process see ``settings``."""
    return settings.to_env()


class Stack:
    """One supervisord-rooted bookd process tree."""

    def __init__(self, settings: Settings, tmp: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.state_dir = tmp / "state"
        self.tmp = tmp
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **settings_env(settings),
            "BOOKD_BIND": f"127.0.0.1:{self.port}",
            "BOOKD_STATE_DIR": str(self.state_dir),
            "BOOKD_WORKERS": "4",
            "BOOKD_LOG_LEVEL": "INFO",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra_env,
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.supervisord: subprocess.Popen[bytes] | None = None

    # --- life -------------------------------------------------------------

    def start(self, *, timeout: float = 40.0, state: str = "running") -> Stack:
        """Start supervisord; return once GET / reports the listener ``state``.

        "stopped" for a stack started with the listener held back (the stop flag,
        bookd.supervision.StateDir.disabled, made before the start).
        """
        # supervisord checks that the directory of the config's logfile and pidfile
        # (var/) exists even when -l and -j replace them; make run and the image make it,
        # but a fresh clone whose LocalStack was already up (scripts/localstack.sh) has none.
        (ROOT / "var").mkdir(exist_ok=True)
        self.supervisord = subprocess.Popen(
            [
                str(BIN / "supervisord"),
                "-n",
                "-c",
                str(ROOT / "deploy" / "supervisord.conf"),
                "-l",
                str(self.tmp / "supervisord.log"),
                "-j",
                str(self.tmp / "supervisord.pid"),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=open(self.tmp / "stack.log", "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        assert wait_for(lambda: self.listener_state() == state, timeout=timeout), (
            f"the stack did not come up within {timeout} s:\n{self.log_tail()}"
        )
        return self

    def terminate(self, *, timeout: float = 45.0) -> float:
        """SIGTERM supervisord; return the seconds until every process of the stack exited."""
        assert self.supervisord is not None
        began = time.monotonic()
        self.supervisord.send_signal(signal.SIGTERM)
        self.supervisord.wait(timeout=timeout)
        wait_for(
            lambda: not self.processes(), timeout=max(0.0, timeout - (time.monotonic() - began))
        )
        return time.monotonic() - began

    def cleanup(self) -> None:
        """Kill whatever of this stack is still running (after a failed test)."""
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.kill()
            self.supervisord.wait()
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- looking at it ----------------------------------------------------

    def processes(self, *, kind: str | None = None) -> list[int]:
        """Pids of this stack's live processes; kind 'listener' or 'gunicorn' narrows it."""
        part = {"listener": b"bookd listen", "gunicorn": b"gunicorn", None: None}[kind]
        marker = f"BOOKD_STATE_DIR={self.state_dir}".encode()
        return live_processes(environ_entry=marker, cmdline_part=part)

    def master_pid(self) -> int:
        assert self.supervisord is not None
        children = Path(f"/proc/{self.supervisord.pid}/task/{self.supervisord.pid}/children")
        [pid] = [int(p) for p in children.read_text().split()]
        return pid

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=kw.pop("timeout", 5), **kw)

    def status(self) -> dict[str, Any]:
        return self.get("/").json()

    def listener_state(self) -> str | None:
        try:
            return self.status()["listener"]["state"]
        except (requests.RequestException, ValueError, KeyError):
            return None

    def metric(self, name: str, text: str | None = None) -> float:
        """The sum of every sample of metric ``name`` in one scrape (a new one if not given)."""
        total = 0.0
        for line in (text if text is not None else self.get("/metrics").text).splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.tmp / "stack.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
