"""What a wheelhouse holds besides the built wheels: their dependencies, and offline bundles.

- :func:`download_dependencies` puts a wheel's dependencies (and theirs) next to it, so that it installs with
  ``pip install --no-index --find-links``;
- :func:`offline_bundle` writes ``offline-<targets>/``: the llcuda wheel, the backend wheel(s), every run-time
  dependency (the NVIDIA CUDA wheels included) and a ``requirements.txt`` pinning each file by sha256, so that
  ``pip install --no-index --find-links <dir> "llcuda[cc50]"`` works on a machine with no network at all. A
  bundle of every target also carries the llcuda wheel's variants and their ``variants.json``, so that uv picks
  the backend by GPU offline; pip never sees them.
  With ``without_cuda_wheels`` it leaves out NVIDIA's CUDA runtime wheels, for machines that already have them
  (Colab, Kaggle): ``offline-<targets>-nocuda/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from . import variants, wheelfile
from .errors import FactoryError
from .source import sha256_of
from .targets import Target

_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def pip_download(args: list[str], dest: Path) -> None:
    """``pip download --only-binary :all: --dest DEST ARGS...``, or one FactoryError with pip's last lines."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary", ":all:"]
    cmd += ["--dest", str(dest), *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise FactoryError(f"pip download failed (exit {proc.returncode}): {' '.join(args)}\n{tail}")


def download_dependencies(requires_dist: list[str], dest: Path) -> list[Path]:
    """Download the (non-extra) requirements with their own dependencies into ``dest``; return the new files."""
    deps = [d for d in requires_dist if "extra ==" not in d]
    if not deps:
        return []
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    pip_download(deps, dest)
    return sorted(set(dest.iterdir()) - before)


def _add_marker_dependencies(bundle: Path, python_version: str, args: list[str]) -> None:
    """The dependencies another interpreter needs that this one does not (``exceptiongroup; python_version <
    "3.11"``). pip download --python-version picks wheels for that version but evaluates the environment markers
    against the interpreter it runs in: evaluate them for ``python_version`` and fetch what is missing, with its own
    dependencies, until nothing is."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    for _ in range(20):  # a chain of marker-only dependencies is short; bounded all the same
        have = {parse_wheel_name(f)[0] for f in bundle.glob("*.whl")}
        wanted: set[str] = set()
        for wheel in bundle.glob("*.whl"):
            for line in wheelfile.requires(wheel):
                req = Requirement(line)
                if req.marker is None or "extra" in str(req.marker) or not req.marker.evaluate(env):
                    continue
                if canonicalize_name(req.name) not in have:
                    wanted.add(str(Requirement(f"{req.name}{req.specifier}")))
        if not wanted:
            return
        pip_download([*args, *sorted(wanted)], bundle)
    raise FactoryError(f"the dependencies for Python {python_version} did not settle: {sorted(wanted)}")


def parse_wheel_name(path: Path) -> tuple[str, str]:
    """(normalized distribution name, version) of a wheel file name."""
    m = _WHEEL_NAME.match(path.name)
    if not m:
        raise FactoryError(f"{path.name} is not a wheel file name")
    return re.sub(r"[-_.]+", "-", m.group("name")).lower(), m.group("version")


def requirements_with_hashes(wheels: list[Path], extras: dict[str, list[str]]) -> str:
    """A ``--require-hashes`` requirements file pinning every wheel by version and sha256."""
    lines = [
        "# Every file of this bundle, pinned by sha256. Install with:",
        "#   pip install --no-index --find-links . --require-hashes -r requirements.txt",
    ]
    for whl in sorted(wheels, key=parse_wheel_name):
        name, version = parse_wheel_name(whl)
        extra = f"[{','.join(extras[name])}]" if extras.get(name) else ""
        lines.append(f"{name}{extra}=={version} \\\n    --hash=sha256:{sha256_of(whl)}")
    return "\n".join(lines) + "\n"


def is_cuda_runtime_wheel(name: str) -> bool:
    """NVIDIA's CUDA runtime and cuBLAS wheels, of any major (``nvidia-ml-py``, a small binding, is not one)."""
    return name.startswith(("nvidia-cuda-", "nvidia-cublas"))


def _find_one(wheelhouse: Path, pattern: str, hint: str) -> Path:
    found = sorted(p for p in wheelhouse.glob(pattern) if not variants.is_variant_file(p))
    if not found:
        raise FactoryError(f"no {pattern} in {wheelhouse}: {hint}")
    return found[-1]


def offline_bundle(
    targets: list[Target],
    wheelhouse: Path,
    *,
    python_version: str | None = None,
    platform: str | None = None,
    without_cuda_wheels: bool = False,
) -> Path:
    """Write ``wheelhouse/offline-<targets>/`` for ``llcuda[<targets>]`` and return it.

    Dependencies come from ``wheelhouse/`` and ``wheelhouse/deps/`` first and from the package index only for
    what is missing there. ``python_version``/``platform`` (pip's ``--python-version``/``--platform``) make a
    bundle for another interpreter, e.g. ``3.12`` for Colab. ``without_cuda_wheels`` bundles llcuda's own wheels
    and their small pure-Python dependencies, but no ``nvidia-cuda-*``/``nvidia-cublas*`` wheel: the machine's
    own satisfy the backends' ``>=`` requirements.
    """
    if not targets:
        raise FactoryError("name at least one target, e.g. `nox -s offline -- cc50`")
    names = [t.name for t in targets]
    runtime = _find_one(wheelhouse, "llcuda-*.whl", "build it with `nox -s wheels`")
    backends = [
        _find_one(wheelhouse, f"{t.package}-*.whl", f"build it with `nox -s wheels -- {t.name}`") for t in targets
    ]
    _, version = parse_wheel_name(runtime)
    for backend in backends:
        if parse_wheel_name(backend)[1] != version:
            raise FactoryError(f"{backend.name} is not version {version} of {runtime.name}; rebuild the wheels")

    out = wheelhouse / f"offline-{'-'.join(names)}{'-nocuda' if without_cuda_wheels else ''}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=wheelhouse))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and shared
    try:
        args = ["--find-links", str(wheelhouse), "--find-links", str(wheelhouse / "deps")]
        if python_version:
            args += ["--python-version", python_version]
        if platform:
            args += ["--platform", platform]
        if without_cuda_wheels:  # the backends as built, and llcuda with its own (non-extra) dependencies
            for backend in backends:
                shutil.copy2(backend, tmp / backend.name)
            args.append(f"llcuda=={version}")
        else:
            args.append(f"llcuda[{','.join(names)}]=={version}")
        try:  # the wheelhouse alone first: no network, and exactly the files `nox -s wheels` audited with
            pip_download(["--no-index", *args], tmp)
        except FactoryError:
            pip_download(args, tmp)
        if python_version:
            _add_marker_dependencies(tmp, python_version, args[:-1])  # the options, not the requirement
        files = sorted(tmp.glob("*.whl"))
        cuda = [f.name for f in files if is_cuda_runtime_wheel(parse_wheel_name(f)[0])]
        if without_cuda_wheels and cuda:
            raise FactoryError(f"a bundle without CUDA wheels got {', '.join(cuda)}")
        got = {parse_wheel_name(f)[0] for f in files}
        missing = [n for n in ("llcuda", *(t.distribution for t in targets)) if n not in got]
        if missing:
            raise FactoryError(f"the bundle lacks {', '.join(missing)}")
        (tmp / "requirements.txt").write_text(requirements_with_hashes(files, {"llcuda": names}))
        # uv's wheel variants, for a bundle of every row: `uv pip install --preview-features wheel-variants
        # --no-index --find-links <dir> llcuda` picks the backend by GPU with no network.
        for extra in variants.bundle_variants(wheelhouse, version, targets):
            shutil.copy2(extra, tmp / extra.name)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
