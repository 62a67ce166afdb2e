"""GET / (the listener's status, or the console for a browser) and the actions.

``POST /`` lets the listener run again, ``DELETE /`` stops it (and keeps it stopped,
across restarts of the stack too), ``POST /dead-letters/redrive`` moves dead letters
of a reason back to the input queue (``{"reason", "dry_run"}``; the redrive's own
rules: bookd.operations.dead_letters). Who may: bookd.web.access.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import BadRequest

from bookd.aws.clients import make_client
from bookd.aws.sqs import Queue
from bookd.listener.letters import mark_stale
from bookd.operations.dead_letters import redrive
from bookd.supervision.control import enable_listener, stop_listener
from bookd.supervision.status import read_status
from bookd.telemetry import metrics
from bookd.web import console
from bookd.web.access import may_control, require_control, settings
from bookd.web.probes import checks


def init_app(app: Flask) -> None:
    app.add_url_rule("/", view_func=status, methods=["GET"])
    app.add_url_rule("/", view_func=start, methods=["POST"], endpoint="start")
    app.add_url_rule("/", view_func=stop, methods=["DELETE"], endpoint="stop")
    app.add_url_rule("/dead-letters/redrive", view_func=redrive_letters, methods=["POST"])


def status_body() -> dict[str, Any]:
    """The JSON of GET /: the listener, the message counts, the input queue's depth."""
    listener = read_status(settings()).as_json()
    queue = dict(checks().queue.get())
    if not may_control():
        listener["dependencies"] = {
            name: {"state": state.get("state")} if isinstance(state, dict) else {}
            for name, state in listener["dependencies"].items()
        }
        if "error" in queue:
            queue["error"] = "unavailable"
    return {
        "listener": listener,
        "messages": {name: int(value) for name, value in metrics.totals(settings()).items()},
        "queue": queue,
    }


def status() -> Response:
    """The console for a browser; for every other client, the listener's status as JSON."""
    if console.wants_page():
        return console.page()
    response = jsonify(status_body())
    response.headers["Vary"] = "Accept"
    return response


def start() -> tuple[Response, int]:
    """Let the listener run again; a Keeper starts it within a second."""
    require_control()
    enable_listener(settings())
    return jsonify(status_body()), 202


def stop() -> tuple[Response, int]:
    """Stop the listener and keep it stopped until POST /."""
    require_control()
    stop_listener(settings())
    return jsonify(status_body()), 202


def redrive_letters() -> Response:
    """Move the dead letters of a reason (all, without one) back to the input queue; with
    ``dry_run`` (the default), only count what would move."""
    require_control()
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    reason, dry_run = body.get("reason"), body.get("dry_run", True)
    if not (reason is None or isinstance(reason, str)) or not isinstance(dry_run, bool):
        raise BadRequest('send {"reason": "<reason>", "dry_run": true or false}')
    dead_letters, input_queue = _queues()
    result = redrive(dead_letters, input_queue, reason=reason, dry_run=dry_run)
    if result.moved and not dry_run:
        mark_stale(settings())  # the console shows what is left within a tick or two
    return jsonify(
        {"moved": result.moved, "kept": result.kept, "failed": result.failed, "dry_run": dry_run}
    )


def _queues() -> tuple[Queue, Queue]:
    """This worker's dead-letter and input queues, made at the first redrive."""
    made = current_app.extensions.get("bookd_redrive_queues")
    if made is None:
        sqs = make_client(settings(), "sqs", purpose="web")
        made = (Queue(sqs, settings().dead_letter_queue), Queue(sqs, settings().input_queue))
        current_app.extensions["bookd_redrive_queues"] = made
    return made
