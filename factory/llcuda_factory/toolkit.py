"""Find the CUDA toolkit a target's row names, and say exactly why when it is not there.

Each CUDA row of ``targets.toml`` names its toolkit version (``cuda = "12.4"``). The factory builds with a
toolkit of exactly that version, checked before anything compiles:

- ``LLCUDA_CUDA_HOME`` (or ``CUDAToolkit_ROOT``) names the only toolkit to consider;
- otherwise every nvcc found is a candidate: PATH, the prefixes ``ci/install-cuda-toolkit.sh`` unpacks into
  (``/opt/llcuda/cuda-X.Y/usr``), NVIDIA's ``/usr/local/cuda*`` and Debian's ``/usr/bin``.

Debian's nvcc calls ``ptxas`` through PATH, so the build puts :attr:`Toolkit.bin_dir` first on PATH for every
nvcc call (cmake/LLCUDACudaToolkit.cmake does).

:data:`RUNTIME_WHEELS` is the one table of how a CUDA major's runtime reaches a backend wheel: NVIDIA's PyPI
wheels (the Requires-Dist), the folders they unpack to (the RUNPATHs, and the runtime's fallback search), the
sonames auditwheel must not graft, and the driver that CUDA minor-version compatibility needs.
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
# Where ci/install-cuda-toolkit.sh unpacks toolkits from distribution packages: <dir>/cuda-X.Y/usr/bin/nvcc.
TOOLKITS_DIR = Path("/opt/llcuda")
ENV_HOME = ("LLCUDA_CUDA_HOME", "CUDAToolkit_ROOT")

# Newest GCC major each CUDA release accepts as host compiler (NVIDIA's installation guides).
_MAX_GCC = [((13, 0), 15), ((12, 8), 14), ((12, 4), 13), ((12, 0), 12), ((11, 5), 11), ((11, 0), 10)]


@dataclass(frozen=True)
class RuntimeWheels:
    """How the CUDA runtime of one major version reaches a backend wheel: NVIDIA's PyPI wheels, never bundled."""

    cudart: str  # distribution providing libcudart
    cublas: str  # distribution providing libcublas and libcublasLt
    lib_dirs: tuple[str, ...]  # where they unpack, relative to site-packages (RUNPATHs point there)
    sonames: tuple[str, ...]  # what libggml-cuda.so needs from them (auditwheel never grafts these)
    driver_floor: str  # the oldest driver that runs this major's runtime (minor-version compatibility)
    floor_cuda: str  # the CUDA version of that driver, as nvidia-smi and the variant provider name it ("12.0")


# NVIDIA's CUDA compatibility guide (minor-version compatibility floors, Linux x86_64). CUDA 13's wheels drop
# the -cuXX suffix and unpack into nvidia/cu13/lib.
RUNTIME_WHEELS = {
    11: RuntimeWheels(
        "nvidia-cuda-runtime-cu11",
        "nvidia-cublas-cu11",
        ("nvidia/cuda_runtime/lib", "nvidia/cublas/lib"),
        ("libcudart.so.11.0", "libcublas.so.11", "libcublasLt.so.11"),
        "450.80.02",
        "11.0",
    ),
    12: RuntimeWheels(
        "nvidia-cuda-runtime-cu12",
        "nvidia-cublas-cu12",
        ("nvidia/cuda_runtime/lib", "nvidia/cublas/lib"),
        ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12"),
        "525.60.13",
        "12.0",
    ),
    13: RuntimeWheels(
        "nvidia-cuda-runtime",
        "nvidia-cublas",
        ("nvidia/cu13/lib",),
        ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"),
        "580.65.06",
        "13.0",
    ),
}
# The driver never grafted into a wheel, whatever the major.
DRIVER_SONAME = "libcuda.so.1"


def runtime_wheels(major: int) -> RuntimeWheels:
    try:
        return RUNTIME_WHEELS[major]
    except KeyError:
        known = ", ".join(f"{m}.x" for m in sorted(RUNTIME_WHEELS))
        raise FactoryError(f"CUDA {major}: no PyPI runtime wheels are mapped (known: {known})") from None


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
    return Toolkit(
        nvcc,
        bin_dir,
        root,
        version,
        archs,
        _cublas_version(root),
        cuobjdump,
        _library_release(root, "libcudart"),
        _library_release(root, "libcublas"),
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
    runtime_wheels(major)


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
    return None


def select(target: Target) -> Toolkit:
    """The toolkit of exactly the version ``target``'s row names, or a FactoryError that says what to install."""
    check_row(target)
    paths = candidates()
    want = f"CUDA {target.cuda}"
    if not paths:
        raise FactoryError(
            f"target {target.name} is built with {want} (targets.toml) and no nvcc was found "
            f"(looked at $LLCUDA_CUDA_HOME, PATH, {', '.join(SEARCH)}). Install it: {INSTALL_HINT}"
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
            f"  {detail}\nInstall it: {INSTALL_HINT}"
        )
    return usable[0]


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
    """NVIDIA's PyPI wheels that provide cudart and cuBLAS, each at least the version the build links."""
    wheels = runtime_wheels(tk.major)
    if tk.cudart_release is None or tk.cublas_release is None:
        raise FactoryError(f"CUDA {tk.version_str} at {tk.root}: cannot tell which cudart/cuBLAS it links")
    return [f"{wheels.cudart}>={tk.cudart_release}", f"{wheels.cublas}>={tk.cublas_release}"]
