"""Supervision: one listener per lock file, kept alive, steered by operators, reported on.

- ``lock``: the state directory's files and the single-listener ``flock``;
- ``keeper``: starting and restarting the listener (Gunicorn's hooks, a Keeper per worker);
- ``control``: an operator's stop and start (``DELETE /``, ``POST /``);
- ``status``: what the listener writes each second, and what readers make of it.
- ``heap``: what a process's start leaves on the heap, frozen once it is ready.

Imports bookd.core (and bookd.telemetry to mark dead processes), never the listener
itself: the listener runs as a process of its own (``bookd listen``), and what
supervision reads of it is the Watched protocol.
"""
