"""A stopped listener exits after its master (bookd.supervision.control.wait_for_owner_exit).

supervisord notices the master's exit when the output it shares with the listener
closes, which happens when the last of them exits. This test plays a master and its
listener as two processes on one pipe, as supervisord sees them.
"""

from __future__ import annotations

import subprocess
import sys

LISTENER = """
import os, time
from bookd.supervision.control import wait_for_owner_exit
owner = os.getppid()
print("listener stopped", flush=True)
wait_for_owner_exit(owner)
print("listener exits", flush=True)
"""

MASTER = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", {LISTENER!r}])
time.sleep(0.5)  # on_exit, waiting for the listener's lock
print("master exits", flush=True)
"""


def test_the_listener_exits_after_its_master_so_the_output_closes_when_it_can_be_reaped():
    # Given a master and its listener sharing one output, the listener stopped first,
    master = subprocess.Popen([sys.executable, "-c", MASTER], stdout=subprocess.PIPE, text=True)
    # when both exit (the output ends once the last of them has),
    lines = [line.strip() for line in master.stdout]
    # then the listener left last, and the master was gone by the time the output closed.
    assert lines == ["listener stopped", "master exits", "listener exits"]
    assert master.poll() == 0, "the output closed before the master could be reaped"
