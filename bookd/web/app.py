"""The Flask app: probes, the listener's status and control at /, the console, /metrics.

``create_app`` is the only place that assembles it; each side registers its routes
(``init_app``): bookd.web.probes, bookd.web.control, bookd.web.console. Every answer
is JSON, errors included, except /metrics (Prometheus text) and the console's page
(for a browser at /). No route waits on the listener: they read its lock and the
files it writes, and outbound checks have short timeouts with results shared for a
second (bookd.web.checks).
"""

from __future__ import annotations

import logging
import os

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, Unauthorized

from bookd.core.config import Settings
from bookd.core.errors import AwsFault
from bookd.telemetry import metrics
from bookd.web import console, control, probes
from bookd.web.access import settings
from bookd.web.checks import Checks

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from ``settings`` (from the environment when not given)."""
    app = Flask(__name__)
    settings = settings or Settings.from_env()
    app.config["BOOKD_SETTINGS"] = settings
    app.extensions["bookd_checks"] = Checks(settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(AwsFault, _aws_error)
    app.after_request(_served_by)
    probes.init_app(app)
    control.init_app(app)
    console.init_app(app)
    app.add_url_rule("/metrics", view_func=metrics_text, methods=["GET"])
    metrics.init_labels()
    if settings.control_token:
        log.info("POST / and DELETE / need the control token")
    else:
        log.info("No control token set; POST / and DELETE / answer loopback callers only")
    return app


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    response = jsonify({"error": exc.name, "status": exc.code, "message": exc.description})
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="bookd"'
    return response, exc.code or 500


def _aws_error(fault: AwsFault) -> tuple[Response, int]:
    # An action that needs S3 or SQS (a redrive) while they fail: say which call and why.
    body = {"error": "Service Unavailable", "status": 503, "message": str(fault)}
    return jsonify(body), 503


def _served_by(response: Response) -> Response:
    # Which worker answered: lets an operator (and the tests) tell scrapes apart.
    response.headers["X-Served-By"] = str(os.getpid())
    return response


def metrics_text() -> Response:
    """Prometheus text format, summed over every process."""
    return Response(metrics.render(settings()), content_type=metrics.CONTENT_TYPE)
