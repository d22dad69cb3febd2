"""The one version of every llcuda distribution (llcuda and each backend wheel, llcuda-<target>).

The llama.cpp release the backends are built from is pinned in targets.toml (``[llama-cpp]``); each backend
records it in its build_info.json.
"""

from __future__ import annotations

__version__ = "0.1.0"
