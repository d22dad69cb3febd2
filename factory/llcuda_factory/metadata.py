"""scikit-build-core dynamic-metadata provider for the backend wheels.

Each ``python/backends/<target>/pyproject.toml`` declares ``dynamic = ["version", "description",
"dependencies"]`` and one ``[[tool.dynamic-metadata]]`` entry with ``target = "<name>"``. This fills in:

- ``version``: the one version of all llcuda distributions (``python/llcuda/_version.py``, via :mod:`.project`);
- ``description``: the target's row in ``targets.toml``;
- ``dependencies``: for CUDA targets, NVIDIA's cudart and cuBLAS wheels of the row's CUDA major, from the versions
  its ``[cuda-toolkits]`` entry links on (the configure step checks the toolkit really links those), never
  hand-edited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .project import version
from .targets import get_target


def dynamic_metadata(settings: Mapping[str, Any], project: Mapping[str, Any]) -> dict[str, Any]:
    target = get_target(str(settings["target"]))
    deps = target.runtime_requirements
    return {
        "version": version(),
        "description": f"llama.cpp {target.name} backend for llcuda: {target.description}",
        "dependencies": deps,
    }
