"""Hatch metadata hook: the extras of the llcuda runtime, one per row of targets.toml.

``llcuda[cc50]`` pulls ``llcuda-cc50==<this version>``: the runtime and its backend always come from the
same release. Adding a target to targets.toml adds its extra here with no other edit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ExtrasHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        root = Path(self.root)
        version_py = (root / "python" / "llcuda" / "_version.py").read_text()
        m = re.search(r'^__version__\s*=\s*"([^"]+)"', version_py, re.MULTILINE)
        if not m:
            raise ValueError("no __version__ in python/llcuda/_version.py")
        with (root / "targets.toml").open("rb") as f:
            targets = tomllib.load(f)["targets"]
        metadata["optional-dependencies"] = {name: [f"llcuda-{name}=={m.group(1)}"] for name in targets}
