"""What `llcuda selftest` says on this machine, and how long it takes, with the installed backends.

    python benchmarks/selftest.py [--backend cpu]

Two runs of the command as a user types it: plain (on a machine with no GPU: the "no GPU backend to test" verdict)
and ``--device CPU``, which tests the CPU device against the CPU backend: every op test of a llama model's ops,
really run and compared (a GPU run compares the GPU instead), which shows the harness's counts and its time on
this CPU. Results: benchmarks/results/selftest.json and selftest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def run(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "llcuda", "selftest", *args], capture_output=True, text=True)
    return proc, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    plain, plain_s = run(["--backend", args.backend])
    cpu, cpu_s = run(["--backend", args.backend, "--device", "CPU", "--json"])
    if plain.returncode != 0 or cpu.returncode != 0:
        raise SystemExit(f"selftest failed:\n{plain.stdout}{plain.stderr}\n{cpu.stdout}{cpu.stderr}")
    report = json.loads(cpu.stdout)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "backend": args.backend,
        "plain": {
            "exit": plain.returncode,
            "stdout": plain.stdout.strip().splitlines()[1:2],
            "seconds": round(plain_s, 1),
        },
        "device_cpu": {k: report[k] for k in ("verdict", "devices", "tests_passed", "tests_total")}
        | {"seconds": round(cpu_s, 1)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selftest.json").write_text(json.dumps(result, indent=2) + "\n")
    d = result["device_cpu"]
    table = (
        f"| `llcuda selftest` with llcuda-{args.backend} ({result['machine']}, {result['date']}) | verdict | "
        "op tests | wall |\n| --- | --- | --- | --- |\n"
        f"| `llcuda selftest` | {plain.stdout.strip().splitlines()[1]} | none | {plain_s:.1f} s |\n"
        f"| `llcuda selftest --device CPU` (the CPU device against the CPU backend) | {d['verdict']} on "
        f"{', '.join(d['devices'])} | {d['tests_passed']}/{d['tests_total']} | {cpu_s:.0f} s |\n"
    )
    (args.out / "selftest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
