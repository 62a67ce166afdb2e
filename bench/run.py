"""`python -m bench.run`: the benchmark of issues 4 and 10, in one command and one run.

Against the LocalStack of the settings (BOOKD_ENDPOINT_URL), each on fresh queues
and buckets with generated books:

- local, then with 20 ms added to every request by a loopback proxy, 50 groups: the
  plain pySqsListener baseline, then rounds of bookd's real stack, the call floor
  (only the calls bookd must make) and the PutObject ceiling (Plan.rounds);
- 20 ms, every book in one FIFO group: the baseline and bookd;
- 200 ms, 50 groups, a few receive loops per instance (the network bounds each
  one): one bookd instance, then two and four complete instances on the same queues;
- one bookd-only run for the listener's memory, with the HTTP load while it is
  saturated.

Exit 1 if any correctness check failed (targets are reported, not enforced), 2 if
LocalStack is not there.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from bench import latency, lifecycle, report
from bench.contenders import (
    ROOT,
    Run,
    baseline_consumer,
    bookd_consumer,
    floor_consumer,
    run_ceiling,
    run_queue_contender,
)
from bench.probes import CLIENT_PROCESSES, SaturationProbe
from bookd.core.config import Settings
from harness import localstack
from harness.proxy import Proxy
from harness.workload import Workload, make_workload

EXIT_INCORRECT = 1
EXIT_NO_LOCALSTACK = 2


@dataclass(frozen=True)
class Plan:
    """How big each part of the benchmark is."""

    books: int = 2000
    groups: int = 50
    delayed_books: int = 1000
    """Books in the 20 ms runs over ``groups``: fewer, as the baseline does about 8 a second."""
    delay: float = 0.02
    one_group_books: int = 500
    """Books in the 20 ms runs with every book in one FIFO group."""
    scale_out_books: int = 1500
    """Books in the scale-out runs (one instance, then two), over ``groups`` groups."""
    scale_out_delay: float = 0.2
    """Seconds added to every request in the scale-out runs: the network bounds each instance."""
    scale_out_receivers: int = 4
    """BOOKD_RECEIVERS of each instance in the scale-out runs, whatever --env says."""
    scale_out_instances: tuple[int, ...] = (1, 2, 4)
    """The scale-out curve: this many complete instances on the same queues, in turn."""
    memory_marks: tuple[int, int] = (1000, 10_000)
    """Messages after which the listener's RSS is read; the second is the run's size."""
    http_clients: int = 50
    http_requests: int = 20
    """Requests per client, for each of /health and GET /."""
    http_interval: float = 0.5
    """Seconds between one client's requests: 50 health checkers polling twice a second."""
    light_rate: float = 10.0
    """Books a second of the light steady load (over ``light_groups``), at 20 ms."""
    light_groups: int = 10
    paced_seconds: float = 20.0
    """How long each steady load is offered; the other is half of bookd's capacity at 20 ms
    (its median rate over 50 groups), over ``groups``."""
    loaded_stop_books: int = 2000
    """Books of the stop while saturated (local): enough to be in full flow when it comes."""
    threads: tuple[int, ...] = (1, 4, 16)
    rounds: int = 5
    """Rounds of bookd, the call floor and the ceiling, locally and at 20 ms (and of bookd
    in one group); a ratio to the floor or the ceiling is the median of the rounds' ratios,
    so that one noisy round cannot flip a target.

    The machine's speed drifts by a quarter within minutes (the ceiling alone measured
    214 to 316 puts/s across runs), so each bookd run is set against a floor and a
    ceiling taken right after it, and the median of those ratios is the one judged."""
    evaluate_targets: bool = True

    def modes(self) -> report.Modes:
        """The modes' names, which say their delays."""
        delayed = f"{self.delay * 1000:.0f}ms"
        return report.Modes(
            local="local",
            delayed=delayed,
            one_group=f"{delayed}-one-group",
            scale_out=f"{self.scale_out_delay * 1000:.0f}ms-scale-out",
        )


FULL = Plan()
SMALL = Plan(
    books=100,
    groups=10,
    delayed_books=30,
    one_group_books=30,
    scale_out_books=120,
    memory_marks=(200, 400),
    http_requests=4,
    rounds=2,
    scale_out_instances=(1, 2),
    paced_seconds=4.0,
    evaluate_targets=False,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--small", action="store_true", help="a quick run of the same code (make test)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where latest.md/json/png go (default: bench/results)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for bookd's stack, e.g. BOOKD_CONCURRENCY=32 (repeatable)",
    )
    return parser.parse_args(argv)


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    # Unwind through the finally blocks, so queues, buckets and processes are cleaned up.
    raise SystemExit(128 + signum)


