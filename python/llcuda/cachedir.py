"""The one llcuda cache directory, for the runtime (logs, a llama-server of your own in ``bin/``) and for the
wheel factory (the llama.cpp source). The factory loads this very file from the source tree."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LLCUDA_CACHE_DIR"


def cache_dir() -> Path:
    """``$LLCUDA_CACHE_DIR`` when set, else platformdirs' user cache dir for llcuda (``~/.cache/llcuda``)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("llcuda", appauthor=False))
