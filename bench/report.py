"""The benchmark's outputs: a printed table, latest.md, latest.json and latest.png."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402

from bench.contenders import Run  # noqa: E402

CONTENDERS = ("baseline", "bookd", "ceiling")


def find_all(runs: list[Run], contender: str, mode: str) -> list[Run]:
    """The passed runs of one contender in one mode, in round order."""
    return [r for r in runs if r.contender == contender and r.mode == mode and r.passed]


def median_rate(runs: list[Run]) -> float | None:
    return statistics.median(r.rate for r in runs) if runs else None


def ratios(runs: list[Run], modes: list[str]) -> dict[str, dict[str, Any]]:
    """Per mode: bookd's median rate over the baseline's, and the median over rounds of
    bookd's rate over the ceiling taken right after it (a round counts only when both
    of its runs passed)."""
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        bookd = find_all(runs, "bookd", mode)
        baseline = median_rate(find_all(runs, "baseline", mode))
        ceilings = {r.round: r.rate for r in find_all(runs, "ceiling", mode)}
        by_round = [b.rate / ceilings[b.round] for b in bookd if ceilings.get(b.round)]
        bookd_rate = median_rate(bookd)
        out[mode] = {
            "bookd/baseline": bookd_rate / baseline if bookd_rate and baseline else None,
            "bookd/ceiling": statistics.median(by_round) if by_round else None,
            "bookd/ceiling by round": by_round,
        }
    return out


def evaluate_targets(
    ratios: dict[str, dict[str, Any]], http: dict[str, Any], memory: dict[str, Any]
) -> list[dict[str, Any]]:
    """The targets of issue 4, each with its measured value and PASS or FAIL."""
    local, delayed = ratios.get("local", {}), ratios.get("20ms", {})
    health_p99 = http.get("/health", {}).get("p99")
    growth = memory.get("growth_mb")
    rows = [
        ("local bookd >= 2.5x baseline", local.get("bookd/baseline"), lambda v: v >= 2.5, "x"),
        ("local bookd >= 80% of ceiling", local.get("bookd/ceiling"), lambda v: v >= 0.8, "x"),
        ("20 ms bookd >= 10x baseline", delayed.get("bookd/baseline"), lambda v: v >= 10, "x"),
        ("/health p99 < 100 ms while saturated", health_p99, lambda v: v < 0.1, "s"),
        ("listener RSS growth 1k -> 10k <= 20 MB", growth, lambda v: v <= 20, "MB"),
    ]
    return [
        {
            "target": name,
            "value": value,
            "unit": unit,
            "passed": value is not None and ok(value),
        }
        for name, value, ok, unit in rows
    ]


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(runs: list[Run]) -> str:
    """A markdown table, one row per run."""
    lines = [
        "| mode | contender | round | books | seconds | msg/s | steady msg/s | start-up s "
        "| latency p50 s | latency p99 s | CPU ms/book: consumer | CPU ms/book: LocalStack "
        "| correct |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        cpu = r.cpu_ms_per_book
        lines.append(
            f"| {r.mode} | {r.contender} | {r.round} | {r.books} | {_num(r.seconds)} "
            f"| {_num(r.rate, 1)} | {_num(r.steady_rate, 1)} | {_num(r.startup_seconds)} "
            f"| {_num(r.latency_p50)} | {_num(r.latency_p99)} | {_num(cpu.get('consumer'))} "
            f"| {_num(cpu.get('localstack'))} | {'yes' if r.passed else 'NO'} |"
        )
    return "\n".join(lines)


def markdown(result: dict[str, Any], runs: list[Run]) -> str:
    """latest.md: the table, ratios, probes, targets, problems and machine facts."""
    parts = ["# bookd benchmark", "", table(runs), ""]
    parts += [
        "## Ratios",
        "",
        "| mode | bookd/baseline | bookd/ceiling (median) | bookd/ceiling by round |",
        "|---|---:|---:|---|",
    ]
    for mode, r in result["ratios"].items():
        rounds = ", ".join(_num(v) for v in r["bookd/ceiling by round"]) or "-"
        parts.append(
            f"| {mode} | {_num(r['bookd/baseline'])} | {_num(r['bookd/ceiling'])} | {rounds} |"
        )
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
    if result["targets"] is not None:
        parts += ["", "## Targets", "", "| target | value | result |", "|---|---:|---|"]
        for t in result["targets"]:
            value = f"{_num(t['value'], 3)} {t['unit']}"
            parts.append(f"| {t['target']} | {value} | {'PASS' if t['passed'] else 'FAIL'} |")
    parts += ["", "## Correctness", ""]
    parts.append("All checks passed." if result["correctness"]["passed"] else "FAILED:")
    parts += [f"- {p}" for p in result["correctness"]["problems"]]
    parts += ["", "## Notes", ""]
    parts += [f"- {note}" for note in result["notes"]]
    parts += ["", "## Machine", ""]
    parts += [f"- {k}: {v}" for k, v in result["machine"].items()]
    parts.append(f"- total benchmark time: {result['total_seconds']:.0f} s")
    return "\n".join(parts) + "\n"


COLORS = {"baseline": "#999999", "bookd": "#1f77b4", "ceiling": "#2ca02c"}


def chart(runs: list[Run], modes: list[str], path: Path) -> None:
    """Messages per second of each contender, one panel per mode: the median over its
    rounds as a bar, each round as a dot."""
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
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
        books = shown[0][1][0].books if shown else 0
        ax.set_title(f"{mode} ({books} books)")
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
