"""Hatch hooks of the llcuda runtime wheel: what it learns from targets.toml.

- ``ExtrasHook`` (metadata): one extra per row, ``llcuda[cc50]`` pulls ``llcuda-cc50==<this version>``, so the
  runtime and its backend always come from the same release.
- ``TargetsHook`` (build): writes ``python/llcuda/_targets.json``, the rows with their parsed CUDA architectures,
  from which ``llcuda doctor`` and ``check_gpu_compatibility()`` recommend a backend.

Adding a row to targets.toml adds its extra and its entry here with no other edit. Both read the table through
``llcuda_factory.project``, the one reader, loaded from this source tree by file location: hatch runs this file
as a loose script, with nothing of the tree on ``sys.path``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

GENERATED = Path("python") / "llcuda" / "_targets.json"


def _factory(root: Path, module: str) -> ModuleType:
    """``llcuda_factory.<module>`` of the source tree at ``root``."""
    if "llcuda_factory" not in sys.modules:
        init = root / "factory" / "llcuda_factory" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "llcuda_factory", init, submodule_search_locations=[str(init.parent)]
        )
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load the build library from {init}")
        package = importlib.util.module_from_spec(spec)
        sys.modules["llcuda_factory"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"llcuda_factory.{module}")


def runtime_table(root: Path) -> dict[str, Any]:
    """What the runtime knows of each target (``llcuda_factory.targets.runtime_table``)."""
    return dict(_factory(root, "targets").runtime_table(root / "targets.toml"))


class ExtrasHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        root = Path(self.root)
        version = _factory(root, "project").version(root)
        targets = _factory(root, "targets").all_targets(root / "targets.toml")
        metadata["optional-dependencies"] = {name: [f"llcuda-{name}=={version}"] for name in targets}


class TargetsHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        out = root / GENERATED
        text = json.dumps(runtime_table(root), indent=2) + "\n"
        if not out.is_file() or out.read_text() != text:
            out.write_text(text)
