"""Tiny random-weight llama GGUF models written with the ``gguf`` package (never fetched from a hub).

The default is the smallest model llama-server loads and serves: 2 layers, embedding 64, and a byte-level
vocabulary of 260 tokens (``<unk>``, ``<s>``, ``</s>``, ``<0x00>``…``<0xFF>``, and SentencePiece's space ``▁`` as a
normal token, so that text with spaces round-trips through tokenize and detokenize) with tokenizer model "llama".
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

N_VOCAB = 260


def byte_vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
    scores = [0.0] * len(tokens)
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL]
    return tokens, scores, [int(t) for t in types]


def add_llama_tokenizer(writer: gguf.GGUFWriter, vocab: tuple[list[str], list[float], list[int]] | None = None) -> None:
    """A llama (SentencePiece-style) tokenizer over ``vocab`` (default :func:`byte_vocab`: <unk>, <s>, </s>, bytes)."""
    tokens, scores, types = vocab or byte_vocab()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(False)


def write_tiny_llama(
    path: Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 4,
    n_ff: int = 128,
    n_ctx: int = 512,
    seed: int = 0,
) -> Path:
    """Write a random-weight llama model in F32 to ``path`` and return it."""
    rng = np.random.default_rng(seed)
    head_dim = n_embd // n_head

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llcuda-tiny-llama")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    add_llama_tokenizer(writer)
    writer.add_chat_template(
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )

    writer.add_tensor("token_embd.weight", w(N_VOCAB, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", w(N_VOCAB, n_embd))
    kv = head_dim * n_head_kv
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(kv, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def copy_tokenizer(writer: gguf.GGUFWriter, vocab: Path) -> int:
    """Copy every ``tokenizer.*`` key of the GGUF file ``vocab`` (llama.cpp's ``models/ggml-vocab-*.gguf``) into
    ``writer``, byte for byte (strings as their raw bytes, arrays with their element type); return the vocab size."""
    reader = gguf.GGUFReader(str(vocab))
    n_vocab = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                items: list[object] = [bytes(field.parts[i]) for i in field.data]
            else:
                items = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(key, items, vtype, sub_type=sub)
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(items)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[field.data[0]]), vtype)
        else:
            writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], vtype)
    if not n_vocab:
        raise ValueError(f"{vocab} has no tokenizer.ggml.tokens")
    return n_vocab


def write_vocab_model(path: Path, vocab: Path, *, n_embd: int = 16, seed: int = 0) -> Path:
    """A tiny random-weight llama (1 layer) that carries the real tokenizer of ``vocab``: what llama-server needs
    to serve ``/tokenize`` with that vocabulary."""
    rng = np.random.default_rng(seed)
    n_head, n_ff = 2, 32

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"llcuda-tiny-{vocab.stem}")
    writer.add_context_length(512)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    n_vocab = copy_tokenizer(writer, vocab)
    writer.add_tensor("token_embd.weight", w(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", w(n_vocab, n_embd))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", w(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", w(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", w(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", w(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
