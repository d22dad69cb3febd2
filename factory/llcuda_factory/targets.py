"""The table of backend targets (``targets.toml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import REPO_ROOT, cudaruntime, project
from .errors import FactoryError

TABLE = REPO_ROOT / project.TABLE
_ARCH = re.compile(r"(\d+)([af]?)(?:-(real|virtual))?")
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
TOOLKIT_SOURCES = ("debian", "pypi")
_PYPI_PIN = re.compile(
    r"(?P<name>[a-z0-9][a-z0-9-]*)==(?P<version>[0-9][0-9.]*) --hash=sha256:(?P<sha256>[0-9a-f]{64})"
)


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
class ToolkitPin:
    """One CUDA toolkit of ``[cuda-toolkits]``: where it comes from and the runtime versions it links.

    ``source`` is ``debian`` (ci/install-cuda-toolkit.sh's pinned packages, in ``/opt/llcuda/cuda-X.Y``) or ``pypi``
    (NVIDIA's ``wheels``, each ``name==version --hash=sha256:...``, installed by the factory into its cache dir).
    """

    version: str  # "13.0"
    source: str
    cudart: str  # "13.0.96": the libcudart it links, the floor of the backends' nvidia-cuda-runtime requirement
    cublas: str  # "13.1.0.3"
    wheels: tuple[str, ...] = ()

    @property
    def major(self) -> int:
        return cudaruntime.major_of(self.version)

    @property
    def pinned(self) -> dict[str, str]:
        """The pypi source's wheels: distribution name -> version."""
        found = {}
        for line in self.wheels:
            m = _PYPI_PIN.fullmatch(line)
            if m:
                found[m.group("name")] = m.group("version")
        return found

    def runtime_requirements(self) -> list[str]:
        """What a backend built with this toolkit requires: the NVIDIA runtime wheels of its major, from the
        versions it links on."""
        return cudaruntime.runtime_wheels(self.major).requirements(self.cudart, self.cublas)


def cuda_toolkits(path: Path = TABLE) -> dict[str, ToolkitPin]:
    """``[cuda-toolkits]``: every toolkit the table can build with, by version, checked."""
    raw = project.load_toml(path).get("cuda-toolkits", {})
    pins: dict[str, ToolkitPin] = {}
    for version, row in raw.items():
        where = f'{path.name}: [cuda-toolkits."{version}"]'
        if not re.fullmatch(r"\d+\.\d+", version):
            raise FactoryError(f"{where}: the key must be a CUDA version, MAJOR.MINOR")
        source = row.get("source")
        if source not in TOOLKIT_SOURCES:
            raise FactoryError(f"{where}: source must be one of {', '.join(TOOLKIT_SOURCES)} (got {source!r})")
        missing = [k for k in ("cudart", "cublas") if not isinstance(row.get(k), str)]
        if missing:
            raise FactoryError(f"{where} lacks {', '.join(missing)} (the runtime versions the toolkit links)")
        pin = ToolkitPin(version, source, row["cudart"], row["cublas"], tuple(str(w) for w in row.get("wheels", [])))
        cudaruntime.runtime_wheels(pin.major)  # a major with no runtime wheels mapped is a table error
        if source == "pypi":
            bad = [w for w in pin.wheels if not _PYPI_PIN.fullmatch(w)]
            if not pin.wheels or bad:
                raise FactoryError(
                    f"{where}: wheels must list each wheel as 'name==VERSION --hash=sha256:HEX' (got {bad or 'none'})"
                )
            wheels = cudaruntime.runtime_wheels(pin.major)
            for dist, linked in ((wheels.cudart, pin.cudart), (wheels.cublas, pin.cublas)):
                if pin.pinned.get(dist) != linked:
                    raise FactoryError(f"{where}: wheels pin {dist}=={pin.pinned.get(dist)}, but it says {linked}")
        pins[version] = pin
    return pins


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
    toolkit: ToolkitPin | None = None  # the row's entry of [cuda-toolkits]

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
        """The import package, also the wheel file's name part: ``llcuda_cc75_cu13`` for row ``cc75-cu13``."""
        return f"llcuda_{self.name.replace('-', '_')}"

    @property
    def variant_label(self) -> str:
        """The row's wheel-variant label (PEP 825 labels allow no ``-``): ``cc75_cu13``."""
        return self.name.replace("-", "_")

    @property
    def runtime_requirements(self) -> list[str]:
        """The NVIDIA runtime wheels a CUDA row's backend requires (empty for the CPU row)."""
        return self.toolkit.runtime_requirements() if self.toolkit else []

    @property
    def project_dir(self) -> Path:
        return REPO_ROOT / "python" / "backends" / self.name

    @property
    def sm_archs(self) -> tuple[int, ...]:
        """Numeric compute capabilities (``"50"`` -> 50, ``"75-real"`` -> 75, ``"90a"`` -> 90)."""
        return tuple(a.cc for a in self.archs)


def all_targets(path: Path = TABLE) -> dict[str, Target]:
    rows = project.load_toml(path).get("targets", {})
    toolkits = cuda_toolkits(path)
    targets = {}
    for name, row in rows.items():
        if not _NAME.fullmatch(name):
            raise FactoryError(
                f"targets.toml: target name {name!r} must be lowercase letters and digits in parts joined by '-' "
                "(it names a distribution, an extra and, with '_' for '-', a package and a variant label)"
            )
        cuda = _cuda_version(name, row)
        archs = tuple(CudaArch.parse(str(a), f"targets.toml: target {name}") for a in row.get("cuda_architectures", []))
        if cuda is not None and cuda not in toolkits:
            raise FactoryError(
                f'targets.toml: target {name} names cuda = "{cuda}", which has no [cuda-toolkits."{cuda}"] entry '
                f"(known: {', '.join(sorted(toolkits)) or 'none'})"
            )
        targets[name] = Target(
            name=name,
            description=str(row["description"]),
            cuda_architectures=tuple(str(a) for a in row.get("cuda_architectures", [])),
            max_wheel_mb=float(row["max_wheel_mb"]),
            cmake={str(k): str(v) for k, v in row.get("cmake", {}).items()},
            cuda=cuda,
            archs=archs,
            toolkit=toolkits[cuda] if cuda is not None else None,
        )
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
    rows = []
    for t in all_targets(path).values():
        row: dict[str, Any] = {
            "name": t.name,
            "description": t.description,
            "cuda": t.cuda,
            "archs": [a.as_json() for a in t.archs],
        }
        if t.is_cuda:
            wheels = cudaruntime.runtime_wheels(t.cuda_version[0])
            row["driver_floor"] = wheels.driver_floor
            row["runtime_requirements"] = t.runtime_requirements
            row["runtime_download_mb"] = wheels.download_mb
        rows.append(row)
    return {"targets": rows, "variants_index": variants_index(path), "cuda_preference": cuda_preference(path)}


VARIANT_NAMESPACE = "llcuda"  # the static namespace of [variant.providers.llcuda]
VARIANT_CUDA_FEATURE = "cuda"


def cuda_preference(path: Path = TABLE) -> list[int]:
    """The CUDA majors in the order to prefer them when a GPU's driver runs several and nothing else tells them
    apart: ``[variant.providers.llcuda] static-properties.cuda``, the order uv ranks the wheel variants in, and the
    runtime's rule when it cannot see what the environment holds. Every major a row builds with is listed."""
    table = project.load_toml(path)
    raw = table.get("variant", {}).get("providers", {}).get(VARIANT_NAMESPACE, {})
    values = raw.get("static-properties", {}).get(VARIANT_CUDA_FEATURE)
    majors = sorted(
        {cudaruntime.major_of(str(row["cuda"])) for row in table.get("targets", {}).values() if "cuda" in row}
    )
    if not isinstance(values, list) or sorted(int(v) for v in values) != majors:
        raise FactoryError(
            f"{path.name}: [variant.providers.{VARIANT_NAMESPACE}] static-properties.{VARIANT_CUDA_FEATURE} must "
            f"list every CUDA major of the rows, in the order to prefer them ({majors}; got {values!r})"
        )
    return [int(v) for v in values]


def pages_url(path: Path = TABLE) -> str:
    """The project's GitHub Pages (``[pages] url``): the documentation."""
    url = project.load_toml(path).get("pages", {}).get("url")
    if not isinstance(url, str) or not re.fullmatch(r"https://\S+/", url):
        raise FactoryError(f"{path}: [pages] url must be an https URL ending in /")
    return url


def variants_index(path: Path = TABLE) -> str:
    """Where each release publishes the llcuda wheel's variants: the PEP 503 index at ``simple/`` on the Pages."""
    return f"{pages_url(path)}simple/"
