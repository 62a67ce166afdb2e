#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Make sure Debian's `chromium` is installed, for the console's browser tests.
#
#   scripts/chromium.sh     (run by `make browser`, which `make test` runs)
#
# The tests drive it through Playwright (pinned in the dev lock), which launches this
# executable and never downloads a browser of its own. When it is missing this script
# installs Debian's `chromium` package with apt-get, as root (or through passwordless
# sudo), and says so. It fails, naming what to do, when it cannot.
set -euo pipefail

PACKAGE=chromium
BROWSER=${BOOKD_CHROMIUM:-/usr/bin/chromium}

log() { printf 'chromium.sh: %s\n' "$*"; }
die() { printf 'chromium.sh: error: %s\n' "$*" >&2; exit 1; }

if [ -x "$BROWSER" ]; then
    exit 0
fi

# shellcheck source=apt.sh
source "${BASH_SOURCE[0]%/*}/apt.sh"
apt_root "$BROWSER is missing" "$PACKAGE" "install Chromium so that $BROWSER runs it"
log "$BROWSER is missing: installing Debian's $PACKAGE package (apt-get install -y --no-install-recommends $PACKAGE)"
apt_install "$PACKAGE" "install Chromium so that $BROWSER runs it"
[ -x "$BROWSER" ] || die "$PACKAGE is installed but $BROWSER is still missing"
log "installed: $("$BROWSER" --version 2>/dev/null | head -n 1)"
