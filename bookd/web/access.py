"""Who may steer bookd from the web, and who sees the details.

With a control token (BOOKD_CONTROL_TOKEN or BOOKD_CONTROL_TOKEN_FILE), a caller who
sends ``Authorization: Bearer <token>``, from anywhere. Without one, a caller on this
machine's loopback that also names this machine in its Host header: a web page
elsewhere that resolves its own name to 127.0.0.1 (DNS rebinding) names itself there.
The same callers see the details of /health, /readyz and GET / (error texts,
endpoints, pids); everyone else sees states only.

Actions (``POST /``, ``DELETE /``, a redrive) also refuse requests another site's page
made (CSRF): a browser says so in ``Sec-Fetch-Site`` and ``Origin``, which clients
that are not browsers do not send.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import current_app, request
from werkzeug.exceptions import Forbidden, Unauthorized

from bookd.core.config import Settings

LOOPBACK_NAMES = ("localhost",)


def settings() -> Settings:
    return current_app.config["BOOKD_SETTINGS"]


def may_control() -> bool:
    """Whether this request's caller may steer bookd (and so see the details)."""
    token = settings().control_token
    if token is None:
        return _is_loopback(request.remote_addr) and _is_loopback(_hostname(request.host))
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def require_control() -> None:
    """Forbidden for another site's request, Unauthorized for a caller who may not steer."""
    if _cross_site():
        raise Forbidden(
            "bookd refuses actions that a page of another site asks a browser to make "
            "(Sec-Fetch-Site or Origin names another site); use bookd's own page or a client"
        )
    if may_control():
        return
    if settings().control_token is None:
        raise Unauthorized(
            "without a control token, bookd's actions answer callers on its own machine "
            "only (loopback, with 127.0.0.1, localhost or [::1] as the host); set "
            "BOOKD_CONTROL_TOKEN (or BOOKD_CONTROL_TOKEN_FILE) to steer bookd from elsewhere"
        )
    raise Unauthorized("bookd's actions need 'Authorization: Bearer <BOOKD_CONTROL_TOKEN>'")


def _cross_site() -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    parts = urlsplit(origin)  # "null" (a sandboxed frame, a file) never matches
    return not parts.netloc or parts.netloc.lower() != request.host.lower()


def _hostname(host: str) -> str:
    """The name or address of a Host header, without its port."""
    return urlsplit(f"//{host}").hostname or ""


def _is_loopback(name: str | None) -> bool:
    if not name:
        return False
    if name.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
