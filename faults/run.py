"""`python -m faults.run`: the fault suite, `make faults` (`--small`: the version `make test` runs).

Each scenario of faults/scenarios.py on fresh queues and buckets, one after another,
against the LocalStack of the settings (BOOKD_ENDPOINT_URL). Prints the table
(scenario, sent, stored, dead-lettered, lost, duplicated, out of order, recovery
time) and writes it to faults/results/latest.{md,json}. Exit 1 if any scenario lost,
duplicated, reordered or dead-lettered a valid book, or failed otherwise; 2 if
LocalStack is not there.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bookd.core.config import Settings
from faults.scenarios import FULL, SCENARIOS, SMALL, Result, Run, Size
from harness import localstack
from harness.audit import Outcome

ROOT = Path(__file__).resolve().parents[1]
EXIT_FAILED = 1
EXIT_NO_LOCALSTACK = 2
COLUMNS = (
    "scenario",
    "sent",
    "stored",
    "dead-lettered",
    "lost",
    "duplicated",
    "out of order",
    "recovery time",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m faults.run", description=__doc__)
    parser.add_argument("--small", action="store_true", help="the short version make test runs")
    parser.add_argument(
        "--only", action="append", choices=list(SCENARIOS), help="run only this scenario"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "faults" / "results",
        help="where latest.md and latest.json go (default: faults/results)",
    )
    return parser.parse_args(argv)


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    # Unwind through the finally blocks, so queues, buckets and processes are cleaned up.
    raise SystemExit(128 + signum)


def run_one(name: str, base: Settings, work: Path, size: Size) -> Result:
    """One scenario; a crash becomes a failed Result so that the others still run."""
    began = time.monotonic()
    try:
        with Run(base, work / name.replace(" ", "-"), size) as run:
            try:
                recovery = SCENARIOS[name](run)
            except Exception as exc:  # still audit what it sent: a crash must not hide a loss
                traceback.print_exc()
                run.failures.append(f"the scenario crashed: {exc!r}")
                recovery = None
                run.wait_done(timeout=size.done_within)
            outcome = run.finish()
            result = Result(name, outcome, recovery, run.notes, run.failures)
    except Exception as exc:  # set-up or audit failed: a failed scenario, then on to the next
        traceback.print_exc()
        result = Result(name, Outcome(), None, [], [f"the scenario crashed: {exc!r}"])
    verdict = "pass" if result.passed else "FAIL"
    print(f"{name:<26} {verdict}  ({time.monotonic() - began:.0f} s)", flush=True)
    return result


def row(result: Result) -> list[str]:
    o = result.outcome
    recovery = "—" if result.recovery_seconds is None else f"{result.recovery_seconds:.1f} s"
    return [
        result.scenario,
        *(str(n) for n in (o.sent, o.stored, o.dead_lettered, o.lost, o.duplicated)),
        str(o.out_of_order),
        recovery,
    ]


def markdown(results: list[Result], *, size: str) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 2) + "---:|",
    ]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    notes = [
        f"- **{r.scenario}**: {'; '.join(r.notes + r.failures)}"
        for r in results
        if r.notes or r.failures
    ]
    verdict = (
        "All scenarios passed." if all(r.passed for r in results) else "SOME SCENARIOS FAILED."
    )
    return "\n".join(
        [
            f"Fault suite ({size}), {datetime.now(UTC).isoformat(timespec='seconds')}",
            "",
            *lines,
            "",
            *notes,
            "",
            verdict,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size, label = (SMALL, "small") if args.small else (FULL, "full")
    signal.signal(signal.SIGTERM, _exit_on_term)
    logging.basicConfig(level=logging.WARNING)
    base = Settings.from_env()
    if not localstack.is_ready(base.endpoint_url):
        print(
            f"LocalStack is not ready at {base.endpoint_url}; run make localstack-up",
            file=sys.stderr,
        )
        return EXIT_NO_LOCALSTACK
    work = Path(tempfile.mkdtemp(prefix="bookd-faults-"))
    results: list[Result] = []
    try:
        for name in args.only or list(SCENARIOS):
            results.append(run_one(name, base, work, size))
    finally:
        failed = not results or not all(r.passed for r in results)
        if failed:
            print(f"the stacks' logs are kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    table = markdown(results, size=label)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.md").write_text(table + "\n")
    (args.results / "latest.json").write_text(
        json.dumps(
            {"size": label, "plan": asdict(size), "results": [asdict(r) for r in results]},
            indent=2,
            default=str,
        )
    )
    print()
    print(table)
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
