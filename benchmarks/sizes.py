"""Each wheel's compressed and unpacked size, beside the same wheel with the CUDA runtime and cuBLAS bundled; and the
budgets of a row built for the same GPUs as another with a newer CUDA (cc75-cu13 against cc75): its wheel at most
2 MB larger, its build at most 1.1x the other's CPU seconds (user + sys of the build, from the audit reports that
`nox -s wheels` writes: measure both in one cold run, as a fresh .ci/run does).

    python benchmarks/sizes.py [--wheelhouse wheelhouse] [--out benchmarks/results]

llcuda's CUDA wheels leave libcudart and libcublas/libcublasLt to NVIDIA's own wheels (shared by every package
that needs them, installed once). Wheels that bundle them instead (what auditwheel does without llcuda's
excludes, and what the peers ship) are measured by adding those libraries, taken from the NVIDIA wheels in
wheelhouse/deps/, to a copy of the wheel at the same compression. Results: sizes.json and sizes.md.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from llcuda_factory.targets import all_targets
from llcuda_factory.wheelfile import requires as requires_dist
from llcuda_factory.wheelhouse import parse_wheel_name

ROOT = Path(__file__).resolve().parents[1]

_RUNTIME_LIBS = re.compile(r"/lib/lib(cudart|cublas|cublasLt)\.so\.\d+$")


def unpacked(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        return sum(i.file_size for i in zf.infolist())


def bundled(wheel: Path, deps: Path, package: str, out: Path) -> Path:
    """A copy of ``wheel`` with libcudart/libcublas/libcublasLt grafted into ``<package>.libs/``."""
    names = {re.split(r"[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requires_dist(wheel)}
    sources = [w for w in deps.glob("nvidia_*.whl") if parse_wheel_name(w)[0] in names]
    if not sources:
        raise SystemExit(f"no NVIDIA wheels for {wheel.name} in {deps}: run `nox -s wheels` first")
    target = out / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info), compresslevel=6)
        for nvidia in sources:
            with zipfile.ZipFile(nvidia) as zf:
                for info in zf.infolist():
                    if _RUNTIME_LIBS.search(info.filename):
                        graft = zipfile.ZipInfo(f"{package}.libs/{info.filename.rsplit('/', 1)[1]}", info.date_time)
                        graft.compress_type = zipfile.ZIP_DEFLATED  # what auditwheel writes
                        dst.writestr(graft, zf.read(info), compresslevel=6)
    return target


def budgets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each CUDA row built for the same architectures as another row with an older CUDA major: its wheel's
    size against the other's + 2 MB, its build's CPU seconds against 1.1x the other's."""
    targets = all_targets()
    by_name = {r["target"]: r for r in rows}
    out = []
    for name, row in by_name.items():
        t = targets[name]
        for other in targets.values():
            if (
                other.name in by_name
                and t.is_cuda
                and other.is_cuda
                and other.cuda_architectures == t.cuda_architectures
                and other.cuda_version[0] < t.cuda_version[0]
            ):
                base = by_name[other.name]
                cpu, base_cpu = row.get("build_cpu_seconds"), base.get("build_cpu_seconds")
                out.append(
                    {
                        "row": name,
                        "against": other.name,
                        "mb": row["compressed"] / 1e6,
                        "mb_budget": base["compressed"] / 1e6 + 2,
                        "mb_within": row["compressed"] <= base["compressed"] + 2e6,
                        "cpu_s": cpu,
                        "cpu_budget_s": 1.1 * base_cpu if base_cpu else None,
                        "cpu_within": cpu <= 1.1 * base_cpu if cpu and base_cpu else None,
                        "wall_s": row.get("build_seconds") or 0.0,
                        "against_wall_s": base.get("build_seconds") or 0.0,
                    }
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for target in all_targets().values():
        found = sorted(args.wheelhouse.glob(f"{target.package}-*.whl"))
        if not found:
            continue
        wheel = found[-1]
        row: dict[str, Any] = {
            "target": target.name,
            "wheel": wheel.name,
            "compressed": wheel.stat().st_size,
            "unpacked": unpacked(wheel),
        }
        report = args.wheelhouse / f"{target.name}.audit.json"  # the audit gate's: tag and symbol floors
        if report.is_file():
            audit = json.loads(report.read_text())
            symbols = audit.get("symbols", {})
            row["platform"] = symbols.get("platform")
            row["highest_symbol_versions"] = symbols.get("highest", {})
            row["build_seconds"] = audit.get("build_seconds")
            row["build_cpu_seconds"] = audit.get("build_cpu_seconds")
        if target.is_cuda:
            with tempfile.TemporaryDirectory() as tmp:
                fat = bundled(wheel, args.wheelhouse / "deps", target.package, Path(tmp))
                row["bundled_compressed"] = fat.stat().st_size
                row["bundled_unpacked"] = unpacked(fat)
            row["bundled_over_llcuda"] = round(row["bundled_compressed"] / row["compressed"], 2)
        rows.append(row)
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "wheels": rows, "budgets": budgets(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sizes.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "| wheel | compressed | unpacked | with cudart + cuBLAS bundled: compressed / unpacked | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        bundled_text = (
            f"{r['bundled_compressed'] / 1e6:.1f} MB / {r['bundled_unpacked'] / 1e6:.1f} MB"
            if "bundled_compressed" in r
            else "n/a (no CUDA)"
        )
        lines.append(
            f"| llcuda-{r['target']} | {r['compressed'] / 1e6:.1f} MB | {r['unpacked'] / 1e6:.1f} MB | "
            f"{bundled_text} | {r.get('bundled_over_llcuda', '')} |"
        )
    lines += [
        "",
        "| wheel | platform tag | highest symbol versions any ELF needs (from the audit) |",
        "| --- | --- | --- |",
    ]
    for r in rows:
        highest = r.get("highest_symbol_versions", {})
        floors = ", ".join(f"{k} {v}" for k, v in sorted(highest.items())) or "?"
        absent = [k for k in ("GLIBCXX", "CXXABI") if highest and k not in highest]
        floors += f" (no {', no '.join(absent)})" if absent else ""
        lines.append(f"| llcuda-{r['target']} | `{r.get('platform') or '?'}` | {floors} |")
    if result["budgets"]:
        lines += [
            "",
            "| row | against | wheel | budget (+2 MB) | build, CPU seconds | budget (1.1x) | build wall |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for b in result["budgets"]:
            cpu = f"{b['cpu_s']:.0f} s" if b["cpu_s"] else "?"
            cpu_budget = f"{b['cpu_budget_s']:.0f} s" if b["cpu_budget_s"] else "?"
            lines.append(
                f"| llcuda-{b['row']} | llcuda-{b['against']} | {b['mb']:.1f} MB | {b['mb_budget']:.1f} MB "
                f"({'within' if b['mb_within'] else 'OVER'}) | {cpu} | {cpu_budget} "
                f"({'within' if b['cpu_within'] else 'OVER' if b['cpu_within'] is False else '?'}) | "
                f"{b['wall_s']:.0f} s against {b['against_wall_s']:.0f} s |"
            )
    (args.out / "sizes.md").write_text("\n".join(lines) + "\n")
    bundles = sorted(d for d in args.wheelhouse.glob("offline-*") if (d / "requirements.txt").is_file())
    if bundles:  # `nox -s offline -- <targets>` made them; their sizes are what a user carries over
        result["bundles"] = [
            {
                "bundle": d.name,
                "files": len([f for f in d.iterdir() if f.suffix in (".whl", ".json")]),
                "bytes": sum(f.stat().st_size for f in d.iterdir()),
            }
            for d in bundles
        ]
        (args.out / "sizes.json").write_text(json.dumps(result, indent=2) + "\n")
        table = [f"| bundle ({result['date']}) | files | size |", "| --- | --- | --- |"]
        table += [f"| `{b['bundle']}` | {b['files']} | {b['bytes'] / 1e6:.1f} MB |" for b in result["bundles"]]
        (args.out / "bundles.md").write_text("\n".join(table) + "\n")
        lines += ["", *table]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
