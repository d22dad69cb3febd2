"""Where a model's layers go when there is more than one device: llama.cpp's own split across the GPUs of this
machine (``--split-mode``, ``--tensor-split``, ``--main-gpu``) and RPC servers on others. llcuda only checks and maps
the arguments; llama-server places the layers (``gpu_layers=None`` lets it fit them to free memory)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .gpu import GPU
from .rpc import RemoteHost

SPLIT_MODES = ("none", "layer")
_REFUSED = {
    "row": (
        "split_mode='row' was removed from llama.cpp's CUDA backend: llama.cpp b11312 still parses it, then fails "
        "at load ('does not support split buffers'). Use split_mode='layer' (the default), which splits whole "
        "layers across the GPUs."
    ),
    "tensor": (
        "split_mode='tensor' is experimental in llama.cpp b11312 and needs flash attention, which llcuda's CUDA "
        "backends are built without (GGML_CUDA_FA=OFF: the GPUs they serve lack it or gain nothing). Use "
        "split_mode='layer' (the default)."
    ),
}


def split_options(
    split_mode: str | None, tensor_split: Sequence[float] | None, main_gpu: int | None, gpu_count: int
) -> dict[str, str]:
    """The llama-server options for a multi-GPU split (``--split-mode``, ``--tensor-split``, ``--main-gpu``).

    ``gpu_count`` is the number of local GPUs found (0 when none: nothing is checked against it). Raises
    ValueError with the reason and the fix.
    """
    out: dict[str, str] = {}
    if split_mode is not None:
        if split_mode in _REFUSED:
            raise ValueError(_REFUSED[split_mode])
        if split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode={split_mode!r}: expected one of {', '.join(map(repr, SPLIT_MODES))}")
        out["split_mode"] = split_mode
    if tensor_split is not None:
        if isinstance(tensor_split, str) or not tensor_split:
            raise ValueError(f"tensor_split={tensor_split!r}: expected a list of proportions, e.g. [3, 1]")
        values = [float(v) for v in tensor_split]
        if any(not math.isfinite(v) or v < 0 for v in values) or not any(values):
            raise ValueError(f"tensor_split={list(tensor_split)!r}: proportions must be >= 0, and not all 0")
        if split_mode == "none":
            raise ValueError("tensor_split does not apply with split_mode='none' (the whole model on one GPU)")
        out["tensor_split"] = ",".join(f"{v:g}" for v in values)
    if main_gpu is not None:
        if isinstance(main_gpu, bool) or not isinstance(main_gpu, int) or main_gpu < 0:
            raise ValueError(f"main_gpu={main_gpu!r}: expected a GPU index, 0 or more")
        if gpu_count and main_gpu >= gpu_count:
            raise ValueError(f"main_gpu={main_gpu}: this machine has {gpu_count} GPU(s), indices 0-{gpu_count - 1}")
        out["main_gpu"] = str(main_gpu)
    return out


def ram_available_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable of this machine in MiB, None where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_shortfall(
    model_bytes: int, gpus: Sequence[GPU], remotes: Sequence[RemoteHost], ram_mb: int | None
) -> str | None:
    """Why a model fits in no combination of the devices (every local GPU, every RPC host and this machine's
    RAM together), naming each with its free memory; None when it may fit (or RAM is unknown)."""
    if ram_mb is None:
        return None
    need = model_bytes // (1 << 20)
    parts = [(f"GPU {g.index} {g.name}", g.memory_free_mb) for g in gpus]
    parts += [(f"RPC {r.endpoint}", r.free_mb) for r in remotes]
    parts.append(("RAM", ram_mb))
    total = sum(mb for _, mb in parts)
    if need <= total:
        return None
    listing = ", ".join(f"{name} {mb} MiB" for name, mb in parts)
    return (
        f"the model needs at least {need} MiB for its weights alone, and all devices together have {total} MiB free "
        f"({listing}). Use a smaller quantization (Q4_K_M, Q3_K_M...), add RPC hosts, or free memory."
    )
