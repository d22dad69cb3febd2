"""Installed backend wheels, found through the ``llcuda.backends`` entry point group."""

from __future__ import annotations

import importlib
import json
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


def backends() -> list[Backend]:
    """Every installed backend, sorted by target name. Reads only local package metadata."""
    found: list[Backend] = []
    for ep in entry_points(group=GROUP):
        module = importlib.import_module(ep.value)
        package_dir = Path(module.__file__ or "").resolve().parent
        info = json.loads((package_dir / "build_info.json").read_text(encoding="utf-8"))
        found.append(Backend(target=ep.name, package_dir=package_dir, build_info=info))
    return sorted(found, key=lambda b: b.target)
