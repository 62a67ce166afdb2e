"""The one retry policy: what each kind of AWS failure costs a message, and how long to wait.

Two layers, both set here:

- botocore retries each call itself (bookd.aws.clients.CLIENT_RETRIES: its "standard"
  mode, three tries with jittered backoff), which absorbs blips;
- bookd then judges the failure that gets through (``Retry.judge``):

  ============== ===================================================================
  THROTTLED      the service is busy: pause receiving, back off; never counted. For a
                 call whose concurrency adapts (``backpressure``: uploads, through
                 bookd.rules.limiter), it is S3 asking for fewer at once, not an
                 outage: retried after the backoff, receiving goes on
  UNAVAILABLE    probe the service: if it answers, the failure is the message's own
                 and counts against its Budget; if not, it is an outage: pause
                 receiving, back off, not counted. The same call failing for three
                 messages in a row is an outage too, whatever the probe says (S3 can
                 fail every PutObject while HeadBucket answers)
  MISCONFIGURED  AccessDenied, a missing bucket or queue...: pause receiving, log once,
                 retry the same call every so often until the fix is rolled out
  REJECTED       this request is malformed: the message is dead-lettered at once,
                 unless the service rejected three messages in a row (then it is
                 treated as misconfiguration, since a valid book never is)
  ============== ===================================================================

A call made for no message (a receive, the listener's connect) is never refused:
there is nothing to dead-letter, so a rejection there is taken for misconfiguration.

A message is never handed back to the queue for a retry: it is held (heartbeats
keep it invisible) and retried in place, so waiting costs it no delivery. Every
wait is jittered, so sixteen receive loops never retry in lockstep.

There is one retry loop (``Retry.loop``), with two doors: ``call`` for one call, and
``batch`` for a batch call whose entries may fail on their own (announcements,
deletes, hand-backs, dead letters). The receive loops and the listener's connect go
through ``call`` too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from bookd.core.errors import AwsFault, FaultKind
from bookd.core.outcomes import Outcomes
from bookd.core.reasons import RETRIES_EXHAUSTED
from bookd.core.tracing import Tracing
from bookd.rules.dependencies import Dependencies

T = TypeVar("T")

FIRST_DELAY = 0.5
"""Seconds before the first retry of a failed call (jittered)."""

MAX_DELAY = 15.0
"""Longest wait between two tries of one call; also how soon a fixed outage is noticed."""

STREAK = 3
"""Different messages for which one kind of call failed in a row (no success between)
before the call, not the messages, is taken to be at fault: rejected, a
misconfiguration; unavailable, an outage."""


class Backoff:
    """Jittered exponential delays: each between half and all of first * 2**n, capped."""

    def __init__(
        self,
        first: float = FIRST_DELAY,
        cap: float = MAX_DELAY,
        rng: random.Random | None = None,
    ) -> None:
        self.first = first
        self.cap = cap
        self.tries = 0
        # The random module's shared source by default: a Backoff is made for every call
        # bookd retries (several per book), and seeding a Random of its own costs more
        # than the rest of that call's bookkeeping. Each draw moves the shared state, so
        # two loops still never wait alike.
        self._uniform = rng.uniform if rng is not None else random.uniform

    def next(self) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(self.tries, 30))
        self.tries += 1
        # "Equal jitter": never less than half, so no loop gets hot; never the same
        # for two loops, so they do not hit a recovering service at the same instant.
        return ceiling / 2 + self._uniform(0, ceiling / 2)


@dataclass
class Budget:
    """One message's own failed tries: used up when both the count and the time are."""

    max_attempts: int
    retry_for: float
    attempts: int = 0
    first_failure: float | None = None

    def failed(self, now: float) -> None:
        self.attempts += 1
        if self.first_failure is None:
            self.first_failure = now

    def exhausted(self, now: float) -> bool:
        if self.first_failure is None:
            return False
        return self.attempts >= self.max_attempts and now - self.first_failure >= self.retry_for


class Verdict(Enum):
    """What to do after a failed call."""

    RETRY = "retry"
    GIVE_UP = "give-up"
    """The message's budget is used up: dead-letter it (retries-exhausted)."""
    REFUSED = "refused"
    """The service refused this message's request: dead-letter it now."""


