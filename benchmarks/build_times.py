"""Build time per target, cold and warm, and against llama.cpp's own default CUDA arch list.

    python benchmarks/build_times.py [--targets T...] [--default-arch-target cc75] [--out DIR] [--merge]

Each build configures the top-level CMakeLists.txt for one target (default: every row of targets.toml) in a new
build directory and builds the wheel payload (what `nox -s wheels` compiles, without packaging):

- cold: an empty ccache of its own, so nothing is reused, not even across targets;
- warm: another new build directory on the now-filled ccache (what a rebuild after `git clean` costs);
- default archs: the cc75 configuration with LLCUDA_CUDA_ARCHITECTURES_OVERRIDE=llama.cpp-default, i.e. the
  CUDA arch list a hand build of the same llama.cpp commit with the same toolkit compiles, cold. On 2 cores that
  build takes hours; `--default-arch-sample K` measures instead every K-th CUDA file of ggml-cuda compiled with
  both arch lists, one after the other without ccache, and scales the cold single-arch build by the ratio.

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
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llcuda_factory.project import llama_cpp_pin
from llcuda_factory.targets import all_targets

ROOT = Path(__file__).resolve().parents[1]
# What CMake's configure step records of the build (build_info.json is written from it at install, which these
# payload builds never reach).
FACTS = "build_facts.json"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _children_cpu()
    with log.open("ab") as out:
        subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - wall, _children_cpu() - cpu


def configure_command(target: str, build_dir: Path) -> list[str]:
    """CMake's configure step of ``target``, as the wheel build runs it (Ninja, Release)."""
    return [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(build_dir),
        "-G",
        "Ninja",
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DLLCUDA_TARGET={target}",
    ]


def build(target: str, work: Path, ccache_dir: Path, *, override: str | None = None) -> dict[str, Any]:
    """Configure and build the payload of ``target`` in a new directory; times of both steps."""
    build_dir = Path(tempfile.mkdtemp(prefix=f"{target}-", dir=work))
    log = work / f"{build_dir.name}.log"
    env = {**os.environ, "CCACHE_DIR": str(ccache_dir), "CCACHE_MAXSIZE": "20G"}
    cmd = configure_command(target, build_dir)
    if override:
        cmd.append(f"-DLLCUDA_CUDA_ARCHITECTURES_OVERRIDE={override}")
    subprocess.run(["ccache", "--zero-stats"], env=env, check=True, capture_output=True)
    conf_wall, conf_cpu = _run(cmd, env, log)
    build_wall, build_cpu = _run(["cmake", "--build", str(build_dir)], env, log)
    stats = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True).stdout
    counters = dict(line.split("\t", 1) for line in stats.splitlines() if "\t" in line)
    info = json.loads((build_dir / FACTS).read_text())
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


class CompileFailed(Exception):
    """A sampled compile failed; args[0] says which file, with which archs, and the errors."""


def _cuda_compiles(build_dir: Path) -> dict[str, dict[str, Any]]:
    """ggml-cuda's nvcc commands by source file, from the build's compile_commands.json."""
    entries = json.loads((build_dir / "compile_commands.json").read_text())
    compiles = {}
    for entry in entries:
        argv = shlex.split(entry["command"])
        output = argv[argv.index("-o") + 1]  # CMake 3.25 writes no "output" key
        if entry["file"].endswith(".cu") and "ggml-cuda" in output:
            compiles[entry["file"]] = {**entry, "argv": argv, "output": output}
    return compiles


