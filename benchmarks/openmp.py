"""OpenMP in the wheels: the cpu wheel before and after, and a stock llama.cpp build, side by side in one run.

    python benchmarks/openmp.py --before OLD.whl --stock STOCK/bin --vocab LLAMA_CPP/models/ggml-vocab-llama-spm.gguf
    python benchmarks/openmp.py --table-from benchmarks/results/openmp.json   # the table again, from the JSON

Three builds of the same llama.cpp commit take turns, ``--rounds`` times:

- ``after``: the installed llcuda-cpu wheel (GGML_OPENMP=ON, libgomp grafted);
- ``before``: another build of that wheel (``--before``, a .whl: GGML_OPENMP=OFF), unpacked;
- ``stock``: llama.cpp's own CMake build (``--stock``, a folder with llama-server and llama-bench).

Each turn measures:

- the speculative request of upstream's ``test_speculative.py::test_with_ctx_shift`` (a llama with 4 experts
  and a draft model, both of llcuda_testkit.standins, 256 tokens with context shift), wall time of the request;
- ``llama-bench`` pp512 and tg128 at 1 and 2 threads on a 270M llama (llama-spm vocabulary, random weights,
  Q4_K_M quantized by the wheel's own llama-quantize), after one uncounted pass of each build.

Results: benchmarks/results/openmp.json and openmp.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from throughput import by_test

import llcuda
from llcuda_testkit.standins import write_llama
from llcuda_testkit.tinymodel import copy_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def write_llama_270m(path: Path, vocab: Path) -> Path:
    """A llama of about 270M parameters (16 layers, embedding 1024, FFN 2816) with random F16 weights."""
    rng = np.random.default_rng(0)
    n_embd, n_layer, n_ff, n_head = 1024, 16, 2816, 16

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llcuda-bench-llama-270m")
    writer.add_context_length(2048)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    n_vocab = copy_tokenizer(writer, vocab)
    writer.add_tensor("token_embd.weight", w(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", w(n_vocab, n_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", w(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def models(cache: Path, vocab: Path, quantize: Path) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    out = {
        "main": cache / "spec-moe.gguf",
        "draft": cache / "spec-draft.gguf",
        "bench": cache / "llama-270m-Q4_K_M.gguf",
    }
    if not out["main"].exists():
        write_llama(out["main"], vocab, n_expert=4, seed=1)
    if not out["draft"].exists():
        write_llama(out["draft"], vocab, n_layer=1, seed=2)
    if not out["bench"].exists():
        f16 = cache / "llama-270m-f16.gguf"
        if not f16.exists():
            write_llama_270m(f16, vocab)
        tmp = out["bench"].with_suffix(".partial")
        subprocess.run([str(quantize), str(f16), str(tmp), "Q4_K_M"], check=True, capture_output=True)
        tmp.replace(out["bench"])
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def speculative_request(bin_dir: Path, m: dict[str, Path], log: Path) -> float:
    """Seconds for upstream's test_with_ctx_shift request on a server with the draft model."""
    port = _port()
    args = [
        str(bin_dir / "llama-server"),
        *("--host", "127.0.0.1", "--port", str(port), "--model", str(m["main"]), "--model-draft", str(m["draft"])),
        *("--spec-type", "draft-simple", "--spec-draft-n-min", "4", "--spec-draft-n-max", "8", "-fa", "off"),
        *("--ctx-size", "256", "--context-shift", "--batch-size", "1024", "--parallel", "1", "--temp", "0.8"),
        *("--seed", "42", "--n-predict", "64", "--no-slots", "--no-jinja"),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{bin_dir}/llama-server did not start: {log.read_text()[-800:]}")
                time.sleep(0.2)
            body = {
                "prompt": "Hello " * 248,
                "temperature": 0.0,
                "top_k": 1,
                "n_predict": 256,
                "speculative.p_min": 0.0,
            }
            req = urllib.request.Request(
                f"{base}/completion", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            start = time.perf_counter()
            with urllib.request.urlopen(req, timeout=600) as r:
                answer = json.loads(r.read())
            took = time.perf_counter() - start
            if answer.get("tokens_predicted") != 256:
                raise SystemExit(f"unexpected answer from {bin_dir}: {answer.get('tokens_predicted')} tokens")
            return took
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def bench(bin_dir: Path, model: Path, threads: int) -> dict[str, float]:
    cmd = [str(bin_dir / "llama-bench"), "-m", str(model), "-p", "512", "-n", "128", "-r", "2", "-t", str(threads)]
    out = subprocess.run([*cmd, "-o", "json"], check=True, capture_output=True, text=True)
    return {test: row["avg_ts"] for test, row in by_test(json.loads(out.stdout)).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="the llcuda-cpu wheel built without OpenMP")
    parser.add_argument("--stock", type=Path, help="a stock build's bin/ (llama-server, llama-bench)")
    parser.add_argument("--vocab", type=Path, help="llama.cpp's models/ggml-vocab-llama-spm.gguf")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "bench-models")
    parser.add_argument("--table-from", type=Path, default=None, help="rewrite openmp.md from this openmp.json")
    args = parser.parse_args()
    if args.table_from:
        write_table(json.loads(args.table_from.read_text()), args.out / "openmp.md")
        return
    if not (args.before and args.stock and args.vocab):
        parser.error("--before, --stock and --vocab are required (or --table-from)")
    after = next((b for b in llcuda.backends() if b.target == "cpu"), None)
    if after is None:
        raise SystemExit("llcuda-cpu is not installed")
    m = models(args.models, args.vocab, after.bin_dir / "llama-quantize")
    with tempfile.TemporaryDirectory(prefix="bench-openmp-") as tmp:
        with zipfile.ZipFile(args.before) as zf:
            for info in zf.infolist():
                path = Path(zf.extract(info, tmp))
                path.chmod((info.external_attr >> 16) & 0o777 or 0o644)
        builds = {"after": after.bin_dir, "before": Path(tmp) / "llcuda_cpu" / "bin", "stock": args.stock}
        runs: dict[str, dict[str, list[float]]] = {name: {} for name in builds}
        for bin_dir in builds.values():  # a first pass of each, not counted: page cache, CPU clocks
            bench(bin_dir, m["bench"], 2)
        for _ in range(args.rounds):
            for name, bin_dir in builds.items():
                took = speculative_request(bin_dir, m, Path(tmp) / f"server-{name}.log")
                runs[name].setdefault("speculative_s", []).append(round(took, 2))
                for threads in (1, 2):
                    for test, speed in bench(bin_dir, m["bench"], threads).items():
                        runs[name].setdefault(f"{test} t{threads}", []).append(round(speed, 2))
                print(name, {k: v[-1] for k, v in runs[name].items()}, flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rounds": args.rounds,
        "before": args.before.name,
        "stock": str(args.stock),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "openmp.json").write_text(json.dumps(result, indent=2) + "\n")
    write_table(result, args.out / "openmp.md")


def write_table(result: dict[str, Any], out: Path) -> None:
    """openmp.md from openmp.json: the means, the two ratios, and how far one build's rounds spread (the noise)."""
    runs = result["runs"]
    mean = {n: {k: sum(v) / len(v) for k, v in r.items()} for n, r in runs.items()}
    rows = []
    for key in mean["after"]:
        a, b, s = mean["after"][key], mean["before"][key], mean["stock"][key]
        unit = "s" if key.endswith("_s") else "tok/s"
        spread = max(max(r[key]) / min(r[key]) - 1 for r in runs.values())
        rows.append(f"| {key} ({unit}) | {b:.2f} | {a:.2f} | {s:.2f} | {a / s:.2f} | {a / b:.2f} | {spread:.0%} |")
    table = (
        f"| {result['machine']}, {result['rounds']} alternating rounds ({result['date']}) | before (no OpenMP) | "
        "after (OpenMP) | stock llama.cpp | after / stock | after / before | rounds spread (max/min - 1) |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )
    out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
