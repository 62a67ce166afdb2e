"""HTTP latency under load, and the listener's memory while it is saturated."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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


def http_latency(
    url: str,
    *,
    clients: int,
    requests_each: int,
    interval: float | None = None,
    think: float = 0.0,
) -> dict[str, Any]:
    """GET ``url`` from ``clients`` threads at once, ``requests_each`` times each.

    Each client keeps one connection, as a load balancer's health checker would.
    With ``interval``, each client sends one request per interval (health checkers
    poll), and latency counts from when a request was due, so a server that falls
    behind pays for it; without, each sends the next ``think`` seconds after one is
    answered (a person's or a dashboard's pace; 0: at once). Returns p50/p99 seconds
    and the status codes seen.
    """
    seconds: list[float] = []
    later: list[float] = []
    # Each request: latency, how late it left this process, its index, who answered.
    samples: list[tuple[float, float, int, str]] = []
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    start = 0.0

    def begin() -> None:
        nonlocal start
        start = time.perf_counter()

    # The clock starts once every client thread and session exists: on a saturated
    # machine, setting up 50 of them took this process 0.3 s, which the first
    # requests' latencies would otherwise count as the server's.
    ready = threading.Barrier(clients, action=begin, timeout=60)

    def client(index: int) -> None:
        # Clients spread over the first interval rather than all firing at once.
        offset = interval * index / clients if interval else 0.0
        with requests.Session() as session:
            ready.wait()
            for n in range(requests_each):
                if think and n:
                    time.sleep(think)
                began = time.perf_counter()
                if interval:
                    due = start + offset + n * interval
                    if due > began:
                        time.sleep(due - began)
                    began = due
                sent = time.perf_counter()
                worker = "-"
                try:
                    response = session.get(url, timeout=10)
                    code, worker = (
                        str(response.status_code),
                        response.headers.get("X-Served-By", "-"),
                    )
                except requests.RequestException as exc:
                    code = type(exc).__name__
                with lock:
                    seconds.append(time.perf_counter() - began)
                    samples.append((seconds[-1], sent - began, n, worker))
                    if n:
                        later.append(seconds[-1])
                    codes[code] += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return {
        "requests": len(seconds),
        "interval": interval,
        "think": think,
        "p50": percentile(seconds, 50),
        "p99": percentile(seconds, 99),
        # Without each client's first request: those meet each worker's first check,
        # which waits for a live call to LocalStack (see bookd.web.checks.Cached).
        "p99_after_first": percentile(later, 99),
        "codes": dict(codes),
        # Where a slow request's time went: leaving late means this process was slow.
        "slowest": [
            {"seconds": t, "left_late": late, "request_index": n, "served_by": worker}
            for t, late, n, worker in sorted(samples, reverse=True)[:5]
        ],
    }


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
