"""What nvcc's ``-compress-mode`` costs in build time and saves in device code, for one CUDA 12.8+ target.

    python benchmarks/cuda_compress_modes.py [--target cc75-cu13] [--against cc75] [--modes size balance ...]
                                             [--build build] [--jobs 2] [--out benchmarks/results]

llama.cpp passes ``-compress-mode=$GGML_CUDA_COMPRESSION_MODE`` (default ``size``) to nvcc 12.8 and newer, so of
our rows only the CUDA 13 one gets it. The mode decides how the fatbinary step compresses each object's cubins and
PTX: ``size`` compresses hardest, ``speed`` decompresses fastest at load, ``balance`` is between, ``none`` stores
them as they are. Every mode needs a driver of CUDA 12.4 or newer to read (a CUDA 13 row needs 580 anyway).

Every ggml-cuda source of ``build/<target>`` (configured by ``nox -s wheels``) is compiled once per mode, and once
with the ``--against`` target's own command, without ccache, into a scratch directory. The configurations of one
source run back to back in a rotating order, so the machine's drift falls on all of them alike; ``--jobs`` sources
run at once. Per configuration: the CPU seconds of nvcc and everything it ran (user + sys, from ``wait4``), and
the device code as the wheel stores it (every fatbin entry deflated at the wheel's level, read with the factory's
``llcuda_factory.fatbin``). Results: cuda_compress_modes.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from llcuda_factory import fatbin

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
_MODE = re.compile(r"-compress-mode=\S+")
_OUTPUT = re.compile(r"\s-o\s+\S+")


def cuda_commands(build_dir: Path) -> dict[str, dict[str, str]]:
    """ggml-cuda's CUDA sources of a configured build dir: source name -> its compile command and directory."""
    path = build_dir / "compile_commands.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: configure and build the target first (`nox -s wheels -- <target>`)")
    out = {}
    for entry in json.loads(path.read_text()):
        # ggml-cuda's own sources and the ones llcuda's CMake puts in their place (llcuda-no-*.cu in the build dir)
        if entry["file"].endswith(".cu") and "/ggml-cuda.dir/" in entry["command"]:
            source = Path(entry["file"])
            name = entry["file"].split("/ggml-cuda/", 1)[1] if "/ggml-cuda/" in entry["file"] else source.name
            out[name] = {"command": entry["command"], "dir": entry["directory"]}
    if not out:
        raise SystemExit(f"{build_dir} compiles no ggml-cuda source: is it a CUDA target?")
    return out


def with_mode(command: str, mode: str) -> str:
    if not _MODE.search(command):
        raise SystemExit("the target's nvcc command has no -compress-mode: its toolkit is older than CUDA 12.8")
    return _MODE.sub(f"-compress-mode={mode}", command)


def compile_once(command: str, directory: str, obj: Path) -> tuple[float, int]:
    """CPU seconds of one compile, and its device code deflated as the wheel stores it."""
    cmd = _OUTPUT.sub(f" -o {shlex.quote(str(obj))}", command, count=1)
    proc = subprocess.Popen(cmd, shell=True, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"compile failed ({proc.returncode}): {cmd}\n{err.decode(errors='replace')[-2000:]}")
    device = sum(len(zlib.compress(e.payload, 6)) for e in fatbin.entries(obj))
    obj.unlink()
    return usage.ru_utime + usage.ru_stime, device


def measure(configs: dict[str, dict[str, dict[str, str]]], jobs: int, scratch: Path) -> dict[str, dict[str, Any]]:
    names = list(configs)
    sources = sorted(configs[names[0]])
    totals: dict[str, dict[str, Any]] = {n: {"cpu_s": 0.0, "device_deflated": 0, "files": {}} for n in names}
    lock, done = threading.Lock(), []

    def one(i: int, source: str) -> None:
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            c = configs[name][source]
            cpu, device = compile_once(c["command"], c["dir"], scratch / f"{i}-{name}.o")
            totals[name]["files"][source] = {"cpu_s": round(cpu, 2), "device_deflated": device}
        with lock:
            done.append(source)
            print(f"[{len(done)}/{len(sources)}] {source}", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(one, i, s) for i, s in enumerate(sources)]:
            future.result()
    for t in totals.values():
        t["cpu_s"] = round(sum(f["cpu_s"] for f in t["files"].values()), 1)
        t["device_deflated"] = sum(f["device_deflated"] for f in t["files"].values())
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cc75-cu13")
    parser.add_argument("--against", default="cc75", help="a target compiled with its own command, for the ratio")
    parser.add_argument("--modes", nargs="+", default=["size", "balance", "speed", "none"])
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    build = Path(args.build)
    base = cuda_commands(build / args.target)
    configs = {
        f"{args.target} {m}": {s: {**c, "command": with_mode(c["command"], m)} for s, c in base.items()}
        for m in args.modes
    }
    if args.against:
        against = cuda_commands(build / args.against)
        if set(against) != set(base):
            raise SystemExit(f"{args.against} and {args.target} compile different ggml-cuda sources")
        configs[f"{args.against} (its own command)"] = against
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llcuda-compress-") as scratch:
        totals = measure(configs, args.jobs, Path(scratch))
    ref = totals.get(f"{args.against} (its own command)")
    lines = [
        f"# nvcc -compress-mode on {args.target}'s CUDA sources (`benchmarks/cuda_compress_modes.py`)",
        "",
        f"{len(base)} ggml-cuda sources, each compiled once per configuration without ccache, back to back "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.jobs} at a time, "
        f"{time.perf_counter() - start:.0f} s in all).",
        "",
        "| configuration | CPU s | against " + (args.against or "-") + " | device code, deflated |",
        "| --- | --- | --- | --- |",
    ]
    for name, t in totals.items():
        ratio = f"{t['cpu_s'] / ref['cpu_s']:.2f}x" if ref else "n/a"
        lines.append(f"| {name} | {t['cpu_s']:.0f} | {ratio} | {t['device_deflated'] / MB:.1f} MB |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "target": args.target,
        "against": args.against,
        "configs": totals,
    }
    (out / "cuda_compress_modes.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "cuda_compress_modes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
