"""A command run as a person runs it at a terminal, and the screen it leaves (pyte).

Output that looks right in a pipe can still be wrong on a screen (columns that run
into each other, lines that wrap): these tests read what the emulated terminal shows.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

import pyte


def screen_of(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    columns: int = 80,
    rows: int = 50,
    timeout: float = 60.0,
) -> tuple[int, list[str]]:
    """Run ``command`` on a pseudo-terminal of ``columns`` x ``rows``; (exit code, screen lines).

    The lines are the screen's, right-stripped, without the trailing empty ones.
    """
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        list(command),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**env, "TERM": "xterm", "COLUMNS": str(columns), "LINES": str(rows)},
        close_fds=True,
    )
    os.close(follower)
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{command} still ran after {timeout} s")
            readable, _, _ = select.select([leader], [], [], left)
            if not readable:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command closed its side of the terminal
                break
            if not chunk:
                break
            # The terminal's line discipline already turned each "\n" into "\r\n".
            stream.feed(chunk)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return code, lines
