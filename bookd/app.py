"""The Flask app: /health, the listener's status and control at /, and /metrics.

Every answer is JSON, errors included; /metrics is Prometheus text. No route waits
on the listener: they read its lock and status file, and outbound checks have
short timeouts with results shared for a second (see health.py).
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, Unauthorized

from bookd import metrics, supervision
from bookd.config import Settings
from bookd.health import Checks


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from ``settings`` (from the environment when not given)."""
    app = Flask(__name__)
    app.config["BOOKD_SETTINGS"] = settings or Settings.from_env()
    app.extensions["bookd_checks"] = Checks(app.config["BOOKD_SETTINGS"])
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_error_handler(HTTPException, _http_error)
    app.after_request(_served_by)
    app.add_url_rule("/health", view_func=health, methods=["GET"])
    app.add_url_rule("/", view_func=status, methods=["GET"])
    app.add_url_rule("/", view_func=start, methods=["POST"], endpoint="start")
    app.add_url_rule("/", view_func=stop, methods=["DELETE"], endpoint="stop")
    app.add_url_rule("/metrics", view_func=metrics_text, methods=["GET"])
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


def _require_token() -> None:
    token = _settings().control_token
    if token is None:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Unauthorized("POST / and DELETE / need 'Authorization: Bearer <BOOKD_CONTROL_TOKEN>'")


def health() -> tuple[Response, int]:
    """LocalStack's (or AWS's) health plus the listener's; 503 when either is down."""
    services: dict[str, Any] = dict(_checks().services.get())
    listener = supervision.listener_status(_settings())
    down = []
    if not services.pop("ok"):
        down.append("localstack" if _settings().endpoint_url else "aws")
    if listener["state"] != "running":
        down.append("listener")
    body = {**services, "listener": listener}
    if down:
        body["down"] = down
    code = 503 if down else 200
    return jsonify({"body": body, "statusCode": code}), code


def _status_body() -> dict[str, Any]:
    return {
        "listener": supervision.listener_status(_settings()),
        "messages": {name: int(value) for name, value in metrics.totals().items()},
        "queue": _checks().queue.get(),
    }


def status() -> Response:
    """The listener's state, pid, times, message counts and the input queue's depth."""
    return jsonify(_status_body())


def start() -> tuple[Response, int]:
    """Let the listener run again; a Keeper starts it within a second."""
    _require_token()
    supervision.enable_listener(_settings())
    return jsonify(_status_body()), 202


def stop() -> tuple[Response, int]:
    """Stop the listener and keep it stopped until POST /."""
    _require_token()
    supervision.stop_listener(_settings())
    return jsonify(_status_body()), 202


def metrics_text() -> Response:
    """Prometheus text format, summed over every process."""
    return Response(metrics.render(), content_type=metrics.CONTENT_TYPE)
