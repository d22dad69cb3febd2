#!/usr/bin/env bash
# Everything `nox -s wheels` and `nox -s tests` need on a fresh Debian 12 machine (run as root), then a virtual
# environment .venv/ holding nox, so that the README's commands work with Debian's own python3 (which refuses
# `pip install` outside a venv, PEP 668) as well as with any other python3:
#
#   bash ci/install-build-deps.sh && .venv/bin/nox -s wheels
#   .venv/bin/nox -s tests
#
# 1. Debian's own packages: compilers, cmake, ninja (without it the build falls back to a serial make), ccache,
#    patchelf, python3-venv, git, and the few tools the tests call
#    (pgrep, ip). Nothing that is already installed is touched.
# 2. The old-glibc toolchain every wheel is built with (manylinux_2_28): ci/install-sysroot.sh.
# 3. .venv/ with nox (created once; kept if it is there) and platformdirs, which the factory's toolkit step uses.
# 4. The CUDA toolkit(s) the rows of targets.toml name: ci/install-cuda-toolkit.sh (with .venv's python: a toolkit
#    from NVIDIA's wheels is installed by pip, into llcuda's cache dir).
# The pinned .deb files of 2 and 4 stay in ~/.cache/llcuda/debs ($LLCUDA_DEB_CACHE), NVIDIA's wheels of 4 in
# ~/.cache/llcuda/wheels and the toolkit made of them in ~/.cache/llcuda/toolkits, which CI caches.
# Idempotent: run twice, the second run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[install-build-deps] %s\n' "$*" >&2; }

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    pkgs=(build-essential g++-12 cmake ninja-build ccache patchelf python3 python3-venv git ca-certificates procps
        iproute2 binutils xz-utils)
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null \
            || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
    fi
elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q gcc gcc-c++ make cmake ninja-build ccache patchelf python3 git procps-ng iproute
else
    log "neither apt-get nor dnf: install a C/C++ compiler, cmake, ccache, patchelf, python3 with venv, git by hand"
fi

bash ci/install-sysroot.sh

if [ ! -x .venv/bin/nox ] || ! .venv/bin/python -c "import platformdirs" 2>/dev/null; then
    log "creating .venv with nox"
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check "nox>=2025.2.9" "platformdirs>=3"
fi
PYTHON=.venv/bin/python bash ci/install-cuda-toolkit.sh
log "ready: .venv/bin/nox -s wheels, then .venv/bin/nox -s tests"
