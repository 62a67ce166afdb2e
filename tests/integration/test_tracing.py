"""Tracing on the real LocalStack: a span per message, child of its producer's context;
the S3 and SQS calls as its children; the context carried on in the real announcement
and dead letter; trace ids in the log lines. The SDK's in-memory exporter gets the spans."""

from __future__ import annotations

import functools
import json
import logging

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bookd.core.reasons import UNKNOWN_GENRE
from bookd.listener import BookListener
from bookd.telemetry import tracing as otel
from harness.waiting import wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PRODUCER_SPAN}-01"
XRAY_TRACE_ID = "5759e988bd862e3fe1be46a994272793"
AWS_TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
BOOK = {"author": "A. Writer", "year": "2001", "summary": "...", "genre": "scifi"}


@pytest.fixture
def traced(settings):
    """Tracing on in this process, its spans kept in memory; off again after the test."""
    exporter = InMemorySpanExporter()
    traces = otel.start(settings, span_exporter=exporter)
    try:
        yield traces, exporter
    finally:
        otel.stop(traces)


def spans_of(traces, exporter, trace_id: str) -> list:
    """The trace's spans, once its message span ended (after the message's delete, so
    a little after its announcement or dead letter can be read)."""

    def ended() -> list:
        traces.provider.force_flush()
        spans = [
            s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id
        ]
        return spans if any(s.kind is SpanKind.CONSUMER for s in spans) else []

    assert wait_for(ended, timeout=10), "the message's span did not end"
    return ended()


def carried_trace_id(message: dict) -> str:
    traceparent = message["MessageAttributes"]["traceparent"]["StringValue"]
    return traceparent.split("-")[1]


def test_a_book_sent_with_a_traceparent_is_announced_in_the_same_trace(
    settings, queues, start_listener, traced, caplog
):
    traces, exporter = traced
    caplog.set_level(logging.INFO, logger="bookd")
    queues.send({**BOOK, "id": "t1", "title": "Traced"}, attributes={"traceparent": TRACEPARENT})
    start_listener(cls=functools.partial(BookListener, tracing=traces))

    [announcement] = queues.collect(settings.output_queue, 1, timeout=30)
    assert json.loads(announcement["Body"])["file"] == "Traced.json"
    # The real message attributes SQS delivered: the consumer's span joins the same trace.
    assert carried_trace_id(announcement) == TRACE_ID

    spans = spans_of(traces, exporter, TRACE_ID)
    [message_span] = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert f"{message_span.parent.span_id:016x}" == PRODUCER_SPAN  # a child, not a link
    assert message_span.attributes["bookd.outcome"] == "stored"
    children = {
        (s.attributes["rpc.service"], s.attributes["rpc.method"])
        for s in spans
        if s.parent is not None and s.parent.span_id == message_span.context.span_id
    }
    assert {("S3", "PutObject"), ("SQS", "SendMessageBatch")} <= children
    # The announcement's traceparent names the message's span, in the producer's trace.
    parent = announcement["MessageAttributes"]["traceparent"]["StringValue"].split("-")[2]
    assert parent == f"{message_span.context.span_id:016x}"
    # The message's log lines carry its trace id.
    finished = [r for r in caplog.records if getattr(r, "outcome", None) == "stored"]
    assert [getattr(r, "trace_id", None) for r in finished] == [TRACE_ID]


def test_a_dead_letter_carries_its_books_trace_on(settings, queues, start_listener, traced):
    traces, exporter = traced
    book = {**BOOK, "id": "t2", "title": "Nowhere", "genre": "poetry"}
    queues.send(book, attributes={"traceparent": TRACEPARENT})
    start_listener(cls=functools.partial(BookListener, tracing=traces))

    [letter] = queues.dead_letters(1, timeout=30)
    assert letter["MessageAttributes"]["reason"]["StringValue"] == UNKNOWN_GENRE
    assert carried_trace_id(letter) == TRACE_ID
    [message_span] = [
        s for s in spans_of(traces, exporter, TRACE_ID) if s.kind is SpanKind.CONSUMER
    ]
    assert message_span.attributes["bookd.dead_letter.reason"] == UNKNOWN_GENRE


def test_an_aws_trace_header_is_read_when_no_traceparent_came(
    settings, queues, start_listener, traced
):
    traces, exporter = traced
    queues.send(
        {**BOOK, "id": "t3", "title": "XRayed"},
        system_attributes={"AWSTraceHeader": AWS_TRACE_HEADER},
    )
    start_listener(cls=functools.partial(BookListener, tracing=traces))

    [announcement] = queues.collect(settings.output_queue, 1, timeout=30)
    assert carried_trace_id(announcement) == XRAY_TRACE_ID
    [message_span] = [
        s for s in spans_of(traces, exporter, XRAY_TRACE_ID) if s.kind is SpanKind.CONSUMER
    ]
    assert f"{message_span.parent.span_id:016x}" == "53995c3f42cd8ad8"


def test_books_of_two_traces_announced_in_one_batch_each_keep_their_own(
    settings, queues, start_listener, traced
):
    traces, exporter = traced
    other = "d4cda95b652f4a1592b449d5929fda1b"
    queues.send({**BOOK, "id": "t4", "title": "First"}, attributes={"traceparent": TRACEPARENT})
    queues.send(
        {**BOOK, "id": "t5", "title": "Second"},
        attributes={"traceparent": f"00-{other}-{PRODUCER_SPAN}-01"},
    )
    start_listener(cls=functools.partial(BookListener, tracing=traces))

    announcements = queues.collect(settings.output_queue, 2, timeout=30)
    by_file = {json.loads(a["Body"])["file"]: carried_trace_id(a) for a in announcements}
    assert by_file == {"First.json": TRACE_ID, "Second.json": other}
    # One SendMessageBatch for the group: the first book's child, linking the second's span.
    [second] = [s for s in spans_of(traces, exporter, other) if s.kind is SpanKind.CONSUMER]
    [batch] = [
        s
        for s in spans_of(traces, exporter, TRACE_ID)
        if s.attributes.get("rpc.method") == "SendMessageBatch"
    ]
    assert [link.context.span_id for link in batch.links] == [second.context.span_id]
