"""Installed backend wheels, found through the ``llcuda.backends`` entry point group."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

GROUP = "llcuda.backends"


@dataclass(frozen=True)
class Backend:
    """One installed backend: ``llcuda-<target>`` with its tools in ``bin_dir``."""

    target: str
    package_dir: Path
    build_info: dict[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def bin_dir(self) -> Path:
        return self.package_dir / "bin"

    @property
    def llama_server(self) -> Path:
        return self.bin_dir / "llama-server"

    @property
    def cuda_architectures(self) -> list[str]:
        archs: list[str] = self.build_info.get("cuda", {}).get("architectures", [])
        return archs

    @property
    def cuda_version(self) -> str | None:
        """The CUDA toolkit the backend was built with ("12.4.131"), None for a CPU backend."""
        version = self.build_info.get("cuda", {}).get("toolkit_version")
        return str(version) if version else None

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


def backends() -> list[Backend]:
    """Every installed backend, sorted by target name. Reads only local package metadata."""
    found: list[Backend] = []
    for ep in entry_points(group=GROUP):
        module = importlib.import_module(ep.value)
        package_dir = Path(module.__file__ or "").resolve().parent
        info = json.loads((package_dir / "build_info.json").read_text(encoding="utf-8"))
        found.append(Backend(target=ep.name, package_dir=package_dir, build_info=info))
    return sorted(found, key=lambda b: b.target)
