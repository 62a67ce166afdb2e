"""In-memory adapters of bookd.core.ports, for offline tests of the rules (dramatiq's StubBroker).

They keep the SQS FIFO and S3 rules the processing relies on: a group is handed out
whole or not at all while one of its messages is in flight; a receipt handle is
good only for the latest receive; deduplication ids hold for five minutes; every
put is a new version. Faults are injected per operation, optionally only for calls
that match, a number of times or until healed. Time is a FakeClock that the code
under test advances when it waits.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bookd.aws.codes import kind_of
from bookd.core.errors import AwsFault
from bookd.core.ports import (
    MAX_MESSAGE_BYTES,
    MESSAGE_ID_METADATA,
    Message,
    Outgoing,
    Payload,
    StoredVersion,
)

DEDUP_WINDOW = 300.0


def fault(code: str, service: str = "s3", operation: str = "PutObject") -> AwsFault:
    """An AwsFault of the code table's kind for ``code``."""
    return AwsFault(
        kind_of(code), service=service, operation=operation, code=code, detail=f"{code} (test)"
    )


OUTAGE = "ServiceUnavailable"
"""An UNAVAILABLE code, as an outage answers."""


class FakeClock:
    """Monotonic seconds that move only when the code under test waits (or the test says)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._events: list[tuple[float, Callable[[], None]]] = []
        self.every_second: list[Callable[[], None]] = []
        """Run at each simulated second of a wait, as the listener's heartbeat thread is."""

    def __call__(self) -> float:
        return self.now

    def at(self, moment: float, action: Callable[[], None]) -> None:
        """Run ``action`` once the clock reaches ``moment`` (seconds from now)."""
        self._events.append((self.now + moment, action))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [e for e in self._events if e[0] <= self.now]
        self._events = [e for e in self._events if e[0] > self.now]
        for _, action in sorted(due, key=lambda e: e[0]):
            action()

    def wait(self, seconds: float) -> bool:
        """What Retry is given to sleep with: moves the clock; the listener never stops."""
        while seconds > 0:
            step = min(1.0, seconds)
            self.advance(step)
            seconds -= step
            for action in self.every_second:
                action()
        return True


@dataclass
class Rule:
    operation: str
    fault: AwsFault
    times: int | None
    when: Callable[[Any], bool] | None


