"""Summarize what benchmarks/gpu/device_bench.sh measured on a GPU machine into one JSON file.

    python benchmarks/gpu/summarize.py WORK_DIR OUT.json

Derived figures: pp512 and tg128 tokens/s of the shipped configuration (``cc75``: built there; ``wheel``: the
carried wheel itself, WHEEL=1), run through PTX JIT on a newer GPU, and of the native build, their ratio, and the
share of the memory-bandwidth roofline reached by generation: tokens/s x bytes read per token (every weight,
gemma's output being tied to the token embedding) / measured device-to-device bandwidth. With a wheel: what
``llcuda selftest`` said on the GPU, and the seed's quick test with every layer offloaded.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _json(path: Path) -> Any:
    text = _read(path)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _timed(path: Path) -> dict[str, float] | None:
    text = _read(path)
    if not text:
        return None
    rc, ms = text.split()
    return {"exit_code": int(rc), "seconds": int(ms) / 1000}


def _speeds(bench: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in bench or []:
        key = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        out[key] = round(float(row["avg_ts"]), 1)
        out[key + "_stddev"] = round(float(row["stddev_ts"]), 1)
    return out


def summarize(work: Path) -> dict[str, Any]:
    logs = work / "logs"
    gpu_csv = _read(logs / "gpu.csv")
    gpu = next(csv.DictReader(gpu_csv.splitlines()), {}) if gpu_csv else {}
    weights = _json(logs / "weights.json") or {}
    bandwidth = _json(logs / "bandwidth.json") or {}
    result: dict[str, Any] = {
        "gpu": {k.strip(): v.strip() for k, v in gpu.items()},
        "native_arch": _read(logs / "native_arch"),
        "builds": {name: _timed(logs / f"build-{name}.time") for name in ("b75", "bnative")},
        "model_bytes_per_token": weights.get("bytes_per_token"),
        "bandwidth_gb_per_s": round(bandwidth["gb_per_s"], 1) if "gb_per_s" in bandwidth else None,
        "runs": {},
    }
    for name in ("cc75", "wheel", "native"):
        bench = _json(logs / f"bench-{name}.json")
        if bench is None:
            continue
        speeds = _speeds(bench)
        row: dict[str, Any] = {
            **speeds,
            "first_run_cold_jit_cache": _timed(logs / f"first-{name}-cold.time"),
            "first_run_warm_jit_cache": _timed(logs / f"first-{name}-warm.time"),
            "jit_cache_bytes": int(_read(logs / f"jit-cache-{name}.bytes") or 0),
            "backends": bench[0].get("backends"),
            "gpu_info": bench[0].get("gpu_info"),
            "model_size": bench[0].get("model_size"),
        }
        tg = speeds.get("tg128")
        if tg and result["model_bytes_per_token"] and result["bandwidth_gb_per_s"]:
            roof = result["bandwidth_gb_per_s"] * 1e9 / result["model_bytes_per_token"]
            row["tg_roofline_tokens_per_s"] = round(roof, 1)
            row["tg_percent_of_roofline"] = round(100 * tg / roof, 1)
        result["runs"][name] = row
    runs = result["runs"]
    for shipped in ("cc75", "wheel"):
        if shipped in runs and "native" in runs:
            result[f"{shipped}_over_native"] = {
                k: round(runs[shipped][k] / runs["native"][k], 3)
                for k in ("pp512", "tg128")
                if k in runs["native"] and k in runs[shipped]
            }
    result["runtime"] = _json(logs / "runtime.json")
    selftest = _json(logs / "selftest.json")
    if selftest is not None:
        keep = ("verdict", "backend", "devices", "tests_passed", "tests_total", "failures", "returncode")
        result["selftest"] = {k: selftest.get(k) for k in keep} | {"run": _timed(logs / "selftest.time")}
    result["quick_test"] = _json(logs / "quick.json")
    result["wheel_ldd"] = _read(logs / "wheel-ldd.txt")
    return result


def main() -> None:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    summary = summarize(work)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
