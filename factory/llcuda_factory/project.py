"""The project's records, read in one place.

- ``targets.toml``: the backend targets and the whole llama.cpp pin (tag, commit, offline source);
- ``python/llcuda/_version.py``: the one version of every llcuda distribution.

Every other reader (the factory, the hatch hooks, nox, the tests) goes through this module. It imports only the
standard library (and ``tomli`` before Python 3.11), so the hatch hooks can load it from a source tree.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import REPO_ROOT
from .errors import FactoryError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the build requires tomli there
    import tomli as tomllib

TABLE = Path("targets.toml")
VERSION_FILE = Path("python") / "llcuda" / "_version.py"


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file, or one clear error naming it."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FactoryError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise FactoryError(f"{path} is not valid TOML: {err}") from None


def table(root: Path = REPO_ROOT) -> dict[str, Any]:
    """targets.toml as parsed data."""
    return load_toml(root / TABLE)


def version(root: Path = REPO_ROOT) -> str:
    """``__version__`` from ``python/llcuda/_version.py`` (read as text: the runtime need not be importable)."""
    path = root / VERSION_FILE
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', path.read_text(), re.MULTILINE)
    if not m:
        raise FactoryError(f"no __version__ in {path}")
    return m.group(1)


@dataclass(frozen=True)
class LlamaCppPin:
    """The pinned llama.cpp commit, its release tag and its offline source archive (``[llama-cpp]``)."""

    commit: str
    tag: str
    offline_sdist: str
    offline_sdist_file: str
    offline_sdist_sha256: str
    offline_sdist_subdir: str


def llama_cpp_pin(root: Path = REPO_ROOT) -> LlamaCppPin:
    raw = table(root).get("llama-cpp", {})
    fields = {k.replace("-", "_"): str(v) for k, v in raw.items()}
    missing = [f for f in LlamaCppPin.__dataclass_fields__ if f not in fields]
    if missing:
        keys = ", ".join(m.replace("_", "-") for m in missing)
        raise FactoryError(f"{root / TABLE}: [llama-cpp] lacks {keys}")
    return LlamaCppPin(**{f: fields[f] for f in LlamaCppPin.__dataclass_fields__})


def runtime_module(name: str, root: Path = REPO_ROOT) -> ModuleType:
    """A self-contained module of the runtime (``python/llcuda/<name>.py``, standard library only), so that a rule
    the runtime and the factory share (the cache dir) is written once. The runtime need not be installed."""
    key = f"_llcuda_runtime_{name}"
    if key not in sys.modules:
        path = root / "python" / "llcuda" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(key, path)
        if spec is None or spec.loader is None:
            raise FactoryError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def runtime_package_module(name: str, root: Path = REPO_ROOT) -> ModuleType:
    """A module of the runtime package that uses its siblings (``llcuda.fit``), loaded from ``root``'s source tree
    under the name ``_llcuda_runtime``, so that it never mixes with an installed llcuda."""
    package = "_llcuda_runtime"
    if package not in sys.modules:
        init = root / "python" / "llcuda" / "__init__.py"
        spec = importlib.util.spec_from_file_location(package, init, submodule_search_locations=[str(init.parent)])
        if spec is None or spec.loader is None:
            raise FactoryError(f"cannot load {init}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{name}")
