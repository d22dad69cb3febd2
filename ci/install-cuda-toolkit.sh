#!/usr/bin/env bash
# Install the CUDA toolkit(s) that the CUDA rows of targets.toml name (their `cuda = "X.Y"`), with a host
# compiler that each accepts. Idempotent: a toolkit already in place is checked and left alone.
#
#   ci/install-cuda-toolkit.sh                 every version the table names
#   ci/install-cuda-toolkit.sh --target cc50   the version of one row (what ci/cibw.sh runs)
#
# Debian 12, CUDA 12.4: Debian trixie's non-free packages, pinned by version and sha256 below, fetched with a
#   private apt configuration (the system's sources and packages are left alone) and unpacked with `dpkg -x`
#   into /opt/llcuda/cuda-12.4, where the factory looks without any environment variable. Host compiler: g++-12.
# Debian 12, CUDA 11.8: bookworm's own non-free nvidia-cuda-toolkit in /usr, with g++-11.
# RHEL 8 / manylinux_2_28 (release builds): NVIDIA's repository into /usr/local/cuda-X.Y, with the newest
#   gcc-toolset that the toolkit accepts.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { printf '[install-cuda-toolkit] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The versions to install and where the factory looks for them ("VERSION PREFIX" lines), from targets.toml.
python=${PYTHON:-python3}
plan=$(PYTHONPATH="$here/../factory" "$python" -m llcuda_factory toolkits "$@") || exit 2  # the factory said why, in one line
[ -n "$plan" ] || { log "nothing to install: no CUDA toolkit is named${*:+ for $*}"; exit 0; }

# ------------------------------------------------------------------------------------------------ Debian
# CUDA 12.4.1 as Debian trixie packages it: package=version sha256. The cccl headers (cub, thrust, libcu++)
# are separate packages there; ggml-cuda includes cub.
declare -A DEBIAN_SUITE DEBIAN_PINS DEBIAN_HOST_CXX
DEBIAN_SUITE[12.4]=trixie
DEBIAN_PINS[12.4]="
nvidia-cuda-toolkit=12.4.131~12.4.1-2 cd5fe85aee38d108b315f408a688641478f2402622a10c677478eb7a6c4e5319
nvidia-cuda-dev=12.4.127~12.4.1-2 d846838f914a0176948d48a8bcade5d6dbcccb5c9374343f6475f5503f173ee0
libnvvm4=12.4.131~12.4.1-2 3c905c1df7453e1ad477516c4465629c310d2f58a796d66f44070dc289e7ec12
libcudart12=12.4.127~12.4.1-2 361b3721cf84bf068e111ff013c819de61cb475268b0d38db99839471f1b4130
libcublas12=12.4.5.8~12.4.1-2 2ddc22809d16b157021a4d57db6b2221cf7c46f42654c95df86ce73beb15c1f7
libcublaslt12=12.4.5.8~12.4.1-2 2f67754a6dd7095de1a5c4503f20539981f31f0cd627565973c547e997fc7732
libcu++-dev=2.3.2-2 30e911c1909265591b5ea793df0e49e56bed631238b68b3e75c97590c4985686
libcub-dev=2.3.2-2 4a7e7c24ef2994140e47dba59507db60e281f968f17c18cf1cadc9c27c17c26b
libthrust-dev=2.3.2-2 61fe44b65834efad9b079452ebec7396d4b37712d251421f4218b3bc652a3147
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
    local suite=${DEBIAN_SUITE[$ver]:-} pins=${DEBIAN_PINS[$ver]:-} cxx=${DEBIAN_HOST_CXX[$ver]:-}
    [ -n "$pins" ] || die "no pinned Debian packages for CUDA $ver in ci/install-cuda-toolkit.sh (known: 12.4, 11.8)"
    local stamp="$prefix/.llcuda-pins" want
    # The pins and the relocation recipe: a change to either installs again.
    want=$({ printf '%s' "$pins"; declare -f relocate_debian_prefix; } | sha256sum)
    apt_system "$cxx"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$prefix/usr/bin/nvcc" --version >/dev/null 2>&1; then
        log "CUDA $ver already in $prefix (pins unchanged): nothing to do"
        return
    fi
    local work; work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
    echo "deb http://deb.debian.org/debian $suite main contrib non-free" >"$work/sources.list"
    local apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
    log "CUDA $ver: fetching Debian $suite's packages index (private apt directory)"
    apt-get "${apt_opts[@]}" update -qq
    local pkgs=() sums=() line
    while read -r line; do
        [ -n "$line" ] || continue
        pkgs+=("${line%% *}")
        sums+=("${line##* }")
    done <<<"$pins"
    log "CUDA $ver: downloading ${#pkgs[@]} pinned packages"
    (cd "$work/debs" && apt-get "${apt_opts[@]}" download -qq "${pkgs[@]}")
    local i deb name
    for i in "${!pkgs[@]}"; do
        name=${pkgs[$i]%%=*}
        deb=$(ls "$work/debs/${name}"_*.deb)
        echo "${sums[$i]}  $deb" | sha256sum -c --quiet - \
            || die "sha256 mismatch for $(basename "$deb"): the archive changed; refusing to install it"
        dpkg -x "$deb" "$work/root"
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
install_rhel() {
    local ver=$1 pkgver="${1/./-}" arch gcc
    arch="$(uname -m)"
    [ "$arch" = aarch64 ] && arch=sbsa
    # The newest gcc-toolset this CUDA accepts as host compiler (the factory picks it up from /opt/rh).
    gcc=$(PYTHONPATH="$here/../factory" "$python" -c "from llcuda_factory import toolkit; print(toolkit.max_gcc(($(tr . , <<<"$ver"))))")
    if [ -x "/usr/local/cuda-$ver/bin/nvcc" ] && [ -x "/opt/rh/gcc-toolset-$gcc/root/usr/bin/g++" ]; then
        log "CUDA $ver already in /usr/local/cuda-$ver: nothing to do"
        return
    fi
    dnf install -y -q dnf-plugins-core
    dnf config-manager --add-repo \
        "https://developer.download.nvidia.com/compute/cuda/repos/rhel8/${arch}/cuda-rhel8.repo"
    dnf install -y -q "cuda-nvcc-${pkgver}" "cuda-cudart-devel-${pkgver}" "libcublas-devel-${pkgver}" \
        "cuda-cuobjdump-${pkgver}" "cuda-cccl-${pkgver}" "gcc-toolset-${gcc}-gcc-c++"
    log "installed CUDA ${ver} in /usr/local/cuda-${ver}, host compiler gcc-toolset-${gcc}"
}

while read -r ver prefix; do
    if command -v apt-get >/dev/null 2>&1; then
        case "$ver" in
        11.8) install_debian_118 ;;
        *) install_debian_prefix "$ver" "$prefix" ;;
        esac
    elif command -v dnf >/dev/null 2>&1; then
        install_rhel "$ver"
    else
        die "no apt-get or dnf: install CUDA $ver by hand and set LLCUDA_CUDA_HOME to it"
    fi
done <<<"$plan"
