"""The seam between the rules and tracing: a span per message, its calls as children.

The rules never import OpenTelemetry: they ask a Tracing for the context of a message
(by its id) around the calls made for it, and for the context to carry on in what
they send for it. This class is tracing off, and costs nothing: every method does
nothing. bookd.telemetry.tracing implements it with OpenTelemetry, and is imported
only when OTEL_TRACES_EXPORTER turns tracing on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext

from bookd.core.ports import Message

TRACE_ATTRIBUTES = ("traceparent", "tracestate")
"""The message attributes of the W3C trace context, read on receive and carried on."""
TRACE_HEADER = "AWSTraceHeader"
"""SQS's system attribute of the X-Ray trace context, read on receive."""


class Tracing:
    """Tracing off: no span, no context, nothing asked of SQS."""

    enabled = False

    def received(self, messages: Sequence[Message]) -> None:
        """Messages came: each gets its span, child of its producer's context."""

    def active(self, message_id: str | None) -> AbstractContextManager[object]:
        """The message's span as the current context, for the calls made for it."""
        return nullcontext()

    def carried(self, message_id: str) -> Mapping[str, str]:
        """The message attributes that carry its context on (traceparent), or none."""
        return {}

    def released(self, messages: Sequence[Message]) -> None:
        """Work on the messages is over (done, handed back or left): their spans end."""
