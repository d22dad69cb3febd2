#!/usr/bin/env bash
# A Debian root to run the built wheels in, through chroot, made with debootstrap as ci/fresh-root.sh makes its
# bookworm one (as root; no container engine). The platform tiers install the wheels into it and run
# tests/platforms/ there:
#
#   bullseye  Debian 11: glibc 2.31 and Python 3.9, the oldest system these machines can run (nox -s tests_oldglibc)
#   trixie    Debian 13: glibc 2.41 and Python 3.13, where Colab's Python and Ubuntu 24.04's glibc sit
#             (nox -s tests_trixie)
#
#   sudo bash ci/platform-root.sh SUITE [ROOT]     default ROOT: /var/cache/llcuda/SUITE-root
#
# Cached: a root whose stamp matches this recipe is kept (the tier then takes seconds to start). Each test run
# makes its own venv inside it, so nothing of one run reaches the next but pip's download cache.
set -euo pipefail
suite=${1:?usage: ci/platform-root.sh bullseye|trixie [ROOT]}
root=${2:-/var/cache/llcuda/$suite-root}
log() { printf '[platform-root %s] %s\n' "$suite" "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "error: run as root (debootstrap and chroot need it)"; exit 2; }
case "$suite" in
bullseye | trixie) ;;
*) log "error: no platform tier for $suite (bullseye, trixie)"; exit 2 ;;
esac

packages=python3,python3-venv,ca-certificates,procps,iproute2,util-linux
recipe="$suite minbase $packages v1"
if [ -f "$root/.llcuda-root" ] && [ "$(cat "$root/.llcuda-root")" = "$recipe" ]; then
    log "$root is ready ($(chroot "$root" /usr/bin/python3 --version 2>&1))"
    exit 0
fi
command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
mirror=${LLCUDA_DEBIAN_MIRROR:-http://deb.debian.org}/debian
t0=$(date +%s)
rm -rf "$root.new"
mkdir -p "$(dirname "$root")"
log "debootstrap --variant=minbase --include=$packages $suite $root"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root.new" "$mirror" >"$root.log" 2>&1; then
    tail -n 5 "$root.log" >&2
    log "error: debootstrap failed (full log: $root.log)"
    exit 1
fi
cp /etc/resolv.conf "$root.new/etc/resolv.conf"
# The machine's own CAs, for a network that intercepts TLS (pip inside the root talks to the index).
cp /usr/local/share/ca-certificates/*.crt "$root.new/usr/local/share/ca-certificates/" 2>/dev/null \
    && chroot "$root.new" update-ca-certificates >/dev/null 2>&1 || true
rm -rf "$root"
mv "$root.new" "$root"
echo "$recipe" >"$root/.llcuda-root"
glibc=$(chroot "$root" /usr/bin/ldd --version | awk 'NR == 1 {print $NF}')  # awk reads it all: no SIGPIPE
log "$root ready in $(($(date +%s) - t0)) s: glibc $glibc, $(chroot "$root" /usr/bin/python3 --version)"
