#!/usr/bin/env bash
# The oldest system these machines can run the tests on: a Debian 11 (bullseye) root with glibc 2.31 and its
# Python 3.9, made with debootstrap as ci/fresh-root.sh makes its bookworm one (as root; no container engine).
# `nox -s tests_oldglibc` installs the wheels into it and runs tests/oldglibc/ there through chroot.
#
#   sudo bash ci/old-glibc-root.sh [ROOT]     default ROOT: /var/cache/llcuda/bullseye-root
#
# Cached: a root whose stamp matches this recipe is kept (the tier then takes seconds to start). Each test run
# makes its own venv inside it, so nothing of one run reaches the next but pip's download cache.
set -euo pipefail
root=${1:-${LLCUDA_OLD_GLIBC_ROOT:-/var/cache/llcuda/bullseye-root}}
log() { printf '[old-glibc-root] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "error: run as root (debootstrap and chroot need it)"; exit 2; }

suite=bullseye
packages=python3,python3-venv,ca-certificates,procps,iproute2,util-linux
recipe="$suite minbase $packages v1"
if [ -f "$root/.llcuda-root" ] && [ "$(cat "$root/.llcuda-root")" = "$recipe" ]; then
    log "$root is ready ($suite, $(chroot "$root" /usr/bin/python3 --version 2>&1))"
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
