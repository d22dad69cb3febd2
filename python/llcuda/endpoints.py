"""The two servers an :class:`~llcuda.InferenceEngine` can talk to, each an :class:`~llcuda.client.Endpoint`:

- :class:`LocalServer`, a llama-server llcuda launches and owns: it resolves the model, places it (this machine's
  GPUs, RPC hosts, the memory it needs: :mod:`llcuda.placement`, :mod:`llcuda.rpc`), starts the server through a
  :class:`~llcuda.server.ServerManager`, and turns a failure into the server's exit code, log and diagnosis;
- :class:`AttachedServer`, one already running elsewhere (``llcuda serve`` in another process, say), which llcuda
  never starts or stops.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import EngineStateError, ModelTooLargeError, ServerCrashedError, StreamStalledError
from .gpu import detect_gpus
from .models import resolve_model
from .placement import memory_shortfall, ram_available_mb, split_options
from .rpc import RemoteHost, parse_endpoints, probe, protocol_of
from .server import ServerManager


class LocalServer:
    """A llama-server this process launches, on loopback, with a new API key per launch."""

    def __init__(self, server: ServerManager) -> None:
        self.server = server
        self.model_path: Path | None = None
        self.rpc_hosts: list[RemoteHost] = []  # the RPC servers the loaded model is split over, as probed
        self.embeddings = False
        self._launch: dict[str, Any] = {}  # the last launch's arguments, for relaunch()

    def load(
        self,
        model: str | os.PathLike[str],
        *,
        gpu_layers: int | str | None,
        ctx_size: int | None,
        silent: bool,
        verbose: bool,
        embeddings: bool,
        pooling: str | None,
        rpc: str | Sequence[str] | None,
        split_mode: str | None,
        tensor_split: Sequence[float] | None,
        main_gpu: int | None,
        server_options: dict[str, Any],
    ) -> None:
        """Resolve ``model``, check that it fits where it would go, start llama-server on it, wait until ready."""
        if pooling is not None and not embeddings:
            raise ValueError("pooling= applies to embeddings: pass embeddings=True too")
        path = resolve_model(model)
        gpus = detect_gpus()  # probed once for this load: the fit checks here, and the launch's driver check
        options: dict[str, Any] = dict(server_options, embeddings=embeddings, pooling=pooling)
        options.update(split_options(split_mode, tensor_split, main_gpu, len(gpus)))
        remotes: list[RemoteHost] = []
        if rpc is not None:
            endpoints = parse_endpoints(rpc)
            expected = protocol_of(self.server.discover(gpus).server)
            remotes = [probe(ep, expected) for ep in endpoints]  # the first failure raises, naming its endpoint
            options["rpc"] = ",".join(map(str, endpoints))
        shortfall = memory_shortfall(path.stat().st_size, gpus, remotes, ram_available_mb())
        if shortfall:
            raise ModelTooLargeError(f"{path} cannot be loaded: {shortfall}")
        self._launch = dict(options, gpu_layers=gpu_layers, ctx_size=ctx_size, silent=silent, verbose=verbose)
        if rpc is None:
            self.server.discover(gpus)  # the llama-server the start launches, with these GPUs
        self.server.start_server(path, **self._launch)
        self.model_path = path
        self.rpc_hosts = remotes
        self.embeddings = embeddings

    def relaunch(self, **changes: Any) -> None:
        """Start the loaded model's server again, with ``changes`` to the last launch's options."""
        if self.model_path is None:
            raise EngineStateError("no model loaded: call load_model() first")
        self._launch.update(changes)
        self.server.start_server(self.model_path, **self._launch)

    def unload(self) -> None:
        """Stop the server; safe when none runs."""
        self.server.stop_server()
        self.model_path = None
        self.rpc_hosts = []
        self.embeddings = False

    def is_loaded(self) -> bool:
        """A model is loaded and its server process runs."""
        return self.model_path is not None and self.server.is_running()

    # ------------------------------------------------------------------ the Endpoint protocol

    @property
    def url(self) -> str:
        if self.server.port is None:
            raise EngineStateError("no model loaded: call load_model() first, or attach with server_url=")
        return self.server.server_url

    @property
    def api_key(self) -> str:
        if self.server.api_key is None:
            raise EngineStateError("no model loaded: call load_model() first")
        return self.server.api_key

    def check_ready(self) -> None:
        if not self.is_loaded():
            raise EngineStateError("no model loaded: call load_model() first")

    def check_generates(self) -> None:
        if self.embeddings:
            raise EngineStateError(
                f"{self.model_path} was loaded with embeddings=True, and llama-server then serves embeddings only: "
                "load it again without embeddings=True (another InferenceEngine) to generate text"
            )

    def check_embeds(self) -> None:
        if not self.embeddings:
            loaded = f"{self.model_path} was loaded" if self.model_path else "no model is loaded"
            raise EngineStateError(
                f"{loaded} without embeddings: load it with engine.load_model(model, embeddings=True) "
                "(or `llcuda serve MODEL --embeddings`) to embed text"
            )

    def lost(self, err: BaseException) -> ServerCrashedError:
        return self.server.crashed(err)

    def stalled(self, message: str) -> StreamStalledError:
        """A server whose model is split over RPC hosts cannot recover from a dead link (it waits forever), so it is
        stopped."""
        if not self.rpc_hosts:
            return _stuck(message)
        hosts = ", ".join(str(h.endpoint) for h in self.rpc_hosts)
        tail = self.server.log_tail()
        self.server.stop_server(timeout=3)
        return StreamStalledError(
            message,
            log_tail=tail,
            diagnosis=(
                f"The model is split over the RPC hosts {hosts}: one of them, or the network to it, is probably "
                "down (ggml's RPC has no timeouts, so llama-server would wait forever). llcuda stopped that "
                "llama-server: check the hosts, then load the model again."
            ),
        )


class AttachedServer:
    """A llama-server that runs without this process: llcuda talks to it and never starts or stops it."""

    def __init__(self, server_url: str, api_key: str | None) -> None:
        self._url = re.sub(r"/v1/?$", "", server_url.rstrip("/"))
        self._key = api_key

    def is_loaded(self) -> bool:
        """The server's ``/health`` says ok."""
        try:
            with urllib.request.urlopen(self._url + "/health", timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            return False

    # ------------------------------------------------------------------ the Endpoint protocol

    @property
    def url(self) -> str:
        return self._url

    @property
    def api_key(self) -> str:
        return self._key or "no-key"

    def check_ready(self) -> None:
        """Requests go out as they come: the server answers for itself."""

    def check_generates(self) -> None:
        """The server's own flags decide; its refusal comes back as the request's error."""

    def check_embeds(self) -> None:
        """The server's own flags decide; its refusal comes back as the request's error."""

    def lost(self, err: BaseException) -> ServerCrashedError:
        # not our process: no exit code, no log
        return ServerCrashedError(f"the llama-server at {self._url} went away during a request ({err})")

    def stalled(self, message: str) -> StreamStalledError:
        return _stuck(message)


def _stuck(message: str) -> StreamStalledError:
    return StreamStalledError(
        message, diagnosis="The server is stuck or overloaded; for very long prompts pass a larger stream_timeout."
    )
