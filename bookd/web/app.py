"""The Flask app: probes, /health, the listener's status and control at /, and /metrics.

Every answer is JSON, errors included; /metrics is Prometheus text. No route waits
on the listener: they read its lock and status file, and outbound checks have
short timeouts with results shared for a second (see health.py).

Which probe for what:

- ``/livez`` (liveness): is the listener process alive and not stuck? Never calls
  AWS, so an outage never restarts a healthy container.
- ``/readyz`` and ``/health`` (readiness): can bookd do its work now: S3, SQS and the
  listener all fine? ``/health`` keeps the seed's ``{"body", "statusCode"}`` shape.

Control (``POST /``, ``DELETE /``) needs the bearer token when one is set; without
one, only loopback callers may use it. Callers who could use control also see the
details of /health and GET / (error texts, endpoints); others see states only.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, Unauthorized

from bookd.core.config import Settings
from bookd.supervision.control import enable_listener, stop_listener
from bookd.supervision.status import ListenerStatus, read_status
from bookd.telemetry import metrics
from bookd.web.checks import Checks

log = logging.getLogger(__name__)

LIVENESS_SLACK = 5.0
"""Seconds beyond two long polls before a silent listener counts as stuck."""


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from ``settings`` (from the environment when not given)."""
    app = Flask(__name__)
    settings = settings or Settings.from_env()
    app.config["BOOKD_SETTINGS"] = settings
    app.extensions["bookd_checks"] = Checks(settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_error_handler(HTTPException, _http_error)
    app.after_request(_served_by)
    app.add_url_rule("/livez", view_func=livez, methods=["GET"])
    app.add_url_rule("/readyz", view_func=readyz, methods=["GET"])
    app.add_url_rule("/health", view_func=health, methods=["GET"])
    app.add_url_rule("/", view_func=status, methods=["GET"])
    app.add_url_rule("/", view_func=start, methods=["POST"], endpoint="start")
    app.add_url_rule("/", view_func=stop, methods=["DELETE"], endpoint="stop")
    app.add_url_rule("/metrics", view_func=metrics_text, methods=["GET"])
    metrics.init_labels()
    if settings.control_token:
        log.info("POST / and DELETE / need the control token")
    else:
        log.info("No control token set; POST / and DELETE / answer loopback callers only")
    return app


def _settings() -> Settings:
    return current_app.config["BOOKD_SETTINGS"]


def _checks() -> Checks:
    return current_app.extensions["bookd_checks"]


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    response = jsonify({"error": exc.name, "status": exc.code, "message": exc.description})
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="bookd"'
    return response, exc.code or 500


def _served_by(response: Response) -> Response:
    # Which worker answered: lets an operator (and the tests) tell scrapes apart.
    response.headers["X-Served-By"] = str(os.getpid())
    return response


def _loopback_peer() -> bool:
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _may_control() -> bool:
    """With a token: the caller sent it. Without one: the caller is on this machine."""
    token = _settings().control_token
    if token is None:
        return _loopback_peer()
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _require_control() -> None:
    if _may_control():
        return
    if _settings().control_token is None:
        raise Unauthorized(
            "POST / and DELETE / answer loopback callers only; set BOOKD_CONTROL_TOKEN "
            "(or BOOKD_CONTROL_TOKEN_FILE) to control bookd from elsewhere"
        )
    raise Unauthorized("POST / and DELETE / need 'Authorization: Bearer <BOOKD_CONTROL_TOKEN>'")


# --- probes ------------------------------------------------------------------------


def _listener_live(listener: ListenerStatus) -> bool:
    if listener.state == "stopped":
        return True  # stopped on purpose: alive, just not working
    age = listener.alive_seconds_ago
    return age is not None and age <= 2 * _settings().wait_time + LIVENESS_SLACK


def livez() -> tuple[Response, int]:
    """200 while the listener holds its lock and its threads turn (or it is stopped on purpose)."""
    listener = read_status(_settings())
    live = _listener_live(listener)
    body = {"live": live, "listener": {"state": listener.state}}
    if _may_control():
        body["listener"]["alive_seconds_ago"] = listener.alive_seconds_ago
    return jsonify(body), 200 if live else 503


def _readiness() -> tuple[dict[str, Any], list[str]]:
    """The body of /health and /readyz, and what is down; details only for controllers."""
    detailed = _may_control()
    services: dict[str, Any] = dict(_checks().services.get())
    listener = read_status(_settings())
    down = []
    if not services.pop("ok"):
        down.append("localstack" if _settings().endpoint_url else "aws")
    if listener.state != "running" or not _listener_live(listener):
        down.append("listener")
    dependencies = listener.dependencies
    for service, state in sorted(dependencies.items()):
        if isinstance(state, dict) and state.get("state") != "ok":
            down.append(service)
    if detailed:
        body = {**services, "listener": listener.as_json()}
    else:
        body = {
            "services": _states(services.get("services") or services.get("checks") or {}),
            "listener": {
                "state": listener.state,
                "dependencies": {
                    name: state.get("state") if isinstance(state, dict) else None
                    for name, state in dependencies.items()
                },
            },
        }
    if down:
        body["down"] = down
    return body, down


def _states(services: dict[str, Any]) -> dict[str, str]:
    # States only: a check's text may name an endpoint or quote an error.
    return {
        name: "ok" if value == "ok" else str(value).split(":")[0]
        for name, value in services.items()
    }


def readyz() -> tuple[Response, int]:
    """200 when S3, SQS and the listener are fine; 503 naming what is not."""
    body, down = _readiness()
    return jsonify({"ready": not down, **body}), 503 if down else 200


def health() -> tuple[Response, int]:
    """Readiness in the seed's shape: {"body": {...}, "statusCode": 200 or 503}."""
    body, down = _readiness()
    code = 503 if down else 200
    return jsonify({"body": body, "statusCode": code}), code


# --- status and control ------------------------------------------------------------


def _status_body() -> dict[str, Any]:
    listener = read_status(_settings()).as_json()
    queue = dict(_checks().queue.get())
    if not _may_control():
        listener["dependencies"] = {
            name: {"state": state.get("state")} if isinstance(state, dict) else {}
            for name, state in listener["dependencies"].items()
        }
        if "error" in queue:
            queue["error"] = "unavailable"
    return {
        "listener": listener,
        "messages": {name: int(value) for name, value in metrics.totals(_settings()).items()},
        "queue": queue,
    }


def status() -> Response:
    """The listener's state, pid, times, message counts and the input queue's depth."""
    return jsonify(_status_body())


def start() -> tuple[Response, int]:
    """Let the listener run again; a Keeper starts it within a second."""
    _require_control()
    enable_listener(_settings())
    return jsonify(_status_body()), 202


def stop() -> tuple[Response, int]:
    """Stop the listener and keep it stopped until POST /."""
    _require_control()
    stop_listener(_settings())
    return jsonify(_status_body()), 202


def metrics_text() -> Response:
    """Prometheus text format, summed over every process."""
    return Response(metrics.render(_settings()), content_type=metrics.CONTENT_TYPE)
