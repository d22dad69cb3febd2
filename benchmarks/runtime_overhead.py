"""What the llcuda runtime costs on top of a bare interpreter and a raw llama-server, measured side by side.

    python benchmarks/runtime_overhead.py [--requests 200] [--out benchmarks/results]

Needs the ``llcuda-cpu`` backend installed (``nox -s bench`` installs it from wheelhouse/). Writes
``runtime_overhead.json`` and ``runtime_overhead.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import llcuda
from llcuda.engine import InferenceEngine
from llcuda_testkit.serverproc import running_server
from llcuda_testkit.tinymodel import write_tiny_llama


def _wall(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def import_time(runs: int) -> dict[str, float]:
    bare = statistics.median(_wall([sys.executable, "-c", "pass"], runs))
    with_llcuda = statistics.median(_wall([sys.executable, "-c", "import llcuda"], runs))
    return {
        "bare_ms": bare,
        "import_llcuda_ms": with_llcuda,
        "added_ms": with_llcuda - bare,
        "ratio": with_llcuda / bare,
    }


def startup(model: Path, runs: int, tmp: Path) -> dict[str, float]:
    server = next(b.llama_server for b in llcuda.backends() if b.target == "cpu")
    raw, ours = [], []
    for i in range(runs):
        start = time.perf_counter()
        with running_server(server, model, tmp / f"raw{i}.log"):
            raw.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        with InferenceEngine() as eng:
            eng.load_model(model, ctx_size=256, silent=True, threads=2)
            ours.append((time.perf_counter() - start) * 1000)
    return {
        "raw_server_to_health_ms": statistics.median(raw),
        "load_model_ms": statistics.median(ours),
        "ratio": statistics.median(ours) / statistics.median(raw),
    }


def requests(model: Path, n: int) -> dict[str, float]:
    body = {"prompt": "Hello", "n_predict": 8, "temperature": 0.0, "top_p": 0.9, "seed": 1}
    with InferenceEngine() as eng:
        eng.load_model(model, ctx_size=256, silent=True, threads=2, parallel=1)
        for _ in range(10):  # warm-up
            eng.infer("Hello", max_tokens=8, temperature=0.0, seed=1)
        raw_ms, raw_tps, ours_ms, ours_tps = [], [], [], []
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {eng.api_key}"}
        for _ in range(n):  # interleaved, so both see the same machine state
            start = time.perf_counter()
            req = urllib.request.Request(eng.server_url + "/completion", json.dumps(body).encode(), headers)
            with urllib.request.urlopen(req) as resp:
                out = json.loads(resp.read())
            raw_ms.append((time.perf_counter() - start) * 1000)
            raw_tps.append(out["timings"]["predicted_per_second"])
            result = eng.infer("Hello", max_tokens=8, temperature=0.0, seed=1)
            ours_ms.append(result.latency_ms)
            ours_tps.append(result.tokens_per_sec)
    raw, ours = statistics.median(raw_ms), statistics.median(ours_ms)
    return {
        "requests": n,
        "raw_http_median_ms": raw,
        "engine_infer_median_ms": ours,
        "added_ms": ours - raw,
        "latency_ratio": ours / raw,
        "tokens_per_sec_ratio": statistics.median(ours_tps) / statistics.median(raw_tps),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model = write_tiny_llama(tmp / "tiny.gguf")
        result: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "import": import_time(args.runs),
            "startup": startup(model, 5, tmp),
            "request": requests(model, args.requests),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtime_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    i, s, r = result["import"], result["startup"], result["request"]
    table = (
        f"| measure ({result['date']}, {result['machine']}) | llcuda | baseline | ratio |\n"
        "| --- | --- | --- | --- |\n"
        f"| `import llcuda` vs bare interpreter | {i['import_llcuda_ms']:.1f} ms | {i['bare_ms']:.1f} ms "
        f"| {i['ratio']:.2f} |\n"
        f"| `load_model` to ready vs raw `llama-server` to `/health` 200 | {s['load_model_ms']:.0f} ms "
        f"| {s['raw_server_to_health_ms']:.0f} ms | {s['ratio']:.2f} |\n"
        f"| `engine.infer` vs raw HTTP, median of {r['requests']} | {r['engine_infer_median_ms']:.2f} ms "
        f"| {r['raw_http_median_ms']:.2f} ms | {r['latency_ratio']:.3f} |\n"
        f"| tokens/s, `engine.infer` vs raw HTTP | | | {r['tokens_per_sec_ratio']:.3f} |\n"
    )
    (args.out / "runtime_overhead.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