def localstack_version(settings: Settings) -> str:
    """LocalStack's version; SystemExit(2) if it does not answer."""
    try:
        return localstack.health(settings.endpoint_url, timeout=5).get("version", "unknown")
    except (OSError, ValueError) as exc:
        print(f"LocalStack is not answering at {settings.endpoint_url} ({exc})", file=sys.stderr)
        raise SystemExit(EXIT_NO_LOCALSTACK) from None


def machine_facts(localstack: str) -> dict[str, str]:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", "bookd", "gunicorn_conf.py", "deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    changed = [line[3:] for line in status.splitlines()]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "localstack": localstack,
        "platform": platform.platform(),
        # Other work on the machine (a test suite, a second LocalStack) skews the numbers.
        "load average (1, 5, 15 min) at the end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "bookd commit": commit or "unknown",
        # Uncommitted edits to the code under test, since the tree is shared while it runs.
        "uncommitted bookd files": ", ".join(changed) or "none",
    }


def attempt(
    contender: str, mode: str, books: int, groups: int, run: Callable[[], Run], *, round: int = 1
) -> Run:
    """One run; a crash becomes a failed Run so that the others still go ahead."""
    try:
        result = run()
    except Exception as exc:  # reported and counted as a failed check, then on to the next
        traceback.print_exc()
        result = Run(contender, mode, books, groups, round=round, problems=[f"run failed: {exc!r}"])
    state = "correct" if result.passed else f"INCORRECT: {result.problems}"
    cpu = result.cpu_ms_per_book
    print(
        f"{mode:>15} {contender:<8} #{round} {result.books:>6} books {result.seconds:7.1f} s "
        f"{result.rate:8.1f} msg/s  CPU ms/book {cpu.get('consumer', 0):5.2f} "
        f"+ LocalStack {cpu.get('localstack', 0):5.2f}  {state}",
        flush=True,
    )
    return result


def run_mode(
    mode: str,
    base: Settings,
    workload: Workload,
    *,
    endpoint: str,
    plan: Plan,
    work: Path,
    env: dict[str, str],
) -> list[Run]:
    """The baseline, then rounds of bookd, the call floor and the ceiling, on one workload.

    The floor runs right after bookd: their ratio is the one that measures bookd's
    own overhead, and the machine's speed drifts within minutes.
    """
    size = (len(workload.books), workload.groups)
    runs = [baseline_run(mode, base, workload, endpoint=endpoint, work=work)]
    threads = plan.threads
    for n in range(1, plan.rounds + 1):
        runs.append(bookd_run(mode, base, workload, endpoint=endpoint, work=work, env=env, n=n))
        runs.append(
            attempt(
                "floor",
                mode,
                *size,
                lambda n=n: run_queue_contender(
                    "floor",
                    mode,
                    base,
                    workload,
                    endpoint=endpoint,
                    start=lambda s: floor_consumer(s, work / f"{mode}-floor-{n}", env),
                    round=n,
                ),
                round=n,
            )
        )
        ceiling = attempt(
            "ceiling",
            mode,
            *size,
            lambda n=n, threads=threads: run_ceiling(
                mode, base, workload, endpoint=endpoint, threads=threads, round=n
            ),
            round=n,
        )
        runs.append(ceiling)
        if ceiling.passed:
            # Later rounds use the first round's best pool only: the others never win.
            threads = (ceiling.extra["threads"],)
    return runs


def baseline_run(
    mode: str, base: Settings, workload: Workload, *, endpoint: str, work: Path
) -> Run:
    return attempt(
        "baseline",
        mode,
        len(workload.books),
        workload.groups,
        lambda: run_queue_contender(
            "baseline",
            mode,
            base,
            workload,
            endpoint=endpoint,
            start=lambda s: baseline_consumer(s, work / f"{mode}-baseline"),
        ),
    )


