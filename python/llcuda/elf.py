"""Is a file an ELF binary? Asked by the runtime (a llama-server to run) and by the wheel factory's audit, which
loads this file from the source tree."""

from __future__ import annotations

from pathlib import Path

MAGIC = b"\x7fELF"


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC
