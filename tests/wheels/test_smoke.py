"""Smoke tests of one installed backend wheel. cibuildwheel runs them against each wheel it builds
(``ci/cibw.sh test``, with ``--expect-backend`` naming the target); ``nox -s tests`` runs them against the
installed ``llcuda-cpu``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import llcuda
from llcuda.installed import Backend
from llcuda_factory.project import llama_cpp_pin
from support import expected_backend, required_wheels

PIN = llama_cpp_pin()


@pytest.fixture(scope="module")
def backend() -> Backend:
    expected = expected_backend() or "cpu"
    found = {b.target: b for b in llcuda.backends()}
    if expected not in found:
        msg = f"llcuda-{expected} is not installed (installed: {sorted(found) or 'none'})"
        if expected_backend() is not None or expected in required_wheels():
            pytest.fail(msg)
        pytest.skip(msg)
    return found[expected]


def test_backend_is_built_from_the_pinned_llama_cpp(backend: Backend) -> None:
    assert backend.build_info["llama_cpp"]["commit"] == PIN.commit
    out = subprocess.run([str(backend.llama_server), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert PIN.commit[:7] in out.stdout + out.stderr


def test_backend_serves_a_completion(backend: Backend, tiny_gguf: Path) -> None:
    manager = llcuda.ServerManager(backend.llama_server)
    with llcuda.InferenceEngine(manager) as engine:
        engine.load_model(tiny_gguf, ctx_size=256, silent=True, threads=2)
        result = engine.infer("Hello", max_tokens=4, temperature=0)
    assert result.success and result.tokens_generated > 0
    assert not manager.is_running()
