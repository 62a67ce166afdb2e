"""Announcing stored books again, for a consumer that lost its announcements (``bookd replay``).

The books are chosen by bucket, key prefix and when their version was stored. Each
version is announced as it was the first time (bookd.core.ports.announcement_body: its
id, file, bucket, version_id, input message_id, group and sequence_number, which bookd
keeps in the object's metadata), with ``"replayed": true``; versions that bookd did not
store (no such metadata) are left out. They go in key order (a key's versions oldest
first), in a FIFO group of their own (BOOKD_REPLAY_GROUP), so that they never hold up
the live announcements, with a deduplication id made from the version id: a replay run
twice within SQS's five minutes announces nothing twice.

A replay writes down how far it got (a checkpoint, after each batch SQS took): stopped
or failed, it goes on from there when run again with the same choice, which it keeps
whole, its end time included, so that books stored since do not shift what comes after.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bookd.core.books import from_metadata
from bookd.core.ports import (
    BATCH_LIMIT,
    BOOK_ID_METADATA,
    GROUP_METADATA,
    MESSAGE_ID_METADATA,
    SEQUENCE_METADATA,
    BatchSender,
    Outgoing,
    StoredVersion,
    VersionStore,
    announcement_body,
)
from bookd.operations.sending import send_in_order


@dataclass(frozen=True)
class Choice:
    """Which stored versions to announce again."""

    bucket: str
    prefix: str = ""
    since: float | None = None
    """Stored at or after this moment (seconds since the epoch); None: from the first."""
    until: float | None = None
    """Stored before this moment; a replay fixes it to its start when none is given."""

    def wants(self, version: StoredVersion) -> bool:
        after = self.since is None or version.stored_at >= self.since
        return after and (self.until is None or version.stored_at < self.until)

    def name(self) -> str:
        """A file name for this choice's checkpoint."""
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:24] + ".json"


@dataclass
class Replayed:
    """What a replay did (or, in a dry run, would do)."""

    announced: int = 0
    not_bookds: int = 0
    """Versions without bookd's metadata: not stored by bookd, left out."""
    resumed_after: int = 0
    """Versions a checkpoint showed already announced by an earlier run."""
    failed: str | None = None
    """Why the replay stopped early, if it did (run it again to go on)."""


class Replay:
    """One replay of a choice, with its checkpoint in ``checkpoints``."""

    def __init__(
        self,
        store: VersionStore,
        output: BatchSender,
        *,
        group: str,
        checkpoints: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.output = output
        self.group = group
        self.checkpoints = checkpoints
        self._clock = clock

    def resolve(self, choice: Choice) -> Choice:
        """The choice with its end fixed: a stopped run's, or now."""
        if choice.until is not None:
            return choice
        kept = next(iter(self._kept(choice)), None)
        return (
            kept[1] if kept else Choice(choice.bucket, choice.prefix, choice.since, self._clock())
        )

    def forget(self, choice: Choice) -> None:
        """Drop the checkpoints of ``choice`` (of any end, without one): start afresh."""
        for path, _ in self._kept(choice):
            path.unlink(missing_ok=True)

    def _kept(self, choice: Choice) -> list[tuple[Path, Choice]]:
        """The checkpoints of runs of ``choice`` (any end, if it names none)."""
        found = []
        for path in sorted(self.checkpoints.glob("*.json")):
            kept = Choice(**json.loads(path.read_text())["choice"])
            if choice in (kept, Choice(kept.bucket, kept.prefix, kept.since, None)):
                found.append((path, kept))
        return found

    def plan(self, choice: Choice) -> list[StoredVersion]:
        """The chosen versions, in the order they are announced: by key, oldest first."""
        listed = list(enumerate(self.store.list_versions(choice.bucket, prefix=choice.prefix)))
        chosen = [(i, v) for i, v in listed if choice.wants(v)]
        # S3 lists a key's versions newest first, and LastModified has whole seconds:
        # within a second, the later in the listing is the older.
        ordered = sorted(chosen, key=lambda item: (item[1].key, item[1].stored_at, -item[0]))
        return [v for _, v in ordered]

    def run(
        self,
        choice: Choice,
        versions: Sequence[StoredVersion],
        *,
        dry_run: bool = False,
        on_batch: Callable[[int], None] = lambda _: None,
    ) -> Replayed:
        """Announce ``versions`` (from ``plan``), going on from a checkpoint of ``choice``."""
        result = Replayed()
        done = self._read_checkpoint(choice)
        todo = list(versions[done:])
        result.resumed_after = done
        for start in range(0, len(todo), BATCH_LIMIT):
            batch = todo[start : start + BATCH_LIMIT]
            outgoing = self._announcements(choice.bucket, batch, result)
            if not dry_run and outgoing:
                sent = send_in_order(self.output, outgoing)
                if sent.problems:
                    # The checkpoint goes up to the first version not announced: a run
                    # again goes on from it (its one group stopped there, in order).
                    first = next(i for i, v in enumerate(batch) if v.version_id in sent.problems)
                    self._write_checkpoint(choice, done + start + first)
                    result.failed = sent.problems[batch[first].version_id]
                    result.announced += len(sent.ids)
                    return result
            result.announced += len(outgoing)
            if not dry_run:
                self._write_checkpoint(choice, done + start + len(batch))
            on_batch(len(batch))
        if not dry_run:
            (self.checkpoints / choice.name()).unlink(missing_ok=True)
        return result

    def _announcements(
        self, bucket: str, versions: Iterable[StoredVersion], result: Replayed
    ) -> list[Outgoing]:
        outgoing = []
        for v in versions:
            meta = self.store.metadata(bucket, v.key, v.version_id)
            if MESSAGE_ID_METADATA not in meta or BOOK_ID_METADATA not in meta:
                result.not_bookds += 1
                continue
            body = announcement_body(
                book_id=from_metadata(meta[BOOK_ID_METADATA]),
                key=v.key,
                bucket=bucket,
                version_id=v.version_id,
                message_id=meta[MESSAGE_ID_METADATA],
                group=meta.get(GROUP_METADATA),
                sequence_number=meta.get(SEQUENCE_METADATA),
            )
            outgoing.append(
                Outgoing(
                    ref=v.version_id,
                    body=json.dumps({**body, "replayed": True}, ensure_ascii=True),
                    group_id=self.group,
                    dedup_id=f"replay-{v.version_id}"[:128],
                )
            )
        return outgoing

    def _read_checkpoint(self, choice: Choice) -> int:
        try:
            return int(json.loads((self.checkpoints / choice.name()).read_text())["done"])
        except FileNotFoundError:
            return 0

    def _write_checkpoint(self, choice: Choice, done: int) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        path = self.checkpoints / choice.name()
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"choice": asdict(choice), "done": done}))
        tmp.replace(path)
