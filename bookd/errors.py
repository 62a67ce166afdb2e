"""bookd's errors: a flat list of small named classes."""

from __future__ import annotations


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


class TransientError(BookdError):
    """Raised when S3 or SQS failed in a way that a later retry may fix."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ProvisionError(BookdError):
    """Raised when queues or buckets cannot be created or reconciled."""