class Abandoned(Exception):  # noqa: N818 - a signal to stop working on a message, not an error
    """Raised when work on a message must stop: the listener is stopping, or its hold lapsed."""

    def __init__(self, *, hand_back: bool) -> None:
        super().__init__("stopping" if hand_back else "hold lapsed")
        self.hand_back = hand_back


class GaveUp(Exception):  # noqa: N818 - carries the outcome, not a bug
    """Raised when a message's call keeps failing or was refused; it is to be dead-lettered."""

    def __init__(self, verdict: Verdict, fault: AwsFault) -> None:
        super().__init__(str(fault))
        self.verdict = verdict
        self.fault = fault

    def reason(self, refused: str) -> str:
        """The dead-letter reason: retries-exhausted once the budget is used up, else
        ``refused`` (the service's own, e.g. rejected-by-s3)."""
        return RETRIES_EXHAUSTED if self.verdict is Verdict.GIVE_UP else refused


@dataclass(frozen=True)
class Failure:
    """What one try left to retry: the fault to judge, and whose it is."""

    fault: AwsFault
    budget: Budget | None = None
    """The budget of the message it is charged to, if any."""
    message_id: str | None = None
    entries: bool = False
    """The call itself worked; only some of its entries failed."""


@dataclass
class Left(Generic[T]):
    """What a batch left undone when a limit ended it (nothing, once all went)."""

    items: list[T] = field(default_factory=list)
    fault: AwsFault | None = None
    """The last failure of the first item left."""


def _never() -> bool:
    return False


class Judge:
    """The verdicts: what a failed call means, for one listener (shared by its threads)."""

    def __init__(
        self,
        dependencies: Dependencies,
        *,
        clock: Callable[[], float] = time.monotonic,
        outcomes: Outcomes | None = None,
    ) -> None:
        self.dependencies = dependencies
        self._clock = clock
        self._outcomes = outcomes or Outcomes()
        self._lock = threading.Lock()
        self._streaks: dict[tuple[FaultKind, str, str], set[str]] = {}
        """(kind, service, operation) -> the messages it failed for since it last worked."""

    def judge(
        self,
        fault: AwsFault,
        *,
        probe: Callable[[], None] | None,
        budget: Budget | None,
        message_id: str | None,
        owner: object,
        refusable: bool = True,
        backpressure: bool = False,
    ) -> Verdict:
        """Decide what a failure means, opening the service's problem when it is not ours.

        ``owner`` is whoever retries the call: the problem lasts while an owner does
        (Dependencies.release). ``probe`` is a cheap call of the same service (None:
        the failing call is the cheapest probe there is, so the service is taken as
        away). With ``refusable`` False (a call made for no message) a rejection is
        taken for misconfiguration. With ``backpressure`` (the call's concurrency adapts
        to throttling) a throttle opens no problem: it is retried, receiving goes on.
        """
        if backpressure and fault.kind is FaultKind.THROTTLED:
            self._outcomes.retried(fault)
            return Verdict.RETRY
        verdict = self._verdict(fault, probe, budget, message_id, owner, refusable)
        if verdict is Verdict.RETRY:
            self._outcomes.retried(fault)
        return verdict

    def _verdict(
        self,
        fault: AwsFault,
        probe: Callable[[], None] | None,
        budget: Budget | None,
        message: str | None,
        owner: object,
        refusable: bool,
    ) -> Verdict:
        if fault.kind is FaultKind.REJECTED:
            if refusable and not self._streak(fault, message):
                return Verdict.REFUSED
            self.dependencies.report(fault, owner=owner, kind=FaultKind.MISCONFIGURED)
            return Verdict.RETRY
        if fault.kind is not FaultKind.UNAVAILABLE:
            self.dependencies.report(fault, owner=owner)
            return Verdict.RETRY
        streak = self._streak(fault, message)  # first: every failure joins the streak
        if self.dependencies.is_open(fault.service) or streak or not self._answers(probe):
            self.dependencies.report(fault, owner=owner)  # an outage: not the message's fault
            return Verdict.RETRY
        if budget is not None:
            now = self._clock()
            budget.failed(now)
            if budget.exhausted(now):
                return Verdict.GIVE_UP
        return Verdict.RETRY

    def succeeded(self, service: str, operation: str) -> None:
        """A call worked: its problem (if any) is over and its streaks end."""
        self.dependencies.clear(service, operation)
        with self._lock:
            for kind in (FaultKind.REJECTED, FaultKind.UNAVAILABLE):
                self._streaks.pop((kind, service, operation), None)

    def _answers(self, probe: Callable[[], None] | None) -> bool:
        if probe is None:
            return False
        try:
            probe()
        except AwsFault:
            return False
        return True

    def _streak(self, fault: AwsFault, message_id: str | None) -> bool:
        """Whether this call has now failed this way for STREAK different messages in a row."""
        with self._lock:
            key = (fault.kind, fault.service, fault.operation)
            seen = self._streaks.setdefault(key, set())
            seen.add(message_id or "")
            return len(seen) >= STREAK


