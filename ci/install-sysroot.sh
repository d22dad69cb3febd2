#!/usr/bin/env bash
# The old-glibc toolchain every backend wheel is built with, so that the wheels are manylinux_2_28: a Debian 11
# (bullseye, glibc 2.31) sysroot from pinned packages, driven by this machine's g++-12 through two wrappers.
#
#   bash ci/install-sysroot.sh            installs into $LLCUDA_SYSROOT (default /opt/llcuda/sysroot-bullseye)
#
# What it makes (cmake/LLCUDAToolchain.cmake and factory/llcuda_factory/toolchain.py read it):
#   root/      bullseye's glibc, kernel headers, gcc-10's libstdc++ and libgcc (the packages pinned below),
#              every absolute symlink made relative, so nothing links the host's glibc by accident
#   include/   a copy of gcc-10's bits/c++config.h with the three _GLIBCXX_USE_PTHREAD_*CLOCK* features off
#              (glibc 2.30 functions), and llcuda-glibc-floor.h, which binds exp, log, pow, exp2 and log2 to their
#              GLIBC_2.2.5 versions (2.29 made new default versions); host code only, never CUDA device code
#   lib/       libllcuda-stdcxx.so: gcc-10's static libstdc++.a linked whole into one shared library with no
#              symbol versions, and libstdc++.so pointing at it. Every wheel ELF links it, so a process has
#              exactly one libstdc++ (exceptions, iostreams and allocations cross library boundaries), no
#              GLIBCXX version is needed, and the wheel carries it like its other libraries. It links libpthread
#              (glibc 2.31 keeps pthreads there), so its pthread calls carry versions. libgcc_s stays
#              shared (the system's): -static-libgcc would leave an unversioned _dl_find_object (glibc 2.35).
#   bin/gcc, bin/g++   the wrappers: g++-12 with --sysroot, gcc-10's headers and libraries
#   openmp/    libgomp.so.1 (gcc-10's, GLIBC 2.17 at most) and nothing else: the repair step points auditwheel
#              here so that it grafts this libgomp into the wheels, never the build machine's (glibc 2.34)
#   llcuda-sysroot.stamp   written last: the pins and this recipe; a half-made sysroot has none
#
# Idempotent: with the stamp unchanged it does nothing. The .deb files stay in the cache of ci/debs.sh.
# shellcheck disable=SC2016  # the wrappers' "$sr" is expanded when they run, not here
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ci/debs.sh
. "$here/debs.sh"
log() { printf '[install-sysroot] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "${LLCUDA_SYSROOT:-}" = none ]; then
    log "LLCUDA_SYSROOT=none: the native compilers build the wheels (an old-glibc image); nothing to install"
    exit 0
fi
prefix=${LLCUDA_SYSROOT:-/opt/llcuda/sysroot-bullseye}
cxx=${LLCUDA_SYSROOT_CXX:-g++-12}
cc=${cxx/g++/gcc}

# Debian 11 (bullseye): glibc 2.31 (its security update), linux 5.10 headers, gcc-10's C++ and OpenMP runtimes
# (libgcc-10-dev carries omp.h's link files: libgomp.so, which the wrappers' -L finds before g++-12's own).
PINS="
debian-security/pool/updates/main/g/glibc/libc6_2.31-13+deb11u14_amd64.deb 718e3ed8c92207caf5b541e7332affad4f62501cbab3f0cffbe9e6db0b89eae9
debian-security/pool/updates/main/g/glibc/libc6-dev_2.31-13+deb11u14_amd64.deb 7d4002192e09c3cc97f31dcc85ecd7741adbec9011abbdd14fb1790cab20bffa
debian-security/pool/updates/main/l/linux/linux-libc-dev_5.10.262-1_amd64.deb 77e61a88d14b5dabfea170587fc2cb1020b950c6326d54915f54c4f16fb819e8
debian/pool/main/libx/libxcrypt/libcrypt1_4.4.18-4_amd64.deb f617952df0c57b4ee039448e3941bccd3f97bfff71e9b0f87ca6dae15cb3f5ef
debian/pool/main/libx/libxcrypt/libcrypt-dev_4.4.18-4_amd64.deb 8b04bf00b8c43360d9ba3adec209db290168ba3526d4aef3175fb84372b1bebf
debian/pool/main/g/gcc-10/libstdc++6_10.2.1-6_amd64.deb 5c155c58935870bf3b4bfe769116841c0d286a74f59eccfd5645693ac23f06b1
debian/pool/main/g/gcc-10/libstdc++-10-dev_10.2.1-6_amd64.deb 20b1f56863dcc5f187d6cb53b2aa6149bd013be4ec67e10c2c31a22fda619a01
debian/pool/main/g/gcc-10/libgcc-s1_10.2.1-6_amd64.deb e478f2709d8474165bb664de42e16950c391f30eaa55bc9b3573281d83a29daf
debian/pool/main/g/gcc-10/libgcc-10-dev_10.2.1-6_amd64.deb 3b711374092b84e732c4e73cf33e02cff02e34a5f105eb6467de8d9038e4cd9d
debian/pool/main/g/gcc-10/libatomic1_10.2.1-6_amd64.deb e8f1d04653698ab185c1144f35f905a1de87571c12ea630b65be669a2823d8c7
debian/pool/main/g/gcc-10/libgomp1_10.2.1-6_amd64.deb 4530c95aefa48e33fd8cf4acbe5c4b559dbe7bdf4c56469986c83a203982cef1
"

write_floor_header() {
    cat >"$1" <<'EOF'
/* Written by llcuda's ci/install-sysroot.sh, forced into every host compilation (-include). glibc 2.29 gave
   exp, log, pow, exp2 and log2 new default symbol versions; bind the old ones so that no wheel needs more
   than GLIBC 2.28. Host code only: CUDA device code has its own math. */
#if defined(__x86_64__) && !defined(__CUDA_ARCH__) && !defined(__ASSEMBLER__)
__asm__(".symver exp,exp@GLIBC_2.2.5");
__asm__(".symver log,log@GLIBC_2.2.5");
__asm__(".symver pow,pow@GLIBC_2.2.5");
__asm__(".symver exp2,exp2@GLIBC_2.2.5");
__asm__(".symver log2,log2@GLIBC_2.2.5");
#endif
EOF
}

write_wrapper() {  # FILE DRIVER [C++ include flags]
    local file=$1 driver=$2 cxx_flags=${3:-}
    cat >"$file" <<EOF
#!/bin/sh
# Written by llcuda's ci/install-sysroot.sh: $driver building against the bullseye sysroot beside this folder.
sr=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")
exec $driver --sysroot="\$sr/root" -B"\$sr/root/usr/lib/x86_64-linux-gnu/" $cxx_flags\\
    -include "\$sr/include/llcuda-glibc-floor.h" \\
    -L"\$sr/lib" -L"\$sr/root/usr/lib/gcc/x86_64-linux-gnu/10" -L"\$sr/root/usr/lib/x86_64-linux-gnu" \\
    -L"\$sr/root/lib/x86_64-linux-gnu" "\$@"
EOF
    chmod 755 "$file"
}

recipe=$({ printf '%s' "$PINS" "$cxx"; declare -f write_floor_header write_wrapper; sed -n '/^build()/,/^}/p' "$0"; } | sha256sum)
stamp="$prefix/llcuda-sysroot.stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] && "$prefix/bin/g++" --version >/dev/null 2>&1; then
    log "sysroot already in $prefix (pins unchanged): nothing to do"
    exit 0
fi

build() {
    local work=$1 debs deb
    command -v "$cxx" >/dev/null || die "$cxx is not installed (sudo apt-get install g++-12)"
    debs_fetch "$PINS" debs || exit 1
    for deb in "${debs[@]}"; do
        debs_unpack "$deb" "$work/root"
    done
    debs_relativize_links "$work/root"
    rm -rf "$work/root/usr/share" "$work/root/etc" "$work/root/sbin" "$work/root/usr/bin" "$work/root/usr/sbin"
    mkdir -p "$work/include/bits" "$work/lib" "$work/bin"
    sed -E 's|^#define (_GLIBCXX_USE_PTHREAD_(COND_CLOCKWAIT\|MUTEX_CLOCKLOCK\|RWLOCK_CLOCKLOCK)) 1$|/* #undef \1 (llcuda: glibc 2.30) */|' \
        "$work/root/usr/include/x86_64-linux-gnu/c++/10/bits/c++config.h" >"$work/include/bits/c++config.h"
    [ "$(grep -c 'llcuda: glibc 2.30' "$work/include/bits/c++config.h")" = 3 ] \
        || die "gcc-10's c++config.h does not define the three _GLIBCXX_USE_PTHREAD_*CLOCK* macros as expected"
    write_floor_header "$work/include/llcuda-glibc-floor.h"
    local sr=$work/root
    "$cc" --sysroot="$sr" -B"$sr/usr/lib/x86_64-linux-gnu/" -shared -o "$work/lib/libllcuda-stdcxx.so" \
        -Wl,-soname,libllcuda-stdcxx.so -Wl,--no-undefined -Wl,--whole-archive \
        "$sr/usr/lib/gcc/x86_64-linux-gnu/10/libstdc++.a" -Wl,--no-whole-archive \
        -L"$sr/usr/lib/x86_64-linux-gnu" -L"$sr/lib/x86_64-linux-gnu" -shared-libgcc -lgcc_s -Wl,--no-as-needed -lpthread -lm -lc
    ln -s libllcuda-stdcxx.so "$work/lib/libstdc++.so"
    mkdir -p "$work/openmp"
    [ -f "$sr/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0" ] || die "libgomp1 did not unpack libgomp.so.1.0.0"
    ln -s ../root/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0 "$work/openmp/libgomp.so.1"
    write_wrapper "$work/bin/gcc" "$cc"
    write_wrapper "$work/bin/g++" "$cxx" '-nostdinc++ -isystem "$sr/include" -isystem "$sr/root/usr/include/c++/10" -isystem "$sr/root/usr/include/x86_64-linux-gnu/c++/10" -isystem "$sr/root/usr/include/c++/10/backward" '
}

work=$(mktemp -d "${TMPDIR:-/tmp}/llcuda-sysroot.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "assembling the bullseye sysroot (glibc 2.31, gcc-10's libstdc++) for $cxx"
build "$work"
mkdir -p "$(dirname "$prefix")"
rm -rf "$prefix.old"
[ ! -e "$prefix" ] || mv "$prefix" "$prefix.old"
mv "$work" "$prefix"
chmod 755 "$prefix"
rm -rf "$prefix.old"
trap - EXIT
echo "$recipe" >"$stamp"
log "sysroot ready in $prefix: $("$prefix/bin/g++" -dumpversion | sed 's/^/g++ /'), glibc 2.31, $(du -sh "$prefix" | cut -f1)"
