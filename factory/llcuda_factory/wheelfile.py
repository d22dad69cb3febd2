"""A built wheel: its metadata (the one METADATA reader of the factory, its tests and its benchmarks), and
where an interpreter installs it."""

from __future__ import annotations

import subprocess
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path


def metadata(wheel: Path) -> Message:
    """The parsed ``*.dist-info/METADATA`` of ``wheel``."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode())


def requires(wheel: Path) -> list[str]:
    """The wheel's declared dependencies (Requires-Dist)."""
    return metadata(wheel).get_all("Requires-Dist") or []


def site_packages(python: Path) -> Path:
    """Where ``python`` (a venv's interpreter, say) installs packages: its ``platlib``."""
    code = "import sysconfig; print(sysconfig.get_paths()['platlib'])"
    return Path(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip())