class Retry(Judge):
    """The one retry loop, on the verdicts of Judge, with two doors: ``call`` and ``batch``."""

    def __init__(
        self,
        dependencies: Dependencies,
        *,
        wait: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
        outcomes: Outcomes | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        super().__init__(dependencies, clock=clock, outcomes=outcomes)
        self._wait = wait
        """Sleeps up to the given seconds; returns False at once when the listener stops."""
        self.tracing = tracing or Tracing()
        """Each try of a message's call runs in its span (the client spans are its children)."""

    def loop(
        self,
        attempt: Callable[[], Failure | None],
        *,
        probe: Callable[[], None] | None,
        abandon: Callable[[], bool] = _never,
        on_refused: Callable[[Verdict, AwsFault], None] | None = None,
        on_wait: Callable[[], None] | None = None,
        refusable: bool = True,
        max_tries: int | None = None,
        max_entry_tries: int | None = None,
        backpressure: bool = False,
    ) -> bool:
        """Try ``attempt`` until it leaves nothing to retry (True) or a limit ends it (False).

        ``abandon`` is asked before each try (Abandoned(hand_back=False) if it says so).
        A failure is judged; to retry, the loop waits its backoff (Abandoned(hand_back=
        True) if the listener stops meanwhile), running ``on_wait`` once, before the
        first wait. A verdict to give up goes to ``on_refused`` and the loop goes on at
        once; without it, GaveUp. The limits count tries in all, or tries whose call
        worked but left entries failing; the failure that reaches one is not judged.
        """
        backoff = Backoff()
        owner = object()
        tries = entry_tries = 0
        try:
            while True:
                if abandon():
                    raise Abandoned(hand_back=False)
                failure = attempt()
                if failure is None:
                    return True
                tries += 1
                entry_tries += failure.entries
                if _reached(tries, max_tries) or _reached(entry_tries, max_entry_tries):
                    return False
                if not self._retries(failure, owner, probe, refusable, on_refused, backpressure):
                    continue
                if on_wait is not None:
                    on_wait()
                    on_wait = None
                self.pause(backoff)
        finally:
            self.dependencies.release(owner)

    def _retries(
        self,
        failure: Failure,
        owner: object,
        probe: Callable[[], None] | None,
        refusable: bool,
        on_refused: Callable[[Verdict, AwsFault], None] | None,
        backpressure: bool = False,
    ) -> bool:
        """Judge a failure: True to wait and try again; False once ``on_refused`` took
        what was refused (the loop goes on at once); GaveUp without one."""
        verdict = self.judge(
            failure.fault,
            probe=probe,
            budget=failure.budget,
            message_id=failure.message_id,
            owner=owner,
            refusable=refusable,
            backpressure=backpressure,
        )
        if verdict is Verdict.RETRY:
            return True
        if on_refused is None:
            raise GaveUp(verdict, failure.fault)
        on_refused(verdict, failure.fault)
        return False

    def call(
        self,
        fn: Callable[[], T],
        *,
        service: str,
        operation: str,
        probe: Callable[[], None] | None,
        budget: Budget | None = None,
        message_id: str | None = None,
        abandon: Callable[[], bool] = _never,
        on_wait: Callable[[], None] | None = None,
        refusable: bool = True,
        backpressure: bool = False,
    ) -> T:
        """One call, tried until it works (see loop); GaveUp when its message is to be
        dead-lettered. Its success ends the problems of every call that failed on the way.
        ``backpressure``: the call adapts to throttling itself (see Judge.judge)."""
        results: list[T] = []
        failed = {(service, operation)}

        def attempt() -> Failure | None:
            try:
                with self.tracing.active(message_id):
                    results.append(fn())
            except AwsFault as fault:
                failed.add((fault.service, fault.operation))
                return Failure(fault, budget, message_id)
            return None

        self.loop(
            attempt,
            probe=probe,
            abandon=abandon,
            on_wait=on_wait,
            refusable=refusable,
            backpressure=backpressure,
        )
        for name in failed:  # each call this try made worked
            self.succeeded(*name)
        return results[0]

    def batch(
        self,
        items: Sequence[T],
        send: Callable[[Sequence[T]], Mapping[str, AwsFault]],
        *,
        key: Callable[[T], str],
        service: str,
        operation: str,
        probe: Callable[[], None] | None,
        budget: Callable[[T], Budget | None] = lambda _: None,
        abandon: Callable[[T], bool] = lambda _: False,
        on_try: Callable[[Sequence[T], Mapping[str, AwsFault]], None] = lambda *_: None,
        on_refused: Callable[[T, Verdict, AwsFault], None] | None = None,
        settled: Callable[[AwsFault], bool] = lambda _: False,
        max_tries: int | None = None,
        max_entry_tries: int | None = None,
    ) -> Left[T]:
        """Send ``items`` in order, again and again, until each went (see loop and _Batch).

        ``send`` returns the faults of the entries that failed on their own, by key,
        and raises AwsFault when the whole call failed. ``on_try`` sees each try's
        entries and failures; an entry whose fault ``settled`` accepts is done all the
        same. The failure judged is the first entry's left, on its budget; refused, it
        goes to ``on_refused`` and the rest go on at once. Returns what a limit left.
        """
        tries = _Batch(self, items, send, key, service, operation, budget, on_try, settled)
        if tries.pending and not self.loop(
            tries.attempt,
            probe=probe,
            abandon=lambda: bool(tries.pending) and abandon(tries.pending[0]),
            on_refused=tries.refuser(on_refused),
            max_tries=max_tries,
            max_entry_tries=max_entry_tries,
        ):
            tries.left.items = tries.pending
        return tries.left

    def pause(self, backoff: Backoff) -> None:
        """Wait the backoff's next delay; Abandoned(hand_back=True) if the listener stops."""
        if not self._wait(backoff.next()):
            raise Abandoned(hand_back=True)


class _Batch(Generic[T]):
    """The tries of one batch send: what is still pending, in order, after each."""

    def __init__(
        self,
        retry: Retry,
        items: Sequence[T],
        send: Callable[[Sequence[T]], Mapping[str, AwsFault]],
        key: Callable[[T], str],
        service: str,
        operation: str,
        budget: Callable[[T], Budget | None],
        on_try: Callable[[Sequence[T], Mapping[str, AwsFault]], None],
        settled: Callable[[AwsFault], bool],
    ) -> None:
        self.judge = retry
        self.pending = list(items)
        self.left: Left[T] = Left()
        self._send, self._key, self._budget = send, key, budget
        self._service, self._operation = service, operation
        self._on_try, self._settled = on_try, settled
        self.tracing = retry.tracing

    def attempt(self) -> Failure | None:
        if not self.pending:
            return None
        key = self._key
        try:
            # A batch call is one client span: a child of its first message's span (the
            # others carry their own context in their entries; see Tracing.carried).
            with self.tracing.active(key(self.pending[0])):
                failed, entries = self._send(self.pending), True
        except AwsFault as fault:
            failed, entries = {key(item): fault for item in self.pending}, False
        self._on_try(self.pending, failed)
        if len(failed) < len(self.pending):  # some entries went: the call works
            self.judge.succeeded(self._service, self._operation)
        self.pending = [
            i for i in self.pending if key(i) in failed and not self._settled(failed[key(i)])
        ]
        if not self.pending:
            return None
        head = self.pending[0]
        self.left.fault = failed[key(head)]
        return Failure(self.left.fault, self._budget(head), key(head), entries=entries)

    def refuser(
        self, on_refused: Callable[[T, Verdict, AwsFault], None] | None
    ) -> Callable[[Verdict, AwsFault], None] | None:
        """The loop's on_refused: the first entry goes to ``on_refused``, out of the batch."""
        if on_refused is None:
            return None
        return lambda verdict, fault: on_refused(self.pending.pop(0), verdict, fault)


def _reached(count: int, limit: int | None) -> bool:
    return limit is not None and count >= limit
