"""Latency and throughput under load: 200 requests from 16 concurrent clients against 4 server slots.

    python benchmarks/load.py [--requests 200] [--clients 16] [--slots 4] [--out benchmarks/results]

One InferenceEngine on the tiny test model (CPU backend), 16 tokens per request. tests/wheels/test_faults.py asserts
the same load completes with no error; this records how long it takes. Results: load.json and load.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llcuda.engine import InferenceEngine
from llcuda_testkit.tinymodel import write_tiny_llama


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, InferenceEngine() as engine:
        model = write_tiny_llama(Path(tmp) / "tiny.gguf")
        engine.load_model(model, ctx_size=512 * args.slots, silent=True, parallel=args.slots, threads=2)
        prompts = [f"request {i}: hello" for i in range(args.requests)]
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda p: engine.infer(p, max_tokens=args.tokens, temperature=0.7), prompts))
        wall = time.perf_counter() - start
    latencies = sorted(r.latency_ms for r in results)
    errors = sum(not r.success for r in results)
    tokens = sum(r.tokens_generated for r in results)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "requests": args.requests,
        "clients": args.clients,
        "slots": args.slots,
        "tokens_per_request": args.tokens,
        "errors": errors,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
        "tokens_per_s": round(tokens / wall, 1),
        "requests_per_s": round(args.requests / wall, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        f"| load ({result['date']}, {result['machine']}, tiny model, CPU) | value |\n| --- | --- |\n"
        f"| requests / clients / slots | {args.requests} / {args.clients} / {args.slots} |\n"
        f"| errors | {errors} |\n| latency p50 / p99 | {result['p50_ms']} ms / {result['p99_ms']} ms |\n"
        f"| throughput | {result['tokens_per_s']} tokens/s, {result['requests_per_s']} requests/s |\n"
    )
    (args.out / "load.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
