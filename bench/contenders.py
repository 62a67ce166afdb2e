"""The contenders and how one run of each is timed and checked.

A queue contender (the baseline, the call floor, bookd, two bookd instances) gets
fresh queues and buckets, the whole workload preloaded, then its consumer is
started; the run lasts from the moment the consumer is ready (its clients made, its
first receive next; for several instances, the last of them) to LocalStack's
SentTimestamp of the last output message, and counts the books announced in that
time. The ceiling is bookd's PutObject alone, from a thread pool made with the same
bodies, timed from its first put: so none is charged for interpreter start-up or
client set-up, and the start-up time is reported beside each queue contender.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench import baseline, floor
from bench.probes import percentile
from bookd.aws.clients import make_client
from bookd.aws.provision import provision
from bookd.aws.s3 import BookStore
from bookd.aws.sqs import Queue
from bookd.aws.uploads import listener_store
from bookd.core.books import metadata_value
from bookd.core.config import Settings
from bookd.core.ports import BOOK_ID_METADATA, MESSAGE_ID_METADATA
from bookd.supervision.lock import StateDir
from bookd.telemetry.metrics import READ_SECONDS
from harness.audit import Verdict, check_objects, check_outputs
from harness.localstack import shared_pid
from harness.procfs import cpu_seconds, started_at
from harness.resources import drain, remove_resources, unique_settings
from harness.stack import Stack, settings_env
from harness.waiting import wait_for
from harness.workload import Workload, preload

ROOT = Path(__file__).resolve().parents[1]

POLL_SECONDS = 0.25
"""How often progress is read from the queues' approximate counts while a consumer runs."""

LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b")


@dataclass
class Run:
    """One contender's result in one mode."""

    contender: str
    mode: str
    books: int
    groups: int
    round: int = 1
    seconds: float = 0.0
    rate: float = 0.0
    """Messages (or puts) per second, from the consumer being ready to the last output."""
    startup_seconds: float | None = None
    """From the consumer process's start to its being ready (queue contenders only)."""
    cpu_ms_per_book: dict[str, float] = field(default_factory=dict)
    """CPU per book of the consumer (or the ceiling's client) and of a host LocalStack."""
    steady_rate: float | None = None
    """Messages per second from the first output to the last: start-up left out."""
    latency_p50: float | None = None
    latency_p99: float | None = None
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class Consumer:
    """A started consumer: the pid that does the work, and how to stop it."""

    pids: list[int]
    """The processes that do the work (one listener per instance)."""
    alive: Callable[[], bool]
    ready_at: Callable[[], float]
    """Wall-clock time the consumer had its clients and was about to receive."""
    stop: Callable[[], dict[str, Any]]
    """Stops the consumer and returns facts for the report."""
    stack: Stack | None = None
    """bookd's (first) stack, for probes of its HTTP side."""


Probe = Callable[[Consumer, int, bool], None]
"""Called on every progress poll with the outputs so far and whether the run is done."""


