"""Tokenizer parity, as llama.cpp's own ``test-tokenizer-0`` checks it, on the llama-server of every backend wheel.

The pinned llama.cpp tree ships real vocabularies (``models/ggml-vocab-*.gguf``) with expected outputs beside
them: ``.inp`` holds texts separated by ``\\n__ggml_vocab_test__\\n``, ``.out`` one line of token ids per text.
Each vocabulary is wrapped in a tiny random-weight model (its ``tokenizer.*`` keys copied byte for byte), served by
the installed wheel's ``llama-server`` (the CUDA ones on their CPU fallback here), and ``/tokenize`` is asked for
every text with ``add_special=false, parse_special=false``, as test-tokenizer-0 tokenizes.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from support import Installed

SEPARATOR = "\n__ggml_vocab_test__\n"


def _models_dir() -> Path:
    from llcuda_factory import source

    return source.resolve(fetch=True) / "models"  # the verified offline source of the pin


def expected(vocab: Path) -> list[tuple[str, list[int]]]:
    """The (text, token ids) pairs of ``vocab``'s ``.inp``/``.out`` files, read as test-tokenizer-0 reads them."""
    texts = Path(f"{vocab}.inp").read_text(encoding="utf-8").split(SEPARATOR)
    if texts and texts[-1] == "":  # the file ends with a separator
        texts.pop()
    ids = [[int(t) for t in line.split()] for line in Path(f"{vocab}.out").read_text().splitlines()]
    assert len(texts) == len(ids), f"{vocab.name}: {len(texts)} texts but {len(ids)} lines of ids"
    return list(zip(texts, ids))


# Session-scoped: the tests of this module run once per installed backend, in separate groups, and a module-scoped
# fixture would write every model again for each group (about a minute on 2 cores).
@pytest.fixture(scope="session")
def vocab_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[tuple[str, list[int]]]]]:
    """Every vocabulary of the pinned tree that has expected outputs: its tiny model and its cases."""
    from llcuda_testkit.tinymodel import write_vocab_model

    out = tmp_path_factory.mktemp("vocab-models")
    vocabs = sorted(v for v in _models_dir().glob("ggml-vocab-*.gguf") if Path(f"{v}.out").is_file())
    assert len(vocabs) >= 15, [v.name for v in vocabs]
    # Copying a 150k-token vocabulary is Python-bound: one process per core ("spawn": no fork of a threaded parent).
    with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        models = list(pool.map(write_vocab_model, [out / v.name for v in vocabs], vocabs))
    return {v.stem: (model, expected(v)) for v, model in zip(vocabs, models)}


def mismatches(exe: Path, model: Path, cases: list[tuple[str, list[int]]], log: Path) -> list[str]:
    """The cases whose ``/tokenize`` answer differs from the expected ids."""
    from llcuda_testkit.serverproc import running_server

    wrong = []
    with running_server(exe, model, log) as server:
        for text, want in cases:
            body = {"content": text, "add_special": False, "parse_special": False}
            got = server.post("/tokenize", body)["tokens"]
            if got != want:
                wrong.append(f"{model.stem}: {text[:40]!r}: got {got[:12]}, expected {want[:12]}")
    return wrong


def test_every_vocab_tokenizes_as_upstream_expects(
    installed: Installed, vocab_models: dict[str, tuple[Path, list[tuple[str, list[int]]]]], tmp_path: Path
) -> None:
    wrong: list[str] = []
    for name, (model, cases) in vocab_models.items():
        wrong += mismatches(installed.bin_dir / "llama-server", model, cases, tmp_path / f"{name}.log")
    assert wrong == []


def test_the_harness_fails_a_vocab_judged_against_another_vocabs_ids(
    vocab_models: dict[str, tuple[Path, list[tuple[str, list[int]]]]], cpu_backend: None, tmp_path: Path
) -> None:
    import llcuda

    exe = next(b for b in llcuda.backends() if b.target == "cpu").llama_server
    spm, _ = vocab_models["ggml-vocab-llama-spm"]
    _, bpe_cases = vocab_models["ggml-vocab-llama-bpe"]
    wrong = mismatches(exe, spm, bpe_cases, tmp_path / "crossed.log")
    assert len(wrong) > len(bpe_cases) // 2, wrong
