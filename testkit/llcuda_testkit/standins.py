"""Local stand-ins for the models llama.cpp's server tests fetch from the Hugging Face hub.

Each preset of ``tools/server/tests/utils.py`` gets a tiny random-weight GGUF of the same architecture, carrying a
real tokenizer from the pinned tree's ``models/ggml-vocab-*.gguf`` (copied byte for byte by
:func:`llcuda_testkit.tinymodel.copy_tokenizer`). Nothing is downloaded; a test that needs what only the real
weights give (a given completion, a vision projector) fails the same way on a stock build and on ours, and is
listed in ``tests/upstream/expected.toml``.

| preset (upstream)        | upstream model                 | stand-in                                       |
| ------------------------ | ------------------------------ | ---------------------------------------------- |
| ``tinyllama2``           | stories260K (llama)            | llama, 2 layers, llama-spm vocabulary           |
| ``stories15m_moe``       | stories15M_MOE (llama, 4 exp.) | llama with 4 experts (2 used), llama-spm         |
| draft (test_speculative) | stories15M-q4_0 (llama)        | llama, 1 layer, llama-spm (the main's vocab)     |
| lora (test_lora)         | moe_shakespeare15M (LoRA)      | a LoRA adapter of the MoE stand-in              |
| ``tinyllama_infill``     | stories260K-infill (llama)     | llama, starcoder vocabulary (its FIM tokens)     |
| ``bert_bge_small``       | bge-small (bert)               | bert, bert-bge vocabulary, CLS pooling           |
| ``jina_reranker_tiny``   | jina-reranker-v1-tiny          | bert with a classifier head, rank pooling        |
| ``tinygemma3``           | tinygemma3 (gemma3 + mmproj)   | gemma3, text only, llama-spm                     |
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

from .tinymodel import copy_tokenizer

# preset or file -> (stand-in file name, writer); the vocabularies are llama.cpp's models/ggml-vocab-<name>.gguf.
N_EMBD = 64
N_HEAD = 4
N_FF = 128


class _Weights:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * 0.02).astype(np.float32)

    @staticmethod
    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    @staticmethod
    def zeros(*shape: int) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _common(writer: gguf.GGUFWriter, name: str, n_layer: int, n_ctx: int) -> None:
    writer.add_name(f"llcuda-standin-{name}")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def write_llama(
    path: Path, vocab: Path, *, n_layer: int = 2, n_expert: int = 0, n_ctx: int = 4096, seed: int = 0
) -> Path:
    """A llama (with ``n_expert`` > 0, a mixture of experts, 2 used per token) carrying ``vocab``'s tokenizer."""
    w = _Weights(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    _common(writer, f"llama-{vocab.stem}", n_layer, n_ctx)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    if n_expert:
        writer.add_expert_count(n_expert)
        writer.add_expert_used_count(2)
    n_vocab = copy_tokenizer(writer, vocab)
    writer.add_tensor("token_embd.weight", w(n_vocab, N_EMBD))
    writer.add_tensor("output_norm.weight", w.ones(N_EMBD))
    writer.add_tensor("output.weight", w(n_vocab, N_EMBD))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.ones(N_EMBD))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.ones(N_EMBD))
        if n_expert:
            writer.add_tensor(f"blk.{i}.ffn_gate_inp.weight", w(n_expert, N_EMBD))
            writer.add_tensor(f"blk.{i}.ffn_gate_exps.weight", w(n_expert, N_FF, N_EMBD))
            writer.add_tensor(f"blk.{i}.ffn_up_exps.weight", w(n_expert, N_FF, N_EMBD))
            writer.add_tensor(f"blk.{i}.ffn_down_exps.weight", w(n_expert, N_EMBD, N_FF))
        else:
            writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(N_FF, N_EMBD))
            writer.add_tensor(f"blk.{i}.ffn_up.weight", w(N_FF, N_EMBD))
            writer.add_tensor(f"blk.{i}.ffn_down.weight", w(N_EMBD, N_FF))
    _finish(writer)
    return path


