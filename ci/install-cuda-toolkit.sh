#!/usr/bin/env bash
# Install a CUDA toolkit that can compile the llcuda GPU targets (cc50 needs CUDA 11.8-12.9).
#
#   ci/install-cuda-toolkit.sh            # autodetect: Debian/Ubuntu (apt) or RHEL/manylinux_2_28 (dnf)
#   CUDA_VERSION=12.9 ci/install-cuda-toolkit.sh   # RHEL: which 12.x from NVIDIA's repository
#
# Debian 12: the non-free `nvidia-cuda-toolkit` (CUDA 11.8) plus g++-11 as the CUDA host compiler.
# RHEL 8 / manylinux_2_28: NVIDIA's CUDA repository (the release pipeline, see [tool.cibuildwheel]).
set -euo pipefail

log() { printf '[install-cuda-toolkit] %s\n' "$*" >&2; }

install_debian() {
    export DEBIAN_FRONTEND=noninteractive
    # Enable contrib/non-free; the toolkit lives in non-free.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed -i -E '/^Components:/{/non-free( |$)/! s/$/ contrib non-free/}' /etc/apt/sources.list.d/debian.sources
    elif [ -f /etc/apt/sources.list ] && grep -q '^deb .*debian' /etc/apt/sources.list; then
        sed -i -E '/^deb .*debian/{/non-free( |$)/! s/$/ contrib non-free/}' /etc/apt/sources.list
    fi
    log "apt-get update"
    apt-get update -qq
    log "apt-get install nvidia-cuda-toolkit g++-11 ccache patchelf"
    apt-get install -y -qq --no-install-recommends \
        nvidia-cuda-toolkit g++-11 ccache patchelf >/dev/null
    log "installed: $(/usr/bin/nvcc --version | tail -n 2 | head -n 1)"
}

install_rhel() {
    local ver="${CUDA_VERSION:-12.9}" pkgver
    pkgver="${ver/./-}"
    local arch; arch="$(uname -m)"
    [ "$arch" = aarch64 ] && arch=sbsa
    dnf install -y -q dnf-plugins-core
    dnf config-manager --add-repo \
        "https://developer.download.nvidia.com/compute/cuda/repos/rhel8/${arch}/cuda-rhel8.repo"
    dnf install -y -q "cuda-nvcc-${pkgver}" "cuda-cudart-devel-${pkgver}" "libcublas-devel-${pkgver}" \
        "cuda-cuobjdump-${pkgver}" ccache patchelf || dnf install -y -q "cuda-nvcc-${pkgver}" \
        "cuda-cudart-devel-${pkgver}" "libcublas-devel-${pkgver}" "cuda-cuobjdump-${pkgver}"
    log "installed CUDA ${ver} in /usr/local/cuda-${ver}"
}

if command -v apt-get >/dev/null 2>&1; then
    install_debian
elif command -v dnf >/dev/null 2>&1; then
    install_rhel
else
    log "no apt-get or dnf: install a CUDA 11.8-12.9 toolkit by hand and set CUDAToolkit_ROOT"
    exit 1
fi
