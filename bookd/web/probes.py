"""The probes: ``/livez`` (liveness), ``/readyz`` and ``/health`` (readiness).

- ``/livez``: is the listener process alive and not stuck? It never calls AWS, so an
  outage never restarts a healthy container.
- ``/readyz`` and ``/health``: can bookd do its work now (S3, SQS and the listener all
  fine)? ``/health`` keeps the seed's ``{"body", "statusCode"}`` shape.

Details (error texts, endpoints, pids) only for callers who may steer bookd
(bookd.web.access); everyone else sees states.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify

from bookd.supervision.status import ListenerStatus, read_status
from bookd.web.access import may_control, settings
from bookd.web.checks import Checks

LIVENESS_SLACK = 5.0
"""Seconds beyond two long polls before a silent listener counts as stuck."""


def init_app(app: Flask) -> None:
    app.add_url_rule("/livez", view_func=livez, methods=["GET"])
    app.add_url_rule("/readyz", view_func=readyz, methods=["GET"])
    app.add_url_rule("/health", view_func=health, methods=["GET"])


def checks() -> Checks:
    return current_app.extensions["bookd_checks"]


def listener_live(listener: ListenerStatus) -> bool:
    """Alive and turning, or stopped on purpose (alive, just not working)."""
    if listener.state == "stopped":
        return True
    age = listener.alive_seconds_ago
    return age is not None and age <= 2 * settings().wait_time + LIVENESS_SLACK


def livez() -> tuple[Response, int]:
    """200 while the listener holds its lock and its threads turn (or it is stopped on purpose)."""
    listener = read_status(settings())
    live = listener_live(listener)
    body: dict[str, Any] = {"live": live, "listener": {"state": listener.state}}
    if may_control():
        body["listener"]["alive_seconds_ago"] = listener.alive_seconds_ago
    return jsonify(body), 200 if live else 503


def readiness() -> tuple[dict[str, Any], list[str]]:
    """The body of /health and /readyz, and what is down; details only for controllers."""
    services: dict[str, Any] = dict(checks().services.get())
    listener = read_status(settings())
    down = []
    if not services.pop("ok"):
        down.append("localstack" if settings().endpoint_url else "aws")
    if listener.state != "running" or not listener_live(listener):
        down.append("listener")
    dependencies = listener.dependencies
    for service, state in sorted(dependencies.items()):
        if isinstance(state, dict) and state.get("state") != "ok":
            down.append(service)
    if may_control():
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
    body, down = readiness()
    return jsonify({"ready": not down, **body}), 503 if down else 200


def health() -> tuple[Response, int]:
    """Readiness in the seed's shape: {"body": {...}, "statusCode": 200 or 503}."""
    body, down = readiness()
    code = 503 if down else 200
    return jsonify({"body": body, "statusCode": code}), code
