"""Compare two builds of the same wheel: are they the same bytes, and if not, what differs and where."""

from __future__ import annotations

import difflib
import hashlib
import zipfile
from pathlib import Path
from typing import Any

from .source import sha256_of


def _entries(wheel: Path) -> dict[str, tuple[tuple[int, ...], int, str]]:
    """name -> (timestamp, unix mode, sha256 of the content)."""
    with zipfile.ZipFile(wheel) as zf:
        return {
            info.filename: (info.date_time, info.external_attr >> 16, hashlib.sha256(zf.read(info)).hexdigest())
            for info in zf.infolist()
        }


def _text_diff(first: Path, second: Path, name: str, limit: int = 40) -> list[str]:
    """The first lines of a unified diff of a text entry (empty for binaries and large files)."""
    with zipfile.ZipFile(first) as za, zipfile.ZipFile(second) as zb:
        a, b = za.read(name), zb.read(name)
    if max(len(a), len(b)) > 1 << 20 or b"\0" in a + b:
        return []
    lines = difflib.unified_diff(
        a.decode(errors="replace").splitlines(),
        b.decode(errors="replace").splitlines(),
        "first",
        "second",
        lineterm="",
        n=1,
    )
    return list(lines)[:limit]


def compare_wheels(first: Path, second: Path) -> dict[str, Any]:
    """Whole-file and per-entry comparison. ``identical`` means the two files are the same bytes."""
    a, b = _entries(first), _entries(second)
    differences: list[dict[str, Any]] = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            differences.append({"entry": name, "what": f"only in the {'second' if name in b else 'first'} wheel"})
            continue
        (ta, ma, ha), (tb, mb, hb) = a[name], b[name]
        what = [w for w, differs in (("content", ha != hb), ("timestamp", ta != tb), ("mode", ma != mb)) if differs]
        if what:
            row: dict[str, Any] = {"entry": name, "what": ", ".join(what)}
            if ha != hb and (diff := _text_diff(first, second, name)):
                row["diff"] = diff
            differences.append(row)
    same_order = list(a) == list(b)
    identical = first.name == second.name and sha256_of(first) == sha256_of(second)
    summary = (
        f"identical: {first.name} ({sha256_of(first)[:16]}…)"
        if identical
        else f"{len(differences)} of {len(set(a) | set(b))} entries differ"
        + ("" if same_order else ", entries in another order")
    )
    return {
        "identical": identical,
        "summary": summary,
        "first": {"file": first.name, "sha256": sha256_of(first), "bytes": first.stat().st_size},
        "second": {"file": second.name, "sha256": sha256_of(second), "bytes": second.stat().st_size},
        "entries": len(a),
        "same_order": same_order,
        "differences": differences,
    }
