"""The one version of every llcuda distribution (llcuda, llcuda-cpu, llcuda-cc50, llcuda-cc75)."""

from __future__ import annotations

__version__ = "0.1.0"
