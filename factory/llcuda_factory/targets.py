"""The table of backend targets (``targets.toml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import REPO_ROOT, project
from .errors import FactoryError

TABLE = REPO_ROOT / project.TABLE
_ARCH = re.compile(r"(\d+)([af]?)(?:-(real|virtual))?")


@dataclass(frozen=True)
class CudaArch:
    """One entry of a row's ``cuda_architectures``, in CMake's syntax, parsed once for CMake and the runtime.

    ``"50"`` is SASS (machine code) plus PTX, ``"50-real"`` SASS only, ``"50-virtual"`` PTX only. A suffix ``a``
    (``"90a"``) marks arch-specific code that runs on exactly that GPU; ``f`` marks family-specific code.
    """

    cc: int
    suffix: str
    sass: bool
    ptx: bool

    @classmethod
    def parse(cls, text: str, where: str = "targets.toml") -> CudaArch:
        m = _ARCH.fullmatch(text.strip())
        if not m:
            raise FactoryError(
                f"{where}: CUDA architecture {text!r} is not CMake's NN, NN-real, NN-virtual or NNa/NNf form"
            )
        kind = m.group(3)
        return cls(int(m.group(1)), m.group(2), sass=kind != "virtual", ptx=kind != "real")

    def as_json(self) -> dict[str, Any]:
        """The parsed form recorded in build_info.json and the runtime's target table."""
        return {"cc": self.cc, "suffix": self.suffix, "sass": self.sass, "ptx": self.ptx}


@dataclass(frozen=True)
class Target:
    """One backend wheel: ``llcuda-<name>`` holding import package ``llcuda_<name>``."""

    name: str
    description: str
    cuda_architectures: tuple[str, ...]
    max_wheel_mb: float
    cmake: dict[str, str] = field(default_factory=dict)
    cuda: str | None = None  # the exact CUDA toolkit version ("12.4") of a CUDA row
    archs: tuple[CudaArch, ...] = ()  # cuda_architectures, parsed

    @property
    def cuda_version(self) -> tuple[int, int]:
        """The row's toolkit version as (major, minor); only for CUDA rows (the table check guarantees one)."""
        if self.cuda is None:
            raise FactoryError(f"target {self.name} has no CUDA toolkit version")
        major, minor = self.cuda.split(".")
        return int(major), int(minor)

    @property
    def is_cuda(self) -> bool:
        return bool(self.cuda_architectures)

    @property
    def distribution(self) -> str:
        return f"llcuda-{self.name}"

    @property
    def package(self) -> str:
        return f"llcuda_{self.name}"

    @property
    def project_dir(self) -> Path:
        return REPO_ROOT / "python" / "backends" / self.name

    @property
    def sm_archs(self) -> tuple[int, ...]:
        """Numeric compute capabilities (``"50"`` -> 50, ``"75-real"`` -> 75, ``"90a"`` -> 90)."""
        return tuple(a.cc for a in self.archs)


def all_targets(path: Path = TABLE) -> dict[str, Target]:
    rows = project.load_toml(path).get("targets", {})
    targets = {
        name: Target(
            name=name,
            description=str(row["description"]),
            cuda_architectures=tuple(str(a) for a in row.get("cuda_architectures", [])),
            max_wheel_mb=float(row["max_wheel_mb"]),
            cmake={str(k): str(v) for k, v in row.get("cmake", {}).items()},
            cuda=_cuda_version(name, row),
            archs=tuple(
                CudaArch.parse(str(a), f"targets.toml: target {name}") for a in row.get("cuda_architectures", [])
            ),
        )
        for name, row in rows.items()
    }
    return targets


def _cuda_version(name: str, row: dict[str, Any]) -> str | None:
    """A CUDA row must name its toolkit as "MAJOR.MINOR"; a CPU row must not name one."""
    value = row.get("cuda")
    if not row.get("cuda_architectures"):
        if value is not None:
            raise FactoryError(f"targets.toml: target {name} has no cuda_architectures but names cuda = {value!r}")
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+", value):
        raise FactoryError(
            f"targets.toml: CUDA target {name} must name its toolkit version exactly, "
            f'e.g. cuda = "12.4" (got {value!r})'
        )
    return value


def cuda_versions(path: Path = TABLE) -> list[str]:
    """Every CUDA toolkit version the table builds with, oldest first."""
    found = {t.cuda for t in all_targets(path).values() if t.cuda}
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def get_target(name: str, path: Path = TABLE) -> Target:
    targets = all_targets(path)
    try:
        return targets[name]
    except KeyError:
        known = ", ".join(sorted(targets))
        raise FactoryError(f"unknown target {name!r}; the targets are: {known} (see targets.toml)") from None


def runtime_table(path: Path = TABLE) -> dict[str, Any]:
    """The rows as the runtime knows them (``llcuda/_targets.json``, read by ``llcuda.catalog``): name,
    description, CUDA version, parsed architectures and, for a CUDA row, the oldest driver that runs its CUDA
    runtime, the floor that ``llcuda.fit`` and the wheel variants share."""
    from .toolkit import runtime_wheels  # toolkit imports this module

    rows = []
    for t in all_targets(path).values():
        row: dict[str, Any] = {
            "name": t.name,
            "description": t.description,
            "cuda": t.cuda,
            "archs": [a.as_json() for a in t.archs],
        }
        if t.is_cuda:
            row["driver_floor"] = runtime_wheels(t.cuda_version[0]).driver_floor
        rows.append(row)
    return {"targets": rows, "variants_index": variants_index(path)}


def pages_url(path: Path = TABLE) -> str:
    """The project's GitHub Pages (``[pages] url``): the documentation."""
    url = project.load_toml(path).get("pages", {}).get("url")
    if not isinstance(url, str) or not re.fullmatch(r"https://\S+/", url):
        raise FactoryError(f"{path}: [pages] url must be an https URL ending in /")
    return url


def variants_index(path: Path = TABLE) -> str:
    """Where each release publishes the llcuda wheel's variants: the PEP 503 index at ``simple/`` on the Pages."""
    return f"{pages_url(path)}simple/"