def sampled_default_arch(target: str, every: int, work: Path, archs: str) -> dict[str, Any]:
    """Compile every ``every``-th ggml-cuda file with the target's arch list and with ``archs``.

    A compile that fails (llama.cpp's default list may hold an arch the toolkit cannot build this commit for)
    ends the run with its error, recorded under "default_arch_failure".
    """
    dirs, infos = {}, {}
    for name, override in (("single", None), ("default", archs)):
        build_dir = Path(tempfile.mkdtemp(prefix=f"{target}-{name}-", dir=work))
        cmd = [*configure_command(target, build_dir), "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"]
        if override:
            cmd.append(f"-DLLCUDA_CUDA_ARCHITECTURES_OVERRIDE={override}")
        subprocess.run(cmd, check=True, capture_output=True)
        dirs[name] = build_dir
        infos[name] = json.loads((build_dir / FACTS).read_text())["cuda"]["architectures"]
    rows: list[dict[str, Any]] = []
    try:
        single, default = _cuda_compiles(dirs["single"]), _cuda_compiles(dirs["default"])
        files = sorted(single)
        if every > len(files):
            raise SystemExit(f"--default-arch-sample {every}: ggml-cuda has only {len(files)} files")
        sample = files[every // 2 :: every]
        for source in sample:
            times = {}
            for name, entry in (("single", single[source]), ("default", default[source])):
                argv = entry["argv"]
                # Debian's nvcc finds ptxas and fatbinary through PATH, as the build's compiler launcher arranges.
                env = {**os.environ, "PATH": f"{Path(argv[0]).parent}{os.pathsep}{os.environ['PATH']}"}
                (Path(entry["directory"]) / entry["output"]).parent.mkdir(parents=True, exist_ok=True)
                wall, cpu = time.perf_counter(), _children_cpu()
                proc = subprocess.run(argv, cwd=entry["directory"], env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    errors = [line for line in proc.stderr.splitlines() if "error" in line]
                    raise CompileFailed(
                        {"archs": archs, "cuda_architectures": infos[name], "file": source, "errors": errors[:5]}
                    )
                times[name] = {"wall": time.perf_counter() - wall, "cpu": _children_cpu() - cpu}
            rows.append(
                {
                    "file": Path(source).name,
                    "single_cpu_s": round(times["single"]["cpu"], 1),
                    "default_cpu_s": round(times["default"]["cpu"], 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for build_dir in dirs.values():
            shutil.rmtree(build_dir)
    single_cpu = sum(r["single_cpu_s"] for r in rows)
    default_cpu = sum(r["default_cpu_s"] for r in rows)
    return {
        "target": target,
        "archs": archs,
        "cuda_architectures": infos["default"],
        "single_architectures": infos["single"],
        "cuda_files": len(files),
        "sampled_files": len(rows),
        "sample": rows,
        "sample_single_cpu_s": round(single_cpu, 1),
        "sample_default_cpu_s": round(default_cpu, 1),
        "cuda_compile_ratio": round(default_cpu / single_cpu, 2),
        # the CUDA files' share of the cold single-arch build, estimated from the sample's mean
        "estimated_cuda_cpu_s": round(single_cpu / len(rows) * len(files), 1),
    }


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return round(float(a[key]) / float(b[key]), 2)


def markdown(result: dict[str, Any]) -> str:
    rows = [
        "| build | CUDA archs | cold: wall / CPU | warm ccache: wall / CPU | ccache hits (warm) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in result["targets"].items():
        cold, warm = row["cold"], row.get("warm")
        archs = ", ".join(cold["cuda_architectures"]) or "none"
        warm_text = f"{warm['build_s']:.0f} s / {warm['build_cpu_s']:.0f} s" if warm else "n/a"
        hits = f"{warm['ccache_hits']} of {warm['ccache_hits'] + warm['ccache_misses']}" if warm else "n/a"
        cold_text = f"{cold['build_s']:.0f} s / {cold['build_cpu_s']:.0f} s"
        rows.append(f"| {name} | {archs} | {cold_text} | {warm_text} | {hits} |")
    if "default_arch" in result:
        d = result["default_arch"]
        rows.append(
            f"| {d['target']}, llama.cpp's default archs | {', '.join(d['cuda_architectures'])} | "
            f"{d['build_s']:.0f} s / {d['build_cpu_s']:.0f} s | | |"
        )
    text = "\n".join(rows) + "\n"
    if "default_arch_failure" in result:
        f = result["default_arch_failure"]
        error = f["errors"][0].split(": ", 1)[-1]
        text += (
            f"\nllama.cpp's own default arch list for this toolkit ({', '.join(f['cuda_architectures'])}) "
            f"does not compile this commit: `{Path(f['file']).name}`: {error}\n"
        )
    if "default_arch_sample" in result:
        d = result["default_arch_sample"]
        what = "llama.cpp's default arch list" if d["archs"] == "llama.cpp-default" else "The arch list"
        text += (
            f"\n{what} {', '.join(d['cuda_architectures'])} against "
            f"{d['target']}'s ({', '.join(d['single_architectures'])}), same commit and toolkit: "
            f"{d['sampled_files']} of the {d['cuda_files']} ggml-cuda files (every "
            f"{d['cuda_files'] // d['sampled_files']}th) compiled with both, without ccache: "
            f"{d['sample_default_cpu_s']:.0f} s against {d['sample_single_cpu_s']:.0f} s of CPU time, "
            f"{d['cuda_compile_ratio']}x.\n"
        )
        if "estimated_build_ratio" in d:
            text += (
                f"Scaled to the whole cold {d['target']} build ({d['estimated_cuda_cpu_s']:.0f} s of its CPU "
                f"time are CUDA files): about {d['estimated_build_cpu_s']:.0f} s, "
                f"{d['estimated_build_ratio']}x the CPU time (an estimate, not a full build).\n"
            )
    if "default_arch_ratio" in result:
        r = result["default_arch_ratio"]
        text += (
            f"\nDefault arch list over llcuda's single arch ({r['against']}), cold: {r['wall']}x wall time, "
            f"{r['cpu']}x CPU time.\n"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="*", default=list(all_targets()))
    parser.add_argument("--default-arch-target", default="cc75", help="'' to skip the default-arch build")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--merge", action="store_true", help="keep the results already in --out")
    parser.add_argument(
        "--default-archs",
        default="llama.cpp-default",
        help="the arch list to compare with (default: llama.cpp's own for this toolkit)",
    )
    parser.add_argument(
        "--default-arch-sample",
        type=int,
        metavar="K",
        default=0,
        help="instead of a full default-arch build, compile every K-th CUDA file twice",
    )
    args = parser.parse_args()
    if args.default_arch_sample < 0:
        parser.error("--default-arch-sample takes K >= 1 (every K-th file), or 0 for the full build")
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
    if args.default_arch_target and args.default_arch_sample:
        t = args.default_arch_target
        try:
            sample = sampled_default_arch(t, args.default_arch_sample, args.work, args.default_archs)
        except CompileFailed as failed:
            result["default_arch_failure"] = failed.args[0]
            save()
            sys.exit(f"{args.default_archs} does not compile: {json.dumps(failed.args[0])}")
        if t in result["targets"]:
            cold_cpu = float(result["targets"][t]["cold"]["build_cpu_s"])
            cuda_cpu = min(sample["estimated_cuda_cpu_s"], cold_cpu)
            estimate = cold_cpu - cuda_cpu + cuda_cpu * sample["cuda_compile_ratio"]
            sample["estimated_build_cpu_s"] = round(estimate, 1)
            sample["estimated_build_ratio"] = round(estimate / cold_cpu, 2)
        result["default_arch_sample"] = sample
        save()
        print(json.dumps({k: v for k, v in sample.items() if k != "sample"}), flush=True)
    elif args.default_arch_target:
        cache = Path(tempfile.mkdtemp(prefix="ccache-default-", dir=args.work))
        t = args.default_arch_target
        result["default_arch"] = build(t, args.work, cache, override="llama.cpp-default")
        shutil.rmtree(cache)
        if t in result["targets"]:
            cold = result["targets"][t]["cold"]
            default = result["default_arch"]
            result["default_arch_ratio"] = {
                "against": f"{t} cold",
                "wall": _ratio(default, cold, "build_s"),
                "cpu": _ratio(default, cold, "build_cpu_s"),
            }
        save()
        print(json.dumps(result["default_arch"]), flush=True)


if __name__ == "__main__":
    main()
