"""Find the CUDA toolkit a target's row names, and say exactly why when it is not there.

Each CUDA row of ``targets.toml`` names its toolkit version (``cuda = "12.4"``), an entry of ``[cuda-toolkits]``
that says where it comes from. The factory builds with a toolkit of exactly that version, linking exactly the
runtime versions the entry names, checked before anything compiles:

- ``LLCUDA_CUDA_HOME`` (or ``CUDAToolkit_ROOT``) names the only toolkit to consider;
- a ``pypi`` toolkit is the factory's own prefix of NVIDIA's wheels (:mod:`.pypitoolkit`, installed on first use):
  nothing else on the machine is looked at, neither PATH nor ``/usr/local/cuda``;
- for a ``debian`` toolkit every nvcc found is a candidate: PATH, the prefixes ``ci/install-cuda-toolkit.sh``
  unpacks into (``/opt/llcuda/cuda-X.Y/usr``), NVIDIA's ``/usr/local/cuda*`` and Debian's ``/usr/bin``.

Debian's nvcc calls ``ptxas`` through PATH, so the build puts :attr:`Toolkit.bin_dir` first on PATH for every
nvcc call (cmake/LLCUDACudaToolkit.cmake does). How the runtime reaches a backend is :mod:`.cudaruntime`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cudaruntime, pypitoolkit
from .errors import FactoryError
from .targets import Target

INSTALL_HINT = "sudo bash ci/install-cuda-toolkit.sh"
# Where ci/install-cuda-toolkit.sh unpacks toolkits from distribution packages: <dir>/cuda-X.Y/usr/bin/nvcc.
TOOLKITS_DIR = Path("/opt/llcuda")
ENV_HOME = ("LLCUDA_CUDA_HOME", "CUDAToolkit_ROOT")

# Newest GCC major each CUDA release accepts as host compiler (NVIDIA's installation guides).
_MAX_GCC = [((13, 0), 15), ((12, 8), 14), ((12, 4), 13), ((12, 0), 12), ((11, 5), 11), ((11, 0), 10)]


# The last toolkit major that can still target each architecture family (NVIDIA's arch support matrix).
_LAST_MAJOR_FOR_ARCH = {50: 12, 52: 12, 53: 12, 60: 12, 61: 12, 62: 12, 70: 12, 72: 12}


@dataclass(frozen=True)
class Toolkit:
    nvcc: Path
    bin_dir: Path
    root: Path
    version: tuple[int, int]
    archs: frozenset[int]
    cublas_version: tuple[int, int] | None
    cuobjdump: Path | None
    # Full versions of the libraries a build links ("12.4.127", "12.4.5.8"), from their file names.
    cudart_release: str | None = None
    cublas_release: str | None = None

    @property
    def version_str(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def major(self) -> int:
        return self.version[0]

    def to_json(self) -> dict[str, object]:
        """This toolkit as the build's later steps read it back (:func:`chosen`)."""
        return {
            "nvcc": str(self.nvcc),
            "bin_dir": str(self.bin_dir),
            "root": str(self.root),
            "version": list(self.version),
            "archs": sorted(self.archs),
            "cublas_version": list(self.cublas_version) if self.cublas_version else None,
            "cuobjdump": str(self.cuobjdump) if self.cuobjdump else None,
            "cudart_release": self.cudart_release,
            "cublas_release": self.cublas_release,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Toolkit:
        major, minor = data["version"]
        cublas = data.get("cublas_version")
        return cls(
            Path(data["nvcc"]),
            Path(data["bin_dir"]),
            Path(data["root"]),
            (int(major), int(minor)),
            frozenset(int(a) for a in data["archs"]),
            (int(cublas[0]), int(cublas[1])) if cublas else None,
            Path(data["cuobjdump"]) if data.get("cuobjdump") else None,
            data.get("cudart_release"),
            data.get("cublas_release"),
        )


def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _include_dirs(root: Path) -> list[Path]:
    return [root / "include", *(Path(p) for p in glob.glob(str(root / "targets" / "*" / "include")))]


def _cublas_version(root: Path) -> tuple[int, int] | None:
    for inc in _include_dirs(root):
        header = inc / "cublas_api.h"
        if header.is_file() and (inc / "cublas_v2.h").is_file():
            text = header.read_text(errors="replace")
            major = re.search(r"#define\s+CUBLAS_VER_MAJOR\s+(\d+)", text)
            minor = re.search(r"#define\s+CUBLAS_VER_MINOR\s+(\d+)", text)
            if major and minor:
                return int(major.group(1)), int(minor.group(1))
    return None


def _lib_dirs(root: Path) -> list[Path]:
    return [
        root / "lib64",
        root / "lib",
        *(Path(p) for p in glob.glob(str(root / "lib" / "*-linux-gnu"))),
        *(Path(p) for p in glob.glob(str(root / "targets" / "*" / "lib"))),
    ]


def _library_release(root: Path, name: str) -> str | None:
    """``libcudart.so`` -> its real file ``libcudart.so.12.4.127`` -> ``"12.4.127"``."""
    for lib_dir in _lib_dirs(root):
        link = lib_dir / f"{name}.so"
        if link.exists():
            m = re.fullmatch(re.escape(name) + r"\.so\.(\d+(?:\.\d+)+)", link.resolve().name)
            if m:
                return m.group(1)
    return None


def _recorded_releases(root: Path) -> tuple[str | None, str | None]:
    """The runtime versions a pypi toolkit's prefix records (its libraries are named only ``.so.13``)."""
    record = root / pypitoolkit.RECORD
    if not record.is_file():
        return None, None
    data = json.loads(record.read_text())
    return data.get("cudart"), data.get("cublas")


def probe(nvcc: Path) -> Toolkit | None:
    """Describe the toolkit behind one nvcc, or None when it does not run."""
    out = _run([str(nvcc), "--version"])
    if out is None:
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    if not m:
        return None
    version = (int(m.group(1)), int(m.group(2)))
    listed = _run([str(nvcc), "--list-gpu-arch"]) or ""
    archs = frozenset(int(a) for a in re.findall(r"compute_(\d+)", listed))
    bin_dir = nvcc.parent
    if not (bin_dir / "ptxas").exists():  # e.g. a wrapper whose tools sit next to the real nvcc
        bin_dir = nvcc.resolve().parent
    root = bin_dir.parent
    cuobjdump = next((p for p in (bin_dir / "cuobjdump", nvcc.resolve().parent / "cuobjdump") if p.exists()), None)
    cudart, cublas = _recorded_releases(root)
    return Toolkit(
        nvcc,
        bin_dir,
        root,
        version,
        archs,
        _cublas_version(root),
        cuobjdump,
        cudart or _library_release(root, "libcudart"),
        cublas or _library_release(root, "libcublas"),
    )


# Where toolkits live besides PATH: ci/install-cuda-toolkit.sh's prefixes, NVIDIA's installers, Debian/Ubuntu's
# package, Arch's package.
SEARCH = [
    str(TOOLKITS_DIR / "cuda-*" / "usr" / "bin" / "nvcc"),
    "/usr/local/cuda*/bin/nvcc",
    "/usr/bin/nvcc",
    "/opt/cuda/bin/nvcc",
]


def candidates() -> list[Path]:
    """Every nvcc worth probing, explicit choice first; duplicates (same real file) removed."""
    for var in ENV_HOME:
        home = os.environ.get(var)
        if home:
            nvcc = Path(home) / "bin" / "nvcc"
            if not nvcc.exists():
                raise FactoryError(
                    f"{var}={home} has no bin/nvcc: point it at a CUDA toolkit (the directory holding bin/nvcc) "
                    f"or unset it. To install one: {INSTALL_HINT}"
                )
            return [nvcc]
    found: list[Path] = []
    on_path = shutil.which("nvcc")
    if on_path:
        found.append(Path(on_path))
    for pattern in SEARCH:
        found += [Path(p) for p in sorted(glob.glob(pattern), reverse=True)]
    seen: set[Path] = set()
    unique: list[Path] = []
    for path in found:
        if not path.exists():
            continue
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def check_row(target: Target) -> None:
    """A row whose toolkit version cannot compile its architectures is a table error, whatever is installed."""
    major = target.cuda_version[0]
    for arch in target.sm_archs:
        last = _LAST_MAJOR_FOR_ARCH.get(arch)
        if last is not None and major > last:
            raise FactoryError(
                f"targets.toml: target {target.name} names CUDA {target.cuda}, but CUDA {last + 1} dropped compute "
                f"capability {arch // 10}.{arch % 10}; name a CUDA 11.8–{last}.9 toolkit in its row"
            )
    cudaruntime.runtime_wheels(major)


def _why_not(tk: Toolkit, target: Target) -> str | None:
    if tk.version != target.cuda_version:
        return f"CUDA {tk.version_str}, not the {target.cuda} that targets.toml names for {target.name}"
    missing = [a for a in target.sm_archs if a not in tk.archs]
    if missing:
        arch = missing[0]
        return f"CUDA {tk.version_str} cannot target compute capability {arch // 10}.{arch % 10} (nvcc --list-gpu-arch)"
    if tk.cublas_version is None:
        return f"CUDA {tk.version_str} at {tk.root} has no cuBLAS headers (cublas_v2.h); install its cuBLAS dev package"
    if tk.cudart_release is None or tk.cublas_release is None:
        return f"CUDA {tk.version_str} at {tk.root} has no libcudart.so/libcublas.so to link against"
    pin = target.toolkit
    if pin is not None and (tk.cudart_release, tk.cublas_release) != (pin.cudart, pin.cublas):
        return (
            f"CUDA {tk.version_str} at {tk.root} links cudart {tk.cudart_release} and cuBLAS {tk.cublas_release}, "
            f'not the {pin.cudart} and {pin.cublas} of [cuda-toolkits."{pin.version}"]'
        )
    return None


def install_hint(target: Target) -> str:
    """The command that installs the toolkit of ``target``'s row."""
    if target.toolkit is not None and target.toolkit.source == "pypi":
        return f"PYTHONPATH=factory python -m llcuda_factory toolkit --target {target.name} (no root: NVIDIA's wheels)"
    return INSTALL_HINT


def _select_pypi(target: Target) -> Toolkit:
    """The factory's own prefix of NVIDIA's wheels, installed if needed; nothing else on the machine counts."""
    assert target.toolkit is not None
    nvcc = pypitoolkit.ensure(target.toolkit) / "bin" / "nvcc"
    tk = probe(nvcc)
    if tk is None:
        raise FactoryError(f"target {target.name}: {nvcc} does not run")
    why = _why_not(tk, target)
    if why:
        raise FactoryError(
            f"target {target.name} is built with CUDA {target.cuda} (targets.toml), and {nvcc} is {why}. "
            f"Remove {pypitoolkit.prefix(target.toolkit)} and run again: {install_hint(target)}"
        )
    return tk


def select(target: Target) -> Toolkit:
    """The toolkit of exactly the version ``target``'s row names, or a FactoryError that says what to install."""
    check_row(target)
    explicit = any(os.environ.get(var) for var in ENV_HOME)
    if target.toolkit is not None and target.toolkit.source == "pypi" and not explicit:
        return _select_pypi(target)
    paths = candidates()
    want = f"CUDA {target.cuda}"
    if not paths:
        raise FactoryError(
            f"target {target.name} is built with {want} (targets.toml) and no nvcc was found "
            f"(looked at $LLCUDA_CUDA_HOME, PATH, {', '.join(SEARCH)}). Install it: {install_hint(target)}"
        )
    reasons: list[str] = []
    usable: list[Toolkit] = []
    for path in paths:
        tk = probe(path)
        if tk is None:
            reasons.append(f"{path}: does not run")
            continue
        why = _why_not(tk, target)
        if why:
            reasons.append(f"{path}: {why}")
        else:
            usable.append(tk)
    if not usable:
        detail = "\n  ".join(reasons)
        raise FactoryError(
            f"target {target.name} is built with {want} (targets.toml), and no usable {want} is installed here:\n"
            f"  {detail}\nInstall it: {install_hint(target)}"
        )
    return usable[0]


# The toolkit the factory picked for a target, handed from the pipeline to the build it starts (a JSON file of
# {"target": ..., "toolkit": Toolkit.to_json()}), so that the CMake configure step does not look for it again.
CHOSEN_ENV = "LLCUDA_TOOLKIT_FILE"


def write_choice(target: Target, tk: Toolkit, path: Path) -> Path:
    """Record ``tk`` as ``target``'s toolkit in ``path`` (for :data:`CHOSEN_ENV`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"target": target.name, "toolkit": tk.to_json()}, indent=2) + "\n")
    return path


def chosen(target: Target) -> Toolkit:
    """The toolkit the pipeline already picked for ``target`` ($LLCUDA_TOOLKIT_FILE), else :func:`select`'s."""
    where = os.environ.get(CHOSEN_ENV)
    if not where:
        return select(target)
    try:
        data = json.loads(Path(where).read_text())
        tk = Toolkit.from_json(data["toolkit"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FactoryError(f"{CHOSEN_ENV}={where} is not a toolkit the factory wrote ({err}); unset it") from err
    if data.get("target") != target.name or tk.version_str != target.cuda:
        raise FactoryError(
            f"{CHOSEN_ENV}={where} holds CUDA {tk.version_str} for {data.get('target')}, not CUDA {target.cuda} "
            f"for {target.name}; unset it"
        )
    if not tk.nvcc.is_file():
        raise FactoryError(f"{CHOSEN_ENV}={where} names {tk.nvcc}, which is gone; unset it and build again")
    return tk


def max_gcc(version: tuple[int, int]) -> int:
    for since, gcc in _MAX_GCC:
        if version >= since:
            return gcc
    return 9


def _gcc_major(cxx: str) -> int | None:
    out = _run([cxx, "-dumpversion"])
    try:
        return int(out.strip().split(".")[0]) if out else None
    except ValueError:
        return None


def host_compiler(tk: Toolkit, cxx: str | None = None, *, exact: bool = False) -> str:
    """A g++ that this nvcc accepts: the default one if new enough is not too new, else g++-N. With ``exact``,
    ``cxx`` itself (the old-glibc toolchain's wrapper: another g++ would link the build machine's glibc)."""
    limit = max_gcc(tk.version)
    default = cxx or os.environ.get("CUDAHOSTCXX") or os.environ.get("CXX") or "g++"
    found = shutil.which(default)
    major = _gcc_major(found) if found else None
    if found and major is not None and major <= limit:
        return found
    if exact:
        raise FactoryError(
            f"CUDA {tk.version_str} needs g++ <= {limit} as its host compiler, and the build's C++ compiler {default} "
            f"is {major if major is not None else 'missing'}: build the toolchain with an older g++ "
            "(LLCUDA_SYSROOT_CXX=g++-N bash ci/install-sysroot.sh)"
        )
    for n in range(limit, limit - 5, -1):
        # Debian's g++-N, then RHEL's gcc-toolset-N (what ci/install-cuda-toolkit.sh installs in manylinux)
        toolset = Path(f"/opt/rh/gcc-toolset-{n}/root/usr/bin/g++")
        path = shutil.which(f"g++-{n}") or (str(toolset) if toolset.exists() else None)
        if path:
            return path
    raise FactoryError(
        f"CUDA {tk.version_str} needs g++ <= {limit} as its host compiler, and {default} is "
        f"{major if major is not None else 'missing'}. Install one: sudo apt-get install g++-{limit}"
    )


def wheel_dependencies(tk: Toolkit) -> list[str]:
    """NVIDIA's PyPI wheels that provide cudart and cuBLAS, each at least the version the build links, within its
    major (what a row's ``runtime_requirements`` says, once :func:`select` has checked the toolkit links those)."""
    if tk.cudart_release is None or tk.cublas_release is None:
        raise FactoryError(f"CUDA {tk.version_str} at {tk.root}: cannot tell which cudart/cuBLAS it links")
    return cudaruntime.runtime_wheels(tk.major).requirements(tk.cudart_release, tk.cublas_release)