def log_problems(path: Path, *, examples: int = 5) -> dict[str, Any]:
    """Warning and error lines of a log: how many, and a few distinct ones."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"count": 0, "examples": []}
    bad = [line for line in lines if LOG_PROBLEM.search(line)]
    distinct: dict[str, str] = {}
    for line in bad:
        # Drop timestamps, pids and ids so that repeats of one problem count once.
        distinct.setdefault(re.sub(r"[0-9a-f-]{8,}|\d+", "#", line), line)
    return {"count": len(bad), "examples": list(distinct.values())[:examples]}


@contextlib.contextmanager
def script_consumer(
    module: str,
    ready_line: str,
    settings: Settings,
    workdir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Consumer]:
    """``python -m <module>`` in a subprocess of ours, terminated on the way out.

    The module prints ``ready_line`` and the wall-clock time once its clients exist.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{module.rsplit('.', 1)[-1]}.log"
    env = {
        **os.environ,
        **settings_env(settings),
        # pySqsListener (the baseline) refuses to start without it; LocalStack's account id.
        "AWS_ACCOUNT_ID": "000000000000",
        **(extra_env or {}),
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop() -> dict[str, Any]:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return {"log_problems": log_problems(log_path)}

    def ready_at() -> float:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith(ready_line):
                return float(line.split()[-1])
        raise RuntimeError(f"{module} never said {ready_line!r}; see {log_path}")

    try:
        yield Consumer([proc.pid], alive=lambda: proc.poll() is None, ready_at=ready_at, stop=stop)
    finally:
        stop()


def baseline_consumer(
    settings: Settings, workdir: Path
) -> contextlib.AbstractContextManager[Consumer]:
    """The plain pySqsListener consumer (bench.baseline)."""
    return script_consumer("bench.baseline", baseline.READY, settings, workdir)


def floor_consumer(
    settings: Settings, workdir: Path, env: Mapping[str, str]
) -> contextlib.AbstractContextManager[Consumer]:
    """Only the calls bookd must make (bench.floor), with bookd's ``env`` (its concurrency)."""
    return script_consumer("bench.floor", floor.READY, settings, workdir, env)


@contextlib.contextmanager
def bookd_consumer(
    settings: Settings, workdir: Path, env: Mapping[str, str], *, instances: int = 1
) -> Iterator[Consumer]:
    """The real supervisord + Gunicorn + listener stack; the listener is the consumer.

    With ``instances`` > 1, that many complete stacks on the same queues, started at
    once: ready when all of their listeners are, and their listeners' CPU summed.
    """
    stacks = []
    for n in range(instances):
        tmp = workdir if instances == 1 else workdir / f"instance-{n + 1}"
        tmp.mkdir(parents=True, exist_ok=True)
        stacks.append(Stack(settings, tmp, **env))

    def facts(stack: Stack, pid: int) -> dict[str, Any]:
        listeners = stack.processes(kind="listener")
        return {
            "listener_pids_at_end": listeners,
            "listener_restarted": listeners != [pid],
            "aws_calls": aws_calls(stack),
            "shutdown_seconds": stack.terminate(),
            "log_problems": log_problems(stack.tmp / "stack.log"),
        }

    def stop() -> dict[str, Any]:
        # At once: each waits for its listener's long polls to end.
        with ThreadPoolExecutor(instances) as pool:
            found = list(pool.map(facts, stacks, pids))
        if instances == 1:
            return {"env": dict(env), **found[0]}
        return {"env": dict(env), "instances": found}

    def ready_at() -> float:
        # Each listener's own record of reaching the queues, as GET / shows it: the run
        # starts once the last of them is there.
        return max(
            datetime.fromisoformat(stack.status()["listener"]["connected_at"]).timestamp()
            for stack in stacks
        )

    try:
        # The listeners are held back until the rest of each stack has booted: four
        # Gunicorn workers importing Flask and boto3 take the CPU for a second or so,
        # which the (lower priority) listener would otherwise pay for in its timed run.
        for stack in stacks:
            state = StateDir(stack.state_dir)
            state.path.mkdir(parents=True, exist_ok=True)
            state.disabled.touch()
        with ThreadPoolExecutor(instances) as pool:
            list(pool.map(lambda stack: stack.start(state="stopped"), stacks))
        settle([pid for stack in stacks for pid in stack.processes()])
        # Then every listener at once (POST /: a Keeper starts it within a second), so
        # that one instance's head start is as short as the machine allows.
        for stack in stacks:
            requests.post(stack.url + "/", timeout=5).raise_for_status()
        for stack in stacks:
            assert wait_for(lambda stack=stack: stack.listener_state() == "running", timeout=40), (
                f"the listener did not start:\n{stack.log_tail()}"
            )
        pids = [pid for stack in stacks for pid in stack.processes(kind="listener")]
        assert len(pids) == instances, f"expected one listener per stack, found {pids}"
        yield Consumer(
            pids,
            alive=lambda: all(stack.supervisord.poll() is None for stack in stacks),
            ready_at=ready_at,
            stop=stop,
            stack=stacks[0],
        )
    finally:
        for stack in stacks:
            stack.cleanup()


def aws_calls(stack: Stack) -> dict[str, float]:
    """S3 and SQS calls by operation, from the stack's /metrics, read with prometheus-client's
    own parser (the listener's calls, and the web side's, which the bench barely asks)."""
    calls: dict[str, float] = {}
    time.sleep(READ_SECONDS + 0.1)  # a worker reuses its read of the files that long
    for family in text_string_to_metric_families(stack.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "bookd_aws_request_duration_seconds_count":
                operation = sample.labels["operation"]
                calls[operation] = calls.get(operation, 0.0) + sample.value
    return calls


def calls_per_book(run: Run) -> float | None:
    """All of a bookd run's S3 and SQS calls per book (summed over its instances)."""
    extra = run.extra
    found = [i.get("aws_calls") for i in extra.get("instances", [extra])]
    if not run.books or not all(found):
        return None
    return sum(sum(calls.values()) for calls in found if calls) / run.books


def settle(pids: Sequence[int], *, quiet: float = 0.5, timeout: float = 15.0) -> None:
    """Wait until ``pids`` together use under a tenth of a CPU for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last = _cpu(pids)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _cpu(pids)
        if now - last < quiet / 10:
            return
        last = now


def _cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile
            total += cpu_seconds(pid)
    return total


def wait_until_done(
    settings: Settings, count: int, consumer: Consumer, *, timeout: float, probe: Probe | None
) -> None:
    """Return once ``count`` outputs are queued and the input queue is empty."""
    sqs = make_client(settings, "sqs")
    inputs = Queue(sqs, settings.input_queue)
    output_url = sqs.get_queue_url(QueueName=settings.output_queue)["QueueUrl"]
    deadline = time.monotonic() + timeout
    while True:
        done = int(
            sqs.get_queue_attributes(
                QueueUrl=output_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        # Inputs are deleted after their output is sent: an empty input queue means finished.
        finished = done >= count and inputs.depth().waiting == 0
        if probe is not None:
            probe(consumer, done, finished)
        if finished:
            return
        if not consumer.alive():
            raise RuntimeError(f"the consumer died after {done} of {count} outputs")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {count} outputs after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def run_queue_contender(
    name: str,
    mode: str,
    base: Settings,
    workload: Workload,
    *,
    endpoint: str,
    start: Callable[[Settings], contextlib.AbstractContextManager[Consumer]],
    probe: Probe | None = None,
    round: int = 1,
) -> Run:
    """Preload fresh queues, run the consumer against ``endpoint`` until done, check it."""
    count = len(workload.books)
    run = Run(name, mode, count, workload.groups, round=round)
    settings = unique_settings(base)
    localstack = CpuMeter(shared_pid(ROOT))
    try:
        provision(settings)
        sent = preload(settings, workload)
        localstack.start()
        with start(settings.replace(endpoint_url=endpoint)) as consumer:
            wait_until_done(settings, count, consumer, timeout=60 + count / 5, probe=probe)
            ready = consumer.ready_at()
            run.startup_seconds = ready - min(started_at(pid) for pid in consumer.pids)
            cpu = sum(cpu_seconds(pid) for pid in consumer.pids)
            run.cpu_ms_per_book = {"consumer": cpu * 1000 / count}
            run.cpu_ms_per_book.update(localstack.per_book(count))
            run.extra.update(consumer.stop())
        outputs = drain(settings, settings.output_queue, timeout=60 + count / 20)
        verdict = Verdict()
        check_outputs(settings, workload, outputs, verdict)
        check_objects(settings, workload, verdict)
        run.problems = verdict.problems
    finally:
        remove_resources(settings)
    if outputs:
        first = min(o.sent for o in outputs)
        last = max(o.sent for o in outputs)
        run.seconds = last - ready
        # Only what was announced once the consumer was ready counts: for several
        # instances, what one did before the last was ready is a head start, left out.
        timed = sum(1 for o in outputs if o.sent >= ready)
        run.extra["announced_before_ready"] = len(outputs) - timed
        run.rate = timed / run.seconds
        run.extra["rate_from_process_start"] = count / (run.seconds + run.startup_seconds)
        run.steady_rate = (count - 1) / (last - first) if last > first else None
        ids = [o.json().get("id") for o in outputs]
        latencies = [o.sent - sent[i] for o, i in zip(outputs, ids, strict=True) if i in sent]
        run.latency_p50 = percentile(latencies, 50)
        run.latency_p99 = percentile(latencies, 99)
    return run


class CpuMeter:
    """CPU used by a process (LocalStack) from start() on; a no-op without a pid."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.began = 0.0

    def start(self) -> None:
        if self.pid is not None:
            self.began = cpu_seconds(self.pid)

    def per_book(self, count: int) -> dict[str, float]:
        if self.pid is None:
            return {}
        return {"localstack": (cpu_seconds(self.pid) - self.began) * 1000 / count}


def run_ceiling(
    mode: str,
    base: Settings,
    workload: Workload,
    *,
    endpoint: str,
    threads: Sequence[int],
    round: int = 1,
) -> Run:
    """PutObject of every body from a pool of each size in ``threads``; the best one counts."""
    count = len(workload.books)
    run = Run("ceiling", mode, count, workload.groups, round=round)
    rates: dict[int, float] = {}
    cpu: dict[int, dict[str, float]] = {}
    localstack = CpuMeter(shared_pid(ROOT))
    for size in threads:
        # Fresh buckets per pool size, so each object must have exactly one version.
        settings = unique_settings(base)
        try:
            provision(settings)
            # bookd's own PutObject (the listener's, through the CRT), with nothing around it.
            store = listener_store(
                settings.replace(endpoint_url=endpoint), pool=size, at_once=size, purpose="other"
            )

            def put(book: Any, store: BookStore = store, settings: Settings = settings) -> None:
                store.put(
                    settings.buckets[book.genre],
                    book.key,
                    book.body.encode("utf-8"),
                    metadata={
                        MESSAGE_ID_METADATA: book.id,
                        BOOK_ID_METADATA: metadata_value(book.id),
                    },
                )

            localstack.start()
            client_cpu = time.process_time()  # this process: only the pool works meanwhile
            began = time.perf_counter()
            with ThreadPoolExecutor(size) as pool:
                list(pool.map(put, workload.books))
            rates[size] = count / (time.perf_counter() - began)
            cpu[size] = {"consumer": (time.process_time() - client_cpu) * 1000 / count}
            cpu[size].update(localstack.per_book(count))
            verdict = Verdict()
            check_objects(settings, workload, verdict)
            run.problems += [f"{size} threads: {p}" for p in verdict.problems]
        finally:
            remove_resources(settings)
    best = max(rates, key=rates.__getitem__)
    run.rate = rates[best]
    run.seconds = count / run.rate
    run.cpu_ms_per_book = cpu[best]
    run.extra = {"threads": best, "rate_by_threads": rates}
    return run
