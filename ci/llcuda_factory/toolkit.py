"""Pick a CUDA toolkit that can compile a target, and say exactly why when none can.

The choice is explicit and checked before anything compiles:

- ``LLCUDA_CUDA_HOME`` (or ``CUDAToolkit_ROOT``) names the only toolkit to consider;
- otherwise every nvcc found (PATH, ``/usr/local/cuda*``, Debian's ``/usr/bin``) is a candidate, and the
  *oldest* one that lists every target architecture and ships cuBLAS wins. Oldest, because a wheel built with
  CUDA 11.8 runs on drivers >= 450.80 while CUDA 12 needs >= 525 and CUDA 13 needs >= 580: the laptops and the
  Colab/Kaggle T4s we serve have old drivers.

Debian's ``nvidia-cuda-toolkit`` calls ``ptxas`` through PATH, so the build must put :attr:`Toolkit.bin_dir`
first on PATH for every nvcc call (cmake/LLCUDACudaToolkit.cmake does). CUDA 11.8 also needs ``g++ <= 11``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import FactoryError
from .targets import Target

INSTALL_HINT = "sudo bash ci/install-cuda-toolkit.sh"
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

    @property
    def version_str(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def major(self) -> int:
        return self.version[0]


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
    return Toolkit(nvcc, bin_dir, root, version, archs, _cublas_version(root), cuobjdump)


# Where toolkits live besides PATH: NVIDIA's installers, Debian/Ubuntu's package, Arch's package.
SEARCH = ["/usr/local/cuda*/bin/nvcc", "/usr/bin/nvcc", "/opt/cuda/bin/nvcc"]


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


def _why_not(tk: Toolkit, target: Target) -> str | None:
    missing = [a for a in target.sm_archs if a not in tk.archs]
    if missing:
        arch = missing[0]
        cc = f"{arch // 10}.{arch % 10}"
        last = _LAST_MAJOR_FOR_ARCH.get(arch)
        if last is not None and tk.major > last:
            return (
                f"CUDA {tk.major} dropped compute capability {cc}; install a CUDA 11.8–{last}.9 toolkit: {INSTALL_HINT}"
            )
        return f"CUDA {tk.version_str} cannot target compute capability {cc} (nvcc --list-gpu-arch)"
    if tk.cublas_version is None:
        return f"CUDA {tk.version_str} at {tk.root} has no cuBLAS headers (cublas_v2.h); install its cuBLAS dev package"
    return None


def select(target: Target) -> Toolkit:
    """The toolkit to build ``target`` with, or a FactoryError that says what to install."""
    paths = candidates()
    if not paths:
        raise FactoryError(
            f"target {target.name} needs a CUDA toolkit and no nvcc was found "
            f"(looked at $LLCUDA_CUDA_HOME, PATH, {', '.join(SEARCH)}). "
            f"Install a CUDA 11.8–12.9 toolkit: {INSTALL_HINT}"
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
        raise FactoryError(f"no CUDA toolkit here can build target {target.name}:\n  {detail}")
    return min(usable, key=lambda tk: tk.version)


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


def host_compiler(tk: Toolkit, cxx: str | None = None) -> str:
    """A g++ that this nvcc accepts: the default one if new enough is not too new, else g++-N."""
    limit = max_gcc(tk.version)
    default = cxx or os.environ.get("CUDAHOSTCXX") or os.environ.get("CXX") or "g++"
    found = shutil.which(default)
    major = _gcc_major(found) if found else None
    if found and major is not None and major <= limit:
        return found
    for n in range(limit, limit - 5, -1):
        path = shutil.which(f"g++-{n}")
        if path:
            return path
    raise FactoryError(
        f"CUDA {tk.version_str} needs g++ <= {limit} as its host compiler, and {default} is "
        f"{major if major is not None else 'missing'}. Install one: sudo apt-get install g++-{limit}"
    )


def wheel_dependencies(tk: Toolkit) -> list[str]:
    """NVIDIA's PyPI wheels that provide cudart and cuBLAS for this toolkit's major version."""
    if tk.major not in (11, 12):
        raise FactoryError(
            f"CUDA {tk.version_str}: no PyPI runtime wheels are mapped for CUDA {tk.major}; build with 11.8–12.9"
        )
    assert tk.cublas_version is not None
    cb_major, cb_minor = tk.cublas_version
    return [
        f"nvidia-cuda-runtime-cu{tk.major}>={tk.version_str}",
        f"nvidia-cublas-cu{tk.major}>={cb_major}.{cb_minor}",
    ]


def rpath_dirs() -> list[str]:
    """Where the NVIDIA wheels put their libraries, relative to site-packages."""
    return ["nvidia/cuda_runtime/lib", "nvidia/cublas/lib"]
