"""Processes as /proc shows them: state, start time, CPU, memory, environment."""

from __future__ import annotations

import os
import time
from pathlib import Path


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name, which may hold spaces."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def is_zombie(pid: int) -> bool:
    """Whether the process has exited and waits to be reaped (PID 1 here reaps no orphans)."""
    try:
        return stat_fields(pid)[0] == "Z"
    except OSError:
        return False


def started_at(pid: int) -> float:
    """Wall-clock time the process started, from /proc (10 ms resolution)."""
    ticks = int(stat_fields(pid)[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_thread_name(pid: int) -> dict[str, float]:
    """User plus system CPU time of the process's live threads, summed by thread name
    (Python's threads all bear the interpreter's; native libraries name their own)."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        found[name] = found.get(name, 0.0) + seconds
    return found


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def live_processes(*, environ_entry: bytes, cmdline_part: bytes | None = None) -> list[int]:
    """Pids of live (not zombie) processes with ``environ_entry`` in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if environ_entry not in environ.split(b"\0") or is_zombie(int(entry.name)):
            continue
        if cmdline_part is not None and cmdline_part not in cmdline:
            continue
        found.append(int(entry.name))
    return found
