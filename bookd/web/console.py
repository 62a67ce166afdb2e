"""The console: GET / for a browser, a live page of how bookd is doing and what needs a person.

Its data (``GET /console.json``, and the page's first paint, rendered here so the page
is useful without JavaScript) comes from files the listener writes, never from an AWS
call: the status file (state, S3 and SQS as the listener sees them, the queues'
depths, the dead letters by reason), the history of what bookd counts (the last hour
per minute, processing-time percentiles, AWS calls per book) and the metrics'
totals. However many tabs are open, they cost no AWS call. The page polls
``console.json`` every few seconds and steers bookd through the same actions as any
client (bookd.web.control), under the same rules (bookd.web.access).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from flask import Flask, Response, jsonify, render_template, request

from bookd.supervision.status import ListenerStatus, read_status
from bookd.telemetry import history, metrics
from bookd.web.access import may_control, settings

SECURITY_HEADERS = {
    # Everything the page needs is its own; nothing may frame it (a clickjacked Stop).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def init_app(app: Flask) -> None:
    app.add_url_rule("/console.json", view_func=console_json, methods=["GET"])


def wants_page() -> bool:
    """Whether GET / comes from a browser (it asks for HTML before JSON)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def page() -> Response:
    """The console, rendered with the data of this moment."""
    response = Response(render_template("console.html", data=console_data()))
    response.headers.update(SECURITY_HEADERS)
    return response


def console_json() -> Response:
    """What the console shows; details only for callers who may steer bookd."""
    response = jsonify(console_data())
    response.headers["Cache-Control"] = "no-store"
    return response


def console_data() -> dict[str, Any]:
    s = settings()
    detailed = may_control()
    now = time.time()
    listener = read_status(s)
    counts = metrics.counts(s)
    samples = history.read(history.path_of(s))
    return {
        "host": socket.gethostname(),
        "version": metrics.version(),
        "generated_at": now,
        "listener": _listener(listener, detailed),
        "dependencies": _dependencies(listener, detailed),
        "pause": _pause(listener, now),
        "queues": {k: v for k, v in listener.queues.items() if isinstance(v, dict)},
        "messages": {
            "processed": counts.processed,
            "uploaded": counts.uploaded,
            "failed": counts.failed,
        },
        "history": history.per_minute(samples, now),
        "latency": history.latency(samples, now),
        "calls_per_book": history.calls_per_book(samples, now),
        "dead_letters": _dead_letters(listener, detailed),
        "can_control": detailed,
    }


def _listener(listener: ListenerStatus, detailed: bool) -> dict[str, Any]:
    return {
        "state": listener.state,
        "pid": listener.pid if detailed else None,
        "started_at": listener.started_at,
        "uptime_seconds": listener.uptime_seconds,
        "quick_restarts": listener.quick_restarts,
        "last_poll_at": listener.last_poll_at,
    }


def _dependencies(listener: ListenerStatus, detailed: bool) -> dict[str, Any]:
    shown = {}
    for service, state in sorted(listener.dependencies.items()):
        if not isinstance(state, dict):
            continue
        shown[service] = {"state": state.get("state"), "since": state.get("since")}
        if detailed:
            shown[service]["cause"] = state.get("cause")
    return shown


def _pause(listener: ListenerStatus, now: float) -> dict[str, Any]:
    """A pause for an outage: receiving waits while S3 or SQS has an open problem."""
    since = [
        state["since"]
        for state in listener.dependencies.values()
        if isinstance(state, dict)
        and state.get("state") != "ok"
        and isinstance(state.get("since"), int | float)
    ]
    if not since:
        return {"paused": False, "since": None, "seconds": None}
    return {"paused": True, "since": min(since), "seconds": round(now - min(since), 1)}


def _dead_letters(listener: ListenerStatus, detailed: bool) -> dict[str, Any]:
    summary = listener.dead_letters or {}
    reasons = [r for r in summary.get("reasons") or [] if isinstance(r, dict)]
    if not detailed:
        # A detail may quote a book's body.
        reasons = [{**r, "sample_detail": None} for r in reasons]
    return {"as_of": summary.get("as_of"), "seen": summary.get("seen"), "reasons": reasons}
