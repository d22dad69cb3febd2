"""Turn a model spec into a local GGUF file: a path, a Hugging Face ``"repo:file.gguf"``, or a short alias.

Downloads go through huggingface_hub (its cache, progress bar and ``HF_HUB_OFFLINE``); nothing is fetched
at import time, and no spec can name a file outside the Hugging Face cache.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, ModelNotFoundError

GGUF_MAGIC = b"GGUF"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE = re.compile(r"^[\w.-]+(/[\w.-]+)*\.gguf$")


@dataclass(frozen=True)
class RegistryEntry:
    """A short alias's Hugging Face repository and GGUF file."""

    repo: str
    filename: str


# A small curated list of small instruct models (Q4_K_M), each under 1 GB.
REGISTRY: dict[str, RegistryEntry] = {
    "gemma-3-1b-it": RegistryEntry("unsloth/gemma-3-1b-it-GGUF", "gemma-3-1b-it-Q4_K_M.gguf"),
    "qwen2.5-0.5b-instruct": RegistryEntry("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf"),
    "llama-3.2-1b-instruct": RegistryEntry("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf"),
}


def check_gguf(path: Path) -> Path:
    """``path`` if it is a readable GGUF file; a ModelError that says what is wrong otherwise."""
    if not path.exists():
        raise ModelNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"{path} is a directory; pass the .gguf file inside it")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path} is empty (0 bytes); the download or copy did not finish")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path} is not a GGUF model (starts with {magic!r}, not b'GGUF')")
    return path


def _download(repo: str, filename: str) -> Path:
    if not _REPO.match(repo) or ".." in repo:
        raise ModelError(f"invalid Hugging Face repo id {repo!r} (expected owner/name)")
    if not _FILE.match(filename) or ".." in filename.split("/"):
        raise ModelError(f"invalid model file name {filename!r} (expected a relative path ending in .gguf)")
    from huggingface_hub import hf_hub_download  # a dependency, imported only when a model is downloaded
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except LocalEntryNotFoundError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        raise ModelNotFoundError(
            f"{repo}:{filename} is not in the Hugging Face cache and {why}. Download it once while online, "
            f"or pass a local .gguf path."
        ) from err
    except Exception as err:  # huggingface_hub raises many types: repo/file not found, HTTP errors
        raise ModelNotFoundError(f"could not download {repo}:{filename}: {err}") from err


def resolve_model(spec: str | os.PathLike[str]) -> Path:
    """A local GGUF file for ``spec``: an existing path, an alias of :data:`REGISTRY`, or ``"repo:file.gguf"``."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if isinstance(spec, os.PathLike) or path.exists() or (text.endswith(".gguf") and ":" not in text):
        return check_gguf(path)
    if text in REGISTRY:
        entry = REGISTRY[text]
        return check_gguf(_download(entry.repo, entry.filename))
    if ":" in text:
        repo, _, filename = text.partition(":")
        return check_gguf(_download(repo, filename))
    known = ", ".join(sorted(REGISTRY))
    raise ModelNotFoundError(
        f"{text!r} is not a file, a known alias ({known}) or a Hugging Face 'owner/repo:file.gguf' spec"
    )
