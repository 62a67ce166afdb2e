"""The listener's threads: receive loops, group and upload pools, the heartbeat.

Composes the rules (bookd.rules) with the AWS adapters (bookd.aws) and telemetry.
Imports everything below it, and nothing of supervision, the web side or the CLI.
"""

from bookd.listener.loops import BookListener, install_stop_signals

__all__ = ["BookListener", "install_stop_signals"]
