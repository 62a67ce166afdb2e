"""bookd's errors: a flat list of small named classes."""

from __future__ import annotations

from enum import Enum


class BookdError(Exception):
    """Base of every error bookd raises on purpose."""


class ConfigError(BookdError):
    """Raised when a setting from the environment is malformed; the message names it."""


class InvalidBook(BookdError):
    """Raised when an input message cannot become a stored book.

    ``reason`` is a short machine-readable code (``invalid-json``, ``missing-field``...):
    it becomes the dead-letter ``reason`` attribute and the failure metric's label.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


SERVICES = ("s3", "sqs")
"""The services bookd depends on; an AwsFault names one of them."""


class FaultKind(Enum):
    """What an AWS failure means for bookd; bookd.aws.codes maps every error code to one."""

    THROTTLED = "throttled"
    """The service is busy: back off. Never counts against a message."""
    UNAVAILABLE = "unavailable"
    """Unreachable, timed out or a server error: retry. A probe of the service decides
    whether it counts against the message (service fine) or is an outage (it does not)."""
    MISCONFIGURED = "misconfigured"
    """Permissions, credentials, a missing bucket or queue: pause until it is fixed."""
    REJECTED = "rejected"
    """The service refused this one request as malformed: the message is dead-lettered."""


class AwsFault(BookdError):
    """Raised when an S3 or SQS call failed; ``kind`` says what bookd does about it."""

    def __init__(
        self,
        kind: FaultKind,
        *,
        service: str,
        operation: str,
        code: str,
        detail: str,
        resource: str | None = None,
    ) -> None:
        on = f" on {resource}" if resource else ""
        super().__init__(f"{operation}{on} failed: {code}: {detail}")
        self.kind = kind
        self.service = service
        self.operation = operation
        self.code = code
        self.detail = detail
        self.resource = resource
        """What the call was about ("bucket romance", "queue InputQueue.fifo"), if known:
        AWS's own text for a missing bucket or queue does not name it."""

    @property
    def cause(self) -> str:
        """A short, stable description: operation, what it was on, and the error code."""
        on = f" on {self.resource}" if self.resource else ""
        return f"{self.operation}{on}: {self.code}"


class ProvisionError(BookdError):
    """Raised when queues or buckets cannot be created or reconciled."""
