# shellcheck shell=bash
# Pinned Debian packages, fetched once into a cache and unpacked without dpkg (sourced, not run).
#
# A pin is one line, "POOL_PATH SHA256", POOL_PATH relative to the mirror ($LLCUDA_DEBIAN_MIRROR, default Debian's
# own). The file is taken from the cache ($LLCUDA_DEB_CACHE, default ~/.cache/llcuda/debs) when its sha256 matches,
# else downloaded into it and checked. A package the mirror no longer has (bullseye's will move off it one day) is
# one line naming the package and the cache to restore. Unpacking uses ar and tar only, so the same files serve
# Debian and the RHEL-based manylinux image (ci/cibw.sh).
#
#   debs_fetch "$PINS" DEST_VAR   # fetch every pinned file; DEST_VAR gets the list of local paths
#   debs_unpack DEB DIR           # the package's data.tar.* into DIR

LLCUDA_DEBIAN_MIRROR=${LLCUDA_DEBIAN_MIRROR:-http://deb.debian.org}
LLCUDA_DEB_CACHE=${LLCUDA_DEB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llcuda/debs}

_debs_log() { printf '[debs] %s\n' "$*" >&2; }

_debs_download() {  # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$2" "$1"
    elif [ -x /usr/lib/apt/apt-helper ]; then
        /usr/lib/apt/apt-helper download-file "$1" "$2" >/dev/null
    else
        python3 -c 'import shutil, sys, urllib.request as u; shutil.copyfileobj(u.urlopen(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
    fi
}

debs_fetch() {
    local pins=$1 out_var=$2 path sum file url got=()
    mkdir -p "$LLCUDA_DEB_CACHE"
    while read -r path sum; do
        [ -n "$path" ] || continue
        file="$LLCUDA_DEB_CACHE/${path##*/}"
        if [ -f "$file" ] && echo "$sum  $file" | sha256sum -c --quiet - >/dev/null 2>&1; then
            got+=("$file")
            continue
        fi
        url="$LLCUDA_DEBIAN_MIRROR/${path//+/%2b}"
        _debs_log "downloading ${path##*/}"
        if ! _debs_download "$url" "$file.part"; then
            rm -f "$file.part"
            _debs_log "error: ${path##*/} is no longer on the mirror ($url); restore the cache $LLCUDA_DEB_CACHE" \
                "(CI restores it by the key of ci/debs.sh's pins) or set LLCUDA_DEBIAN_MIRROR to a snapshot mirror"
            return 1
        fi
        if ! echo "$sum  $file.part" | sha256sum -c --quiet - >/dev/null 2>&1; then
            rm -f "$file.part"
            _debs_log "error: sha256 mismatch for ${path##*/} from $url: refusing to use it"
            return 1
        fi
        mv "$file.part" "$file"
        got+=("$file")
    done <<<"$pins"
    eval "$out_var=(\"\${got[@]}\")"
}

debs_unpack() {
    local deb=$1 dir=$2 member tmp
    member=$(ar t "$deb" | grep '^data\.tar') || { _debs_log "error: $deb has no data.tar member"; return 1; }
    tmp=$(mktemp -d)
    (cd "$tmp" && ar x "$deb" "$member")
    mkdir -p "$dir"
    tar -xf "$tmp/$member" -C "$dir"
    rm -rf "$tmp"
}

# Every absolute symlink in DIR made relative to DIR, so the tree never points at the host's files.
debs_relativize_links() {
    local dir=$1 link target
    while IFS= read -r link; do
        target=$(readlink "$link")
        ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$dir$target")" "$link"
    done < <(find "$dir" -type l -lname '/*')
}
