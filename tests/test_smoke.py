"""Smoke tests of one installed backend wheel. cibuildwheel runs them against each wheel it builds
(``ci/cibw.sh test``, with ``LLCUDA_EXPECT_BACKEND`` naming the target); ``nox -s tests`` runs them against the
installed ``llcuda-cpu``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import llcuda
from conftest import required_wheels
from llcuda import _version
from llcuda.installed import Backend

pytestmark = pytest.mark.wheels


@pytest.fixture(scope="module")
def backend() -> Backend:
    expected = os.environ.get("LLCUDA_EXPECT_BACKEND", "cpu")
    found = {b.target: b for b in llcuda.backends()}
    if expected not in found:
        msg = f"llcuda-{expected} is not installed (installed: {sorted(found) or 'none'})"
        if "LLCUDA_EXPECT_BACKEND" in os.environ or expected in required_wheels():
            pytest.fail(msg)
        pytest.skip(msg)
    return found[expected]


def test_backend_is_built_from_the_pinned_llama_cpp(backend: Backend) -> None:
    assert backend.build_info["llama_cpp"]["commit"] == _version.LLAMA_CPP_COMMIT
    out = subprocess.run([str(backend.llama_server), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _version.LLAMA_CPP_COMMIT[:7] in out.stdout + out.stderr


def test_backend_serves_a_completion(backend: Backend, tiny_gguf: Path) -> None:
    manager = llcuda.ServerManager(backend.llama_server)
    with llcuda.InferenceEngine(manager) as engine:
        engine.load_model(tiny_gguf, ctx_size=256, silent=True, threads=2)
        result = engine.infer("Hello", max_tokens=4, temperature=0)
    assert result.success and result.tokens_generated > 0
    assert not manager.is_running()
