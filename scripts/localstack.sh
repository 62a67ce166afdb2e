#!/usr/bin/env bash
# Run LocalStack (S3 + SQS only) on the host, without Docker.
#
#   scripts/localstack.sh up       start it in the background (idempotent)
#   scripts/localstack.sh down     stop the instance this script started
#   scripts/localstack.sh status   print the health JSON (exit 0 when s3 and sqs are up) or "down"
#
# Settings (environment):
#   LOCALSTACK_VERSION        localstack-core version to install (default 4.14.0, the last one
#                             that starts without an auth token)
#   LOCALSTACK_LISTEN         host:port to listen on (default 127.0.0.1:4566)
#   LOCALSTACK_VENV           virtualenv for LocalStack (default .venv-localstack; a relative
#                             path is taken relative to the repository root)
#   LOCALSTACK_PYTHON         Python 3.13 interpreter used to create the venv (default: found
#                             as python3.13 on PATH, else $(pyenv root)/versions/3.13.*)
#   LOCALSTACK_START_TIMEOUT  seconds to wait for s3 and sqs to become available (default 90)
#   BOOKD_VAR_DIR             runtime directory (default <repo>/var): localstack.pid,
#                             localstack.log and the LocalStack file system (var/localstack)
#
# LocalStack 4.14.0 needs Python 3.13 (PEP 695 generics, warnings.deprecated). Where Python 3.13
# is not available, use `docker compose up` instead.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")

LOCALSTACK_VERSION=${LOCALSTACK_VERSION:-4.14.0}
LOCALSTACK_LISTEN=${LOCALSTACK_LISTEN:-127.0.0.1:4566}
LOCALSTACK_VENV=${LOCALSTACK_VENV:-.venv-localstack}
LOCALSTACK_START_TIMEOUT=${LOCALSTACK_START_TIMEOUT:-90}
BOOKD_VAR_DIR=${BOOKD_VAR_DIR:-$REPO_ROOT/var}

case "$LOCALSTACK_VENV" in /*) ;; *) LOCALSTACK_VENV="$REPO_ROOT/$LOCALSTACK_VENV" ;; esac
case "$BOOKD_VAR_DIR" in /*) ;; *) BOOKD_VAR_DIR="$REPO_ROOT/$BOOKD_VAR_DIR" ;; esac

PID_FILE="$BOOKD_VAR_DIR/localstack.pid"
LOG_FILE="$BOOKD_VAR_DIR/localstack.log"
DATA_DIR="$BOOKD_VAR_DIR/localstack"
HEALTH_URL="http://$LOCALSTACK_LISTEN/_localstack/health"
MARKER="$LOCALSTACK_VENV/.bookd-localstack-requirements"

# Exactly these; without the caps LocalStack 4.14.0 fails at start-up or on the first call
# (cbor2._decoder import error, pyOpenSSL "X509 has no attribute add_extensions",
# Twisted missing service_identity).
REQUIREMENTS=(
    "localstack-core[runtime]==$LOCALSTACK_VERSION"
    "cbor2<5.8"
    "cryptography<45"
    "pyopenssl<25"
    "joserfc<1.8"
    "service_identity"
)

log() { printf 'localstack: %s\n' "$*"; }
die() { printf 'localstack: error: %s\n' "$*" >&2; exit 1; }

# Any Python 3 can talk to the health endpoint; the venv's one is the fallback.
host_python() {
    local py
    for py in python3 "$LOCALSTACK_VENV/bin/python"; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys' >/dev/null 2>&1; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    die "no working python3 found to query $HEALTH_URL"
}

# health MODE: MODE=print prints the body. Exit 0 when s3 and sqs are "available" or
# "running", 1 when LocalStack answers but they are not (yet), 2 when nothing answers.
# /_localstack/health always answers 200, so readiness comes from the states only.
health() {
    "$(host_python)" - "$HEALTH_URL" "$1" <<'PY'
import json, sys, urllib.request

url, mode = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
try:
    with opener.open(url, timeout=3) as resp:
        body = resp.read().decode("utf-8", "replace")
except Exception:
    sys.exit(2)
if mode == "print":
    print(body)
try:
    services = json.loads(body).get("services", {})
except (ValueError, AttributeError):
    sys.exit(1)
ready = all(services.get(name) in ("available", "running") for name in ("s3", "sqs"))
sys.exit(0 if ready else 1)
PY
}

is_ready() { health quiet >/dev/null 2>&1; }

# True when something accepts TCP connections on LOCALSTACK_LISTEN.
port_open() {
    "$(host_python)" - "$LOCALSTACK_LISTEN" <<'PY' >/dev/null 2>&1
import socket, sys

host, _, port = sys.argv[1].rpartition(":")
host = host.strip("[]") or "127.0.0.1"
try:
    socket.create_connection((host, int(port)), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

# The pid from the pid file, if it is a live (not zombie) process whose command line
# mentions localstack; empty otherwise. Guards against a reused pid.
recorded_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 0
    pid=$(tr -dc '0-9' <"$PID_FILE")
    [[ -n "$pid" ]] || return 0
    alive "$pid" || return 0
    grep -qa localstack "/proc/$pid/cmdline" 2>/dev/null || return 0
    printf '%s\n' "$pid"
}

# True while the process exists and is not a zombie waiting to be reaped.
alive() {
    local state
    [[ -r "/proc/$1/stat" ]] || return 1
    state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ "$state" != Z && "$state" != X ]]
}

find_python313() {
    local py root
    if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
        is_python313 "$LOCALSTACK_PYTHON" || die "LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON is not a working Python 3.13"
        printf '%s\n' "$LOCALSTACK_PYTHON"
        return 0
    fi
    # A pyenv shim named python3.13 can exist on PATH and still fail, so run it.
    if command -v python3.13 >/dev/null 2>&1 && is_python313 python3.13; then
        command -v python3.13
        return 0
    fi
    if command -v pyenv >/dev/null 2>&1 && root=$(pyenv root 2>/dev/null) && [[ -n "$root" ]]; then
        while IFS= read -r py; do
            if is_python313 "$py"; then
                printf '%s\n' "$py"
                return 0
            fi
        done < <(compgen -G "$root/versions/3.13.*/bin/python" | sort -rV)
    fi
    return 1
}

