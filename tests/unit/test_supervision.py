"""Who gets signalled: the lock's holder as the kernel reports it, never a pid from a file."""

from __future__ import annotations

import subprocess
import sys
import time

from bookd.core.config import Settings
from bookd.supervision.control import stop_listener
from bookd.supervision.lock import StateDir, flock, lock_holder

HOLDER = """
import sys, time
from pathlib import Path
from bookd.core.config import Settings
from bookd.supervision.lock import StateDir, hold_listener_lock
with hold_listener_lock(StateDir(Path(sys.argv[1])), timeout=5) as mine:
    print("held" if mine else "not held", flush=True)
    time.sleep(60)
"""


def test_the_lock_holder_is_the_process_that_took_the_lock(tmp_path):
    state = StateDir(tmp_path)
    assert lock_holder(state) is None
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        assert lock_holder(state) == child.pid
        assert state.lock.read_text().strip() == str(child.pid)
        assert stop_listener(Settings.from_env({}).replace(state_dir=tmp_path)) == child.pid
        child.wait(timeout=10)
        assert state.disabled.exists()
    finally:
        child.kill()
        child.wait()


def test_a_stale_pid_in_the_status_file_is_never_signalled(tmp_path):
    state = StateDir(tmp_path)
    # Another process now owns the pid the status file names (pids are reused).
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        state.write_json(state.status, {"pid": bystander.pid, "state": "running"})
        with flock(state.lock) as mine:  # someone holds the lock: this test itself
            assert mine
            assert stop_listener(Settings.from_env({}).replace(state_dir=tmp_path)) is None
        time.sleep(0.2)
        assert bystander.poll() is None, "the bystander was not signalled"
    finally:
        bystander.kill()
        bystander.wait()
