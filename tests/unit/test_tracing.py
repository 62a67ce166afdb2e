"""Tracing's wiring, offline: off costs no import; the producer's context is read right."""

from __future__ import annotations

import subprocess
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookd.core.ports import Message
from bookd.core.tracing import Tracing
from bookd.telemetry.tracing import MessageTraces, producer_context

OFF_THEN_ON = """
import sys
from bookd.cli.service import _tracing
from bookd.core.config import Settings
from bookd.listener import BookListener

settings = Settings.from_env({})
with _tracing(settings) as tracing:
    listener = BookListener(settings, tracing=tracing)
    assert not listener.retry.tracing.enabled
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
with _tracing(Settings.from_env({"OTEL_TRACES_EXPORTER": "console"})) as tracing:
    print(type(tracing).__name__, tracing.enabled)
"""


def test_tracing_off_imports_no_opentelemetry_in_the_listener_and_on_does():
    run = subprocess.run(
        [sys.executable, "-c", OFF_THEN_ON], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    off, on = run.stdout.splitlines()
    assert off == "[]"
    assert on == "MessageTraces True"


def test_tracing_off_does_nothing():
    tracing = Tracing()
    assert not tracing.enabled
    assert tracing.carried("m1") == {}
    with tracing.active("m1"):
        pass


def span_of(carrier: dict[str, str]) -> trace.SpanContext:
    return trace.get_current_span(producer_context(carrier)).get_span_context()


def test_the_producer_context_is_w3c_first_then_aws_trace_header():
    w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert f"{span_of({'traceparent': w3c}).trace_id:032x}" == w3c.split("-")[1]
    read = span_of({"AWSTraceHeader": xray})
    assert (f"{read.trace_id:032x}", f"{read.span_id:016x}") == (
        "5759e988bd862e3fe1be46a994272793",
        "53995c3f42cd8ad8",
    )
    assert read.trace_flags.sampled and read.is_remote
    both = span_of({"traceparent": w3c, "AWSTraceHeader": xray})
    assert f"{both.trace_id:032x}" == w3c.split("-")[1]
    assert not span_of({}).is_valid
    assert not span_of({"traceparent": "garbage"}).is_valid


def test_a_message_span_is_the_producers_child_carried_on_and_ended_once():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traces = MessageTraces(provider, queue="In.fifo")
    w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    message = Message("m1", "r1", "{}", "g", 1, trace={"traceparent": w3c})
    traces.received([message])
    span = traces.span("m1")
    traces.received([message])  # delivered again while in hand: the same span
    assert traces.span("m1") is span
    carried = traces.carried("m1")["traceparent"].split("-")
    assert carried[1:3] == ["4bf92f3577b34da6a3ce929d0e0e4736", f"{span.context.span_id:016x}"]
    assert traces.carried("unknown") == {}
    traces.released([message])
    traces.released([message])
    [ended] = exporter.get_finished_spans()
    assert f"{ended.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert ended.attributes["messaging.message.id"] == "m1"
