"""A model split over two RPC hosts against the same model on one machine, with the wheel's own ``llama-bench``.

    sudo python benchmarks/rpc_split.py [--backend cpu] [--reps 3] [--out benchmarks/results]

The model is throughput.py's gemma-3-1b-shaped Q4_K_M. Locally, ``llama-bench`` runs it on this machine's CPU with
every thread. Split, the two hosts are network namespaces (``llcuda_testkit.netns``: veth pairs, root only), each
running ``llcuda rpc-server`` with half the threads, and ``llama-bench --rpc a,b -ngl 99`` offloads every layer to
them: the same cores do the same arithmetic, so the ratio is what the RPC transport costs. Results: rpc_split.json
and .md.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from throughput import arguments, bench, by_test, model

from llcuda_testkit import netns

ROOT = Path(__file__).resolve().parents[1]


def speeds(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {test: round(row["avg_ts"], 2) for test, row in by_test(rows).items()}


def main() -> None:
    args = arguments(__doc__)
    why = netns.unavailable()
    if why:
        raise SystemExit(f"rpc_split needs network namespaces: {why}")
    backend = args.backend_
    path, _ = model(backend, args.models)
    local = speeds(bench(backend, path, args.reps, args.threads))
    per_host = max(1, args.threads // 2)
    # A layer split runs the hosts one after the other, each with its share of the layers: the same model locally
    # with one host's threads separates what the pipeline costs from what the transport costs.
    local_one_host = speeds(bench(backend, path, args.reps, per_host))
    with tempfile.TemporaryDirectory(prefix="rpc-bench-") as tmp, netns.hosts(2, "x") as hosts:
        remotes = [
            netns.start_rpc_server(h, Path(tmp) / f"{i}.log", debug=False, threads=per_host)
            for i, h in enumerate(hosts)
        ]
        rpc = ",".join(r.endpoint for r in remotes)
        split = speeds(bench(backend, path, args.reps, args.threads, ["--rpc", rpc, "-ngl", "99"]))
        received = [r.text().count("Accepted client connection") for r in remotes]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "backend": args.backend,
        "model": path.name,
        "local_threads": args.threads,
        "host_threads": per_host,
        "local": local,
        "local_with_host_threads": local_one_host,
        "split_over_two_hosts": split,
        "host_connections": received,
        "ratio_split_to_local": {k: round(split[k] / local[k], 3) for k in local},
        "ratio_split_to_local_with_host_threads": {k: round(split[k] / local_one_host[k], 3) for k in local},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rpc_split.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        f"| llcuda-{args.backend}, {result['machine']} ({result['date']}), tokens/s | local, {args.threads} threads | "
        f"local, {per_host} thread(s) | 2 RPC hosts (netns, veth), {per_host} thread(s) each | split / local | "
        f"split / local with {per_host} thread(s) |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
    )
    for k in local:
        table += (
            f"| {k}, gemma-3-1b-shaped Q4_K_M | {local[k]:.1f} | {local_one_host[k]:.1f} | {split[k]:.1f} | "
            f"{split[k] / local[k]:.2f} | {split[k] / local_one_host[k]:.2f} |\n"
        )
    (args.out / "rpc_split.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
