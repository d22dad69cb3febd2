"""How the CUDA runtime of one major version reaches a backend wheel: NVIDIA's PyPI wheels, never bundled.

:data:`RUNTIME_WHEELS` is the one table of it, by CUDA major: the wheels a backend requires (its Requires-Dist), the
folders they unpack to (the RUNPATHs, and the runtime's fallback search), the sonames auditwheel must not graft, the
driver that CUDA minor-version compatibility needs, the versions the users' environments hold (which every
backend's requirement must accept: the audit checks it), and what a fresh environment downloads for them (what
``llcuda doctor`` counts). CUDA 13's wheels drop the ``-cuXX`` suffix and unpack into ``nvidia/cu13/lib``.

It imports nothing of the factory, so that the table, the toolkit probe and the runtime's target table read it
without a circle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import FactoryError

# The driver library: never grafted into a wheel, whatever the major.
DRIVER_SONAME = "libcuda.so.1"


@dataclass(frozen=True)
class RuntimeWheels:
    """NVIDIA's wheels of one CUDA major, as a backend wheel uses them."""

    major: int
    cudart: str  # distribution providing libcudart
    cublas: str  # distribution providing libcublas and libcublasLt
    lib_dirs: tuple[str, ...]  # where they unpack, relative to site-packages (RUNPATHs point there)
    sonames: tuple[str, ...]  # what libggml-cuda.so needs from them (auditwheel never grafts these)
    driver_floor: str  # the oldest driver that runs this major's runtime (minor-version compatibility)
    floor_cuda: str  # the CUDA version of that driver, as nvidia-smi and the variant provider name it ("12.0")
    # Versions the users' environments hold (PyTorch's CUDA wheels, Colab's image): every backend's requirement
    # must accept each of them, so that such an environment downloads no NVIDIA wheel for llcuda.
    accepts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # What `pip install` downloads for them in an environment that has none (their newest releases, and cuBLAS's
    # own dependency on NVRTC), in MB, read from PyPI on the date in the comment of the table.
    download_mb: dict[str, float] = field(default_factory=dict)

    def requirements(self, cudart: str, cublas: str) -> list[str]:
        """The Requires-Dist of a backend that links cudart ``cudart`` and cuBLAS ``cublas``: those versions or
        newer, within the major (an unsuffixed ``nvidia-cublas`` 14 would unpack into ``nvidia/cu14``)."""
        upper = f"<{self.major + 1}"
        return [f"{self.cudart}>={cudart},{upper}", f"{self.cublas}>={cublas},{upper}"]


# NVIDIA's CUDA compatibility guide (minor-version compatibility floors, Linux x86_64). `accepts`: torch 2.11.0 and
# 2.14.1 install cuda-toolkit[cublas,cudart]==13.0.2/13.0.3 (cuBLAS 13.1.0.3/13.1.1.3, cudart 13.0.96), torch
# 2.12.1 nvidia-cublas 13.1.0.3-13.1.1.3, torch 2.15.0 cuda-toolkit==13.2.2 (cuBLAS 13.4.1.3, cudart 13.2.86);
# Colab's image (2026-08) torch 2.11.0+cu128 with nvidia-cublas-cu12 12.8.4.1 and nvidia-cuda-runtime-cu12 12.8.90.
# `download_mb`: PyPI's manylinux x86_64 files of the newest releases, 2026-12-04.
RUNTIME_WHEELS = {
    11: RuntimeWheels(
        11,
        "nvidia-cuda-runtime-cu11",
        "nvidia-cublas-cu11",
        ("nvidia/cuda_runtime/lib", "nvidia/cublas/lib"),
        ("libcudart.so.11.0", "libcublas.so.11", "libcublasLt.so.11"),
        "450.80.02",
        "11.0",
    ),
    12: RuntimeWheels(
        12,
        "nvidia-cuda-runtime-cu12",
        "nvidia-cublas-cu12",
        ("nvidia/cuda_runtime/lib", "nvidia/cublas/lib"),
        ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12"),
        "525.60.13",
        "12.0",
        accepts={"nvidia-cuda-runtime-cu12": ("12.8.90",), "nvidia-cublas-cu12": ("12.8.4.1",)},
        download_mb={"nvidia-cublas-cu12": 581.2, "nvidia-cuda-nvrtc-cu12": 89.6, "nvidia-cuda-runtime-cu12": 3.5},
    ),
    13: RuntimeWheels(
        13,
        "nvidia-cuda-runtime",
        "nvidia-cublas",
        ("nvidia/cu13/lib",),
        ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"),
        "580.65.06",
        "13.0",
        accepts={"nvidia-cuda-runtime": ("13.0.96", "13.2.86"), "nvidia-cublas": ("13.1.0.3", "13.1.1.3", "13.4.1.3")},
        download_mb={"nvidia-cublas": 444.3, "nvidia-cuda-nvrtc": 58.2, "nvidia-cuda-runtime": 2.5},
    ),
}


def runtime_wheels(major: int) -> RuntimeWheels:
    try:
        return RUNTIME_WHEELS[major]
    except KeyError:
        known = ", ".join(f"{m}.x" for m in sorted(RUNTIME_WHEELS))
        raise FactoryError(f"CUDA {major}: no PyPI runtime wheels are mapped (known: {known})") from None


def major_of(version: str) -> int:
    """``"13.0"`` or ``"13.0.88"`` -> 13."""
    m = re.match(r"(\d+)\.", version)
    if not m:
        raise FactoryError(f"{version!r} is not a CUDA version (MAJOR.MINOR)")
    return int(m.group(1))
