"""Gather the latest benchmark results into one markdown page: benchmarks/results/summary.md.

    python benchmarks/report.py

Each section is the table its benchmark wrote (build_times, sizes, cuda_size_options, cuda_compress_modes,
runtime_overhead, load, throughput_cpu, rpc_split) plus the GPU run (gpu_h200.json, from
benchmarks/gpu/device_bench.sh on a lent GPU machine), with its date and machine. A result that has not been measured
is named as such.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SECTIONS = [
    ("Build time", "build_times", "python benchmarks/build_times.py"),
    ("Wheel size", "sizes", "python benchmarks/sizes.py"),
    ("CUDA wheel size: where it goes", "cuda_size_options", "python benchmarks/cuda_size_options.py"),
    ("nvcc's compress mode (CUDA 13)", "cuda_compress_modes", "python benchmarks/cuda_compress_modes.py"),
    ("Runtime overhead", "runtime_overhead", "python benchmarks/runtime_overhead.py"),
    ("Load", "load", "python benchmarks/load.py"),
    ("Throughput on the CPU", "throughput_cpu", "python benchmarks/throughput.py"),
    ("Split over two RPC hosts (network namespaces)", "rpc_split", "sudo python benchmarks/rpc_split.py"),
]


def gpu_section(data: dict[str, Any]) -> str:
    s = data["summary"]
    cc75, native = s["runs"]["cc75"], s["runs"]["native"]
    ratio = s["cc75_over_native"]
    rerun = {(r["build"], r["n_gen"]): r for r in data.get("rerun_interleaved_r10", [])}
    lines = [
        f"{data['machine']}, {data['date']}. {data['what']}.",
        "",
        "| | cc75 wheel config (PTX JIT on sm_90) | native sm_90 | cc75 / native |",
        "| --- | --- | --- | --- |",
        f"| pp512 tokens/s | {cc75['pp512']:,.0f} ± {cc75['pp512_stddev']:,.0f} | "
        f"{native['pp512']:,.0f} ± {native['pp512_stddev']:,.0f} | {ratio['pp512']} |",
        f"| tg128 tokens/s | {cc75['tg128']:.1f} ± {cc75['tg128_stddev']:.1f} | "
        f"{native['tg128']:.1f} ± {native['tg128_stddev']:.1f} | {ratio['tg128']} |",
        f"| tg128 share of the bandwidth roofline | {cc75['tg_percent_of_roofline']} % | "
        f"{native['tg_percent_of_roofline']} % | |",
        f"| first run, empty JIT cache / warm | {cc75['first_run_cold_jit_cache']['seconds']:.1f} s / "
        f"{cc75['first_run_warm_jit_cache']['seconds']:.1f} s | {native['first_run_cold_jit_cache']['seconds']:.1f} s"
        f" / {native['first_run_warm_jit_cache']['seconds']:.1f} s | |",
        "",
        f"Roofline: {s['model_bytes_per_token'] / 1e6:.0f} MB of weights read per generated token (the output "
        f"projection is tied to the token embedding) over {s['bandwidth_gb_per_s']:,.0f} GB/s measured "
        f"device-to-device = {cc75['tg_roofline_tokens_per_s']:,.0f} tokens/s at most.",
    ]
    if rerun:
        a, b = rerun.get(("stage75", 128)), rerun.get(("stagenative", 128))
        if a and b:
            lines.append(
                f"A second, interleaved run (10 repetitions): tg128 {a['tokens_per_s']} vs "
                f"{b['tokens_per_s']} tokens/s ({a['tokens_per_s'] / b['tokens_per_s']:.2f})."
            )
    rt = s.get("runtime") or {}
    if rt:
        c = rt["check_gpu_compatibility"]
        lines.append(
            f"The llcuda runtime there: `check_gpu_compatibility()` found {c['gpu_name']} (CC "
            f"{c['compute_capability']}) with backend cc75 as `{c['backends'].get('cc75')}`; "
            f"`load_model(gpu_layers=None)` took {rt['load_model_s']} s and `infer` made "
            f"{rt['tokens']} tokens at {rt['tokens_per_s']} tokens/s."
        )
    for line in data.get("runtime_verbose", []):
        if "offloaded" in line or "projected" in line:
            lines.append(f"    {line.strip()}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results folder to gather (and write into)")
    results: Path = parser.parse_args().out
    parts = ["# Benchmark results\n", "Written by `benchmarks/report.py` from the JSON files beside it.\n"]
    for title, name, command in SECTIONS:
        md, js = results / f"{name}.md", results / f"{name}.json"
        parts.append(f"## {title}\n")
        if md.exists() and js.exists():
            meta = json.loads(js.read_text())
            where = ", ".join(str(meta[k]) for k in ("date", "machine") if k in meta)
            parts.append(f"{where}. `{command}`\n\n{md.read_text()}")
        else:
            parts.append(f"Not measured yet: `{command}`.\n")
    gpu = RESULTS / "gpu_h200.json"  # measured on a lent machine only: always the committed one
    parts.append("## GPU\n")
    parts.append(gpu_section(json.loads(gpu.read_text())) if gpu.exists() else "Not measured: no GPU was lent.\n")
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.md").write_text("\n".join(parts))
    print((results / "summary.md").read_text())


if __name__ == "__main__":
    main()
