"""auditwheel repair with llcuda's CUDA excludes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import toolchain, toolkit
from .errors import FactoryError
from .targets import Target


def excludes(target: Target) -> list[str]:
    """Never graft the driver (it comes from the machine) nor the CUDA runtime of the row's major (it comes from
    NVIDIA's wheels, found through RUNPATHs into site-packages/nvidia)."""
    if not target.is_cuda:
        return [toolkit.DRIVER_SONAME]
    return [toolkit.DRIVER_SONAME, *toolkit.runtime_wheels(target.cuda_version[0]).sonames]


def repair(raw_wheel: Path, target: Target, out_dir: Path) -> Path:
    """Repair ``raw_wheel`` into ``out_dir`` and return the manylinux wheel written there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="repair-", dir=out_dir) as tmp:
        # The table's tag and only it: auditwheel refuses a wheel whose symbol versions exceed it, and would otherwise
        # add the older tags the wheel happens to meet (manylinux_2_27), on which no test ever ran it.
        plat = ["--plat", toolchain.get().platform, "--only-plat"]
        cmd = [sys.executable, "-m", "auditwheel", "repair", *plat, "-w", tmp]
        for pattern in excludes(target):
            cmd += ["--exclude", pattern]
        cmd.append(str(raw_wheel))
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FactoryError(f"auditwheel repair failed for {raw_wheel.name}:\n{proc.stderr.strip()}")
        made = list(Path(tmp).glob(f"{target.package}-*.whl"))
        if len(made) != 1:
            raise FactoryError(f"auditwheel wrote {len(made)} wheels for {target.name}, expected one")
        final = out_dir / made[0].name
        shutil.move(str(made[0]), final)
    return final
