"""llcuda's backend targets, as the runtime knows them: the rows of targets.toml, written into this package as
``_targets.json`` when the llcuda wheel is built (``factory/hatch_hooks.py``). Read with no network."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from .errors import LLCudaError


@dataclass(frozen=True)
class CudaArch:
    """One CUDA architecture of a build, as the factory parsed it: ``cc`` 50 with ``sass`` (machine code) and/or
    ``ptx``; ``suffix`` "a" for arch-specific code (runs on exactly that GPU), "f" for family-specific code."""

    cc: int
    suffix: str = ""
    sass: bool = True
    ptx: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CudaArch:
        return cls(int(data["cc"]), str(data.get("suffix", "")), bool(data.get("sass")), bool(data.get("ptx")))


@dataclass(frozen=True)
class TargetInfo:
    """One row of targets.toml: the ``llcuda-<name>`` backend wheel."""

    name: str
    description: str
    cuda: str | None
    archs: tuple[CudaArch, ...]
    driver_floor: str | None = None  # the oldest NVIDIA driver that runs its CUDA runtime; None for the CPU row
    # NVIDIA's runtime wheels its backend requires ("nvidia-cublas>=13.1.0.3,<14"), and what each of those (with
    # cuBLAS's own NVRTC) downloads in an environment that has none, in MB
    runtime_requirements: tuple[str, ...] = ()
    runtime_download_mb: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_cuda(self) -> bool:
        return bool(self.archs)

    @property
    def cuda_major(self) -> int | None:
        """The CUDA major its backend is built with (13 for "13.0"); None for the CPU row."""
        return int(self.cuda.split(".")[0]) if self.cuda else None


@lru_cache(maxsize=1)
def targets() -> tuple[TargetInfo, ...]:
    """Every target of the release this llcuda comes from, in table order."""
    try:
        text = resources.files("llcuda").joinpath("_targets.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LLCudaError(
            "llcuda's table of backend targets (_targets.json) is missing: it is written when the llcuda wheel is "
            "built. Reinstall llcuda (from a source checkout: pip install -e .)."
        ) from None
    return parse(json.loads(text))


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    targets()  # the same file, the same error when it is missing
    text = resources.files("llcuda").joinpath("_targets.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def variants_index() -> str:
    """The package index where each release publishes the llcuda wheel's variants, for uv (``simple/`` under
    ``[pages] url`` of targets.toml)."""
    return str(_document()["variants_index"])


def cuda_preference() -> tuple[int, ...]:
    """The CUDA majors in the order to prefer them when the driver runs several and nothing else tells them apart:
    the order uv ranks llcuda's wheel variants in (``[variant.providers.llcuda]`` of targets.toml)."""
    return tuple(int(m) for m in _document().get("cuda_preference", []))


def parse(table: dict[str, Any]) -> tuple[TargetInfo, ...]:
    """The rows of a ``_targets.json`` document (the factory reads its own table through this too)."""
    return tuple(
        TargetInfo(
            name=str(row["name"]),
            description=str(row["description"]),
            cuda=row.get("cuda"),
            archs=tuple(CudaArch.from_json(a) for a in row.get("archs", [])),
            driver_floor=row.get("driver_floor"),
            runtime_requirements=tuple(row.get("runtime_requirements", ())),
            runtime_download_mb={str(k): float(v) for k, v in row.get("runtime_download_mb", {}).items()},
        )
        for row in table["targets"]
    )
