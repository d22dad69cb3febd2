"""Where measurements go. A run writes what it measured to ``benchmarks/latest/`` (ignored by git), so that CI leaves
the checkout as committed; ``record`` copies them into ``benchmarks/results/``, which is tracked and which the
docs include, when someone means to commit new figures (``nox -s record``).

Deliberate measurements (``nox -s bench``, ``ci/fresh-root.sh``) write to ``benchmarks/results/`` themselves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import REPO_ROOT
from .errors import FactoryError

LATEST = REPO_ROOT / "benchmarks" / "latest"
RESULTS = REPO_ROOT / "benchmarks" / "results"


def latest(name: str) -> Path:
    """The path a run writes measurement ``name`` to (``benchmarks/latest/<name>``; the folder is made)."""
    LATEST.mkdir(parents=True, exist_ok=True)
    return LATEST / name


def record(source: Path = LATEST, dest: Path = RESULTS) -> list[Path]:
    """Copy every file of ``source`` into ``dest``, replacing the recorded ones; the files written, sorted."""
    files = sorted(p for p in source.glob("*") if p.is_file()) if source.is_dir() else []
    if not files:
        raise FactoryError(
            f"nothing to record: {source} holds no measurement; run `bash .ci/run` or `nox -s upstream` first"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, dest / path.name)
    return [dest / p.name for p in files]
