"""The maps of the house name every room: CONTRIBUTING.md's layout names each module of the factory, the test kit
and the runtime and each script of ci/, and the factory's docstring each of its modules. A file added without its
line fails here, so the maps cannot drift from the tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import llcuda_factory
from llcuda_factory import REPO_ROOT


def _layout_section(label: str) -> str:
    """The line of CONTRIBUTING.md's layout that starts with ``label`` and the lines indented under it."""
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    lines = block.splitlines()
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if line[indent:].startswith(label):
            section = [line]
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                section.append(following)
            return "\n".join(section)
    pytest.fail(f"CONTRIBUTING.md's layout has no entry {label!r}")


def _named(section: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", section) is not None


def _files(folder: str, pattern: str) -> list[Path]:
    return sorted(p for p in (REPO_ROOT / folder).glob(pattern) if p.name != "__init__.py")


@pytest.mark.parametrize(
    ("folder", "label", "pattern", "by"),
    [
        ("factory/llcuda_factory", "llcuda_factory/", "*.py", "name"),
        ("testkit/llcuda_testkit", "llcuda_testkit/", "*.py", "name"),
        ("python/llcuda", "llcuda/", "*.py", "stem"),
        ("ci", "ci/", "*.sh", "name"),
    ],
)
def test_contributing_layout_names_every_file(folder: str, label: str, pattern: str, by: str) -> None:
    section = _layout_section(label)
    files = _files(folder, pattern)
    assert files, f"nothing matches {folder}/{pattern}"
    missing = [p.name for p in files if not _named(section, getattr(p, by))]
    assert not missing, f"CONTRIBUTING.md's layout ({label}) does not name {missing}"


def test_the_factory_docstring_names_every_module() -> None:
    doc = llcuda_factory.__doc__ or ""
    missing = [p.stem for p in _files("factory/llcuda_factory", "*.py") if f":mod:`.{p.stem}`" not in doc]
    assert not missing, f"llcuda_factory's docstring does not name {missing}"


def test_a_module_left_out_of_a_map_is_found() -> None:
    """The check itself: a section that lacks a name does not pass for it."""
    section = _layout_section("llcuda_factory/")
    assert _named(section, "audit.py")
    assert not _named(section, "nosuchmodule.py")
    assert not _named("results.pyc", "results.py")
    assert not _named("cudawheels", "wheels")
