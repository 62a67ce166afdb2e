"""The benchmark's outputs: a printed table, latest.md, latest.json and latest.png."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402

from bench.contenders import Run, calls_per_book  # noqa: E402

CONTENDERS = ("baseline", "bookd", "floor", "ceiling", "bookd x2", "bookd x4")
"""Every contender, in the order the tables and the chart show them."""

PREVIOUS_LISTENER_CPU_MS = 4.0
"""The listener's CPU per book in the local runs before issue 10 (ms): the bar to beat."""
LEAN_LISTENER_CPU_MS = 1.5
"""Issue 17's target: below the call floor's own CPU, so the calls must get cheaper."""


@dataclass(frozen=True)
class Modes:
    """The names of the benchmark's modes, each a panel of the chart."""

    local: str
    """No added latency, 50 groups: baseline, bookd, floor, ceiling."""
    delayed: str
    """20 ms per request, 50 groups: the same contenders."""
    one_group: str
    """20 ms per request, every book in one FIFO group: baseline and bookd."""
    scale_out: str
    """200 ms per request, a few receive loops: one bookd instance and two."""

    def names(self) -> list[str]:
        return [self.local, self.delayed, self.one_group, self.scale_out]


def find_all(runs: list[Run], contender: str, mode: str) -> list[Run]:
    """The passed runs of one contender in one mode, in round order."""
    return [r for r in runs if r.contender == contender and r.mode == mode and r.passed]


def median_rate(runs: list[Run]) -> float | None:
    return statistics.median(r.rate for r in runs) if runs else None


def ratios(runs: list[Run], modes: list[str]) -> dict[str, dict[str, Any]]:
    """Per mode: bookd's median rate over the baseline's; the median over rounds of bookd's
    rate over the floor's and over the ceiling's taken in the same round (a round counts
    only when both of its runs passed); two instances' rate over one's. None where the
    mode has no such runs."""
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        bookd = find_all(runs, "bookd", mode)
        bookd_rate = median_rate(bookd)
        baseline = median_rate(find_all(runs, "baseline", mode))
        two = median_rate(find_all(runs, "bookd x2", mode))
        four = median_rate(find_all(runs, "bookd x4", mode))
        entry: dict[str, Any] = {
            "bookd/baseline": bookd_rate / baseline if bookd_rate and baseline else None,
        }
        for other in ("floor", "ceiling"):
            theirs = {r.round: r.rate for r in find_all(runs, other, mode)}
            by_round = [b.rate / theirs[b.round] for b in bookd if theirs.get(b.round)]
            entry[f"bookd/{other}"] = statistics.median(by_round) if by_round else None
            entry[f"bookd/{other} by round"] = by_round
        entry["two/one instance"] = two / bookd_rate if two and bookd_rate else None
        entry["four/one instance"] = four / bookd_rate if four and bookd_rate else None
        entry["bookd by round"] = [r.rate for r in bookd]
        out[mode] = entry
    return out