def write_lora(path: Path, *, n_layer: int = 2, rank: int = 4, seed: int = 1) -> Path:
    """A LoRA adapter for :func:`write_llama`'s models (attention q and v of every layer)."""
    w = _Weights(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    writer.add_name("llcuda-standin-lora")
    for i in range(n_layer):
        for name in ("attn_q", "attn_v"):
            writer.add_tensor(f"blk.{i}.{name}.weight.lora_a", w(rank, N_EMBD))
            writer.add_tensor(f"blk.{i}.{name}.weight.lora_b", w(N_EMBD, rank))
    _finish(writer)
    return path


def write_bert(path: Path, vocab: Path, *, reranker: bool = False, n_layer: int = 2, seed: int = 0) -> Path:
    """A BERT encoder carrying ``vocab``'s tokenizer: CLS pooling (embeddings), or with ``reranker`` a classifier
    head and rank pooling (a cross-encoder, as rerankers are)."""
    w = _Weights(seed)
    n_ctx = 512
    writer = gguf.GGUFWriter(str(path), "bert")
    _common(writer, "reranker" if reranker else f"bert-{vocab.stem}", n_layer, n_ctx)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.RANK if reranker else gguf.PoolingType.CLS)
    n_vocab = copy_tokenizer(writer, vocab)
    writer.add_tensor("token_embd.weight", w(n_vocab, N_EMBD))
    writer.add_tensor("token_types.weight", w(2, N_EMBD))
    writer.add_tensor("position_embd.weight", w(n_ctx, N_EMBD))
    writer.add_tensor("token_embd_norm.weight", w.ones(N_EMBD))
    writer.add_tensor("token_embd_norm.bias", w.zeros(N_EMBD))
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", w(N_EMBD, N_EMBD))
            writer.add_tensor(f"blk.{i}.{name}.bias", w.zeros(N_EMBD))
        for norm in ("attn_output_norm", "layer_output_norm"):
            writer.add_tensor(f"blk.{i}.{norm}.weight", w.ones(N_EMBD))
            writer.add_tensor(f"blk.{i}.{norm}.bias", w.zeros(N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.bias", w.zeros(N_FF))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(N_EMBD, N_FF))
        writer.add_tensor(f"blk.{i}.ffn_down.bias", w.zeros(N_EMBD))
    if reranker:
        writer.add_tensor("cls.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor("cls.bias", w.zeros(N_EMBD))
        writer.add_tensor("cls.output.weight", w(1, N_EMBD))
        writer.add_tensor("cls.output.bias", w.zeros(1))
    _finish(writer)
    return path


def write_gemma3(path: Path, vocab: Path, *, n_layer: int = 2, seed: int = 0) -> Path:
    """A text-only gemma3 (sliding-window attention, q/k norms, post-norms) carrying ``vocab``'s tokenizer."""
    w = _Weights(seed)
    head = N_EMBD // N_HEAD
    writer = gguf.GGUFWriter(str(path), "gemma3")
    _common(writer, f"gemma3-{vocab.stem}", n_layer, 4096)
    writer.add_key_length(head)
    writer.add_value_length(head)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_sliding_window(512)
    n_vocab = copy_tokenizer(writer, vocab)
    writer.add_tensor("token_embd.weight", w(n_vocab, N_EMBD))
    writer.add_tensor("output_norm.weight", w.ones(N_EMBD))
    for i in range(n_layer):
        for norm in ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"):
            writer.add_tensor(f"blk.{i}.{norm}.weight", w.ones(N_EMBD))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_q_norm.weight", w.ones(head))
        writer.add_tensor(f"blk.{i}.attn_k_norm.weight", w.ones(head))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(N_EMBD, N_FF))
    _finish(writer)
    return path


def _vocab(models: Path, name: str) -> Path:
    return models / f"ggml-vocab-{name}.gguf"


# name -> writer(out_file, llama.cpp's models/ folder)
STANDINS: dict[str, Callable[[Path, Path], Path]] = {
    "tinyllama2": lambda out, m: write_llama(out, _vocab(m, "llama-spm")),
    "stories15m_moe": lambda out, m: write_llama(out, _vocab(m, "llama-spm"), n_expert=4, seed=1),
    "draft": lambda out, m: write_llama(out, _vocab(m, "llama-spm"), n_layer=1, seed=2),
    "lora": lambda out, m: write_lora(out),
    "tinyllama_infill": lambda out, m: write_llama(out, _vocab(m, "starcoder"), seed=3),
    "bert_bge_small": lambda out, m: write_bert(out, _vocab(m, "bert-bge")),
    "jina_reranker_tiny": lambda out, m: write_bert(out, _vocab(m, "bert-bge"), reranker=True, seed=4),
    "tinygemma3": lambda out, m: write_gemma3(out, _vocab(m, "llama-spm"), seed=5),
}


def write_all(out_dir: Path, llama_models: Path) -> dict[str, Path]:
    """Every stand-in into ``out_dir`` (``<name>.gguf``), from the vocabularies in ``llama_models``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: write(out_dir / f"{name}.gguf", llama_models) for name, write in STANDINS.items()}
