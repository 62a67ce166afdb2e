"""A receive's messages through the rules: validate, store, announce, dead-letter, delete.

No threads of its own and no boto3: it talks to the queues and the store through
bookd.core.ports, and the listener (bookd.listener) gives it messages and a ``map``
to run groups side by side. For each receive, per FIFO group, in input order:

1. **Validate.** A message SQS delivered too often, or whose body is not a valid
   book, is dead-lettered now with its reason (DeadLetters), and the group goes on.
   A body that is an S3 pointer has its book read from S3 (Payloads).
2. **Store.** Each valid book is put in S3 (Uploader), in the group mode chosen at
   wiring (bookd.rules.storing). Failures follow bookd.rules.retry: a message is held
   and retried in place, never handed back for a retry.
3. **Announce** the stored books in input order, in one batch (Announcer): never one
   ahead of an earlier book not stored yet (Group.ready).
4. **Settle**: delete what is finished, hand back what a stop interrupted (Settler);
   then, if so configured, delete the payloads of the pointers deleted (Payloads).

If work on a message stops early (the listener stops: it is handed back; its hold
lapsed: it is left for whoever has it now), the messages after it in its group stop
too and are never announced ahead of it. Everything that happens is told to an
Outcomes (bookd.core.outcomes), which counts and logs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor

from bookd.core.config import Settings
from bookd.core.errors import InvalidBook
from bookd.core.outcomes import Outcomes
from bookd.core.ports import InputQueue, Message, OutputQueue, Store
from bookd.core.reasons import TOO_MANY_DELIVERIES
from bookd.rules.announcing import Announcer
from bookd.rules.dead_letters import DeadLetters
from bookd.rules.inflight import Inflight
from bookd.rules.limiter import Limiter
from bookd.rules.payloads import Payloads
from bookd.rules.retry import Abandoned, Budget, Retry
from bookd.rules.settling import Settler
from bookd.rules.storing import GroupMode, Uploader, group_mode
from bookd.rules.work import Group, Work

Mapper = Callable[..., Iterable[None]]
"""Runs a function over groups, like the builtin ``map`` (the listener passes a pool's)."""


class Processor:
    """Works through received messages by the rules above."""

    def __init__(
        self,
        settings: Settings,
        *,
        inflight: Inflight,
        mode: GroupMode,
        payloads: Payloads,
        announcer: Announcer,
        dead_letters: DeadLetters,
        settler: Settler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.inflight = inflight
        self.mode = mode
        self.payloads = payloads
        self.announcer = announcer
        self.dead_letters = dead_letters
        self.settler = settler
        self._clock = clock

    def process(self, messages: Sequence[Message], *, map: Mapper = map) -> None:  # noqa: A002
        """Work through one receive's messages; groups side by side through ``map``."""
        work, back = self.inflight.admit(messages)
        if back:
            self.settler.hand_back(back)
        now = self._clock()
        groups: dict[str, list[Work]] = {}
        for m in work:
            budget = Budget(self.settings.max_attempts, self.settings.retry_for)
            groups.setdefault(m.group_id, []).append(
                Work(m, now, budget, needs_lookup=m.receive_count > 1)
            )
        for _ in map(self._group, groups.values()):
            pass

    def hand_back(self, messages: Sequence[Message]) -> None:
        """Make messages visible again at once (a receive that came back after a stop)."""
        self.settler.hand_back(messages)

    def _group(self, items: list[Work]) -> None:
        group = Group(items, self.announcer.announce)
        stopped: Abandoned | None = None
        try:
            try:
                for w in items:
                    self._validate(w, group)
                self.mode.store(group)
            except Abandoned as exc:
                stopped = exc
            group.announce_ready()
        except Abandoned as exc:
            stopped = stopped or exc
        finally:
            deleted = self.settler.settle(items, stopped)
        self.payloads.discard(deleted)

    def _validate(self, w: Work, group: Group) -> None:
        m = w.message
        if m.receive_count >= self.settings.max_receive_count:
            self.dead_letters.send(
                w,
                TOO_MANY_DELIVERIES,
                f"delivered {m.receive_count} times; each delivery ended without a result, "
                "as when the listener is killed while working on it",
            )
            return
        # Announced by this listener before (its delete failed): only the delete is left.
        w.announced = self.announcer.seen(m.message_id)
        try:
            w.book = self.payloads.book(w, before_read=lambda: self._make_room(group))
        except InvalidBook as exc:
            self.dead_letters.send(w, exc.reason, exc.detail)

    def _make_room(self, group: Group) -> None:
        """Before a payload is read: if one of the group's books holds one, store and
        announce the books so far, so that a group holds one payload in memory at a time."""
        if any(w.payload is not None for w in group.items):
            self.mode.store(group)
            group.announce_ready()


def make_processor(
    settings: Settings,
    *,
    input: InputQueue,  # noqa: A002 - the input queue, as everywhere in bookd
    output: OutputQueue,
    dead_letters: OutputQueue,
    store: Store,
    retry: Retry,
    inflight: Inflight,
    outcomes: Outcomes,
    aborting: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
    uploads: Executor | None = None,
) -> Processor:
    """A Processor wired from its collaborators: the one wiring, for the listener and tests.

    ``uploads`` runs a group's uploads of different titles at once (None: one after
    another); ``aborting`` says whether the listener stops now, handing back what is
    not started.
    """
    letters = DeadLetters(
        dead_letters, source_queue=input.name, retry=retry, inflight=inflight, outcomes=outcomes
    )
    uploader = Uploader(
        store,
        retry=retry,
        inflight=inflight,
        dead_letters=letters,
        outcomes=outcomes,
        aborting=aborting,
        limiter=upload_limiter(settings.concurrency, outcomes),
    )
    return Processor(
        settings,
        inflight=inflight,
        mode=group_mode(settings.group_mode, uploader, uploads),
        payloads=Payloads(
            store, settings, retry=retry, inflight=inflight, dead_letters=letters, outcomes=outcomes
        ),
        announcer=Announcer(
            output, retry=retry, inflight=inflight, dead_letters=letters, outcomes=outcomes
        ),
        dead_letters=letters,
        settler=Settler(input, retry=retry, inflight=inflight, outcomes=outcomes, clock=clock),
        clock=clock,
    )


def upload_limiter(ceiling: int, outcomes: Outcomes) -> Limiter:
    """The uploads' Limiter, telling ``outcomes`` each new limit; at its ceiling from the
    start (told at once, for the gauge): no slow start at every listener start."""
    limiter = Limiter(
        ceiling,
        on_change=lambda limit, throttled: outcomes.upload_limit(
            limit, ceiling, throttled=throttled
        ),
    )
    outcomes.upload_limit(ceiling, ceiling, throttled=False)
    return limiter
