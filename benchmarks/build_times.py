"""Build time per target, cold and warm, and against llama.cpp's own default CUDA arch list.

    python benchmarks/build_times.py [--targets cpu cc50 cc75] [--default-arch-target cc75] [--out DIR] [--merge]

Each build configures the top-level CMakeLists.txt for one target in a new build directory and builds the
wheel payload (what `nox -s wheels` compiles, without packaging):

- cold: an empty ccache of its own, so nothing is reused, not even across targets;
- warm: another new build directory on the now-filled ccache (what a rebuild after `git clean` costs);
- default archs: the cc75 configuration with LLCUDA_CUDA_ARCHITECTURES_OVERRIDE=llama.cpp-default, i.e. the
  CUDA arch list a hand build of the same llama.cpp commit with the same toolkit compiles, cold.

Both wall time and CPU time (user + system of every compiler process) are recorded: on a shared 2-core machine
the CPU time is the steadier measure, and the ratio of the two builds is reported for both. This takes hours on
2 cores; run it in the background (`nox -s bench -- build`). Results: build_times.json and build_times.md;
with --merge, the targets already in build_times.json are kept, so the work can be split over several runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ci"))

from llcuda_factory.targets import llama_cpp_pin  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _children_cpu()
    with log.open("ab") as out:
        subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - wall, _children_cpu() - cpu


def build(target: str, work: Path, ccache_dir: Path, *, override: str | None = None) -> dict[str, Any]:
    """Configure and build the payload of ``target`` in a new directory; times of both steps."""
    build_dir = Path(tempfile.mkdtemp(prefix=f"{target}-", dir=work))
    log = work / f"{build_dir.name}.log"
    env = {**os.environ, "CCACHE_DIR": str(ccache_dir), "CCACHE_MAXSIZE": "20G"}
    cmd = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
           f"-DLLCUDA_TARGET={target}"]  # fmt: skip
    if override:
        cmd.append(f"-DLLCUDA_CUDA_ARCHITECTURES_OVERRIDE={override}")
    subprocess.run(["ccache", "--zero-stats"], env=env, check=True, capture_output=True)
    conf_wall, conf_cpu = _run(cmd, env, log)
    build_wall, build_cpu = _run(["cmake", "--build", str(build_dir)], env, log)
    stats = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True).stdout
    counters = dict(line.split("\t", 1) for line in stats.splitlines() if "\t" in line)
    info = json.loads((build_dir / "build_info.json").read_text())
    steps = sum(1 for _ in (build_dir / ".ninja_log").open()) - 1
    shutil.rmtree(build_dir)
    return {
        "target": target,
        "cuda_architectures": info["cuda"]["architectures"],
        "configure_s": round(conf_wall, 1),
        "build_s": round(build_wall, 1),
        "build_cpu_s": round(build_cpu + conf_cpu, 1),
        "ninja_steps": steps,
        "ccache_hits": int(counters.get("direct_cache_hit", 0)) + int(counters.get("preprocessed_cache_hit", 0)),
        "ccache_misses": int(counters.get("cache_miss", 0)),
    }


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return round(float(a[key]) / float(b[key]), 2)


def markdown(result: dict[str, Any]) -> str:
    rows = ["| build | CUDA archs | cold: wall / CPU | warm ccache: wall / CPU | ccache hits (warm) |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, row in result["targets"].items():
        cold, warm = row["cold"], row.get("warm")
        archs = ", ".join(cold["cuda_architectures"]) or "none"
        warm_text = f"{warm['build_s']:.0f} s / {warm['build_cpu_s']:.0f} s" if warm else "n/a"
        hits = f"{warm['ccache_hits']} of {warm['ccache_hits'] + warm['ccache_misses']}" if warm else "n/a"
        cold_text = f"{cold['build_s']:.0f} s / {cold['build_cpu_s']:.0f} s"
        rows.append(f"| {name} | {archs} | {cold_text} | {warm_text} | {hits} |")
    if "default_arch" in result:
        d = result["default_arch"]
        rows.append(f"| {d['target']}, llama.cpp's default archs | {', '.join(d['cuda_architectures'])} | "
                    f"{d['build_s']:.0f} s / {d['build_cpu_s']:.0f} s | | |")  # fmt: skip
    text = "\n".join(rows) + "\n"
    if "default_arch_ratio" in result:
        r = result["default_arch_ratio"]
        text += (f"\nDefault arch list over llcuda's single arch ({r['against']}), cold: {r['wall']}x wall time, "
                 f"{r['cpu']}x CPU time.\n")  # fmt: skip
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="*", default=["cpu", "cc50", "cc75"])
    parser.add_argument("--default-arch-target", default="cc75", help="'' to skip the default-arch build")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--merge", action="store_true", help="keep the results already in --out")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    pin = llama_cpp_pin()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "llama_cpp": f"{pin.tag} {pin.commit[:12]}",
        "targets": {},
    }
    previous = args.out / "build_times.json"
    if args.merge and previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("llama_cpp") != result["llama_cpp"]:
            parser.error(f"{previous} measured llama.cpp {old.get('llama_cpp')}, not {result['llama_cpp']}")
        result = {**old, **{k: v for k, v in result.items() if k != "targets"}, "targets": old.get("targets", {})}

    def save() -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "build_times.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "build_times.md").write_text(markdown(result))

    for target in args.targets:
        cache = Path(tempfile.mkdtemp(prefix=f"ccache-{target}-", dir=args.work))
        result["targets"][target] = {"cold": build(target, args.work, cache)}
        save()
        result["targets"][target]["warm"] = build(target, args.work, cache)
        save()
        shutil.rmtree(cache)
        print(json.dumps(result["targets"][target]), flush=True)
    if args.default_arch_target:
        cache = Path(tempfile.mkdtemp(prefix="ccache-default-", dir=args.work))
        t = args.default_arch_target
        result["default_arch"] = build(t, args.work, cache, override="llama.cpp-default")
        shutil.rmtree(cache)
        if t in result["targets"]:
            cold = result["targets"][t]["cold"]
            default = result["default_arch"]
            result["default_arch_ratio"] = {"against": f"{t} cold", "wall": _ratio(default, cold, "build_s"),
                                            "cpu": _ratio(default, cold, "build_cpu_s")}  # fmt: skip
        save()
        print(json.dumps(result["default_arch"]), flush=True)


if __name__ == "__main__":
    main()
