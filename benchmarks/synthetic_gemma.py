"""A random-weight model with gemma-3-1b's shapes, written with the ``gguf`` package (never fetched from a hub).

    python benchmarks/synthetic_gemma.py OUT.gguf [--layers 26]

Shapes are gemma-3-1b's: 26 layers, embedding 1152, feed-forward 6912, 4 query heads and 1 KV head of 256,
a 262,144-token vocabulary (tied output), sliding window 512 on five layers of six. The weights are random, so
the text is noise, but the bytes read per token, and so the speed, are a real gemma-3-1b's. The file is F16
(norms F32); the benchmark quantizes it to Q4_K_M with the wheel's own ``llama-quantize``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf
import numpy as np

from llcuda_testkit.tinymodel import add_llama_tokenizer, byte_vocab

N_VOCAB = 262_144
N_EMBD = 1152
N_FF = 6912
N_HEAD = 4
N_HEAD_KV = 1
HEAD_DIM = 256
N_LAYER = 26
ARCH = gguf.MODEL_ARCH.GEMMA3


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """The byte vocabulary of the tiny test models, padded with unique normal tokens to gemma's size."""
    tokens, scores, types = byte_vocab()
    pad = N_VOCAB - len(tokens)
    tokens += [f"<tok{i}>" for i in range(pad)]
    scores += [-float(i) for i in range(pad)]
    types += [int(gguf.TokenType.NORMAL)] * pad
    return tokens, scores, types


def _name(tensor: gguf.MODEL_TENSOR, layer: int | None = None) -> str:
    base = gguf.TENSOR_NAMES[tensor]
    return (base.format(bid=layer) if layer is not None else base) + ".weight"


def write_gemma3_1b_like(path: Path, *, n_layer: int = N_LAYER, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)

    def w(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def norm(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    arch = gguf.MODEL_ARCH_NAMES[ARCH]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("llcuda-synthetic-gemma-3-1b")
    writer.add_context_length(32_768)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_sliding_window(512)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    add_llama_tokenizer(writer, vocabulary())

    t = gguf.MODEL_TENSOR
    writer.add_tensor(_name(t.TOKEN_EMBD), w(N_VOCAB, N_EMBD))
    writer.add_tensor(_name(t.OUTPUT_NORM), norm(N_EMBD))
    q, kv = N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM
    for i in range(n_layer):
        writer.add_tensor(_name(t.ATTN_NORM, i), norm(N_EMBD))
        writer.add_tensor(_name(t.ATTN_Q, i), w(q, N_EMBD))
        writer.add_tensor(_name(t.ATTN_K, i), w(kv, N_EMBD))
        writer.add_tensor(_name(t.ATTN_V, i), w(kv, N_EMBD))
        writer.add_tensor(_name(t.ATTN_Q_NORM, i), norm(HEAD_DIM))
        writer.add_tensor(_name(t.ATTN_K_NORM, i), norm(HEAD_DIM))
        writer.add_tensor(_name(t.ATTN_OUT, i), w(N_EMBD, q))
        writer.add_tensor(_name(t.ATTN_POST_NORM, i), norm(N_EMBD))
        writer.add_tensor(_name(t.FFN_NORM, i), norm(N_EMBD))
        writer.add_tensor(_name(t.FFN_GATE, i), w(N_FF, N_EMBD))
        writer.add_tensor(_name(t.FFN_UP, i), w(N_FF, N_EMBD))
        writer.add_tensor(_name(t.FFN_DOWN, i), w(N_EMBD, N_FF))
        writer.add_tensor(_name(t.FFN_POST_NORM, i), norm(N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def weight_bytes(path: Path) -> dict[str, int]:
    """Bytes of tensor data in a GGUF file: all of it, and what one generated token reads.

    Generating a token reads every weight matrix once; of the token embedding it reads one row for the input,
    but gemma ties the output projection to it, which reads all of it. So a token reads all the weights.
    """
    reader = gguf.GGUFReader(str(path))
    total = sum(int(t.n_bytes) for t in reader.tensors)
    return {"tensor_bytes": total, "bytes_per_token": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=N_LAYER)
    args = parser.parse_args()
    write_gemma3_1b_like(args.out, n_layer=args.layers)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
