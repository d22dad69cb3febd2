#!/usr/bin/env bash
# What `nox -s docs` needs beyond Python: Debian's headless Chromium, which renders the built site for the browser
# tests (tests/docs/). The downloaded .deb files stay in ~/.cache/llcuda/apt-docs ($LLCUDA_DOCS_APT_CACHE), which
# CI caches as it caches the toolkit's, so a warm machine installs it without the network.
# Idempotent: nothing is done when chromium is installed. Run as root.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
cache=${LLCUDA_DOCS_APT_CACHE:-$HOME/.cache/llcuda/apt-docs}
mkdir -p "$cache/partial"
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o Dir::Cache::archives="$cache" -y -qq --no-install-recommends "$@"; }
echo "[install-docs-deps] apt-get install chromium (packages cached in $cache)" >&2
if ! apt_get install chromium >/dev/null 2>&1; then
    apt-get update -qq
    apt_get install chromium >/dev/null
fi
command -v chromium >/dev/null
