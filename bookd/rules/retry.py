"""The one retry policy: what each kind of AWS failure costs a message, and how long to wait.

Two layers, both set here:

- botocore retries each call itself (``CLIENT_RETRIES``: its "standard" mode, three
  tries with jittered backoff), which absorbs blips;
- bookd then judges the failure that gets through (``Retry.judge``):

  ============== ===================================================================
  THROTTLED      the service is busy: pause receiving, back off; never counted
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

A message is never handed back to the queue for a retry: it is held (heartbeats
keep it invisible) and retried in place, so waiting costs it no delivery. Every
wait is jittered, so sixteen receive loops never retry in lockstep.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from bookd.core.errors import AwsFault, FaultKind
from bookd.rules.dependencies import Dependencies
from bookd.telemetry import metrics

T = TypeVar("T")

CLIENT_RETRIES = {"mode": "standard", "max_attempts": 3}
"""botocore's own retries of each call, before bookd sees a failure."""

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


class Retry:
    """Judges failed calls and retries them, for one listener (shared by its threads)."""

    def __init__(
        self,
        dependencies: Dependencies,
        *,
        wait: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dependencies = dependencies
        self._wait = wait
        """Sleeps up to the given seconds; returns False at once when the listener stops."""
        self._clock = clock
        self._lock = threading.Lock()
        self._streaks: dict[tuple[FaultKind, str, str], set[str]] = {}
        """(kind, service, operation) -> the messages it failed for since it last worked."""

    def judge(
        self,
        fault: AwsFault,
        *,
        probe: Callable[[], None],
        budget: Budget | None,
        message_id: str | None,
        owner: object,
    ) -> Verdict:
        """Decide what a failure means, opening the service's problem when it is not ours.

        ``owner`` is whoever retries the call: the problem lasts while an owner does
        (Dependencies.release).
        """
        verdict = self._verdict(fault, probe, budget, message_id, owner)
        if verdict is Verdict.RETRY:
            metrics.RETRIED.labels(reason=f"{fault.service}-{fault.kind.value}").inc()
        return verdict

    def _verdict(
        self,
        fault: AwsFault,
        probe: Callable[[], None],
        budget: Budget | None,
        message: str | None,
        owner: object,
    ) -> Verdict:
        if fault.kind is FaultKind.REJECTED:
            if not self._streak(fault, message):
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

    def run(
        self,
        call: Callable[[], T],
        *,
        service: str,
        operation: str,
        probe: Callable[[], None],
        budget: Budget | None = None,
        message_id: str | None = None,
        abandon: Callable[[], bool] = lambda: False,
        before_waiting: Callable[[], None] | None = None,
    ) -> T:
        """Call until it works; GaveUp when the message is to be dead-lettered.

        ``abandon`` is asked before every try (Abandoned(hand_back=False) if true);
        a stop during a wait raises Abandoned(hand_back=True). ``before_waiting`` runs
        once, before the first wait: what need not wait for this call can go first.
        """
        backoff = Backoff()
        failed = {operation}
        owner = object()
        try:
            while True:
                if abandon():
                    raise Abandoned(hand_back=False)
                try:
                    result = call()
                except AwsFault as fault:
                    verdict = self.judge(
                        fault, probe=probe, budget=budget, message_id=message_id, owner=owner
                    )
                    if verdict is not Verdict.RETRY:
                        raise GaveUp(verdict, fault) from fault
                    failed.add(fault.operation)
                    if before_waiting is not None:
                        before_waiting()
                        before_waiting = None
                    self.pause(backoff)
                else:
                    for name in failed:  # each call this try made worked
                        self.succeeded(service, name)
                    return result
        finally:
            self.dependencies.release(owner)

    def pause(self, backoff: Backoff) -> None:
        """Wait the backoff's next delay; Abandoned(hand_back=True) if the listener stops."""
        if not self._wait(backoff.next()):
            raise Abandoned(hand_back=True)

    def _answers(self, probe: Callable[[], None]) -> bool:
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
