"""The progress bar of the commands that send many messages (send, replay)."""

from __future__ import annotations

import sys
from typing import Any

import click

PROGRESS_FROM = 100
"""Fewer messages than this go too fast for a bar to help."""


def progress(length: int, label: str) -> Any:
    """A bar on standard error (standard output stays the command's answer), shown only on
    a terminal and for PROGRESS_FROM messages or more."""
    return click.progressbar(
        length=length,
        label=label,
        file=sys.stderr,
        hidden=length < PROGRESS_FROM or not sys.stderr.isatty(),
    )
