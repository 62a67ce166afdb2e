# shellcheck shell=bash
# Installing one of Debian's packages for a make target, as root or through passwordless
# sudo: sourced by scripts/prometheus.sh and scripts/chromium.sh, which define log and die.
#
#   apt_root MISSING PACKAGE     set APT (apt-get, with sudo when not root), or die
#                                 naming the command to run as root; MISSING says what is
#   apt_install PACKAGE HINT     apt-get install it (update the lists first if need be),
#                                 or die with HINT

apt_root() {
    local missing=$1 package=$2
    command -v apt-get >/dev/null \
        || die "$missing and there is no apt-get here; $3"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "$missing; as root run: apt-get install -y --no-install-recommends $package"
        fi
    fi
    # Wait for a concurrent apt/dpkg run (another checkout installing the same) instead of failing.
    APT=("${sudo[@]}" apt-get -q -o DPkg::Lock::Timeout=300)
    # shellcheck disable=SC2034 # for the script that sources this (prometheus.sh stops a service)
    SUDO=("${sudo[@]}")
}

apt_install() {
    local package=$1 hint=$2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "$package" >/dev/null 2>&1; then
        log "no $package in the package lists yet: apt-get update"
        "${APT[@]}" update >/dev/null || die "apt-get update failed"
    fi
    "${APT[@]}" install -y --no-install-recommends "$package" >/dev/null \
        || die "apt-get install $package failed; $hint"
}