def bookd_run(
    mode: str,
    base: Settings,
    workload: Workload,
    *,
    endpoint: str,
    work: Path,
    env: dict[str, str],
    n: int = 1,
    instances: int = 1,
) -> Run:
    """bookd's stack (``instances`` of them on the same queues) on ``workload``."""
    name = "bookd" if instances == 1 else f"bookd x{instances}"
    return attempt(
        name,
        mode,
        len(workload.books),
        workload.groups,
        lambda: run_queue_contender(
            name,
            mode,
            base,
            workload,
            endpoint=endpoint,
            start=lambda s: bookd_consumer(
                s, work / f"{mode}-{name.replace(' ', '')}-{n}", env, instances=instances
            ),
            round=n,
        ),
        round=n,
    )


def run_all(
    plan: Plan, base: Settings, work: Path, bookd_env: dict[str, str]
) -> tuple[list[Run], report.Modes, SaturationProbe]:
    """Every run of the benchmark, in order; the proxies live only as long as they do."""
    target = urlsplit(base.endpoint_url)
    upstream = (target.hostname or "127.0.0.1", target.port or 80)
    delayed = Proxy(upstream, delay=plan.delay).start()
    far = Proxy(upstream, delay=plan.scale_out_delay).start()
    modes = plan.modes()
    probe = SaturationProbe(
        first_mark=plan.memory_marks[0],
        http_clients=plan.http_clients,
        http_requests=plan.http_requests,
        http_interval=plan.http_interval,
    )
    runs: list[Run] = []
    try:
        for mode, endpoint, workload in (
            (modes.local, base.endpoint_url, make_workload(plan.books, plan.groups)),
            (modes.delayed, delayed.url, make_workload(plan.delayed_books, plan.groups)),
        ):
            runs += run_mode(
                mode, base, workload, endpoint=endpoint, plan=plan, work=work, env=bookd_env
            )
        # Every book in one FIFO group: one receive's books at a time, whoever consumes.
        one_group = make_workload(plan.one_group_books, 1)
        runs.append(baseline_run(modes.one_group, base, one_group, endpoint=delayed.url, work=work))
        for n in range(1, plan.rounds + 1):
            runs.append(
                bookd_run(
                    modes.one_group,
                    base,
                    one_group,
                    endpoint=delayed.url,
                    work=work,
                    env=bookd_env,
                    n=n,
                )
            )
        runs += steady_loads(
            plan, base, runs, modes, endpoint=delayed.url, work=work, env=bookd_env
        )
        # Scale-out: the same books for one instance, then more; the network bounds each.
        wide = make_workload(plan.scale_out_books, plan.groups)
        for instances in plan.scale_out_instances:
            runs.append(
                bookd_run(
                    modes.scale_out,
                    base,
                    wide,
                    endpoint=far.url,
                    work=work,
                    env=scale_out_env(plan, bookd_env),
                    instances=instances,
                )
            )
    finally:
        delayed.stop()
        far.stop()
    # The memory run: bookd alone, local, with the HTTP load once it is saturated.
    count = plan.memory_marks[1]
    memory_workload = make_workload(count, plan.groups)
    runs.append(
        attempt(
            "bookd",
            f"local-{count}",
            count,
            plan.groups,
            lambda: run_queue_contender(
                "bookd",
                f"local-{count}",
                base,
                memory_workload,
                endpoint=base.endpoint_url,
                start=lambda s: bookd_consumer(s, work / "memory-bookd", bookd_env),
                probe=probe,
            ),
        )
    )
    return runs, modes, probe


def steady_loads(
    plan: Plan,
    base: Settings,
    runs: list[Run],
    modes: report.Modes,
    *,
    endpoint: str,
    work: Path,
    env: dict[str, str],
) -> list[Run]:
    """Latency at two steady loads at 20 ms, bookd beside the floor and the baseline: light,
    and half of bookd's capacity (its median rate over 50 groups, just measured)."""
    capacity = report.median_rate(report.find_all(runs, "bookd", modes.delayed))
    loads = [("light", plan.light_rate, plan.light_groups)]
    if capacity:
        loads.append(("half", capacity / 2, plan.groups))
    found = []
    for label, rate, groups in loads:
        mode = f"{modes.delayed}-steady-{label}"
        starts: list[tuple[str, Callable[[Settings], Any]]] = [
            ("baseline", lambda s, m=mode: baseline_consumer(s, work / f"{m}-baseline")),
            ("floor", lambda s, m=mode: floor_consumer(s, work / f"{m}-floor", env)),
            ("bookd", lambda s, m=mode: bookd_consumer(s, work / f"{m}-bookd", env)),
        ]
        for name, start in starts:
            count = max(1, round(rate * plan.paced_seconds))
            found.append(
                attempt(
                    name,
                    mode,
                    count,
                    groups,
                    lambda name=name, start=start, rate=rate, groups=groups, mode=mode: (
                        latency.paced_run(
                            name,
                            mode,
                            base,
                            endpoint=endpoint,
                            start=start,
                            rate=rate,
                            seconds=plan.paced_seconds,
                            groups=groups,
                            keeps_up=name != "baseline",
                        )
                    ),
                )
            )
    return found


