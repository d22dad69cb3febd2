"""Sphinx configuration of llcuda's documentation site (`nox -s docs`): furo, MyST Markdown, and the API reference
generated from the docstrings of ``llcuda.__all__``. Warnings are errors (nox passes ``-W``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "docs" / "_ext"), str(ROOT / "factory")]

import llcuda  # noqa: E402

# llcuda loads most of its names on first use (a fast import); autodoc lists a module's members from its namespace,
# so load every exported name into it before the reference is written.
for _name in llcuda.__all__:
    setattr(llcuda, _name, getattr(llcuda, _name))

project = "llcuda"
author = "the llcuda developers"
copyright = "2026, the llcuda developers"
release = llcuda.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "llcuda_docs"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
nitpicky = True
# Names in signatures that the reference does not document: the standard library's, and llcuda's internal modules
# (GPU, CudaArch, ManagedProcess, the selftest's OpFailure, an RPC host's RemoteHost, discovery's Found), which are not
# in llcuda.__all__.
nitpick_ignore_regex = [
    ("py:class", r"(pathlib\.)?Path|os\.PathLike|collections\.abc\..*|typing\..*|subprocess\..*|_io\..*"),
    ("py:class", r"llcuda\.(catalog|gpu|process|backendops|rpc|discovery)\..*"),
    ("py:func", r"llcuda\.discovery\..*"),
]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
html_theme = "furo"
html_title = f"llcuda {release}"
suppress_warnings = ["myst.header"]
