"""The Python examples of the documentation and the README run, as written, against the cpu wheel's real
llama-server and a tiny local model: each page's blocks in order, in one interpreter, as notebook cells would.
Model paths and Hub specs become the tiny model (tests never fetch from a hub), and notebook shell lines (`!pip`)
are dropped. A block that cannot run here says so just above it, with the reason:
``<!-- not run in CI: REASON -->`` (README) or ``% not run in CI: REASON`` (docs pages)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT

PAGES = [
    p for p in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))] if "```python" in p.read_text()
]
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.DOTALL)
_SKIP = re.compile(r"(?:<!--|%)\s*not run in CI:\s*(?P<why>.+?)\s*(?:-->)?$")
_MODEL = re.compile(r"\"[^\"\n]*\.gguf\"")


def examples(page: Path) -> tuple[list[str], list[str]]:
    """The page's Python blocks that run, and the reasons of those that do not."""
    run, skipped = [], []
    for m in _BLOCK.finditer(page.read_text()):
        if why := _SKIP.search(m.group("before").strip()):
            skipped.append(why.group("why"))
            continue
        run.append(m.group("code"))
    return run, skipped


def test_a_skipped_example_must_say_why(tmp_path: Path) -> None:
    page = tmp_path / "fake.md"
    page.write_text("intro\n% not run in CI: needs two T4s\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n")
    assert examples(page) == (["y = 2"], ["needs two T4s"])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_examples_of_a_page_run(page: Path, tiny_gguf: Path, cpu_backend: None, tmp_path: Path) -> None:
    run, _ = examples(page)
    assert run, f"{page.name}: every example is marked not run in CI"
    code = "\n\n".join(run)
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("!"))
    code = _MODEL.sub(repr(str(tiny_gguf)), code)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, f"{page.name}:\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}"
