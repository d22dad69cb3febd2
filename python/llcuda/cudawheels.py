"""NVIDIA's CUDA wheels in this Python environment, as pip sees them (``importlib.metadata``), and what installing
a backend would download on top of them: what ``llcuda doctor`` weighs beside the driver.

A backend requires the cudart and cuBLAS wheels of its CUDA major (``nvidia-cublas-cu12>=12.4.5.8,<13`` for
CUDA 12, the unsuffixed ``nvidia-cublas>=13.1.0.3,<14`` for CUDA 13). An environment that holds a version each
requirement accepts, such as the wheels a CUDA 13 torch from PyPI installs, downloads none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .catalog import TargetInfo


def installed() -> dict[str, str]:
    """Every ``nvidia-*`` distribution of this environment: canonical name -> version."""
    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and canonicalize_name(name).startswith("nvidia-"):
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def satisfied(requirement: str, have: dict[str, str]) -> bool:
    """Whether ``have`` holds a version ``requirement`` accepts (pip would download nothing for it)."""
    req = Requirement(requirement)
    version = have.get(canonicalize_name(req.name))
    return version is not None and req.specifier.contains(version, prereleases=True)


@dataclass(frozen=True)
class Download:
    """What installing a row's backend fetches of NVIDIA's wheels here: about ``mb`` MB for ``wheels``; ``present``
    names the requirements already met."""

    mb: float
    wheels: tuple[str, ...]
    present: tuple[str, ...]

    def describe(self) -> str:
        if not self.wheels and not self.present:
            return "no NVIDIA CUDA wheels"
        if not self.wheels:
            return f"0 MB of NVIDIA's CUDA wheels: {', '.join(self.present)} already installed"
        return f"about {self.mb:.0f} MB of NVIDIA's CUDA wheels ({', '.join(self.wheels)})"


def download(target: TargetInfo, have: dict[str, str]) -> Download:
    """NVIDIA's wheels ``pip install "llcuda[<target>]"`` would download into an environment that holds ``have``:
    each requirement no installed version meets, and the wheels those bring along (cuBLAS's NVRTC) when they are
    missing too. Sizes are those of the newest releases, recorded when the table was written."""
    required = {canonicalize_name(Requirement(r).name): r for r in target.runtime_requirements}
    names: list[str] = [name for name, r in required.items() if not satisfied(r, have)]
    present = tuple(f"{name} {have[name]}" for name, r in required.items() if satisfied(r, have))
    if names:  # what the requirements bring along (not requirements of the backend itself)
        names += [n for n in target.runtime_download_mb if n not in required and n not in have]
    mb = sum(target.runtime_download_mb.get(n, 0.0) for n in names)
    return Download(mb, tuple(names), present)
