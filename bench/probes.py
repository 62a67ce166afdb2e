"""HTTP latency under load, and the listener's memory while it is saturated."""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.queues
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from harness.procfs import rss_mb

THINK = 0.05
"""Seconds each client waits after an answer before its next request, in the third load."""
THINK_PATHS = ("/health", "/", "/metrics")


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of ``values``; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


CLIENT_PROCESSES = 5
"""Processes the HTTP clients are spread over. 50 client threads in one Python process
spent half of a core and waited for its GIL in turn: the same server, under the same
load, answered /health with p99 149 ms measured from one process, 47 ms from five
(GET /: 99 and 58 ms), and slow answers came in bursts across every worker, as the
threads got the GIL back. Health checkers and dashboards are separate processes."""


@dataclass(frozen=True)
class _Load:
    """What each client does: the same in every process."""

    url: str
    clients: int
    requests_each: int
    interval: float | None
    think: float


def http_latency(
    url: str,
    *,
    clients: int,
    requests_each: int,
    interval: float | None = None,
    think: float = 0.0,
) -> dict[str, Any]:
    """GET ``url`` from ``clients`` clients at once, ``requests_each`` times each.

    Each client keeps one connection, as a load balancer's health checker would.
    With ``interval``, each client sends one request per interval (health checkers
    poll), and latency counts from when a request was due, so a server that falls
    behind pays for it; without, each sends the next ``think`` seconds after one is
    answered (a person's or a dashboard's pace; 0: at once). The clients are threads
    of up to CLIENT_PROCESSES processes, spawned: the caller's main module must be safe
    to import (``if __name__ == "__main__"``), as bench.run and pytest are. Returns
    p50/p99 seconds and the status codes seen.
    """
    load = _Load(url, clients, requests_each, interval, think)
    processes = min(CLIENT_PROCESSES, clients)
    # Spawned, not forked: the bench's own threads (proxies, readers) may hold locks.
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes, timeout=60)
    answers = context.Queue()
    workers = [
        context.Process(
            target=_client_process, args=(load, range(n, clients, processes), ready, answers)
        )
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        samples = _gather(answers, workers)
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    seconds = [sample.seconds for sample in samples]
    # Without each client's first request: those meet each worker's first check,
    # which waits for a live call to LocalStack (see bookd.web.checks.Cached).
    later = [sample.seconds for sample in samples if sample.index]
    return {
        "requests": len(samples),
        "interval": interval,
        "think": think,
        "p50": percentile(seconds, 50),
        "p99": percentile(seconds, 99),
        "p99_after_first": percentile(later, 99),
        "codes": dict(Counter(sample.code for sample in samples)),
        # Where a slow request's time went: leaving late means the client was slow.
        "slowest": [
            {
                "seconds": sample.seconds,
                "left_late": sample.left_late,
                "request_index": sample.index,
                "served_by": sample.worker,
            }
            for sample in sorted(samples, key=lambda sample: sample.seconds, reverse=True)[:5]
        ],
    }


def _gather(answers: multiprocessing.queues.Queue, workers: list[Any]) -> list[_Sample]:
    """Every process's samples; an error at once if one died without sending them."""
    samples: list[_Sample] = []
    received = 0
    while received < len(workers):
        try:
            samples += answers.get(timeout=1)
            received += 1
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers) and answers.empty():
                codes = [worker.exitcode for worker in workers]
                raise RuntimeError(f"an HTTP client process died (exit codes {codes})") from None
    return samples


@dataclass(frozen=True)
class _Sample:
    seconds: float
    left_late: float
    """How late the request left the client: a slow client, not a slow server."""
    index: int
    worker: str
    code: str


def _client_process(
    load: _Load, clients: range, ready: Any, answers: multiprocessing.queues.Queue
) -> None:
    """One process's share of the clients: its samples go to ``answers``."""
    start = 0.0

    def begin() -> None:
        # The clock starts once every client thread and session of every process exists:
        # on a saturated machine, setting up 50 of them took 0.3 s, which the first
        # requests' latencies would otherwise count as the server's.
        nonlocal start
        ready.wait()
        start = time.perf_counter()

    mine = threading.Barrier(len(clients), action=begin, timeout=60)

    def client(index: int) -> list[_Sample]:
        # Clients spread over the first interval rather than all firing at once.
        samples: list[_Sample] = []
        offset = load.interval * index / load.clients if load.interval else 0.0
        with requests.Session() as session:
            mine.wait()
            for n in range(load.requests_each):
                if load.think and n:
                    time.sleep(load.think)
                began = time.perf_counter()
                if load.interval:
                    due = start + offset + n * load.interval
                    if due > began:
                        time.sleep(due - began)
                    began = due
                sent = time.perf_counter()
                worker = "-"
                try:
                    response = session.get(load.url, timeout=10)
                    code, worker = (
                        str(response.status_code),
                        response.headers.get("X-Served-By", "-"),
                    )
                except requests.RequestException as exc:
                    code = type(exc).__name__
                seconds = time.perf_counter() - began
                samples.append(_Sample(seconds, sent - began, n, worker, code))
        return samples

    with ThreadPoolExecutor(len(clients)) as pool:
        answers.put([sample for part in pool.map(client, clients) for sample in part])


class SaturationProbe:
    """For bookd's memory run: RSS at two marks, and the HTTP load while it is saturated.

    Called on every progress poll (see contenders.wait_until_done). The HTTP load
    starts right after the first RSS reading, while most of the backlog is still
    queued, and the backlog left when it ends shows whether it ran saturated. The
    same load once the queue is empty tells how much of the latency saturation adds.
    """

    def __init__(
        self,
        *,
        first_mark: int,
        http_clients: int,
        http_requests: int,
        http_interval: float,
    ) -> None:
        self.first_mark = first_mark
        self.http_clients = http_clients
        self.http_requests = http_requests
        self.http_interval = http_interval
        self.http_max: dict[str, Any] = {}
        self.http_think: dict[str, Any] = {}
        """Each client's next request THINK seconds after its last answer, on every route."""
        self.http: dict[str, Any] = {}
        self.http_idle: dict[str, Any] = {}
        self.memory: dict[str, Any] = {}
        self.problems: list[str] = []

    def __call__(self, consumer: Any, done: int, finished: bool) -> None:
        stack = consumer.stack
        if "first_mb" not in self.memory and done >= self.first_mark:
            self.memory.update(first_at=done, first_mb=self._rss(stack))
            self.http.update(self._load(stack, self.http_interval))
            self.http_max.update(self._load(stack, None))
            self.http_think.update(self._load(stack, None, think=THINK, paths=THINK_PATHS))
            self.http["backlog_after"] = stack.status()["queue"].get("visible")
        if finished:
            if "first_mb" not in self.memory:
                self.problems.append(f"the run finished before {self.first_mark} messages")
                return
            self.memory.update(last_at=done, last_mb=self._rss(stack))
            self.memory["growth_mb"] = self.memory["last_mb"] - self.memory["first_mb"]
            self.http_idle.update(self._load(stack, self.http_interval))

    def _load(
        self,
        stack: Any,
        interval: float | None,
        *,
        think: float = 0.0,
        paths: tuple[str, ...] = ("/health", "/"),
    ) -> dict[str, Any]:
        return {
            path: http_latency(
                stack.url + path,
                clients=self.http_clients,
                requests_each=self.http_requests,
                interval=interval,
                think=think,
            )
            for path in paths
        }

    @staticmethod
    def _rss(stack: Any) -> float:
        # Whichever listener runs now: a restarted one is noted by the run itself.
        [pid] = stack.processes(kind="listener")
        return rss_mb(pid)
