"""The one version of every llcuda distribution (llcuda, llcuda-cpu, llcuda-cc50, llcuda-cc75), and the
llama.cpp release their backends are built from (``nox -s bump_llama`` moves it; ``nox -s check_release``
checks that the submodule and targets.toml agree)."""

from __future__ import annotations

__version__ = "0.1.0"
LLAMA_CPP_TAG = "b11312"
LLAMA_CPP_COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
