"""What a run left in S3 and on the queues, against what was sent.

Every book sent must end as exactly one S3 object version with the body it was sent
with, plus exactly one output message naming it, with each group's outputs in the
order its inputs went in; or as exactly one dead letter with a reason. The consumer
is stopped before the queues are drained, so a drain sees everything it will ever get.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bookd.aws.clients import make_client
from bookd.core.config import Settings
from harness.resources import Received, drain, stored_versions
from harness.workload import Book, Workload


@dataclass
class Verdict:
    """The problems found in one run; none means it passed."""

    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def check_objects(settings: Settings, workload: Workload, verdict: Verdict) -> None:
    """Exactly one version of each book's object, and nothing else in the buckets."""
    expected = {(settings.buckets[b.genre], b.key) for b in workload.books}
    versions = stored_versions(settings)
    missing = expected - versions.keys()
    extra = versions.keys() - expected
    repeated = [k for k, n in versions.items() if n != 1]
    verdict.expect(
        not missing, f"{len(missing)} books have no S3 object, e.g. {sorted(missing)[:2]}"
    )
    verdict.expect(not extra, f"{len(extra)} unexpected S3 objects, e.g. {sorted(extra)[:2]}")
    verdict.expect(not repeated, f"{len(repeated)} objects have several versions: {repeated[:2]}")


def check_outputs(
    settings: Settings, workload: Workload, outputs: list[Received], verdict: Verdict
) -> None:
    """Exactly one output per book, naming its object, in input order within each group."""
    books = {b.id: b for b in workload.books}
    bodies = [o.json() for o in outputs]
    counts = Counter(b.get("id") for b in bodies)
    missing = books.keys() - counts.keys()
    verdict.expect(not missing, f"{len(missing)} books were never announced")
    verdict.expect(
        all(counts[i] == 1 for i in counts) and counts.keys() <= books.keys(),
        f"{len(outputs) - len(counts)} duplicate or unknown output messages",
    )
    wrong = [
        body
        for body, o in zip(bodies, outputs, strict=True)
        if body.get("id") in books
        and (
            body.get("file") != books[body["id"]].key
            or body.get("bucket") != settings.buckets[books[body["id"]].genre]
            or o.group != books[body["id"]].group
        )
    ]
    verdict.expect(not wrong, f"{len(wrong)} outputs name the wrong object or group: {wrong[:2]}")
    out_of_order = groups_out_of_order(workload.books, outputs)
    verdict.expect(not out_of_order, f"output order differs from input order in {out_of_order}")


def groups_out_of_order(books: Sequence[Book], outputs: list[Received]) -> list[str]:
    """Groups whose announced books came out in another order than they went in."""
    announced: dict[str, list[str]] = {}
    for o in sorted(outputs, key=lambda o: o.sequence):
        announced.setdefault(o.group, []).append(o.json().get("id"))
    sent: dict[str, list[str]] = {}
    for b in books:
        sent.setdefault(b.group, []).append(b.id)
    bad = []
    for group, ids in sent.items():
        seen = announced.get(group, [])
        # Dead-lettered books are missing from the outputs; the rest must keep their order.
        if [i for i in ids if i in seen] != [i for i in seen if i in ids]:
            bad.append(group)
    return bad


@dataclass
class Outcome:
    """One fault scenario's tally, as the fault suite's table shows it."""

    sent: int = 0
    stored: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    valid_dead_lettered: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            not (self.lost or self.duplicated or self.out_of_order or self.valid_dead_lettered)
            and not self.problems
        )


def audit(settings: Settings, books: Sequence[Book], *, timeout: float = 60.0) -> Outcome:
    """Drain the output and dead-letter queues and read S3; tally every book sent.

    ``books`` are the valid books sent; anything of theirs in the dead-letter queue is
    a valid book dead-lettered. Content is compared byte for byte with what was sent.
    """
    outputs = drain(settings, settings.output_queue, timeout=timeout)
    letters = drain(settings, settings.dead_letter_queue, timeout=timeout)
    versions = stored_versions(settings)
    outcome = Outcome(sent=len(books))
    announced = Counter(o.json().get("id") for o in outputs)
    lettered = Counter(_letter_id(letter) for letter in letters)
    s3 = make_client(settings, "s3")
    for book in books:
        bucket = settings.buckets[book.genre]
        copies = versions.get((bucket, book.key), 0)
        if announced[book.id] > 1 or copies > 1 or lettered[book.id] > 1:
            outcome.duplicated += 1
        if lettered[book.id]:
            outcome.dead_lettered += 1
            outcome.valid_dead_lettered += 1
            if announced[book.id]:
                outcome.duplicated += 1
        elif announced[book.id] and copies:
            outcome.stored += 1
            body = s3.get_object(Bucket=bucket, Key=book.key)["Body"].read().decode()
            if copies == 1 and body != book.body:
                outcome.problems.append(f"{book.id}: stored content differs from what was sent")
        else:
            outcome.lost += 1
    outcome.out_of_order = len(groups_out_of_order(books, outputs))
    known = {b.id for b in books}
    strays = [i for i in announced if i not in known]
    if strays:
        outcome.problems.append(f"{len(strays)} announcements of books never sent: {strays[:3]}")
    return outcome


def _letter_id(letter: Received) -> Any:
    try:
        return letter.json().get("id")
    except ValueError:
        return None
