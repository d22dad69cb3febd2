"""Compare a backend wheel of the release recipe with the same target built another way (cibuildwheel in PyPA's
manylinux_2_28 image): ``python -m llcuda_factory compare-wheels RECIPE OTHER``.

Two independent builds of one commit are never the same bytes (other compilers, other paths). What must agree is
what a user gets: the files, the CUDA code each GPU runs, the drivers it needs, the dependencies pip installs, and
a platform tag both earn. Each difference is one line; none means the builds agree.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from . import fatbin, symbols, toolchain, wheelfile
from .audit import is_elf


def _payload(zf: zipfile.ZipFile) -> list[str]:
    """Entry names but RECORD (its hashes differ by construction) and the recipe's C++ runtime: the sysroot build
    carries gcc-10's libstdc++ in one library of its own, a native manylinux build uses the system's
    libstdc++.so.6 (the image's toolset keeps it within the tag). That is the one difference by design."""
    return sorted(
        n for n in zf.namelist() if not n.endswith(".dist-info/RECORD") and not n.endswith(f"/{toolchain.CXX_RUNTIME}")
    )


def _build_info(zf: zipfile.ZipFile) -> dict[str, Any]:
    names = [n for n in zf.namelist() if n.endswith("/build_info.json") and n.count("/") == 1]
    return json.loads(zf.read(names[0])) if names else {}


def _cuda_code(lib: Path) -> dict[str, list[str]]:
    found = fatbin.entries(lib)
    return {
        "sass": sorted({f"sm_{e.arch}" for e in found if e.kind == fatbin.KIND_ELF}),
        "ptx": sorted({f"compute_{e.arch}" for e in found if e.kind == fatbin.KIND_PTX}),
    }


def _differ(what: str, recipe: object, other: object) -> list[str]:
    return [] if recipe == other else [f"{what}: recipe {recipe}, other {other}"]


def compare(recipe: Path, other: Path, platform: str | None = None) -> list[str]:
    """Every way ``other`` differs from ``recipe`` in what a user gets; [] when they agree."""
    platform = platform or toolchain.get().platform
    problems: list[str] = []
    with zipfile.ZipFile(recipe) as za, zipfile.ZipFile(other) as zb:
        a_files, b_files = _payload(za), _payload(zb)
        only_a = sorted(set(a_files) - set(b_files))
        only_b = sorted(set(b_files) - set(a_files))
        problems += [f"only in the recipe's wheel: {n}" for n in only_a]
        problems += [f"only in the other wheel: {n}" for n in only_b]
        info_a, info_b = _build_info(za), _build_info(zb)
        cuda_a, cuda_b = info_a.get("cuda", {}), info_b.get("cuda", {})
        problems += _differ("CUDA architectures (build_info.json)", cuda_a.get("archs"), cuda_b.get("archs"))
        for key in ("sass_driver", "ptx_jit_driver", "ptx_isa"):
            problems += _differ(
                f"driver floor {key}", (info_a.get("driver") or {}).get(key), (info_b.get("driver") or {}).get(key)
            )
        with tempfile.TemporaryDirectory(prefix="compare-wheels-") as tmp:
            for side, zf in (("recipe", za), ("other", zb)):
                zf.extractall(Path(tmp) / side)
            for side in ("recipe", "other"):
                root = Path(tmp) / side
                elfs = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and is_elf(p)}
                found, _ = symbols.check(elfs, platform)
                problems += [f"{side}: {p}" for p in found]
                if not elfs:
                    problems.append(f"{side}: no ELF file in the wheel")
            libs = {side: sorted((Path(tmp) / side).rglob("libggml-cuda.so")) for side in ("recipe", "other")}
            if libs["recipe"] and libs["other"]:
                problems += _differ(
                    "CUDA code in libggml-cuda.so", _cuda_code(libs["recipe"][0]), _cuda_code(libs["other"][0])
                )
    problems += _differ("Requires-Dist", sorted(wheelfile.requires(recipe)), sorted(wheelfile.requires(other)))
    return problems
