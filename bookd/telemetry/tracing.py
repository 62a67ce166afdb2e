"""Tracing with OpenTelemetry: a span per message, child of its producer's context.

Imported only when OTEL_TRACES_EXPORTER is set (bookd.core.tracing is tracing off).
``start`` sets up the SDK in the listener's own process, after it was started: a
tracer provider with a batch span processor and the exporter named (``otlp``, protobuf
over HTTP, or ``console``), and opentelemetry-instrumentation-botocore, which makes
every S3 and SQS call a client span of the current context. The SDK reads its other
OTEL_* variables itself (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME...).

Each message's span (``<queue> process``, kind CONSUMER) has the producer's context as
its parent: the ``traceparent`` message attribute (W3C), else SQS's ``AWSTraceHeader``
(X-Ray). A parent, not a link: a FIFO receive's messages each get their own span, so
each can join its producer's trace, and a book is then one trace from its producer to
the consumer of its announcement. The calls made for the message run in its span; its
announcement and dead letter carry its span's context on in ``traceparent``.

Only what a message causes is traced: a call outside any message span (the long polls,
the gauges, heartbeats) would be a root span of its own every few seconds, and the
sampler drops those. A producer's sampling decision is kept (parent-based).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context, trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bookd.core.books import Book
from bookd.core.config import Settings
from bookd.core.outcomes import Outcomes
from bookd.core.ports import Message
from bookd.core.tracing import TRACE_HEADER, Tracing

_W3C = TraceContextTextMapPropagator()
_XRAY = AwsXRayPropagator()
_XRAY_HEADER = "X-Amzn-Trace-Id"


class _MessageRoots(Sampler):
    """Roots: only the message spans (kind CONSUMER); a call outside any message is not
    traced. Children follow their parent (ParentBased)."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):  # type: ignore[no-untyped-def]
        chosen = ALWAYS_ON if kind is SpanKind.CONSUMER else ALWAYS_OFF
        return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "bookd message roots"


def producer_context(carrier: Mapping[str, str]) -> context.Context:
    """The producer's context from what the message carried: W3C first, then X-Ray."""
    if "traceparent" in carrier:
        return _W3C.extract(carrier)
    if TRACE_HEADER in carrier:
        return _XRAY.extract({_XRAY_HEADER: carrier[TRACE_HEADER]})
    return context.Context()


class MessageTraces(Tracing, Outcomes):
    """The spans of the messages in hand, by message id; also told their outcomes."""

    enabled = True

    def __init__(self, provider: TracerProvider, *, queue: str) -> None:
        self.provider = provider
        self.queue = queue
        self._tracer = provider.get_tracer("bookd")
        self._spans: dict[str, trace.Span] = {}
        self._lock = threading.Lock()

    def received(self, messages: Sequence[Message]) -> None:
        for m in messages:
            if self.span(m.message_id) is not None:
                continue  # delivered again while still in hand: one span, ended once
            span = self._tracer.start_span(
                f"{self.queue} process",
                context=producer_context(m.trace),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "aws_sqs",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.queue,
                    "messaging.message.id": m.message_id,
                    "messaging.message.conversation_id": m.group_id,
                },
            )
            with self._lock:
                self._spans[m.message_id] = span

    def span(self, message_id: str | None) -> trace.Span | None:
        """The span of a message in hand, if any."""
        with self._lock:
            return self._spans.get(message_id or "")

    def active(self, message_id: str | None) -> AbstractContextManager[object]:
        span = self.span(message_id)
        if span is None:
            return nullcontext()
        return trace.use_span(span, end_on_exit=False)

    def carried(self, message_id: str) -> Mapping[str, str]:
        span = self.span(message_id)
        if span is None:
            return {}
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def released(self, messages: Sequence[Message]) -> None:
        with self._lock:
            spans = [self._spans.pop(m.message_id, None) for m in messages]
        for span in spans:
            if span is not None:
                span.end()

    # --- Outcomes: what became of the message, on its span --------------------------

    def dead_lettered(self, message: Message, reason: str) -> None:
        if (span := self.span(message.message_id)) is not None:
            span.set_attribute("bookd.dead_letter.reason", reason)

    def finished(
        self, message: Message, book: Book | None, dead_letter: str | None, seconds: float
    ) -> None:
        if (span := self.span(message.message_id)) is not None:
            span.set_attribute("bookd.outcome", "dead-lettered" if dead_letter else "stored")

    def shutdown(self) -> None:
        """End what is still open, send what is buffered, and stop (the listener's exit)."""
        with self._lock:
            spans, self._spans = list(self._spans.values()), {}
        for span in spans:
            span.end()
        self.provider.shutdown()


