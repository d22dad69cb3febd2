"""Where a CUDA wheel's size goes, and what each honest way to shrink it would save and cost.

    python benchmarks/cuda_size_options.py [--build build] [--wheelhouse wheelhouse] [--out benchmarks/results]

For each CUDA target built in ``build/<target>``, every ggml-cuda object's fatbin is read (the same reader as
the factory's driver floor, ``llcuda_factory.fatbin``) and its cubins (SASS) and PTX are deflated at the wheel's
level, grouped by what the kernels are for:

- ``fattn``: FlashAttention (``fattn*.cu`` and their template instances). With ``GGML_CUDA_FA=OFF`` ggml-cuda
  reports FLASH_ATTN_EXT as unsupported, so these kernels are never launched; the option only adds a define and
  they are still compiled.
- ``mmq``: quantized matrix multiplication (``mmq*.cu`` and instances). With ``GGML_CUDA_FORCE_CUBLAS=ON`` the
  matrix multiplications go to cuBLAS instead; these are likewise compiled but not used for them.
- everything else.

Each group's share of the deflated device code is what leaving it out would save in the wheel (the host code
that references them stays). The PTX share is what dropping the PTX would save: the cost there is losing the
JIT path, which is how a cc75 wheel runs on newer GPUs.

nvcc stores the PTX compressed by default (fatbin flag 0x2000; the cubins are not compressed). The cost of
turning that off (``-Xfatbin=--no-compress``) is measured too: each PTX is read back as text with the toolkit's
cuobjdump and deflated as the wheel would store it, against its compressed form deflated. The results go to
cuda_size_options.json and .md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from llcuda_factory import fatbin, toolkit
from llcuda_factory.errors import FactoryError
from llcuda_factory.targets import all_targets

ROOT = Path(__file__).resolve().parents[1]

MB = 1_000_000
_OUTPUT = re.compile(r"\s-o\s+(\S+)")


def group_of(obj: Path) -> str:
    name = obj.name.removesuffix(".cu.o")
    for group in ("fattn", "mmq"):
        if name.startswith(group):
            return group
    return "other"


def _ptx_text_deflated(obj: Path, cuobjdump: str) -> int:
    """The object's PTX as plain text (what --no-compress would store), deflated at the wheel's level."""
    proc = subprocess.run([cuobjdump, "-ptx", str(obj)], capture_output=True, check=True)
    return len(zlib.compress(proc.stdout, 6))


def measure(build_dir: Path, cuobjdump: str | None) -> dict[str, Any]:
    # The objects of the current configuration only (a build dir may keep objects of sources no longer built).
    commands = json.loads((build_dir / "compile_commands.json").read_text())
    current = {(Path(c["directory"]) / m.group(1)).resolve() for c in commands if (m := _OUTPUT.search(c["command"]))}
    objs = sorted(o for o in build_dir.glob("**/ggml-cuda.dir/**/*.cu.o") if o.resolve() in current)
    if not objs:
        raise SystemExit(f"no ggml-cuda objects under {build_dir}: build the target first (`nox -s wheels`)")
    sizes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for obj in objs:
        group = group_of(obj)
        for entry in fatbin.entries(obj):
            kind = "ptx" if entry.kind == fatbin.KIND_PTX else "sass"
            sizes[group][f"{kind}_deflated"] += len(zlib.compress(entry.payload, 6))
            sizes[group][f"{kind}_stored"] += entry.stored_bytes
        sizes[group]["objects"] += 1
        if cuobjdump:
            sizes[group]["ptx_uncompressed_deflated"] += _ptx_text_deflated(obj, cuobjdump)
    total = sum(g[k] for g in sizes.values() for k in ("sass_deflated", "ptx_deflated"))
    return {"objects": len(objs), "device_code_deflated": total, "groups": {g: dict(v) for g, v in sizes.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--wheelhouse", default=str(ROOT / "wheelhouse"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "targets": {}}
    lines = [
        "# CUDA wheel size: where it goes (`benchmarks/cuda_size_options.py`)",
        "",
        "| target | wheel | device code, deflated | FA kernels (unused, FA OFF) | MMQ kernels (FORCE_CUBLAS) "
        "| all PTX (the JIT path) | PTX stored uncompressed: extra |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for target in (t for t in all_targets().values() if t.is_cuda):
        build = Path(args.build) / target.name
        if not build.is_dir():
            print(f"{target.name}: no build dir {build}, skipped")
            continue
        try:
            cuobjdump = toolkit.select(target).cuobjdump
        except FactoryError:
            cuobjdump = None
        m = measure(build, str(cuobjdump) if cuobjdump else None)
        wheels = sorted(Path(args.wheelhouse).glob(f"{target.package}-*.whl"))
        m["wheel_bytes"] = wheels[-1].stat().st_size if wheels else None
        g = m["groups"]

        def dfl(group: str, kinds: tuple[str, ...] = ("sass", "ptx"), g: dict[str, Any] = g) -> int:
            return sum(g.get(group, {}).get(f"{k}_deflated", 0) for k in kinds)

        ptx = sum(dfl(name, ("ptx",)) for name in g)
        m["savings"] = {"fattn": dfl("fattn"), "mmq": dfl("mmq"), "ptx": ptx}
        plain = sum(v.get("ptx_uncompressed_deflated", 0) for v in g.values())
        m["no_compress_cost"] = plain - ptx if plain else None
        results["targets"][target.name] = m
        wheel = f"{m['wheel_bytes'] / MB:.1f} MB" if m["wheel_bytes"] else "not built"
        lines.append(
            f"| {target.name} | {wheel} | {m['device_code_deflated'] / MB:.1f} MB | {dfl('fattn') / MB:.1f} MB "
            f"| {dfl('mmq') / MB:.1f} MB | {ptx / MB:.1f} MB "
            f"| {'+' + format(m['no_compress_cost'] / MB, '.1f') + ' MB' if m['no_compress_cost'] else 'n/a'} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_size_options.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "cuda_size_options.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
