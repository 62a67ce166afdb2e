"""What the per-message rules report as it happens: the one seam between the rules and
whatever counts and logs it (dramatiq's middleware shape).

The rules (bookd.rules) tell an Outcomes each thing that happens to a message, and
do nothing else to be counted or logged: they never import metrics and write no
message log lines of their own. bookd.telemetry.outcomes implements this with
Prometheus metrics and log lines; tests can record it. Every method here does
nothing, so an implementation overrides only what it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bookd.core.books import Book
from bookd.core.errors import AwsFault
from bookd.core.ports import Message


class Outcomes:
    """Told of each outcome of the rules; does nothing with it (see the implementations)."""

    def uploaded(self, message: Message, book: Book) -> None:
        """A book was put in S3: a new version, not the copy of an earlier delivery."""

    def dead_lettering(
        self, message: Message, reason: str, detail: str, left_out: Sequence[str]
    ) -> None:
        """A message goes to the dead-letter queue; ``left_out``: attributes that did not
        fit under SQS's size limit beside its body."""

    def dead_lettered(self, message: Message, reason: str) -> None:
        """The dead-letter queue took it."""

    def dead_letter_refused(self, message: Message, reason: str, fault: AwsFault) -> None:
        """SQS refused even the dead letter: the message stays in the input queue."""

    def finished(
        self, message: Message, book: Book | None, dead_letter: str | None, seconds: float
    ) -> None:
        """A message is done and deleted, ``seconds`` after its receive: stored and
        announced, or dead-lettered (``dead_letter`` is then its reason)."""

    def out_of_order(self, refused: Message, overtaken: Sequence[Message]) -> None:
        """SQS refused one announcement but took later ones of its group."""

    def retried(self, fault: AwsFault) -> None:
        """A failed call will be tried again."""

    def not_deleted(self, messages: Sequence[Message], why: str) -> None:
        """Finished messages SQS did not delete; it redelivers them, found done then."""

    def not_handed_back(self, messages: Sequence[Message], fault: AwsFault) -> None:
        """Messages that could not be handed back; they come back when their hold ends."""

    def payload_not_deleted(self, message: Message, location: str, fault: AwsFault) -> None:
        """A pointer's payload (at ``location``) was not deleted after its message was; it
        stays in its bucket, its book stored and announced."""

    def upload_limit(self, limit: int, ceiling: int, *, throttled: bool) -> None:
        """The uploads allowed at once changed (bookd.rules.limiter): cut because S3
        ``throttled`` an upload, or widened by one (never above ``ceiling``)."""


class Broadcast(Outcomes):
    """Every outcome told to each receiver in turn (metrics, then log lines)."""

    def __init__(self, *receivers: Outcomes) -> None:
        self.receivers = receivers


def _tell_each(name: str) -> Callable[..., None]:
    def tell(self: Broadcast, *args: Any, **kwargs: Any) -> None:
        for receiver in self.receivers:
            getattr(receiver, name)(*args, **kwargs)

    tell.__name__ = tell.__qualname__ = name
    return tell


for _name, _method in list(vars(Outcomes).items()):
    if callable(_method) and not _name.startswith("_"):
        setattr(Broadcast, _name, _tell_each(_name))