is_python313() {
    "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1
}

ensure_venv() {
    local want py
    want=$(printf '%s\n' "${REQUIREMENTS[@]}")
    if [[ -x "$LOCALSTACK_VENV/bin/python" && -f "$MARKER" && "$(cat "$MARKER")" == "$want" ]]; then
        return 0
    fi
    if [[ ! -x "$LOCALSTACK_VENV/bin/python" ]]; then
        py=$(find_python313) || die "LocalStack $LOCALSTACK_VERSION needs Python 3.13, and none was found
  (looked for python3.13 on PATH and \$(pyenv root)/versions/3.13.*/bin/python; or set LOCALSTACK_PYTHON).
  Install Python 3.13, or run LocalStack in Docker instead: docker compose up -d localstack"
        log "creating $LOCALSTACK_VENV with $py"
        "$py" -m venv "$LOCALSTACK_VENV"
    elif ! is_python313 "$LOCALSTACK_VENV/bin/python"; then
        die "$LOCALSTACK_VENV exists but is not a Python 3.13 venv; remove it and run again"
    fi
    log "installing localstack-core $LOCALSTACK_VERSION into $LOCALSTACK_VENV (takes a minute or two)"
    rm -f "$MARKER"
    # pip prints one harmless "Location ... is ignored" warning per package for the local
    # find-links/extra index set up on these machines; drop those, keep everything else.
    if ! "$LOCALSTACK_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "${REQUIREMENTS[@]}" 2>&1 |
        { grep -v -E "^WARNING: Location '[^']*' is ignored" || true; } >&2; then
        die "pip install failed (see above)"
    fi
    printf '%s\n' "$want" >"$MARKER"
}

