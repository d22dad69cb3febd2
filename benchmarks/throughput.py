"""Prompt-processing and generation speed of a gemma-3-1b-shaped model with the wheel's own tools.

    python benchmarks/throughput.py [--backend cpu] [--reps 3] [--out benchmarks/results]
    python benchmarks/throughput.py --against OLD.whl    # side by side with another build of the backend wheel

The model comes from benchmarks/synthetic_gemma.py (random weights, gemma-3-1b's shapes, F16), quantized to
Q4_K_M by the backend's ``llama-quantize``; ``llama-bench`` then measures pp512 and tg128. Both files are kept
in build/bench-models/ between runs. On a GPU machine the same measurement, against a native build, is
benchmarks/gpu/device_bench.sh. Results: throughput_<backend>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from synthetic_gemma import weight_bytes, write_gemma3_1b_like

import llcuda

ROOT = Path(__file__).resolve().parents[1]


def model(backend: llcuda.Backend, cache: Path) -> tuple[Path, dict[str, Any]]:
    cache.mkdir(parents=True, exist_ok=True)
    f16, q4 = cache / "gemma-3-1b-synthetic-f16.gguf", cache / "gemma-3-1b-synthetic-Q4_K_M.gguf"
    info: dict[str, Any] = {}
    if not q4.exists():
        start = time.perf_counter()
        if not f16.exists():
            write_gemma3_1b_like(f16)
        info["write_f16_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        tmp = q4.with_suffix(".partial")
        subprocess.run(
            [str(backend.bin_dir / "llama-quantize"), str(f16), str(tmp), "Q4_K_M"], check=True, capture_output=True
        )
        tmp.replace(q4)
        info["quantize_s"] = round(time.perf_counter() - start, 1)
    return q4, info


def bench(
    backend: llcuda.Backend | SimpleNamespace, path: Path, reps: int, threads: int, extra: list[str] | None = None
) -> list[dict[str, Any]]:
    """llama-bench's pp512 and tg128 rows (``extra``: more llama-bench arguments, e.g. ``--rpc``)."""
    cmd = [
        str(backend.bin_dir / "llama-bench"),
        "-m",
        str(path),
        "-p",
        "512",
        "-n",
        "128",
        "-r",
        str(reps),
        "-t",
        str(threads),
        "-o",
        "json",
        *(extra or []),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def by_test(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """llama-bench's rows by test name: ``pp512``, ``tg128``."""
    return {(f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"): r for r in rows}


def arguments(doc: str | None) -> argparse.Namespace:
    """The options of the llama-bench benchmarks, with the installed backend they name as ``args.backend_``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "bench-models")
    parser.add_argument("--against", type=Path, default=None, help="another build of the backend wheel (.whl)")
    parser.add_argument("--rounds", type=int, default=3, help="with --against: alternations of the two builds")
    args = parser.parse_args()
    args.backend_ = next((b for b in llcuda.backends() if b.target == args.backend), None)
    if args.backend_ is None:
        raise SystemExit(f"llcuda-{args.backend} is not installed")
    return args


def side_by_side(args: argparse.Namespace) -> None:
    """The installed backend and another build of its wheel (unpacked: its tools find their libraries through
    $ORIGIN), alternating ``--rounds`` times on one model, so that both see the same machine."""
    backend = args.backend_
    path, _ = model(backend, args.models)
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        with zipfile.ZipFile(args.against) as zf:
            zf.extractall(tmp)
        other = SimpleNamespace(bin_dir=Path(tmp) / f"llcuda_{args.backend}" / "bin")
        for tool in other.bin_dir.iterdir():
            tool.chmod(0o755)
        runs: dict[str, dict[str, list[float]]] = {"installed": {}, "against": {}}
        for _ in range(args.rounds):
            for name, build in (("installed", backend), ("against", other)):
                for test, row in by_test(bench(build, path, args.reps, args.threads)).items():
                    runs[name].setdefault(test, []).append(row["avg_ts"])
    mean = {n: {t: sum(v) / len(v) for t, v in tests.items()} for n, tests in runs.items()}
    ratio = {t: round(mean["installed"][t] / mean["against"][t], 3) for t in mean["installed"]}
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "installed": str(backend.package_dir),
        "against": args.against.name,
        "rounds": runs,
        "ratio_installed_over_against": ratio,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"throughput_{args.backend}_side_by_side.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "".join(
        f"| {t} | {mean['installed'][t]:.1f} | {mean['against'][t]:.1f} | {ratio[t]:.3f} |\n" for t in sorted(ratio)
    )
    table = (
        f"| {args.backend}, {result['machine']}, {args.threads} threads, {args.rounds} alternating rounds "
        f"({result['date']}) | installed, tokens/s | {args.against.name}, tokens/s | ratio |\n"
        "| --- | --- | --- | --- |\n" + rows
    )
    (args.out / f"throughput_{args.backend}_side_by_side.md").write_text(table)
    print(table)


def main() -> None:
    args = arguments(__doc__)
    if args.against is not None:
        side_by_side(args)
        return
    backend = args.backend_
    path, info = model(backend, args.models)
    rows = bench(backend, path, args.reps, args.threads)
    speeds = by_test(rows)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "backend": args.backend,
        "model": {"file": path.name, **weight_bytes(path), "params": rows[0]["model_n_params"], **info},
        "threads": args.threads,
        "cpu_info": rows[0].get("cpu_info"),
        "pp512_tokens_per_s": round(speeds["pp512"]["avg_ts"], 2),
        "pp512_stddev": round(speeds["pp512"]["stddev_ts"], 2),
        "tg128_tokens_per_s": round(speeds["tg128"]["avg_ts"], 2),
        "tg128_stddev": round(speeds["tg128"]["stddev_ts"], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"throughput_{args.backend}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        f"| llcuda-{args.backend}, {result['machine']}, {args.threads} threads ({result['date']}) | tokens/s |\n"
        "| --- | --- |\n"
        f"| pp512, gemma-3-1b-shaped Q4_K_M | {result['pp512_tokens_per_s']:.1f} ± {result['pp512_stddev']:.1f} |\n"
        f"| tg128, gemma-3-1b-shaped Q4_K_M | {result['tg128_tokens_per_s']:.1f} ± {result['tg128_stddev']:.1f} |\n"
    )
    (args.out / f"throughput_{args.backend}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
