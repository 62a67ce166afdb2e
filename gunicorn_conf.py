"""Gunicorn's configuration: plain Python, every value from bookd's settings.

Run by supervisord as ``gunicorn --config gunicorn_conf.py``. The hooks give the
process tree its shape: the master starts the listener once it is ready, each
worker keeps it alive and fetches its health checks' first answers, and the
metrics of dead processes are dropped.
"""

import os
import shutil

from bookd.core.config import Settings
from bookd.telemetry.logs import logging_config

settings = Settings.from_env()

# --- Prometheus multiprocess mode ----------------------------------------------
# Set before anything imports prometheus_client: it picks its value class at import,
# in the master and so in every worker forked from it and the listener it starts.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_dir)
settings = settings.replace(prometheus_multiproc_dir=settings.metrics_dir)

# --- server ----------------------------------------------------------------------
wsgi_app = "bookd.web:create_app()"
bind = settings.bind
workers = settings.workers
# Threads, so a slow outbound check in one request never holds up /metrics in another.
worker_class = "gthread"
threads = settings.threads
timeout = settings.timeout
graceful_timeout = settings.graceful_timeout
max_requests = settings.max_requests
max_requests_jitter = settings.max_requests // 10
accesslog = "-"
errorlog = "-"
loglevel = settings.log_level.lower()
# One configuration for Gunicorn's lines and bookd's, in every process (bookd/telemetry/logs.py).
logconfig_dict = logging_config(settings)
proc_name = "bookd"
# Gunicorn's control socket sits at one fixed path per user; two stacks on one host
# (a second container's worth, or the tests) would fight over it. Not used by bookd.
control_socket_disable = True


# --- hooks -------------------------------------------------------------------------
def on_starting(server):
    """Wipe the metrics of an earlier run, once per master start (not on HUP)."""
    shutil.rmtree(settings.metrics_dir, ignore_errors=True)
    settings.metrics_dir.mkdir(parents=True, exist_ok=True)


def when_ready(server):
    """Start the listener as soon as the master is listening."""
    from bookd.supervision.keeper import start_listener

    start_listener(settings, owner_pid=os.getpid())


def post_fork(server, worker):
    """Start this worker's Keeper, which restarts the listener whenever it dies."""
    from bookd.supervision.keeper import Keeper

    # Started after the fork: no thread crosses a fork.
    keeper = Keeper(settings, owner_pid=server.pid, alive=lambda: worker.alive)
    keeper.start()


def post_worker_init(worker):
    """Fetch the outbound checks' first answers, so no health check waits for them; then
    freeze what the worker's start left on the heap (bookd.supervision.heap)."""
    from bookd.supervision.heap import freeze_startup_heap

    worker.wsgi.extensions["bookd_checks"].prefetch()
    freeze_startup_heap()


def child_exit(server, worker):
    """Drop the live gauges of a worker that exited."""
    from bookd.telemetry import metrics

    metrics.mark_dead(settings, worker.pid)


def on_exit(server):
    """Wait for the listener to hand back its messages before the master is gone."""
    from bookd.supervision.control import wait_for_listener_exit

    if not wait_for_listener_exit(settings, timeout=settings.graceful_timeout):
        server.log.warning(
            "the listener still runs after %ss; supervisord will end it", settings.graceful_timeout
        )
