"""Resolve the pinned llama.cpp source tree, offline-first.

Order (first hit wins):

1. the checked-out ``llama.cpp/`` submodule;
2. the directory named by ``LLCUDA_LLAMA_CPP_SOURCE``;
3. the identical tree inside the pinned ``llama-cpp-python`` sdist, fetched with pip, verified against the
   pinned sha256 and unpacked into the user cache (``$LLCUDA_CACHE_DIR`` or platformdirs' cache dir).

A hash mismatch is a hard error, and nothing is unpacked from a bad archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from . import REPO_ROOT, project
from .errors import FactoryError
from .project import LlamaCppPin, llama_cpp_pin

ENV_SOURCE = "LLCUDA_LLAMA_CPP_SOURCE"
SUBMODULE = REPO_ROOT / "llama.cpp"
_MARKER = ".llcuda-source"


def cache_dir() -> Path:
    """Where fetched sources live, outside the repository: llcuda's one cache dir, by the runtime's own rule
    (``python/llcuda/cachedir.py``: ``$LLCUDA_CACHE_DIR``, else the user cache dir)."""
    path: Path = project.runtime_module("cachedir").cache_dir()
    return path


def is_llama_cpp_tree(path: Path) -> bool:
    return (path / "CMakeLists.txt").is_file() and (path / "ggml" / "CMakeLists.txt").is_file()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(spec: str, file_name: str, downloads: Path, *, hint: str = "") -> Path:
    """``pip download`` one sdist (``name==version``) into ``downloads``, unless ``file_name`` is there already."""
    archive = downloads / file_name
    if archive.is_file():
        return archive
    downloads.mkdir(parents=True, exist_ok=True)
    pip = shutil.which("pip") or shutil.which("pip3")
    cmd = [pip] if pip else [sys.executable, "-m", "pip"]
    # Only the sdist itself is forced from source; its build requirements (for pip's metadata step) stay wheels.
    cmd += ["download", "--no-deps", "--no-binary", spec.split("==", maxsplit=1)[0], "--dest", str(downloads), spec]
    print(f"[llcuda] fetching {spec}: {' '.join(cmd)}", file=sys.stderr)
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not archive.is_file():
        tail = "\n".join(proc.stdout.splitlines()[-5:])
        raise FactoryError(f"could not fetch {spec} with pip (exit {proc.returncode}).\n{tail}{hint}")
    return archive


def verify_archive(archive: Path, expected: str) -> None:
    """Raise (and set the archive aside, so a re-run fetches it again) on a hash mismatch."""
    actual = sha256_of(archive)
    if actual != expected:
        bad = archive.with_name(archive.name + ".sha256-mismatch")
        archive.replace(bad)
        raise FactoryError(
            f"sha256 mismatch for {archive.name}: expected {expected}, got {actual}. "
            f"Refusing to build from it; it was moved to {bad}. "
            "Delete it and run `nox -s prepare` again to re-download."
        )


def _refuse_unsafe(member: tarfile.TarInfo, archive: Path) -> None:
    """What tarfile's "data" filter refuses: paths or links leaving the tree, devices and other special files."""
    name = PurePosixPath(member.name)
    inside = not name.is_absolute() and ".." not in name.parts
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = name.parent if member.issym() else PurePosixPath()
        depth = 0
        for part in (base / link).parts:
            depth += -1 if part == ".." else (0 if part == "." else 1)
            inside = inside and depth >= 0 and not link.is_absolute()
    if not inside or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise FactoryError(f"{archive.name}: refusing the unsafe member {member.name!r}")


def _unpack(archive: Path, pin: LlamaCppPin, dest: Path) -> None:
    prefix = pin.offline_sdist_subdir.rstrip("/") + "/"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".partial-", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                if not m.name.startswith(prefix) or m.name == prefix:
                    continue
                m.name = m.name[len(prefix) :]
                if m.name.split("/")[0] == ".git":  # the sdist's submodule pointer: not part of the tree
                    continue
                members.append(m)
            if not members:
                raise FactoryError(f"{archive.name} has no {prefix} directory: wrong archive?")
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+ (and the security backports)
                try:
                    tar.extractall(tmp, members=members, filter="data")
                except tarfile.FilterError as err:
                    raise FactoryError(f"{archive.name}: refusing the unsafe member: {err}") from None
            else:  # Debian 12's Python 3.11.2: the same refusals, by hand
                for m in members:
                    _refuse_unsafe(m, archive)
                tar.extractall(tmp, members=members)
        if not is_llama_cpp_tree(tmp):
            raise FactoryError(f"{archive.name}:{prefix} is not a llama.cpp tree")
        (tmp / _MARKER).write_text(f"{pin.commit} {pin.offline_sdist_sha256}\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.replace(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached_tree(pin: LlamaCppPin | None = None, *, fetch: bool = True) -> Path:
    """The pinned tree in the cache, fetching and unpacking it when needed."""
    pin = pin or llama_cpp_pin()
    root = cache_dir()
    dest = root / "src" / f"llama.cpp-{pin.tag}-{pin.commit[:12]}"
    marker = dest / _MARKER
    if marker.is_file() and marker.read_text().split() == [pin.commit, pin.offline_sdist_sha256]:
        return dest
    if not fetch:
        raise FactoryError(f"llama.cpp {pin.tag} is not in the cache ({dest}); run `nox -s prepare`")
    archive = download_sdist(
        pin.offline_sdist,
        pin.offline_sdist_file,
        root / "downloads",
        hint=f"\nOffline? Put {pin.offline_sdist_file} into {root / 'downloads'}, check out the llama.cpp submodule, "
        f"or set {ENV_SOURCE} to a llama.cpp {pin.tag} tree.",
    )
    verify_archive(archive, pin.offline_sdist_sha256)
    _unpack(archive, pin, dest)
    return dest


def resolve(explicit: str | None = None, *, fetch: bool = True) -> Path:
    """Return the llama.cpp tree to build, following the documented order."""
    if is_llama_cpp_tree(SUBMODULE):
        return SUBMODULE
    named = explicit or os.environ.get(ENV_SOURCE)
    if named:
        path = Path(named).expanduser().resolve()
        if not is_llama_cpp_tree(path):
            raise FactoryError(f"{ENV_SOURCE}={named} is not a llama.cpp source tree (no CMakeLists.txt/ggml)")
        return path
    return cached_tree(fetch=fetch)
