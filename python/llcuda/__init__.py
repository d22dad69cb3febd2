"""llcuda: run llama.cpp's llama-server on old and modest NVIDIA GPUs, offline.

Importing llcuda never touches the network and never downloads anything: backends are installed as wheels
(``pip install "llcuda[cc50]"``, ``"llcuda[cc75]"``, ``"llcuda[cc75-cu13]"`` or ``"llcuda[cpu]"``) and found
through entry points.
Everything but the version and the error types loads on first use, so the import stays fast.
"""

from __future__ import annotations

from ._version import __version__
from .errors import (
    DriverTooOldError,
    EngineStateError,
    InsecureBindError,
    LLCudaError,
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    ModelTooLargeError,
    PortInUseError,
    RequestError,
    RPCBusyError,
    RPCError,
    RPCHostLostError,
    RPCProtocolError,
    RPCUnreachableError,
    ServerCrashedError,
    ServerError,
    ServerNotFoundError,
    ServerStartError,
    StreamStalledError,
)

# Not `from typing import TYPE_CHECKING`: importing typing (and re) would double the cost of `import llcuda`.
# mypy treats this name as true (always_true in pyproject.toml).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .backendops import SelftestResult, selftest
    from .client import InferResult, Sampling
    from .discovery import find_llama_server
    from .engine import InferenceEngine, quick_infer
    from .fit import check_gpu_compatibility
    from .gpu import detect_gpus
    from .installed import Backend, backends
    from .rpc import RPCServer
    from .server import ServerManager

_LAZY = {
    "Backend": "installed",
    "backends": "installed",
    "InferenceEngine": "engine",
    "InferResult": "client",
    "Sampling": "client",
    "quick_infer": "engine",
    "ServerManager": "server",
    "RPCServer": "rpc",
    "find_llama_server": "discovery",
    "check_gpu_compatibility": "fit",
    "detect_gpus": "gpu",
    "selftest": "backendops",
    "SelftestResult": "backendops",
}

__all__ = [
    "Backend",
    "DriverTooOldError",
    "EngineStateError",
    "InferResult",
    "InferenceEngine",
    "InsecureBindError",
    "LLCudaError",
    "ModelError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelTooLargeError",
    "PortInUseError",
    "RPCBusyError",
    "RPCError",
    "RPCHostLostError",
    "RPCProtocolError",
    "RPCServer",
    "RPCUnreachableError",
    "RequestError",
    "Sampling",
    "SelftestResult",
    "ServerCrashedError",
    "ServerError",
    "ServerManager",
    "ServerNotFoundError",
    "ServerStartError",
    "StreamStalledError",
    "__version__",
    "backends",
    "check_gpu_compatibility",
    "detect_gpus",
    "find_llama_server",
    "quick_infer",
    "selftest",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'llcuda' has no attribute {name!r}")
