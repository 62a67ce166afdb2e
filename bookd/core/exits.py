"""bookd's exit codes, by name: what a script or supervisord can tell from how bookd ended."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
"""``bookd listen`` found the listener lock held by another listener."""
EXIT_DOWN = 4
"""``bookd status`` found the listener, S3 or SQS down."""
EXIT_INCOMPLETE = 5
"""``bookd send`` or ``bookd dlq redrive`` could not send or move some messages."""

EXIT_CODES = (
    (EXIT_OK, "done; for status: everything is up"),
    (EXIT_ERROR, "a bookd error (a bad setting, AWS unreachable...): one line says which"),
    (EXIT_USAGE, "a usage error (an unknown option, a bad argument)"),
    (EXIT_LOCKED, "listen: another listener holds the lock"),
    (EXIT_DOWN, "status: something is down (the listener, S3 or SQS)"),
    (EXIT_INCOMPLETE, "send or dlq redrive: some messages could not be sent or moved"),
)
"""Every code with its meaning, for ``bookd --help`` and the README."""