class Faulty:
    """Faults by operation: ``fail(...)`` to start one, ``heal()`` to end them all."""

    service = "s3"

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.calls: list[tuple[str, Any]] = []
        self.journal: list[tuple[str, str]] | None = None
        """Shared by the adapters of one Harness: every call of any, in order."""

    def fail(
        self,
        operation: str,
        code: str = OUTAGE,
        *,
        times: int | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> None:
        """Make ``operation`` fail with ``code`` (``times`` times, or until heal())."""
        self.rules.append(Rule(operation, fault(code, self.service, operation), times, when))

    def down(self, code: str = OUTAGE) -> None:
        """Every call and probe fails: an outage."""
        self.fail("*", code)

    def heal(self) -> None:
        self.rules.clear()

    def _check(self, operation: str, subject: Any = None) -> None:
        self.calls.append((operation, subject))
        if self.journal is not None:
            self.journal.append((self.service, operation))
        for rule in self.rules:
            if rule.operation not in ("*", operation):
                continue
            if rule.when is not None and not rule.when(subject):
                continue
            if rule.times is not None:
                if rule.times <= 0:
                    continue
                rule.times -= 1
            raise AwsFault(
                rule.fault.kind,
                service=self.service,
                operation=operation,
                code=rule.fault.code,
                detail=rule.fault.detail,
            )

    def count(self, operation: str, when: Callable[[Any], bool] = lambda _: True) -> int:
        return sum(1 for op, subject in self.calls if op == operation and when(subject))


@dataclass
class _Stored:
    message_id: str
    body: str
    group: str
    dedup: str
    attributes: Mapping[str, str] | None
    sent_at: float
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str | None = None
    deleted: bool = False
    sequence: str = ""
    """SQS's FIFO SequenceNumber: the order the queue took it in."""


class MemoryQueue(Faulty):
    """An SQS FIFO queue: InputQueue and OutputQueue at once."""

    service = "sqs"
    _ids = itertools.count(1)

    def __init__(self, name: str, clock: FakeClock) -> None:
        super().__init__()
        self.name = name
        self.clock = clock
        self.messages: list[_Stored] = []
        self.entry_faults: dict[str, tuple[str, int]] = {}
        """ref (or message id) -> (code, times): SendMessageBatch (or DeleteMessageBatch)
        fails that entry alone, that many times."""
        self._sequence = itertools.count(10**19)  # SQS's numbers are long digit strings

    # --- producer side ----------------------------------------------------------

    def put(self, body: str, group: str = "g") -> str:
        """A producer sends one message (no faults)."""
        message_id = f"m{next(self._ids)}"
        stored = _Stored(message_id, body, group, message_id, None, self.clock.now)
        stored.sequence = str(next(self._sequence))
        self.messages.append(stored)
        return message_id

    def send(self, messages: Sequence[Outgoing]) -> dict[str, AwsFault]:
        assert len(messages) <= 10
        self._check("SendMessageBatch", messages)
        if sum(m.size() for m in messages) > MAX_MESSAGE_BYTES:
            # As SQS (and LocalStack) answer: the whole call is refused.
            raise fault("AWS.SimpleQueueService.BatchRequestTooLong", "sqs", "SendMessageBatch")
        failed: dict[str, AwsFault] = {}
        for m in messages:
            entry_fault = self._entry_fault(m.ref, "SendMessageBatch")
            if entry_fault is not None:
                failed[m.ref] = entry_fault
                continue
            recent = any(
                s.dedup == m.dedup_id and self.clock.now - s.sent_at < DEDUP_WINDOW
                for s in self.messages
            )
            if not recent:  # SQS accepts a repeated dedup id but does not deliver it again
                self.messages.append(
                    _Stored(
                        f"m{next(self._ids)}",
                        m.body,
                        m.group_id,
                        m.dedup_id,
                        m.attributes,
                        self.clock.now,
                        sequence=str(next(self._sequence)),
                    )
                )
        return failed

    def send_batch(
        self, messages: Sequence[Outgoing]
    ) -> tuple[dict[str, str], dict[str, AwsFault]]:
        """send, and the message id each entry taken got (by ref): for one deduplicated,
        the id of the message it repeats, as SQS answers."""
        failed = self.send(messages)
        ids = {}
        for m in messages:
            if m.ref not in failed:
                [*_, kept] = [s for s in self.messages if s.dedup == m.dedup_id]
                ids[m.ref] = kept.message_id
        return ids, failed

    def _entry_fault(self, ref: str, operation: str) -> AwsFault | None:
        code, times = self.entry_faults.get(ref, ("", 0))
        if not times:
            return None
        self.entry_faults[ref] = (code, times - 1)
        return fault(code, "sqs", operation)

    def bodies(self, group: str | None = None) -> list[str]:
        """Bodies not deleted, in order (of one group, if given)."""
        return [
            s.body for s in self.messages if not s.deleted and (group is None or s.group == group)
        ]

    def letters(self) -> list[_Stored]:
        return [s for s in self.messages if not s.deleted]

    # --- consumer side ----------------------------------------------------------

    def receive(self, *, wait_time: int, visibility_timeout: int) -> list[Message]:
        self._check("ReceiveMessage")
        now = self.clock.now
        live = [s for s in self.messages if not s.deleted]
        busy = {s.group for s in live if s.receipt and s.visible_at > now}
        group = next((s.group for s in live if s.group not in busy), None)
        if group is None:
            return []
        taken = [s for s in live if s.group == group][:10]
        out = []
        for s in taken:
            s.receive_count += 1
            s.visible_at = now + visibility_timeout
            s.receipt = f"{s.message_id}/{s.receive_count}"
            out.append(
                Message(
                    s.message_id,
                    s.receipt,
                    s.body,
                    s.group,
                    s.receive_count,
                    s.sent_at,
                    {},
                    sequence_number=s.sequence,
                )
            )
        return out

    def _held(self, m: Message) -> _Stored | None:
        found = next((s for s in self.messages if s.message_id == m.message_id), None)
        if found is None or found.deleted or found.receipt != m.receipt_handle:
            return None
        return found

    def delete(self, messages: Sequence[Message]) -> dict[str, AwsFault]:
        self._check("DeleteMessageBatch", messages)
        failed = {}
        for m in messages:
            held = self._held(m)
            entry_fault = self._entry_fault(m.message_id, "DeleteMessageBatch")
            if held is None:
                failed[m.message_id] = fault("ReceiptHandleIsInvalid", "sqs", "DeleteMessageBatch")
            elif entry_fault is not None:
                failed[m.message_id] = entry_fault
            else:
                held.deleted = True
        return failed

    def change_visibility(self, messages: Sequence[Message], timeout: int) -> dict[str, AwsFault]:
        self._check("ChangeMessageVisibilityBatch", messages)
        failed = {}
        for m in messages:
            held = self._held(m)
            if held is None or held.visible_at <= self.clock.now:
                failed[m.message_id] = fault(
                    "MessageNotInflight", "sqs", "ChangeMessageVisibilityBatch"
                )
            else:
                held.visible_at = self.clock.now + timeout
        return failed

    def probe(self) -> None:
        self._check("probe")

    def in_flight(self) -> int:
        now = self.clock.now
        return sum(1 for s in self.messages if not s.deleted and s.receipt and s.visible_at > now)


@dataclass
class Version:
    version_id: str
    body: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    stored_at: float = 0.0


class MemoryStore(Faulty):
    """Versioned S3 buckets."""

    service = "s3"
    _ids = itertools.count(1)
    _moments = itertools.count(1_700_000_000)
    """When each version was stored (LastModified), a second after the one before."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], list[Version]] = {}
        self.slow: dict[str, float] = {}
        """Real seconds a put of this key takes: to shuffle concurrent uploads."""
        self._lock = threading.Lock()
        self._in_flight = 0
        self.most_in_flight = 0
        """The most puts that were under way at one moment."""
        self.takes_at_once: int | None = None
        """Puts beyond this many under way at once are answered SlowDown, as S3 does to a
        prefix that gets more than it can take (None: no limit)."""
        self.slowed_down = 0

    def put(self, bucket: str, key: str, body: bytes, *, metadata: Mapping[str, str]) -> str:
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
            crowded = self.takes_at_once is not None and self._in_flight > self.takes_at_once
            self.slowed_down += crowded
        try:
            if crowded:
                raise fault("SlowDown")
            time.sleep(self.slow.get(key, 0.0))
            with self._lock:
                return self._put(bucket, key, body, metadata)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _put(self, bucket: str, key: str, body: bytes, metadata: Mapping[str, str]) -> str:
        self._check("PutObject", key)
        version = Version(f"v{next(self._ids)}", body, dict(metadata), next(self._moments))
        self.objects.setdefault((bucket, key), []).append(version)
        return version.version_id

    def find(self, bucket: str, key: str, *, message_id: str) -> str | None:
        self._check("HeadObject", key)
        for version in reversed(self.objects.get((bucket, key), [])):
            if version.metadata.get(MESSAGE_ID_METADATA) == message_id:
                return version.version_id
        return None

    def payload(self, bucket: str, key: str, *, max_bytes: int) -> Payload:
        self._check("GetObject", key)
        versions = self.objects.get((bucket, key))
        if not versions:
            return Payload(found=False)
        body = versions[-1].body
        if len(body) > max_bytes:
            return Payload(found=True, size=len(body))
        return Payload(found=True, size=len(body), content=body)

    def delete_payload(self, bucket: str, key: str) -> None:
        self._check("DeleteObject", key)
        self.objects.pop((bucket, key), None)

    def probe(self, bucket: str) -> None:
        self._check("probe", bucket)

    def place(self, bucket: str, key: str, body: bytes) -> None:
        """A producer puts an object (no faults): a pointer's payload."""
        self.objects[(bucket, key)] = [Version(f"v{next(self._ids)}", body)]

    def versions(self, key: str) -> list[Version]:
        return [v for (_, k), vs in self.objects.items() if k == key for v in vs]

    # --- bookd.core.ports.VersionStore (bookd replay) ---------------------------

    def list_versions(self, bucket: str, *, prefix: str = "") -> Iterator[StoredVersion]:
        self._check("ListObjectVersions", bucket)
        for (b, key), versions in sorted(self.objects.items()):
            if b == bucket and key.startswith(prefix):
                for v in reversed(versions):  # S3 lists a key's newest version first
                    yield StoredVersion(key, v.version_id, v.stored_at)

    def metadata(self, bucket: str, key: str, version_id: str) -> Mapping[str, str]:
        self._check("HeadObject", key)
        [version] = [v for v in self.objects[bucket, key] if v.version_id == version_id]
        return version.metadata


class Harness:
    """A Processor wired to memory adapters, with the queues, store and clock at hand."""

    def __init__(self, *, uploads: Any = None, **settings: Any) -> None:
        from bookd.core.config import Settings

        self.clock = FakeClock()
        self.settings = Settings.from_env({}).replace(**settings)
        self.input = MemoryQueue("input.fifo", self.clock)
        self.output = MemoryQueue("output.fifo", self.clock)
        self.dead_letters = MemoryQueue("dlq.fifo", self.clock)
        self.store = MemoryStore()
        self.journal: list[tuple[str, str]] = []
        for adapter in (self.input, self.output, self.dead_letters, self.store):
            adapter.journal = self.journal
        self._uploads = uploads
        self.clock.every_second.append(lambda: self.inflight.beat(self.input))
        self.restart()

    def restart(self) -> None:
        """A new listener on the same queues, store and clock: it remembers nothing of the
        last one (what it announced, what it held)."""
        from bookd.rules.dependencies import Dependencies
        from bookd.rules.inflight import Inflight
        from bookd.rules.processor import make_processor
        from bookd.rules.retry import Retry
        from bookd.telemetry.outcomes import telemetry

        self.dependencies = Dependencies()
        self.inflight = Inflight(self.settings.visibility_timeout, clock=self.clock)
        outcomes = telemetry()
        self.retry = Retry(
            self.dependencies, wait=self.clock.wait, clock=self.clock, outcomes=outcomes
        )
        # The listener's own wiring, with memory adapters and the fake clock.
        self.processor = make_processor(
            self.settings,
            input=self.input,
            output=self.output,
            dead_letters=self.dead_letters,
            store=self.store,
            retry=self.retry,
            inflight=self.inflight,
            outcomes=outcomes,
            clock=self.clock,
            uploads=self._uploads,
        )

    def run(self, *, receives: int = 20) -> None:
        """Receive and process until the input queue gives nothing (at most ``receives``)."""
        for _ in range(receives):
            batch = self.input.receive(
                wait_time=0, visibility_timeout=self.settings.visibility_timeout
            )
            if not batch:
                return
            self.processor.process(batch)

    def announced(self, group: str | None = None) -> list[str]:
        import json

        return [json.loads(b)["id"] for b in self.output.bodies(group)]