class TraceIds(logging.Filter):
    """Adds ``trace_id`` to the log lines of a message (by its ``message_id`` field, or
    the current span): a JSON key, or ``trace_id=...`` at the end of a text line."""

    def __init__(self, traces: MessageTraces, *, text: bool) -> None:
        super().__init__()
        self.traces = traces
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        span = self.traces.span(getattr(record, "message_id", None)) or trace.get_current_span()
        span_context = span.get_span_context()
        if span_context.is_valid and not hasattr(record, "trace_id"):
            record.trace_id = trace.format_trace_id(span_context.trace_id)
            if self.text and isinstance(record.msg, str):
                # Hex digits only: safe whether or not the line has %-arguments.
                record.msg = f"{record.msg} trace_id={record.trace_id}"
        return True


def link_entries(span: trace.Span, service: str, operation: str, params: Any) -> None:
    """The instrumentation's request hook: a batch send's span is its first message's
    child, and links the spans of the other messages whose entries it carries."""
    if operation != "SendMessageBatch" or not span.is_recording():
        return
    parent = getattr(span, "parent", None)
    for entry in params.get("Entries", []):
        carried = entry.get("MessageAttributes", {}).get("traceparent", {}).get("StringValue")
        if not carried:
            continue
        linked = trace.get_current_span(_W3C.extract({"traceparent": carried}))
        other = linked.get_span_context()
        if other.is_valid and (parent is None or other.span_id != parent.span_id):
            span.add_link(other)


def exporter(name: str) -> SpanExporter:
    """The exporter OTEL_TRACES_EXPORTER names; the SDK reads the rest of its settings."""
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def start(settings: Settings, *, span_exporter: SpanExporter | None = None) -> MessageTraces:
    """Tracing on, in this process: the SDK, the botocore spans, trace ids in log lines.

    ``span_exporter`` replaces the one OTEL_TRACES_EXPORTER names (the tests' in-memory
    exporter). Call ``stop`` at the end, so that no span is lost.
    """
    resource = Resource.create({"service.name": "bookd"})  # OTEL_SERVICE_NAME wins
    # No atexit flush of the SDK's own: ``stop`` ends the spans still open first, then
    # flushes, at the listener's stop (tests/e2e/test_tracing.py sees it).
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(root=_MessageRoots()), shutdown_on_exit=False
    )
    chosen = span_exporter or exporter(settings.traces_exporter or "otlp")
    provider.add_span_processor(BatchSpanProcessor(chosen))
    BotocoreInstrumentor().instrument(tracer_provider=provider, request_hook=link_entries)
    traces = MessageTraces(provider, queue=settings.input_queue)
    ids = TraceIds(traces, text=settings.log_format == "text")
    for handler in logging.getLogger().handlers:
        handler.addFilter(ids)
    return traces


def stop(traces: MessageTraces) -> None:
    """Flush and stop: every span ended so far is exported before the process goes."""
    BotocoreInstrumentor().uninstrument()
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if isinstance(f, TraceIds)]:
            handler.removeFilter(f)
    traces.shutdown()


@contextmanager
def tracing(settings: Settings, **kwargs: Any) -> Iterator[MessageTraces]:
    """``start``, then ``stop`` however the block ends."""
    traces = start(settings, **kwargs)
    try:
        yield traces
    finally:
        stop(traces)
