"""The table of backend targets (``targets.toml``)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import REPO_ROOT
from .errors import FactoryError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the build requires tomli there
    import tomli as tomllib

TABLE = REPO_ROOT / "targets.toml"


@dataclass(frozen=True)
class LlamaCppPin:
    """The pinned llama.cpp commit and its offline source archive."""

    commit: str
    tag: str
    offline_sdist: str
    offline_sdist_file: str
    offline_sdist_sha256: str
    offline_sdist_subdir: str


@dataclass(frozen=True)
class Target:
    """One backend wheel: ``llcuda-<name>`` holding import package ``llcuda_<name>``."""

    name: str
    description: str
    cuda_architectures: tuple[str, ...]
    max_wheel_mb: float
    cmake: dict[str, str] = field(default_factory=dict)
    cuda: str | None = None  # the exact CUDA toolkit version ("12.4") of a CUDA row

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
        """Numeric compute capabilities (``"50"`` -> 50, ``"75-real"`` -> 75)."""
        return tuple(int(a.split("-")[0].rstrip("af")) for a in self.cuda_architectures)


def _load(path: Path = TABLE) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def llama_cpp_pin(path: Path = TABLE) -> LlamaCppPin:
    """The pinned commit and tag (``_version.py``, beside the version) and its offline source (targets.toml)."""
    from .release import read_release

    raw = _load(path)["llama-cpp"]
    rel = read_release(path.parent)
    return LlamaCppPin(
        commit=rel.llama_cpp_commit, tag=rel.llama_cpp_tag, **{k.replace("-", "_"): str(v) for k, v in raw.items()}
    )


def all_targets(path: Path = TABLE) -> dict[str, Target]:
    rows = _load(path)["targets"]
    return {
        name: Target(
            name=name,
            description=str(row["description"]),
            cuda_architectures=tuple(str(a) for a in row.get("cuda_architectures", [])),
            max_wheel_mb=float(row["max_wheel_mb"]),
            cmake={str(k): str(v) for k, v in row.get("cmake", {}).items()},
            cuda=_cuda_version(name, row),
        )
        for name, row in rows.items()
    }


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
