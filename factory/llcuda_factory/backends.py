"""The backend projects, ``python/backends/<target>/pyproject.toml``: one template, rendered per target.

Each file differs from the others only in the target's name. ``python -m llcuda_factory backend-project NAME``
writes it, and the release check (and the tests) fail when a committed file differs from the rendering.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import REPO_ROOT, project
from .targets import Target

PROJECTS_DIR = Path("python") / "backends"

_TEMPLATE = """\
# The llcuda-{name} backend wheel. Generated from targets.toml's "{name}" row by
# `python -m llcuda_factory backend-project {name}` (PYTHONPATH=factory); do not edit by hand.
# The build is the shared top-level CMakeLists.txt. Build it with `nox -s wheels -- {name}`.
[build-system]
requires = ["scikit-build-core>=1.1,<2", "platformdirs>=3", "tomli>=2; python_version<'3.11'"]
build-backend = "scikit_build_core.build"

[project]
name = "llcuda-{name}"
dynamic = ["version", "description", "dependencies"]
readme = {{ text = "llama.cpp backend for llcuda; install it with `pip install 'llcuda[{name}]'`.", \
content-type = "text/plain" }}
license = "MIT"
requires-python = ">=3.9"

[project.entry-points."llcuda.backends"]
{name} = "{package}"

[[tool.dynamic-metadata]]
provider = {{ path = "../../../factory", module = "llcuda_factory.metadata" }}
target = "{name}"

[tool.scikit-build]
minimum-version = "build-system.requires"
cmake.source-dir = "../../.."
cmake.define.LLCUDA_TARGET = "{name}"
install.components = ["llcuda"]
wheel.packages = []
wheel.py-api = "py3"

# The release build's smoke tests (cibuildwheel's test-groups), copied from the top-level pyproject.toml.
[dependency-groups]
smoke = [{smoke}]
"""


def render(target: Target, root: Path = REPO_ROOT) -> str:
    smoke = project.load_toml(root / "pyproject.toml").get("dependency-groups", {}).get("smoke", [])
    return _TEMPLATE.format(
        name=target.name, package=target.package, smoke=", ".join(json.dumps(str(r)) for r in smoke)
    )


def path(target: Target, root: Path = REPO_ROOT) -> Path:
    return root / PROJECTS_DIR / target.name / "pyproject.toml"


def write(target: Target, root: Path = REPO_ROOT) -> Path:
    out = path(target, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(target, root))
    return out


def problems(targets: dict[str, Target], root: Path = REPO_ROOT) -> list[str]:
    """A missing, edited or orphaned backend project, each as one line that says how to fix it."""
    found: list[str] = []
    for target in targets.values():
        file = path(target, root)
        rel = file.relative_to(root)
        fix = f"run `PYTHONPATH=factory python -m llcuda_factory backend-project {target.name}`"
        if not file.is_file():
            found.append(f"target {target.name} has no {rel}: {fix}")
        elif file.read_text() != render(target, root):
            found.append(f"{rel} differs from the template (factory/llcuda_factory/backends.py): {fix}")
    projects = root / PROJECTS_DIR
    for extra in sorted(projects.glob("*/pyproject.toml")) if projects.is_dir() else []:
        if extra.parent.name not in targets:
            found.append(f"{extra.relative_to(root)} has no row in targets.toml: add the row or delete the project")
    return found
