"""The real LocalStack: is it up, its pid, and private instances for tests that restart one.

The shared instance is the one `make localstack-up` starts (scripts/localstack.sh).
A test that takes LocalStack down for real starts its own on a free port with its
own var directory, through the same script, and stops only that one.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from harness.waiting import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "localstack.sh"
READY_STATES = ("available", "running")


def health(endpoint: str, *, timeout: float = 3.0) -> dict[str, Any]:
    """LocalStack's health JSON; OSError or ValueError if it does not answer."""
    with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=timeout) as response:
        return json.load(response)


def is_ready(endpoint: str) -> bool:
    """Whether S3 and SQS are available at ``endpoint``."""
    try:
        services = health(endpoint).get("services", {})
    except (OSError, ValueError):
        return False
    return all(services.get(name) in READY_STATES for name in ("s3", "sqs"))


def shared_pid(root: Path = ROOT) -> int | None:
    """The host LocalStack scripts/localstack.sh started, if that is what runs.

    None when LocalStack runs elsewhere (Docker, another machine): its CPU is then
    not ours to read.
    """
    # As scripts/localstack.sh reads it: relative to the repository, "var" by default.
    var = root / (os.environ.get("BOOKD_VAR_DIR") or "var")
    return _recorded_pid(var)


def _recorded_pid(var: Path) -> int | None:
    try:
        pid = int((var / "localstack.pid").read_text())
        if b"localstack" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    except (OSError, ValueError):
        pass
    return None


class PrivateLocalStack:
    """A LocalStack of one test's own, on a free loopback port, with its own var directory."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _script(self, command: str, *, timeout: float) -> None:
        env = {
            **os.environ,
            "LOCALSTACK_LISTEN": f"127.0.0.1:{self.port}",
            "BOOKD_VAR_DIR": str(self.var_dir),
        }
        result = subprocess.run(
            ["bash", str(SCRIPT), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeError(f"localstack.sh {command} failed: {result.stdout}{result.stderr}")

    def start(self) -> PrivateLocalStack:
        self._script("up", timeout=180)
        return self

    def stop(self) -> None:
        """Stop this instance (its process group, by the pid its script recorded)."""
        self._script("down", timeout=60)

    @property
    def pid(self) -> int | None:
        return _recorded_pid(self.var_dir)