start() {
    mkdir -p "$BOOKD_VAR_DIR" "$DATA_DIR"
    if [[ -f "$LOG_FILE" ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
    rm -f "$PID_FILE"
    # setsid --fork: a new session and process group, detached from the caller's terminal,
    # so `down` can signal the whole group. The child writes its own pid (exec keeps it).
    #   OVERRIDE_IN_DOCKER=0    LocalStack believes it is in a container whenever /.dockerenv
    #                           exists (true on these machines); then it ignores FILESYSTEM_ROOT,
    #                           writes to /var/lib/localstack and pings the Docker bridge IP.
    #   FILESYSTEM_ROOT         host-mode root for its lib/cache/tmp/state/logs directories.
    #   SKIP_SSL_CERT_DOWNLOAD  no fetch of the localstack.cloud certificate (self-signed instead).
    #   DNS_ADDRESS=0           no DNS server (and no upstream-DNS probe of localstack.cloud).
    #   DISABLE_EVENTS=1        no analytics events to localstack.cloud.
    # shellcheck disable=SC2016  # $$ and "$@" are for the inner shell
    env \
        GATEWAY_LISTEN="$LOCALSTACK_LISTEN" \
        LOCALSTACK_HOST="$LOCALSTACK_LISTEN" \
        SERVICES=s3,sqs \
        SQS_ENDPOINT_STRATEGY=path \
        OVERRIDE_IN_DOCKER=0 \
        FILESYSTEM_ROOT="$DATA_DIR" \
        SKIP_SSL_CERT_DOWNLOAD=1 \
        DNS_ADDRESS=0 \
        DISABLE_EVENTS=1 \
        setsid --fork bash -c 'cd "$1" && echo $$ >"$2" && exec "$3" -m localstack.runtime.main' \
        localstack-start "$BOOKD_VAR_DIR" "$PID_FILE" "$LOCALSTACK_VENV/bin/python" \
        </dev/null >>"$LOG_FILE" 2>&1
}

wait_ready() {
    local pid=$1 start=$SECONDS
    while ((SECONDS - start < LOCALSTACK_START_TIMEOUT)); do
        if is_ready; then
            log "ready at http://$LOCALSTACK_LISTEN (pid $pid, $((SECONDS - start)) s)"
            return 0
        fi
        if ! alive "$pid"; then
            printf 'localstack: error: LocalStack (pid %s) exited during start-up; last 30 lines of %s:\n' "$pid" "$LOG_FILE" >&2
            tail -n 30 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        # It does not exit when the port is taken: it logs the error, prints "Ready." and hangs.
        if grep -q 'CannotListenError' "$LOG_FILE" 2>/dev/null; then
            printf 'localstack: error: LocalStack could not listen on %s; last 30 lines of %s:\n' "$LOCALSTACK_LISTEN" "$LOG_FILE" >&2
            tail -n 30 "$LOG_FILE" >&2 || true
            stop_pid "$pid" >&2
            exit 1
        fi
        sleep 0.5
    done
    printf 'localstack: error: s3 and sqs not available after %s s (pid %s still running; stop it with "%s down"); last 30 lines of %s:\n' \
        "$LOCALSTACK_START_TIMEOUT" "$pid" "$0" "$LOG_FILE" >&2
    tail -n 30 "$LOG_FILE" >&2 || true
    exit 1
}

cmd_up() {
    local pid i listen
    if is_ready; then
        log "already up at http://$LOCALSTACK_LISTEN (s3 and sqs available)"
        return 0
    fi
    pid=$(recorded_pid)
    if [[ -n "$pid" ]]; then
        listen=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^GATEWAY_LISTEN=//p')
        if [[ -n "$listen" && "$listen" != "$LOCALSTACK_LISTEN" ]]; then
            die "the LocalStack recorded in $PID_FILE (pid $pid) listens on $listen, not $LOCALSTACK_LISTEN; run \"$0 down\" first"
        fi
        log "pid $pid (started earlier) is not ready yet; waiting"
        wait_ready "$pid"
        return 0
    fi
    if port_open; then
        die "something already listens on $LOCALSTACK_LISTEN but it is not a LocalStack with s3 and sqs available; stop it or set LOCALSTACK_LISTEN to a free address"
    fi
    ensure_venv
    log "starting LocalStack $LOCALSTACK_VERSION on $LOCALSTACK_LISTEN (log: $LOG_FILE)"
    start
    for ((i = 0; i < 50; i++)); do
        [[ -s "$PID_FILE" ]] && break
        sleep 0.1
    done
    pid=$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)
    [[ -n "$pid" ]] || die "LocalStack did not start (no pid written); see $LOG_FILE"
    wait_ready "$pid"
}

cmd_down() {
    local pid i
    if [[ ! -f "$PID_FILE" ]]; then
        log "not running (not started by make localstack-up)"
        return 0
    fi
    pid=$(recorded_pid)
    if [[ -z "$pid" ]]; then
        log "stale pid file ($(tr -dc '0-9' <"$PID_FILE") is not a running LocalStack); removing it"
        rm -f "$PID_FILE"
        return 0
    fi
    stop_pid "$pid"
}

# TERM the process group, wait up to 15 s, then KILL; removes the pid file.
stop_pid() {
    local pid=$1 i
    log "stopping LocalStack (pid $pid and its process group)"
    signal_group TERM "$pid"
    for ((i = 0; i < 150; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "still running after 15 s; sending KILL"
        signal_group KILL "$pid"
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$PID_FILE"
    if alive "$pid"; then die "pid $pid survived SIGKILL"; fi
    log "stopped"
}

# Signal the process group the pid leads (setsid made it the leader); just the pid otherwise.
signal_group() {
    local sig=$1 pid=$2 pgid
    pgid=$(sed -E 's/^.*\) [A-Za-z] [0-9]+ ([0-9]+) .*$/\1/' "/proc/$pid/stat" 2>/dev/null || true)
    if [[ "$pgid" == "$pid" ]]; then
        kill -s "$sig" -- "-$pid" 2>/dev/null || true
    else
        kill -s "$sig" "$pid" 2>/dev/null || true
    fi
}

cmd_status() {
    local rc=0
    health print || rc=$?
    if ((rc == 2)); then
        echo "down"
        return 1
    fi
    return "$rc"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: $0 {up|down|status}" >&2
    exit 2
    ;;
esac
