"""GPU detection (NVML through nvidia-ml-py, ``nvidia-smi`` as fallback) and backend compatibility."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .installed import Backend, backends

Fit = Literal["native", "ptx", "cpu", "unsupported"]


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    compute_capability: tuple[int, int]
    memory_total_mb: int
    memory_free_mb: int
    driver_version: str

    @property
    def cc(self) -> int:
        """Compute capability as an integer: (7, 5) -> 75."""
        return self.compute_capability[0] * 10 + self.compute_capability[1]


def _from_nvml() -> list[GPU] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            gpus.append(
                GPU(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    compute_capability=(int(major), int(minor)),
                    memory_total_mb=int(mem.total) // (1 << 20),
                    memory_free_mb=int(mem.free) // (1 << 20),
                    driver_version=driver,
                )
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _from_nvidia_smi() -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = "index,name,compute_cap,memory.total,memory.free,driver_version"
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 6 or "." not in fields[2]:
            continue
        major, minor = fields[2].split(".", 1)
        gpus.append(GPU(int(fields[0]), fields[1], (int(major), int(minor)), int(fields[3]), int(fields[4]), fields[5]))
    return gpus


def detect_gpus() -> list[GPU]:
    """The NVIDIA GPUs of this machine; empty when there is none or no working driver."""
    nvml = _from_nvml()
    return nvml if nvml is not None else _from_nvidia_smi()


def backend_fit(backend: Backend, gpu: GPU | None) -> Fit:
    """How ``backend`` would run on ``gpu``: native SASS, PTX JIT, on the CPU only, or not at all.

    A cubin for sm_XY runs on devices of the same major version and minor >= Y; PTX for compute_XY is
    JIT-compiled by the driver for any device of capability >= XY.
    """
    archs = [int(a.split("-")[0]) for a in backend.cuda_architectures]
    if not archs:
        return "cpu"
    if gpu is None:
        return "cpu"  # a CUDA build with no GPU serves on the CPU
    if any(a // 10 == gpu.cc // 10 and a % 10 <= gpu.cc % 10 for a in archs):
        return "native"
    if any(a <= gpu.cc for a in archs):
        return "ptx"
    return "unsupported"


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


def driver_problem(backend: Backend, gpu: GPU | None) -> str | None:
    """Why the GPU's driver cannot run ``backend``'s GPU code, naming the driver needed; None when it can.

    The floor comes from the backend's build_info.json, measured from its fatbin at build time: one for the SASS
    path (machine code for this GPU) and one for the PTX JIT path (a newer GPU compiles the PTX).
    """
    fit = backend_fit(backend, gpu)
    if gpu is None or fit not in ("native", "ptx"):
        return None
    floor = backend.driver_floor("sass" if fit == "native" else "ptx")
    if floor is None or not gpu.driver_version or _version_tuple(gpu.driver_version) >= _version_tuple(floor):
        return None
    how = "its machine code for this GPU" if fit == "native" else "JIT-compiling its PTX for this GPU"
    return (
        f"NVIDIA driver {gpu.driver_version} is too old for llcuda-{backend.target} (built with CUDA "
        f"{backend.cuda_version}): {how} needs driver >= {floor}. Update the NVIDIA driver to {floor} or newer; "
        f"until then llama-server runs on the CPU (CUDA driver version is insufficient)."
    )


def target_for(gpu: GPU | None) -> str:
    """The backend target that suits ``gpu`` best among llcuda's targets."""
    if gpu is None or gpu.cc < 50:
        return "cpu"
    return "cc50" if gpu.cc < 75 else "cc75"


def platform() -> Literal["colab", "kaggle", "local"]:
    if "COLAB_GPU" in os.environ or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ or Path("/kaggle").is_dir():
        return "kaggle"
    return "local"


def check_gpu_compatibility(gpus: list[GPU] | None = None, installed: list[Backend] | None = None) -> dict[str, Any]:
    """What this machine has and which installed backend runs how; keeps the old llcuda keys.

    Keys: ``platform``, ``gpu_name``, ``compute_capability`` (e.g. ``"5.0"``), ``compatible``, ``reason``
    (as before), plus ``gpus``, ``backends`` (target -> native/ptx/cpu/unsupported), ``driver_problems``
    (target -> why the driver is too old, naming the version needed), ``recommended_target`` and
    ``recommendation``.
    """
    gpus = detect_gpus() if gpus is None else gpus
    installed = backends() if installed is None else installed
    gpu = gpus[0] if gpus else None
    fits = {b.target: backend_fit(b, gpu) for b in installed}
    drivers = {b.target: why for b in installed if (why := driver_problem(b, gpu))}
    want = target_for(gpu)
    install = f'pip install "llcuda[{want}]"'
    if gpu is None:
        compatible = bool(installed)
        reason = "No NVIDIA GPU or driver found; llama-server runs on the CPU."
        recommendation = (
            f"Running on the CPU. {'' if 'cpu' in fits else install + ' gives the smallest CPU build.'}".strip()
        )
    else:
        cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
        good = [t for t, f in fits.items() if f in ("native", "ptx") and t not in drivers]
        compatible = bool(good)
        if not good and drivers:
            reason = next(iter(drivers.values()))
            recommendation = reason.split(": ", 1)[1]
        elif any(f == "native" for t, f in fits.items() if t in good):
            reason = f"{gpu.name} (CC {cc}) runs an installed backend natively."
            recommendation = "Ready: the installed backend has machine code for this GPU."
        elif good:
            reason = f"{gpu.name} (CC {cc}) runs an installed backend through PTX JIT (slow first start)."
            recommendation = f"Works; for native code and a faster start: {install}"
        else:
            reason = f"No installed backend has code for {gpu.name} (CC {cc})."
            recommendation = f"Install the backend for this GPU: {install}"
    return {
        "platform": platform(),
        "gpu_name": gpu.name if gpu else None,
        "compute_capability": f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}" if gpu else None,
        "compatible": compatible,
        "reason": reason,
        "gpus": [asdict(g) for g in gpus],
        "backends": fits,
        "driver_problems": drivers,
        "recommended_target": want,
        "recommendation": recommendation,
    }