def steady(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """The steady loads' latencies by load (light, half) and contender, with bookd's over the
    floor's (p50 and p99)."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if "-steady-" not in r.mode:
            continue
        load = out.setdefault(r.mode.rsplit("-", 1)[-1], {"rate": r.extra.get("offered_rate")})
        load[r.contender] = {
            "p50": r.latency_p50,
            "p99": r.latency_p99,
            "announced": r.extra.get("announced"),
            "books": r.books,
            "passed": r.passed,
        }
    for load in out.values():
        bookd, floor = load.get("bookd") or {}, load.get("floor") or {}
        for q in ("p50", "p99"):
            mine, theirs = bookd.get(q), floor.get(q)
            ok = bookd.get("passed") and floor.get("passed")
            load[f"bookd/floor {q}"] = mine / theirs if ok and mine and theirs else None
    return out


def listener_cpu(runs: list[Run], mode: str) -> float | None:
    """The listener's CPU per book (ms) in ``mode``: the median over bookd's rounds."""
    found = [r.cpu_ms_per_book["consumer"] for r in find_all(runs, "bookd", mode)]
    return statistics.median(found) if found else None


def evaluate_targets(
    ratios: dict[str, dict[str, Any]],
    modes: Modes,
    http: dict[str, Any],
    memory: dict[str, Any],
    listener_cpu_ms: float | None,
    stopping: dict[str, Any] | None = None,
    steady_loads: dict[str, dict[str, Any]] | None = None,
    http_think: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The targets of issues 4, 10 and 17, each with its measured value and PASS or FAIL
    (``passed`` None: reported only, no target)."""
    stopping = stopping or {}
    light, half = (steady_loads or {}).get("light", {}), (steady_loads or {}).get("half", {})
    loaded_stop = (stopping.get("loaded") or {}).get("seconds")
    cold_start = (stopping.get("cold_start") or {}).get("seconds")
    local, delayed = ratios.get(modes.local, {}), ratios.get(modes.delayed, {})
    one_group, scale_out = ratios.get(modes.one_group, {}), ratios.get(modes.scale_out, {})
    health_p99 = http.get("/health", {}).get("p99")
    growth = memory.get("growth_mb")
    previous = PREVIOUS_LISTENER_CPU_MS
    rows: list[tuple[str, float | None, Callable[[float], bool] | None, str]] = [
        ("local bookd >= 2.5x baseline", local.get("bookd/baseline"), lambda v: v >= 2.5, "x"),
        ("local bookd >= 80% of ceiling", local.get("bookd/ceiling"), lambda v: v >= 0.8, "x"),
        ("20 ms bookd >= 10x baseline", delayed.get("bookd/baseline"), lambda v: v >= 10, "x"),
        (
            "20 ms, 50 groups: bookd >= 20x baseline",
            delayed.get("bookd/baseline"),
            lambda v: v >= 20,
            "x",
        ),
        (
            "20 ms, one group: bookd >= 10x baseline",
            one_group.get("bookd/baseline"),
            lambda v: v >= 10,
            "x",
        ),
        (
            "200 ms, network-bound: two instances >= 1.8x one",
            scale_out.get("two/one instance"),
            lambda v: v >= 1.8,
            "x",
        ),
        (
            "200 ms, network-bound: four instances >= 3.5x one",
            scale_out.get("four/one instance"),
            lambda v: v >= 3.5,
            "x",
        ),
        (
            "20 ms, one group: >= 100 msg/s in every round (the slowest)",
            min(one_group.get("bookd by round") or [0]) or None,
            lambda v: v >= 100,
            "msg/s",
        ),
        ("20 ms bookd >= 90% of call floor", delayed.get("bookd/floor"), lambda v: v >= 0.9, "x"),
        ("local bookd / call floor (reported)", local.get("bookd/floor"), None, "x"),
        (
            f"local listener CPU/book < {previous:.1f} ms (the previous figure)",
            listener_cpu_ms,
            lambda v: v < previous,
            "ms",
        ),
        (
            f"local listener CPU/book <= {LEAN_LISTENER_CPU_MS:.1f} ms (issue 17)",
            listener_cpu_ms,
            lambda v: v <= LEAN_LISTENER_CPU_MS,
            "ms",
        ),
        ("/health p99 < 100 ms while saturated", health_p99, lambda v: v < 0.1, "s"),
        ("listener RSS growth 1k -> 10k <= 20 MB", growth, lambda v: v <= 20, "MB"),
        ("idle stop (SIGTERM to gone) <= 2 s", stopping.get("idle_seconds"), lambda v: v <= 2, "s"),
        ("stop while saturated <= 2 s", loaded_stop, lambda v: v <= 2, "s"),
        ("stack start to first book announced <= 3 s", cold_start, lambda v: v <= 3, "s"),
        (
            "20 ms, light load (10 books/s): bookd p50 <= 1.3x the floor's",
            light.get("bookd/floor p50"),
            lambda v: v <= 1.3,
            "x",
        ),
        (
            "20 ms, half of capacity: bookd p99 <= 2.5x the floor's",
            half.get("bookd/floor p99"),
            lambda v: v <= 2.5,
            "x",
        ),
        *[
            (
                f"GET {path} p99 < 100 ms, 50 clients 50 ms apart, saturated",
                (http_think or {}).get(path, {}).get("p99"),
                lambda v: v < 0.1,
                "s",
            )
            for path in ("/health", "/", "/metrics")
        ],
    ]
    return [
        {
            "target": name,
            "value": value,
            "unit": unit,
            "passed": None if ok is None else (value is not None and ok(value)),
        }
        for name, value, ok, unit in rows
    ]


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _env(env: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in env.items()) or "defaults"


def table(runs: list[Run]) -> str:
    """A markdown table, one row per run."""
    lines = [
        "| mode | contender | round | books | seconds | msg/s | steady msg/s | start-up s "
        "| latency p50 s | latency p99 s | CPU ms/book: consumer | CPU ms/book: LocalStack "
        "| AWS calls/book | correct |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        cpu = r.cpu_ms_per_book
        lines.append(
            f"| {r.mode} | {r.contender} | {r.round} | {r.books} | {_num(r.seconds)} "
            f"| {_num(r.rate, 1)} | {_num(r.steady_rate, 1)} | {_num(r.startup_seconds)} "
            f"| {_num(r.latency_p50)} | {_num(r.latency_p99)} | {_num(cpu.get('consumer'))} "
            f"| {_num(cpu.get('localstack'))} | {_num(calls_per_book(r))} "
            f"| {'yes' if r.passed else 'NO'} |"
        )
    return "\n".join(lines)


def markdown(result: dict[str, Any], runs: list[Run]) -> str:
    """latest.md: the table, ratios, probes, targets, problems and machine facts."""
    parts = ["# bookd benchmark", "", table(runs), ""]
    parts += [
        "## Ratios",
        "",
        "| mode | bookd/baseline | bookd/floor (median) | bookd/floor by round "
        "| bookd/ceiling (median) | bookd/ceiling by round | two/one instance "
        "| four/one instance | bookd msg/s by round |",
        "|---|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for mode, r in result["ratios"].items():
        floors = ", ".join(_num(v) for v in r["bookd/floor by round"]) or "-"
        ceilings = ", ".join(_num(v) for v in r["bookd/ceiling by round"]) or "-"
        parts.append(
            f"| {mode} | {_num(r['bookd/baseline'])} | {_num(r['bookd/floor'])} | {floors} "
            f"| {_num(r['bookd/ceiling'])} | {ceilings} | {_num(r['two/one instance'])} "
            f"| {_num(r['four/one instance'])} "
            f"| {', '.join(_num(v, 1) for v in r['bookd by round']) or '-'} |"
        )
    parts += [
        "",
        f"Listener CPU per book, local (median of the rounds): "
        f"{_num(result['listener_cpu_ms_per_book'])} ms.",
        f"bookd's settings: {_env(result['bookd_env'])}; in the scale-out runs: "
        f"{_env(result['scale_out_env'])}.",
    ]
    http, memory = result["http"], result["memory"]
    parts += ["", "## While bookd is saturated (local memory run)", ""]
    parts.append(
        f"50 clients, each polling once every {_num(result['plan']['http_interval'], 2)} s "
        "(latency counted from when each request was due; the clock starts once all "
        "clients are set up):"
    )
    parts.append("")
    for path, h in http.items():
        if isinstance(h, dict):
            parts.append(
                f"- `GET {path}`: {h['requests']} requests, p50 {h['p50'] * 1000:.1f} ms, "
                f"p99 {h['p99'] * 1000:.1f} ms (without each client's first request "
                f"{h['p99_after_first'] * 1000:.1f} ms), status codes {h['codes']}"
            )
            slow = h["slowest"][0] if h["slowest"] else None
            if slow:
                parts.append(
                    f"  - slowest: {slow['seconds'] * 1000:.1f} ms, request "
                    f"{slow['request_index']} of its client, left the bench "
                    f"{slow['left_late'] * 1000:.1f} ms late, served by {slow['served_by']}"
                )
    for path, h in (result.get("http_think") or {}).items():
        parts.append(
            f"- each client's next request {h['think'] * 1000:.0f} ms after its last answer, "
            f"`GET {path}`: p50 {h['p50'] * 1000:.1f} ms, p99 {h['p99'] * 1000:.1f} ms, "
            f"status codes {h['codes']}"
        )
    for path, h in result["http_max_rate"].items():
        parts.append(
            f"- at the highest rate the 50 clients can drive (each sends again once answered), "
            f"`GET {path}`: p50 {h['p50'] * 1000:.1f} ms, p99 {h['p99'] * 1000:.1f} ms, "
            f"status codes {h['codes']}"
        )
    parts.append(f"- input backlog when the HTTP load ended: {http.get('backlog_after')}")
    for path, h in result["http_idle"].items():
        parts.append(
            f"- the same load on `GET {path}` once the queue was empty: "
            f"p50 {h['p50'] * 1000:.1f} ms, p99 {h['p99'] * 1000:.1f} ms, status codes {h['codes']}"
        )
    parts.append(
        f"- listener VmRSS: {_num(memory.get('first_mb'), 1)} MB after "
        f"{memory.get('first_at')} messages, {_num(memory.get('last_mb'), 1)} MB after "
        f"{memory.get('last_at')}; growth {_num(memory.get('growth_mb'), 1)} MB"
    )
    parts += ["", "## Latency at a steady load (20 ms a request)", ""]
    parts.append(
        "From a book's send to its announcement, books sent one by one at a steady rate "
        "(bench/latency.py):"
    )
    parts.append("")
    for label, load in (result.get("steady") or {}).items():
        parts.append(f"- {label}, {_num(load.get('rate'), 1)} books/s:")
        for name in ("baseline", "floor", "bookd"):
            r = load.get(name) or {}
            parts.append(
                f"  - {name}: p50 {_num(r.get('p50'), 3)} s, p99 {_num(r.get('p99'), 3)} s "
                f"({r.get('announced')} of {r.get('books')} announced within a minute of the "
                "last send)"
            )
        parts.append(
            f"  - bookd over the floor: p50 {_num(load.get('bookd/floor p50'))}x, "
            f"p99 {_num(load.get('bookd/floor p99'))}x"
        )
    stopping = result.get("stops") or {}
    loaded = stopping.get("loaded") or {}
    parts += ["", "## Starting and stopping", ""]
    start = stopping.get("cold_start") or {}
    parts.append(
        f"- a whole stack started with {start.get('books')} books waiting, to the first "
        f"announced: {_num(start.get('seconds'))} s"
    )
    parts.append("- stopping, SIGTERM to supervisord until every process is gone:")
    parts.append(
        f"  - idle, its queue empty and its receive loops in long polls (median of the bookd "
        f"runs' ends): {_num(stopping.get('idle_seconds'))} s"
    )
    parts.append(
        f"  - saturated, local, once {_num(loaded.get('announced_before_stop'), 0)} of "
        f"{loaded.get('books')} books were announced: {_num(loaded.get('seconds'))} s"
    )
    if result["targets"] is not None:
        parts += ["", "## Targets", "", "| target | value | result |", "|---|---:|---|"]
        verdicts = {True: "PASS", False: "FAIL", None: "reported"}
        for t in result["targets"]:
            value = f"{_num(t['value'], 3)} {t['unit']}"
            parts.append(f"| {t['target']} | {value} | {verdicts[t['passed']]} |")
    parts += ["", "## Correctness", ""]
    parts.append("All checks passed." if result["correctness"]["passed"] else "FAILED:")
    parts += [f"- {p}" for p in result["correctness"]["problems"]]
    parts += ["", "## Notes", ""]
    parts += [f"- {note}" for note in result["notes"]]
    parts += ["", "## Machine", ""]
    parts += [f"- {k}: {v}" for k, v in result["machine"].items()]
    parts.append(f"- total benchmark time: {result['total_seconds']:.0f} s")
    return "\n".join(parts) + "\n"


COLORS = {
    "baseline": "#999999",
    "bookd": "#1f77b4",
    "floor": "#ff7f0e",
    "ceiling": "#2ca02c",
    "bookd x2": "#17becf",
    "bookd x4": "#9467bd",
}


def chart(runs: list[Run], modes: list[str], path: Path) -> None:
    """Messages per second of each contender, one panel per mode: the median over its
    rounds as a bar, each round as a dot."""
    fig, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        shown = [(c, found) for c in CONTENDERS if (found := find_all(runs, c, mode))]
        positions = range(len(shown))
        bars = ax.bar(
            positions,
            [median_rate(found) for _, found in shown],
            color=[COLORS[c] for c, _ in shown],
            tick_label=[c for c, _ in shown],
        )
        ax.bar_label(bars, fmt="%.0f")
        for x, (_, found) in zip(positions, shown, strict=True):
            if len(found) > 1:
                # Beside the bar's label, not over it.
                ax.plot([x + 0.3] * len(found), [r.rate for r in found], "k.", alpha=0.6)
        first = shown[0][1][0] if shown else None
        groups = f"{first.groups} group{'s' if first.groups != 1 else ''}" if first else ""
        size = f"{first.books} books, {groups}" if first else "no run"
        ax.set_title(f"{mode}\n({size})")
        ax.set_ylabel("messages (PutObjects) per second")
    fig.suptitle("bookd benchmark: throughput against LocalStack (bars: median of rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: dict[str, Any], runs: list[Run], modes: list[str], directory: Path) -> None:
    """Write latest.md, latest.json and latest.png into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.md").write_text(markdown(result, runs))
    data = {**result, "runs": [asdict(r) for r in runs]}
    (directory / "latest.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    chart(runs, modes, directory / "latest.png")
