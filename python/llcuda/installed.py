"""Installed backend wheels, found through the ``llcuda.backends`` entry point group.

A backend package holds no logic: ``bin/`` with the tools and libraries, and ``build_info.json`` (what was built,
read here with :mod:`importlib.resources`)."""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from .catalog import CudaArch

GROUP = "llcuda.backends"


@dataclass(frozen=True)
class Backend:
    """One installed backend: ``llcuda-<target>`` with its tools in ``bin_dir``."""

    target: str
    package_dir: Path
    build_info: dict[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def bin_dir(self) -> Path:
        """The backend's tools: ``llama-server``, ``llama-bench``, ``ggml-rpc-server`` and the others."""
        return self.package_dir / "bin"

    @property
    def llama_server(self) -> Path:
        """The backend's ``llama-server`` executable."""
        return self.bin_dir / "llama-server"

    @property
    def cuda_architectures(self) -> list[str]:
        """The CUDA architectures it was built for, as CMake wrote them (``[\"50\"]``); empty for the CPU build."""
        archs: list[str] = self.build_info.get("cuda", {}).get("architectures", [])
        return archs

    @property
    def archs(self) -> tuple[CudaArch, ...]:
        """The architectures really compiled, as the factory parsed them (``cuda.archs`` in build_info.json)."""
        return tuple(CudaArch.from_json(a) for a in self.build_info.get("cuda", {}).get("archs", []))

    @property
    def cuda_version(self) -> str | None:
        """The CUDA toolkit the backend was built with ("12.4.131"), None for a CPU backend."""
        version = self.build_info.get("cuda", {}).get("toolkit_version")
        return str(version) if version else None

    @property
    def cuda_major(self) -> int | None:
        """The CUDA major of its toolkit (13 for "13.0.88"), None for a CPU backend."""
        version = self.cuda_version
        return int(version.split(".")[0]) if version else None

    def driver_floor(self, path: str) -> str | None:
        """The oldest NVIDIA driver that runs this backend's GPU code on ``path`` ("sass" or "ptx")."""
        floors = self.build_info.get("driver") or {}
        value = floors.get("sass_driver" if path == "sass" else "ptx_jit_driver")
        return str(value) if value else None

    def cuda_library_dirs(self) -> tuple[list[Path], list[str]]:
        """Where the NVIDIA runtime wheels' libraries are, when the relative RUNPATH does not reach them.

        The RUNPATH of ``libggml-cuda.so`` points into the backend's own site-packages. When the wheels live in
        another one (a ``--user`` install beside system packages, a venv with system site packages), they are
        found on Python's import path instead. Returns (extra library dirs, dirs found nowhere).
        """
        extra: list[Path] = []
        missing: list[str] = []
        for rel in self.build_info.get("cuda", {}).get("runtime_lib_dirs", []):
            if (self.package_dir.parent / rel).is_dir():
                continue
            found = next((Path(p) / rel for p in sys.path if p and (Path(p) / rel).is_dir()), None)
            if found is None:
                missing.append(rel)
            else:
                extra.append(found.resolve())
        return extra, missing


def _entry_points() -> list[EntryPoint]:
    if sys.version_info >= (3, 10):
        return list(entry_points(group=GROUP))
    return list(entry_points().get(GROUP, []))  # Python 3.9: a dict of groups


def backends() -> list[Backend]:
    """Every installed backend, sorted by target name. Reads only local package metadata.

    A broken install (a package that is gone, or an unreadable build_info.json) is skipped with a warning that
    names it, so that it cannot hide the others.
    """
    found: list[Backend] = []
    for ep in _entry_points():
        try:
            package_dir = Path(str(resources.files(ep.value)))
            info = json.loads((package_dir / "build_info.json").read_text(encoding="utf-8"))
            if not isinstance(info, dict):
                raise ValueError("build_info.json is not a JSON object")
        except (ImportError, OSError, ValueError) as err:
            dist = f"llcuda-{ep.name}"
            warnings.warn(
                f"skipping the broken backend {dist} ({ep.value}): {err}. Reinstall it: "
                f'pip install --force-reinstall "llcuda[{ep.name}]"',
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        found.append(Backend(target=ep.name, package_dir=package_dir, build_info=info))
    return sorted(found, key=lambda b: b.target)
