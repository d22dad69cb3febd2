#!/usr/bin/env bash
# Prove the README's two commands on a truly fresh Debian 12: debootstrap a minimal bookworm root, clone this
# repository into it, and run the commands unchanged in a chroot, as root, timing each. Nothing from this machine
# reaches the root but the clone and the network's setup (resolv.conf, and the machine's own CA certificates with
# the variables that point tools at them, for a network that intercepts TLS): no ccache, pip cache, toolkit or
# tool installed by hand.
#
#   sudo bash ci/fresh-root.sh [ROOT_DIR]          default ROOT_DIR: /var/tmp/llcuda-fresh-root (must not exist)
#
# The log of each command is ROOT_DIR.<n>.log; the summary (wall times, the tests' summary line) is printed at
# the end and kept in ROOT_DIR.summary. The root is left in place for inspection; remove it with
#   umount -R ROOT_DIR/proc ROOT_DIR/dev ROOT_DIR/run/netns 2>/dev/null; rm -rf ROOT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/var/tmp/llcuda-fresh-root}
[ ! -e "$root" ] || { echo "fresh-root: $root exists; remove it or name another folder" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "fresh-root: run as root (debootstrap, chroot, mount)" >&2; exit 2; }

log() { printf '[fresh-root %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }

t0=$(date +%s)
log "debootstrap --variant=minbase bookworm $root"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.debootstrap.log" 2>&1
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Local CAs (update-ca-certificates adds them once the root installs ca-certificates), and the CA variables.
mkdir -p "$root/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
ca_env=()
for var in PIP_CERT SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do
    [ -z "${!var:-}" ] || ca_env+=("$var=${!var}")
done
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
# run/netns: `ip netns add` (the RPC tests) bind-mounts that folder onto itself and leaves it mounted.
trap 'umount -R "$root/dev" 2>/dev/null || true; umount "$root/proc" 2>/dev/null || true
      umount "$root/run/netns" 2>/dev/null || true' EXIT
git clone -q "$here" "$root/root/llcuda"
log "root ready in $(($(date +%s) - t0)) s: $(du -shx "$root" 2>/dev/null | cut -f1)"

run() {  # run one README command in the chroot, with a clean environment, as root
    local n=$1 cmd=$2 start rc=0
    start=$(date +%s)
    log "command $n: $cmd"
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 "${ca_env[@]}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /root/llcuda && $cmd" >"$root.$n.log" 2>&1 || rc=$?
    local took=$(($(date +%s) - start))
    printf 'command %s: %s\n  exit %s after %d s\n' "$n" "$cmd" "$rc" "$took" >>"$root.summary"
    log "command $n exited $rc after $took s (log: $root.$n.log)"
    return "$rc"
}

: >"$root.summary"
status=0
run 1 "bash ci/install-build-deps.sh && .venv/bin/nox -s wheels" || status=$?
if [ "$status" = 0 ]; then
    run 2 ".venv/bin/nox -s tests" || status=$?
    grep -E "^=+ .*(passed|failed).* in [0-9.]+s" "$root.2.log" | tail -n 1 | sed 's/^/  /' >>"$root.summary" || true
fi
printf 'total: %d s\n' "$(($(date +%s) - t0))" >>"$root.summary"
cat "$root.summary"
# The figure the docs' Measured page includes (benchmarks/results/fresh_root.md, in the checkout this ran from).
commit=$(git -C "$root/root/llcuda" rev-parse --short HEAD)
{
    # shellcheck disable=SC2016 # the backticks are Markdown, printed as they are
    printf '| `ci/fresh-root.sh` (%s, commit %s, %s cores) | result |\n| --- | --- |\n' "$(date -u +%Y-%m-%d)" "$commit" "$(nproc)"
    awk '/^command [0-9]+: / { n = $2; sub(":", "", n); cmd = $0; sub(/^command [0-9]+: /, "", cmd); next }
         /^  exit / { printf "| command %s: `%s` | exit %s after %s s |\n", n, cmd, $2, $4; next }
         /passed|failed/ { t = $0; gsub(/^ *=+ | =+ *$/, "", t); printf "| tests | %s |\n", t; next }
         /^total: / { printf "| all, with making the root | %s |\n", substr($0, 8) }' "$root.summary"
} >"$here/benchmarks/results/fresh_root.md"
exit "$status"
