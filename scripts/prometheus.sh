#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Make sure `promtool` and `prometheus` are on PATH, for the monitoring tests.
#
#   scripts/prometheus.sh     (run by `make prometheus`, which `make test` runs)
#
# Settings (environment):
#   PROMETHEUS_SERVICE_PID_FILE  the pid file of the package's init script
#                                (default /run/prometheus/prometheus.pid; tests point it elsewhere)
#
# When either is missing it installs Debian's `prometheus` package (2.42 on bookworm) with
# apt-get, as root (or through passwordless sudo), and says so. It fails, naming what to do,
# when it cannot: no apt-get, not root, or the install fails.
#
# The package's maintainer script starts a `prometheus` service (on :9090) where services may
# start. Nothing here needs it, so when the install started one, this script stops that one
# again: through `service prometheus stop`, and failing that by the pid in the package's pid
# file. Prometheus servers that anyone else started are left alone.
set -euo pipefail

PACKAGE=prometheus
# The Debian init script's pid file; under systemd the unit has none and `service` answers.
SERVICE_PID_FILE=${PROMETHEUS_SERVICE_PID_FILE:-/run/prometheus/prometheus.pid}

log() { printf 'prometheus.sh: %s\n' "$*"; }
die() { printf 'prometheus.sh: error: %s\n' "$*" >&2; exit 1; }

have_tools() { command -v promtool >/dev/null && command -v prometheus >/dev/null; }

if have_tools; then
    exit 0
fi

# shellcheck source=apt.sh
source "${BASH_SOURCE[0]%/*}/apt.sh"
apt_root "promtool/prometheus are missing" "$PACKAGE" \
    "install Prometheus 2.x so both are on PATH"

# The pid in the service's pid file, if that process is a live (not zombie) prometheus.
service_pid() {
    local pid stat
    pid=$(cat "$SERVICE_PID_FILE" 2>/dev/null) || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $stat == "$pid (prometheus) "[!Z]* ]] && echo "$pid"
}

service_running() {
    service_pid >/dev/null && return 0
    command -v service >/dev/null && "${SUDO[@]}" service "$PACKAGE" status >/dev/null 2>&1
}

if service_running; then
    running_before=1
else
    running_before=0
fi

log "promtool/prometheus are missing: installing Debian's $PACKAGE package (apt-get install -y --no-install-recommends $PACKAGE)"
apt_install "$PACKAGE" "install Prometheus 2.x so promtool and prometheus are on PATH"

# Stop the service the package started, and only that one.
if [ "$running_before" -eq 0 ] && service_running; then
    log "the package started a $PACKAGE service; stopping it (service $PACKAGE stop)"
    "${SUDO[@]}" service "$PACKAGE" stop >/dev/null 2>&1 || true
    if pid=$(service_pid); then
        log "still running; sending TERM to pid $pid from $SERVICE_PID_FILE"
        "${SUDO[@]}" kill "$pid" || true
        for _ in $(seq 50); do service_pid >/dev/null || break; sleep 0.2; done
    fi
    ! service_running || die "the $PACKAGE service the package started is still running; stop it with: service $PACKAGE stop"
fi

have_tools || die "$PACKAGE is installed but promtool/prometheus are still not on PATH"
log "installed: $(promtool --version 2>&1 | head -n 1)"
