"""The HTTP side: the Flask app (probes, status and control at /, metrics) and its
outbound checks. Imports supervision, aws, telemetry and core; never the listener.
"""

from bookd.web.app import create_app

__all__ = ["create_app"]
