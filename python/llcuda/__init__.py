"""llcuda: run llama.cpp's llama-server on old and modest NVIDIA GPUs, offline.

Importing llcuda never touches the network and never downloads anything: backends are installed as wheels
(``pip install "llcuda[cc50]"``, ``"llcuda[cc75]"`` or ``"llcuda[cpu]"``) and found through entry points.
"""

from __future__ import annotations

from ._version import __version__
from .backends import Backend, backends

__all__ = ["Backend", "__version__", "backends"]
