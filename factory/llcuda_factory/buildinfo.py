"""``build_info.json``: a backend's record of what was built, from which source, with which toolchain and options,
and (for a CUDA target) which drivers run it. The runtime reads it (``llcuda.installed``), so does the audit gate.

One writer: :func:`write`, run by CMake's install step for every target (``python -m llcuda_factory build-info``,
cmake/LLCUDAInstall.cmake). CMake hands over what only the configured build knows, as ``build_facts.json``
(cmake/build_facts.json.in); for a CUDA target :func:`write` adds what only the built library can tell: the driver
floors read from its fatbin (:mod:`.fatbin`) and the architectures parsed once for the runtime's fit policy.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from . import cudaruntime, fatbin
from .errors import FactoryError
from .targets import CudaArch


def compose(facts: dict[str, Any], driver: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """The document: CMake's ``facts``, plus for a CUDA build (``driver`` given) its floors and parsed archs."""
    info: dict[str, Any] = copy.deepcopy(facts)  # the facts file stays as CMake wrote it
    if driver is not None:
        info["driver"] = driver
        cuda = info.setdefault("cuda", {})
        cuda["archs"] = [CudaArch.parse(a, source).as_json() for a in cuda.get("architectures", [])]
    return info


def write(
    facts_file: Path,
    out: Path,
    *,
    library: Path | None = None,
    cuda_major: int | None = None,
    cuobjdump: Path | None = None,
) -> dict[str, Any]:
    """Write ``out`` from ``facts_file``; for a CUDA build, ``library`` (libggml-cuda.so) and ``cuda_major`` give
    the driver floors. The document written."""
    try:
        facts = json.loads(facts_file.read_text())
    except (OSError, ValueError) as err:
        raise FactoryError(f"cannot read the build's facts {facts_file}: {err} (configure the build again)") from err
    driver = None
    if library is not None:
        if cuda_major is None:
            raise FactoryError("build-info: --library needs --cuda-major (the CUDA major it was built with)")
        floor = cudaruntime.runtime_wheels(cuda_major).driver_floor
        driver = fatbin.driver_floors(library, floor, cuobjdump)
    info = compose(facts, driver, str(facts_file))
    out.write_text(json.dumps(info, indent=2) + "\n")
    return info
