"""End to end: the real stack traces a book into its producer's trace, exports the spans
over OTLP (protobuf over HTTP) to a collector on loopback, and flushes them when it stops."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from harness.waiting import wait_for

pytestmark = pytest.mark.slow

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
BOOK = {"id": "e2e-1", "title": "Traced End To End", "author": "A.", "genre": "scifi"}


class Collector:
    """An OTLP/HTTP trace receiver on a loopback port: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_trace(self, trace_id: str) -> list:
        return [s for s in list(self.spans) if s.trace_id.hex() == trace_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    collector = Collector()
    yield collector
    collector.stop()


def test_a_traced_book_keeps_its_trace_through_the_stack_and_its_spans_reach_the_collector(
    make_stack, queues, settings, collector
):
    stack = make_stack(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_SERVICE_NAME="bookd-e2e",
        # Spans wait for the stop: only the flush at the listener's exit sends them.
        OTEL_BSP_SCHEDULE_DELAY="600000",
    )
    queues.send(BOOK, group="traced", attributes={"traceparent": TRACEPARENT})

    [announcement] = queues.collect(settings.output_queue, 1, timeout=30)
    carried = announcement["MessageAttributes"]["traceparent"]["StringValue"]
    assert carried.split("-")[1] == TRACE_ID
    # The message's finished line (written once it is deleted, after its announcement).
    logged = f"stored as {settings.buckets['scifi']}/{BOOK['title']}.json"
    assert wait_for(lambda: logged in stack.log_tail(), timeout=10), stack.log_tail()
    [line] = [line for line in stack.log_tail().splitlines() if logged in line]
    assert line.endswith(f"trace_id={TRACE_ID}")
    assert collector.of_trace(TRACE_ID) == []  # still buffered in the listener

    stack.terminate()
    assert wait_for(lambda: len(collector.of_trace(TRACE_ID)) >= 3, timeout=10)
    spans = collector.of_trace(TRACE_ID)
    [message] = [s for s in spans if s.name.endswith(" process")]
    assert message.parent_span_id.hex() == "b7ad6b7169203331"
    children = {s.name for s in spans if s.parent_span_id == message.span_id}
    assert {"S3.PutObject", "SQS.SendMessageBatch"} <= children
    assert carried.split("-")[2] == message.span_id.hex()