def measure_cold_start(base: Settings, work: Path, bookd_env: dict[str, str]) -> dict[str, Any]:
    """A whole stack's start to its first book announced; a failure is reported, not fatal."""
    try:
        return lifecycle.cold_start(base, work, bookd_env)
    except Exception as exc:  # reported as a problem, the rest of the report still written
        traceback.print_exc()
        return {"seconds": None, "problem": repr(exc)}


def measure_loaded_stop(
    plan: Plan, base: Settings, work: Path, bookd_env: dict[str, str]
) -> dict[str, Any]:
    """The stop of a saturated stack (local); a failure is reported, not fatal."""
    try:
        workload = make_workload(plan.loaded_stop_books, plan.groups)
        return lifecycle.loaded_stop(base, workload, work, bookd_env)
    except Exception as exc:  # reported as a problem, the rest of the report still written
        traceback.print_exc()
        return {"seconds": None, "problem": repr(exc)}


def scale_out_env(plan: Plan, bookd_env: dict[str, str]) -> dict[str, str]:
    """bookd's environment in the scale-out runs: a fixed, small number of receive loops."""
    return {**bookd_env, "BOOKD_RECEIVERS": str(plan.scale_out_receivers)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = SMALL if args.small else FULL
    signal.signal(signal.SIGTERM, _exit_on_term)
    logging.basicConfig(level=logging.WARNING)
    began = time.monotonic()
    base = Settings.from_env()
    localstack = localstack_version(base)
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    bookd_env = {
        # bookd's defaults, passed explicitly so that the report shows them.
        "BOOKD_CONCURRENCY": str(Settings().concurrency),
        "BOOKD_RECEIVERS": str(Settings().receivers),
        **dict(item.split("=", 1) for item in args.env),
    }
    work = Path(tempfile.mkdtemp(prefix="bookd-bench-"))
    keep_logs = False
    try:
        runs, modes, probe = run_all(plan, base, work, bookd_env)
        stopping = {
            "idle_seconds": lifecycle.idle_stop_seconds(runs),
            "loaded": measure_loaded_stop(plan, base, work, bookd_env),
            "cold_start": measure_cold_start(base, work, bookd_env),
        }
        print(f"start and stop: {stopping}", flush=True)
        problems = [f"{r.mode} {r.contender}: {p}" for r in runs for p in r.problems]
        problems += probe.problems
        for part in ("loaded", "cold_start"):
            if "problem" in stopping[part]:
                problems.append(f"{part}: {stopping[part]['problem']}")
        ratios = report.ratios(runs, modes.names())
        cost = report.listener_cpu(runs, modes.local)
        result: dict[str, Any] = {
            "contenders": list(report.CONTENDERS),
            "modes": modes.names(),
            "plan": asdict(plan),
            "bookd_env": bookd_env,
            "scale_out_env": scale_out_env(plan, bookd_env),
            "ratios": ratios,
            "listener_cpu_ms_per_book": cost,
            "http": probe.http,
            "http_idle": probe.http_idle,
            "http_max_rate": probe.http_max,
            "http_think": probe.http_think,
            "memory": probe.memory,
            "stops": stopping,
            "steady": report.steady(runs),
            "targets": (
                report.evaluate_targets(
                    ratios,
                    modes,
                    probe.http,
                    probe.memory,
                    cost,
                    stopping,
                    report.steady(runs),
                    probe.http_think,
                )
                if plan.evaluate_targets
                else None
            ),
            "correctness": {"passed": not problems, "problems": problems},
            "notes": notes(plan),
            "machine": {
                **machine_facts(localstack),
                "load average (1, 5, 15 min) at the start": load_at_start,
            },
            "total_seconds": time.monotonic() - began,
        }
        report.write(result, runs, modes.names(), args.results)
        print()
        print(report.markdown(result, runs))
        print(f"written to {args.results}/latest.md, latest.json and latest.png")
        if problems:
            keep_logs = True
            print(f"the runs' logs are kept in {work}", file=sys.stderr)
            return EXIT_INCORRECT
        return 0
    finally:
        if not keep_logs:
            shutil.rmtree(work, ignore_errors=True)


def notes(plan: Plan) -> list[str]:
    """How the numbers were taken, for whoever reads the report."""
    delay = f"{plan.delay * 1000:.0f} ms"
    far = f"{plan.scale_out_delay * 1000:.0f} ms"
    out = [
        "msg/s: books announced after the consumer was ready / (last output's SentTimestamp - "
        "that moment): the listener's connected_at from GET /, the baseline's and the floor's "
        "line once their clients exist; for two instances, the later of their two "
        "connected_at, and what one announced before that (announced_before_ready) is not "
        "counted. The ceiling is likewise timed from its first put, so none is charged for "
        "interpreter start-up or client set-up; start-up s shows what that was. "
        "steady msg/s: from the first output to the last.",
        f"local and {delay}: {plan.rounds} rounds of bookd, then the call floor, then the "
        "ceiling (later rounds with the first round's best pool); bookd/floor and "
        "bookd/ceiling are the medians of the rounds' ratios, bookd/baseline the median "
        "bookd rate over the baseline's.",
        "call floor (bench/floor.py): only the calls bookd must make, through bookd's own "
        "clients and adapters (bookd.aws), with bookd's BOOKD_RECEIVERS receive loops and "
        "BOOKD_CONCURRENCY upload threads: a receive of 10 (long poll), one PutObject per book "
        "(a receive's books at once), one SendMessageBatch of each group's announcements in "
        "order (bookd's body and deduplication id), one DeleteMessageBatch; no validation, "
        "retries, heartbeat, metrics or logs. bookd/floor is what bookd's own work costs it.",
        "AWS calls/book: every S3 and SQS call of bookd's stack (its /metrics: the listener's, "
        "its start, the queue gauges and heartbeats, and the few of the web side the bench's "
        "status reads cost) over the books. The floor, with full batches: 1.3, one PutObject "
        "and a tenth each of a ReceiveMessage, a SendMessageBatch and a DeleteMessageBatch; "
        "groups of fewer than ten books in a receive, and idle long polls, add to it.",
        "CPU ms/book: the consumer process's (the listener, summed over instances; the "
        "baseline; the floor; or the ceiling's client threads), from its start, and, when it "
        "runs on this host, LocalStack's, over the run (LocalStack's includes the bench's "
        "progress polls, about 4 calls a second, and bookd's start-up calls).",
        "latency: from the client's wall clock when the preload's SendMessageBatch returned "
        "to LocalStack's SentTimestamp of the output (one host, one clock). The queue is "
        "preloaded, so this is mostly time waiting in the queue: about half the run at p50.",
        "ceiling: bookd's PutObject call (BookStore.put) alone, same bodies, from pools of "
        f"{', '.join(map(str, plan.threads))} threads; the best pool counts.",
        f"{delay} mode: a loopback proxy delays each request by that much; "
        "consumers go through it, preloading and checks do not. A PutObject sent with "
        "botocore's default 'Expect: 100-continue' (the baseline's) pays it twice, as it "
        "would on a real network.",
        f"{delay}, one group: {plan.one_group_books} books, all in one FIFO group, so SQS "
        "hands out one receive's books at a time (up to 10) to whoever consumes; bookd "
        "uploads those of different titles at once (BOOKD_GROUP_MODE=parallel).",
        f"{far} scale-out: {plan.scale_out_books} books over {plan.groups} groups, {far} per "
        f"request, BOOKD_RECEIVERS={plan.scale_out_receivers} per instance (scale_out_env), "
        "so waiting on the network, not the CPU, bounds each instance; one instance, then "
        "two complete stacks (supervisord, Gunicorn, listener each) on the same queues, "
        "started at once. two/one is the rate of the two over the rate of one.",
        "bookd runs as in production: supervisord, Gunicorn with 4 workers, one listener, "
        "its default settings unless named in bookd_env.",
        f"HTTP loads: each client is a thread with its own connection, {CLIENT_PROCESSES} "
        "processes share the clients (in one process, its GIL made its own threads wait: "
        "p99 149 ms on /health against 47 ms from five, on the same server).",
    ]
    if plan.delayed_books < plan.books:
        out.append(
            f"the {delay} runs over {plan.groups} groups use {plan.delayed_books} books instead "
            f"of {plan.books}: the baseline pays five round trips per message there (receive, "
            "PutObject twice, send, delete), so the full workload would take it over 3 minutes."
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
