"""`python -m bench.profile`: where the listener's CPU goes, as a flame graph (py-spy).

A bookd stack works through preloaded books locally (no added delay, so the CPU, not
the network, bounds it), and py-spy samples its listener process from outside, without
changing it, while it does: only the thread that holds the GIL at each sample, which is
where the listener's Python CPU goes (its fifty threads mostly wait on sockets). The
SVG goes to bench/results/listener-flame.svg (open it in a browser: each box is a
function, as wide as its share of the samples), and the share of each kind of work to
stdout, with the listener's CPU per book over the first recording by thread: py-spy
sees Python's threads only, and the CRT's threads spend theirs in C.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.contenders import ROOT
from bookd.aws.provision import provision
from bookd.core.config import Settings
from bookd.telemetry.metrics import READ_SECONDS
from harness.procfs import cpu_by_thread_name
from harness.resources import remove_resources, unique_settings
from harness.stack import Stack
from harness.workload import make_workload, preload

CATEGORIES = (
    ("awscrt: the uploads' calls into the CRT", ("awscrt/",)),
    ("botocore: signing (SigV4)", ("botocore/auth.py", "botocore/signers.py")),
    (
        "botocore: serializing, parsing, validating",
        ("botocore/serialize.py", "botocore/parsers.py", "botocore/validate.py", "botocore/model"),
    ),
    ("botocore: the rest (events, handlers, endpoint, retries)", ("botocore/",)),
    ("urllib3, http.client, sockets", ("urllib3/", "http/client.py", "socket.py", "email/")),
    ("logging", ("logging/", "pythonjsonlogger/")),
    ("metrics", ("prometheus_client/", "bookd/telemetry/")),
    ("json", ("json/",)),
    ("threads and queues", ("threading.py", "concurrent/futures/", "queue.py")),
    ("bookd's own code", ("bookd/",)),
)
"""Kinds of work, each by marks of its files' paths. A sample goes to the kind of its
innermost frame that has one: the code that was running, whoever called it."""


def record(pid: int, seconds: float, fmt: str, path: Path) -> None:
    """py-spy on ``pid`` for ``seconds``, at a rate it keeps up with on two cores."""
    py_spy = str(Path(sys.executable).parent / "py-spy")
    subprocess.run(
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100"]
        + ["--gil", "--nonblocking", "--format", fmt, "--output", str(path)],
        check=True,
    )


def summary(collapsed: Path) -> str:
    """The share of the samples of each kind of work (CATEGORIES)."""
    counts: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        frames = stack.split(";")[::-1]
        kind = next(
            (k for frame in frames for k, marks in CATEGORIES if any(m in frame for m in marks)),
            "other",
        )
        counts[kind] = counts.get(kind, 0) + int(n)
    shares = sorted(counts.items(), key=lambda item: -item[1])
    return "\n".join(
        [f"{total} samples (GIL held)"] + [f"{100 * n / total:5.1f}%  {k}" for k, n in shares]
    )


def finished(stack: Stack) -> float:
    """Messages the stack's listener has finished so far (bookd_messages_processed_total)."""
    time.sleep(READ_SECONDS + 0.1)  # a worker reuses its read of the files that long
    return stack.metric("bookd_messages_processed_total")


def by_thread(before: dict[str, float], after: dict[str, float], books: float) -> str:
    """CPU per book between two readings of cpu_by_thread_name, by thread name."""
    if books <= 0:  # the queue ran dry before the recording: nothing to spread it over
        return "listener CPU by thread: no book finished while it was read"
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    lines = [f"listener CPU per book over {books:.0f} books, by thread name:"]
    for name, seconds in sorted(used.items(), key=lambda item: -item[1]):
        lines.append(f"{seconds * 1000 / books:6.3f} ms  {name}")
    total = sum(used.values()) * 1000 / books
    return "\n".join([*lines, f"{total:6.3f} ms  in all"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--books", type=int, default=16000)
    parser.add_argument("--seconds", type=float, default=40.0, help="how long to sample")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    settings = unique_settings(Settings.from_env())
    work = Path(tempfile.mkdtemp(prefix="bookd-profile-"))
    try:
        provision(settings)
        preload(settings, make_workload(args.books, 50))
        stack = Stack(settings, work / "stack")
        stack.tmp.mkdir(parents=True)
        try:
            stack.start()
            [listener] = stack.processes(kind="listener")
            args.out.mkdir(parents=True, exist_ok=True)
            collapsed = work / "listener-stacks.txt"
            flame = args.out / "listener-flame.svg"
            # Two recordings one after the other, of the same steady work.
            books, cpu = finished(stack), cpu_by_thread_name(listener)
            record(listener, args.seconds / 2, "raw", collapsed)
            done = finished(stack)  # first, then the CPU at once: one window for both
            threads = by_thread(cpu, cpu_by_thread_name(listener), done - books)
            record(listener, args.seconds / 2, "flamegraph", flame)
        finally:
            stack.cleanup()
        print(f"flame graph: {flame}")
        print(summary(collapsed))
        print(threads)
    finally:
        remove_resources(settings)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
