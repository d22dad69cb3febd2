"""Every error llcuda raises for a failure of the server, the model or the engine's state; each message says what
went wrong and what to do about it. Wrong argument types and values stay ``TypeError``/``ValueError``, as Python
convention has it. All of them are exported from ``llcuda``."""

from __future__ import annotations


class LLCudaError(Exception):
    """Base class of llcuda's errors."""


class ServerNotFoundError(LLCudaError, FileNotFoundError):
    """No usable llama-server: lists every place searched and the install command that fixes it."""


class DriverTooOldError(LLCudaError):
    """The GPU's driver is older than the CUDA runtime of the backend that has code for it (a CUDA 13 build under a
    driver below 580): names the driver needed and the install line that works with this one."""


class ModelError(LLCudaError):
    """A model spec that cannot be used: a missing, unreadable or corrupt file, or an unknown alias."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """The model file does not exist, or is not cached while offline."""


class ServerError(LLCudaError):
    """llama-server failed; ``log_tail`` holds its last output lines and ``diagnosis`` a plain-language cause."""

    def __init__(self, message: str, *, log_tail: str = "", diagnosis: str = "") -> None:
        self.log_tail = log_tail
        self.diagnosis = diagnosis
        parts = [message]
        if diagnosis:
            parts.append(diagnosis)
        if log_tail:
            parts.append("last server output:\n" + log_tail)
        super().__init__("\n".join(parts))


class ServerStartError(ServerError):
    """llama-server did not become healthy: it exited, or loading stalled past the timeout."""


class ServerCrashedError(ServerError):
    """llama-server died while serving a request."""


class PortInUseError(ServerStartError):
    """The requested port is already taken."""


class ModelLoadError(ServerStartError, ModelError):
    """llama-server refused the model: truncated or corrupt, or an architecture this llama.cpp does not know."""


class RequestError(LLCudaError):
    """The server answered a request with an error status."""


class EngineStateError(LLCudaError, RuntimeError):
    """The engine cannot do this now: no model is loaded, it serves embeddings only (or not at all), or it is
    attached to a server it may not reload."""


class StreamStalledError(ServerError):
    """A streamed request got no token for longer than the engine's ``stream_timeout``."""


class RPCError(LLCudaError):
    """A problem with an RPC server (``ggml-rpc-server``) of a model split across machines."""


class RPCUnreachableError(RPCError, ConnectionError):
    """Nothing answers at an RPC endpoint: the host is down, the server not started, or a firewall drops it."""


class RPCBusyError(RPCError):
    """The RPC server accepts connections but serves another client (it serves one at a time)."""


class RPCProtocolError(RPCError):
    """The RPC server speaks another protocol version than this llcuda's llama-server: they refuse each other."""


class RPCHostLostError(ServerCrashedError, RPCError):
    """llama-server aborted because an RPC server it used crashed or its connection broke."""


class InsecureBindError(RPCError, PermissionError):
    """An RPC server would listen on a non-loopback address without the explicit opt-in."""


class ModelTooLargeError(ModelError):
    """The model fits in no combination of the devices: every GPU, every RPC host and RAM together are too small."""
