"""GPU detection: NVML through nvidia-ml-py, ``nvidia-smi`` as fallback; and which notebook platform this is.

Which backend suits which GPU is :mod:`llcuda.fit`."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


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
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
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


def platform() -> Literal["colab", "kaggle", "local"]:
    if "COLAB_GPU" in os.environ or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ or Path("/kaggle").is_dir():
        return "kaggle"
    return "local"
