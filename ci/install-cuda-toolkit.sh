#!/usr/bin/env bash
# Install the CUDA toolkit(s) that the CUDA rows of targets.toml name (their `cuda = "X.Y"`), with a host
# compiler that each accepts. Idempotent: a toolkit already in place is checked and left alone.
#
#   ci/install-cuda-toolkit.sh                 every version the table names
#   ci/install-cuda-toolkit.sh --target cc50   the version of one row (what ci/cibw.sh runs)
#
# Each version's [cuda-toolkits] entry in targets.toml says where it comes from:
# - source = "debian" (CUDA 12.4): Debian trixie's non-free packages, pinned by pool path and sha256 below, fetched
#   into the .deb cache of ci/debs.sh (no apt, no dpkg: ar and tar) and unpacked into /opt/llcuda/cuda-12.4, where
#   the factory looks without any environment variable. The same files serve Debian (host compiler g++-12) and
#   PyPA's RHEL-based manylinux_2_28 image, where cibuildwheel builds the cross-check wheels (gcc-toolset-13).
#   Debian 12, CUDA 11.8: bookworm's own non-free nvidia-cuda-toolkit in /usr, with g++-11.
# - source = "pypi" (CUDA 13.0): NVIDIA's wheels pinned there with their sha256, which the factory installs with pip
#   into its own prefix in llcuda's cache dir (`llcuda_factory install-toolkit`): no root. $PYTHON must have pip
#   and platformdirs (ci/install-build-deps.sh passes its .venv).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/debs.sh
. "$here/debs.sh"
log() { printf '[install-cuda-toolkit] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The versions to install, their source and where the factory looks for them ("VERSION SOURCE PREFIX" lines).
python=${PYTHON:-python3}
plan=$(PYTHONPATH="$here/../factory" "$python" -m llcuda_factory toolkits "$@") || exit 2  # the factory said why, in one line
[ -n "$plan" ] || { log "nothing to install: no CUDA toolkit is named${*:+ for $*}"; exit 0; }

# ------------------------------------------------------------------------------------------------ Debian
# CUDA 12.4.1 as Debian trixie packages it: "pool path, sha256" per package. The cccl headers (cub, thrust,
# libcu++) are separate packages there; ggml-cuda includes cub.
declare -A DEBIAN_PINS DEBIAN_HOST_CXX
DEBIAN_PINS[12.4]="
debian/pool/non-free/n/nvidia-cuda-toolkit/nvidia-cuda-toolkit_12.4.131~12.4.1-2_amd64.deb cd5fe85aee38d108b315f408a688641478f2402622a10c677478eb7a6c4e5319
debian/pool/non-free/n/nvidia-cuda-toolkit/nvidia-cuda-dev_12.4.127~12.4.1-2_amd64.deb d846838f914a0176948d48a8bcade5d6dbcccb5c9374343f6475f5503f173ee0
debian/pool/non-free/n/nvidia-cuda-toolkit/libnvvm4_12.4.131~12.4.1-2_amd64.deb 3c905c1df7453e1ad477516c4465629c310d2f58a796d66f44070dc289e7ec12
debian/pool/non-free/n/nvidia-cuda-toolkit/libcudart12_12.4.127~12.4.1-2_amd64.deb 361b3721cf84bf068e111ff013c819de61cb475268b0d38db99839471f1b4130
debian/pool/non-free/n/nvidia-cuda-toolkit/libcublas12_12.4.5.8~12.4.1-2_amd64.deb 2ddc22809d16b157021a4d57db6b2221cf7c46f42654c95df86ce73beb15c1f7
debian/pool/non-free/n/nvidia-cuda-toolkit/libcublaslt12_12.4.5.8~12.4.1-2_amd64.deb 2f67754a6dd7095de1a5c4503f20539981f31f0cd627565973c547e997fc7732
debian/pool/main/c/cccl/libcu++-dev_2.3.2-2_all.deb 30e911c1909265591b5ea793df0e49e56bed631238b68b3e75c97590c4985686
debian/pool/main/c/cccl/libcub-dev_2.3.2-2_all.deb 4a7e7c24ef2994140e47dba59507db60e281f968f17c18cf1cadc9c27c17c26b
debian/pool/main/c/cccl/libthrust-dev_2.3.2-2_all.deb 61fe44b65834efad9b079452ebec7396d4b37712d251421f4218b3bc652a3147
"
DEBIAN_HOST_CXX[12.4]=g++-12

apt_system() {
    export DEBIAN_FRONTEND=noninteractive
    if compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null \
        && apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
        return
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A toolkit unpacked from .deb files keeps Debian's absolute paths: point them into the prefix.
relocate_debian_prefix() {
    local usr=$1/usr
    local profile="$usr/lib/nvidia-cuda-toolkit/bin/nvcc.profile"
    [ -e "$profile" ] || [ -L "$profile" ] || die "$profile is missing: not an nvidia-cuda-toolkit tree"
    # Debian's profile is a link to /etc/nvcc.profile: replace the link, never write through it. CMake wants
    # NVVMIR_LIBRARY_DIR to end in nvvm/libdevice (usr/lib/cuda/nvvm/libdevice links to Debian's libdevice).
    # `+=` prepends: the prefix's ptxas, fatbinary and nvlink (usr/bin) come before any other toolkit's on PATH.
    rm -f "$profile"
    cat >"$profile" <<'EOF'
# Written by llcuda's ci/install-cuda-toolkit.sh: Debian's nvcc.profile, with every path inside this prefix.
NVVMIR_LIBRARY_DIR = $(_HERE_)/../../cuda/nvvm/libdevice
PATH += $(_HERE_):$(_HERE_)/../../../bin:
INCLUDES += "-I$(_HERE_)/../../../include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(_HERE_)/../../x86_64-linux-gnu/stubs" "-L$(_HERE_)/../../x86_64-linux-gnu"
EOF
    # usr/bin/nvcc is a wrapper that execs /usr/lib/nvidia-cuda-toolkit/bin/nvcc by absolute path.
    cat >"$usr/bin/nvcc" <<'EOF'
#!/bin/sh
# Written by llcuda's ci/install-cuda-toolkit.sh: run the real nvcc of this prefix.
here=$(dirname "$(readlink -f "$0")")
export PATH="$here/../lib/nvidia-cuda-toolkit/bin:$PATH"
exec "$here/../lib/nvidia-cuda-toolkit/bin/nvcc" "$@"
EOF
    chmod 755 "$usr/bin/nvcc"
    # The tree must not point outside itself.
    local outside
    outside=$(find "$1" -type l -lname '/*' -printf '%p -> %l\n')
    [ -z "$outside" ] || die "links that leave the prefix: $outside"
    rm -rf "${1:?}/etc"
}

install_debian_prefix() {
    local ver=$1 prefix=$2
    local pins=${DEBIAN_PINS[$ver]:-} cxx=${DEBIAN_HOST_CXX[$ver]:-}
    [ -n "$pins" ] || die "no pinned Debian packages for CUDA $ver in ci/install-cuda-toolkit.sh (known: 12.4, 11.8)"
    local stamp="$prefix/.llcuda-pins" want
    # The pins and the relocation recipe: a change to either installs again.
    want=$({ printf '%s' "$pins"; declare -f relocate_debian_prefix; } | sha256sum)
    if command -v apt-get >/dev/null 2>&1; then
        apt_system "$cxx"
    fi
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$prefix/usr/bin/nvcc" --version >/dev/null 2>&1; then
        log "CUDA $ver already in $prefix (pins unchanged): nothing to do"
        return
    fi
    local work debs deb
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    log "CUDA $ver: the pinned packages (cache: $LLCUDA_DEB_CACHE)"
    debs_fetch "$pins" debs || exit 1
    for deb in "${debs[@]}"; do
        debs_unpack "$deb" "$work/root"
    done
    relocate_debian_prefix "$work/root"
    "$work/root/usr/bin/nvcc" --version | grep -q "release $ver" || die "the unpacked nvcc is not CUDA $ver"
    mkdir -p "$(dirname "$prefix")"
    rm -rf "$prefix.old"
    [ -e "$prefix" ] && mv "$prefix" "$prefix.old"
    mv "$work/root" "$prefix"
    rm -rf "$prefix.old"
    echo "$want" >"$stamp"
    log "CUDA $ver installed in $prefix: $("$prefix/usr/bin/nvcc" --version | grep release)"
}

install_debian_118() {
    # Debian 12's own toolkit, in /usr. Its headers in /usr/include need cmake/LLCUDACudaToolkit.cmake's fix.
    export DEBIAN_FRONTEND=noninteractive
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed -i -E '/^Components:/{/non-free( |$)/! s/$/ contrib non-free/}' /etc/apt/sources.list.d/debian.sources
    elif [ -f /etc/apt/sources.list ] && grep -q '^deb .*debian' /etc/apt/sources.list; then
        sed -i -E '/^deb .*debian/{/non-free( |$)/! s/$/ contrib non-free/}' /etc/apt/sources.list
    fi
    apt-get update -qq
    apt_system nvidia-cuda-toolkit g++-11
    log "installed: $(/usr/bin/nvcc --version | grep release)"
}

# ------------------------------------------------------------------------------------------------ RHEL
# PyPA's manylinux_2_28 image (cibuildwheel): the same pinned packages, and the newest gcc-toolset the toolkit
# accepts as host compiler (the factory finds it in /opt/rh).
rhel_host_compiler() {
    local ver=$1 gcc
    gcc=$(PYTHONPATH="$here/../factory" "$python" -c "from llcuda_factory import toolkit; print(toolkit.max_gcc(($(tr . , <<<"$ver"))))")
    [ -x "/opt/rh/gcc-toolset-$gcc/root/usr/bin/g++" ] || dnf install -y -q "gcc-toolset-${gcc}-gcc-c++"
}

while read -r ver source prefix; do
    if [ "$source" = pypi ]; then
        PYTHONPATH="$here/../factory" "$python" -m llcuda_factory install-toolkit "$ver" || exit 1
        continue
    fi
    if command -v apt-get >/dev/null 2>&1; then
        case "$ver" in
        11.8) install_debian_118 ;;
        *) install_debian_prefix "$ver" "$prefix" ;;
        esac
    elif command -v dnf >/dev/null 2>&1; then
        rhel_host_compiler "$ver"
        install_debian_prefix "$ver" "$prefix"
    else
        die "no apt-get or dnf: install CUDA $ver by hand and set LLCUDA_CUDA_HOME to it"
    fi
done <<<"$plan"
