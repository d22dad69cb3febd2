"""``InferenceEngine``: load a model into a bundled llama-server, or attach to one already running, and talk to it
over HTTP: completions, chat, streams, structured output, embeddings and tokens.

The engine composes two parts: an endpoint (:mod:`llcuda.endpoints`: a server it launches, or one it attached to)
and the HTTP client (:mod:`llcuda.client`) that talks to either the same way."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .client import InferResult, LlamaClient, Sampling
from .endpoints import AttachedServer, LocalServer
from .errors import EngineStateError, RequestError
from .rpc import RemoteHost
from .server import ServerManager

# The results and the sampling keywords belong to the client; they stay importable from here, as they always were.
__all__ = ["InferResult", "InferenceEngine", "Sampling", "quick_infer"]

_DEFAULT_POOLING = "mean"


class InferenceEngine:
    """One model served by one llama-server. ``base_url``/``api_key`` plug into the ``openai`` client.

    ``InferenceEngine()`` starts its own server with :meth:`load_model`. ``InferenceEngine(server_url=...,
    api_key=...)`` attaches to a llama-server that is already running (``llcuda serve`` in another process, say):
    it never starts or stops that server.

    A stream that gets no token for ``stream_timeout`` seconds raises :class:`StreamStalledError` (a model split
    over RPC hosts waits forever on a cut link: ggml's RPC has no timeouts of its own).
    """

    def __init__(
        self,
        server_manager: ServerManager | None = None,
        *,
        server_url: str | None = None,
        api_key: str | None = None,
        stream_timeout: float = 60.0,
    ) -> None:
        if not stream_timeout > 0:
            raise ValueError(f"stream_timeout={stream_timeout!r}: expected seconds, more than 0")
        if server_url is not None and server_manager is not None:
            raise ValueError("pass a server_manager (to start a server) or a server_url (to attach), not both")
        self.server = server_manager or ServerManager()
        self._local = LocalServer(self.server)
        self._endpoint: LocalServer | AttachedServer = (
            AttachedServer(server_url, api_key) if server_url else self._local
        )
        self._client = LlamaClient(self._endpoint, float(stream_timeout))

    # ------------------------------------------------------------------ lifecycle

    @property
    def attached(self) -> bool:
        """True for an engine talking to a server it did not start."""
        return self._endpoint is not self._local

    @property
    def model_path(self) -> Path | None:
        """The GGUF file of the model this engine loaded (None before :meth:`load_model`, and when attached)."""
        return self._local.model_path

    @property
    def rpc_hosts(self) -> list[RemoteHost]:
        """The RPC servers the loaded model is split over, as probed when it was loaded."""
        return self._local.rpc_hosts

    @property
    def stream_timeout(self) -> float:
        """Seconds a stream may go without a token before :class:`StreamStalledError`."""
        return self._client.stream_timeout

    @stream_timeout.setter
    def stream_timeout(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"stream_timeout={seconds!r}: expected seconds, more than 0")
        self._client.stream_timeout = float(seconds)

    def load_model(
        self,
        model: str | os.PathLike[str],
        gpu_layers: int | str | None = None,
        ctx_size: int | None = None,
        silent: bool = False,
        verbose: bool = False,
        *,
        embeddings: bool = False,
        pooling: str | None = None,
        rpc: str | Sequence[str] | None = None,
        split_mode: str | None = None,
        tensor_split: Sequence[float] | None = None,
        main_gpu: int | None = None,
        **server_options: Any,
    ) -> bool:
        """Resolve ``model`` (path, alias or ``"repo:file.gguf"``), start llama-server on it, wait until ready.

        ``gpu_layers=None`` lets llama-server fit the offload to free memory, across every device it has.
        ``embeddings=True`` serves ``/v1/embeddings`` (and nothing else) with ``pooling`` (``mean``, ``cls``,
        ``last``...; by default the model's own, or ``mean`` for a model that has none).

        Bigger than one GPU:

        - ``split_mode`` (``"layer"``, llama.cpp's default, or ``"none"``), ``tensor_split`` (proportions per GPU,
          ``[3, 1]``) and ``main_gpu`` (the GPU for a ``"none"`` split and small tensors) split the model across
          this machine's GPUs;
        - ``rpc=["host:port", ...]`` adds the devices of RPC servers (``llcuda rpc-server`` on each host). Each
          is checked first, within a few seconds: reachable, not serving another client, the same protocol.

        Extra keywords become server flags (``n_parallel=4`` -> ``--n-parallel 4``). Returns True; raises an
        :class:`~llcuda.errors.LLCudaError` (:class:`~llcuda.errors.RPCError` for an RPC host).
        """
        if self.attached:
            raise EngineStateError(
                f"this engine is attached to the llama-server at {self._endpoint.url}, which serves the model it "
                "was started with; use a new InferenceEngine() to load a model of your own"
            )
        self._local.load(
            model,
            gpu_layers=gpu_layers,
            ctx_size=ctx_size,
            silent=silent,
            verbose=verbose,
            embeddings=embeddings,
            pooling=pooling,
            rpc=rpc,
            split_mode=split_mode,
            tensor_split=tensor_split,
            main_gpu=main_gpu,
            server_options=server_options,
        )
        if embeddings and pooling is None and not self._client.pools():
            # /v1/embeddings refuses pooling "none": a model without a pooling type of its own gets mean pooling.
            self._local.relaunch(pooling=_DEFAULT_POOLING)
        return True

    def unload_model(self) -> None:
        """Stop this engine's server; an attached engine detaches and leaves the server running."""
        if self.attached:
            self._endpoint = self._client.endpoint = self._local
            return
        self._local.unload()

    def is_loaded(self) -> bool:
        """A model is loaded and its server answers (for an attached engine: ``/health`` says ok)."""
        return self._endpoint.is_loaded()

    def __enter__(self) -> InferenceEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload_model()

    @property
    def server_url(self) -> str:
        """The URL of the llama-server this engine talks to (``http://127.0.0.1:PORT`` when it started one)."""
        return self._endpoint.url

    @property
    def base_url(self) -> str:
        """OpenAI-compatible root: ``OpenAI(base_url=engine.base_url, api_key=engine.api_key)``."""
        return self.server_url + "/v1"

    @property
    def api_key(self) -> str:
        """The server's API key: a new random one per launch, or the one given to attach."""
        return self._endpoint.api_key

    # ------------------------------------------------------------------ generation

    def infer(self, prompt: str, *, json_schema: dict[str, Any] | None = None, **sampling: Any) -> InferResult:
        """Complete ``prompt`` with the :class:`Sampling` keywords. ``json_schema`` constrains the answer to JSON
        matching it (llama-server's grammar). A request the server rejects gives ``success=False`` with its
        reason; a dead server raises :class:`ServerCrashedError`."""
        return self._client.infer(prompt, json_schema, Sampling.of(sampling))

    def infer_stream(self, prompt: str, **sampling: Any) -> Iterator[str]:
        """Yield the completion of ``prompt`` as text chunks as the server produces them."""
        return self._client.infer_stream(prompt, Sampling.of(sampling))

    def chat(
        self, messages: Sequence[dict[str, str]], *, json_schema: dict[str, Any] | None = None, **sampling: Any
    ) -> InferResult:
        """One chat turn through the OpenAI-compatible endpoint (the model's chat template applies)."""
        return self._client.chat(messages, json_schema, Sampling.of(sampling))

    def chat_stream(self, messages: Sequence[dict[str, str]], **sampling: Any) -> Iterator[str]:
        """Yield one chat turn as text chunks, through the OpenAI-compatible endpoint."""
        return self._client.chat_stream(messages, Sampling.of(sampling))

    def batch_infer(self, prompts: Sequence[str], max_workers: int = 4, **sampling: Any) -> list[InferResult]:
        """Run ``prompts`` concurrently across the server's slots; results keep the prompts' order."""
        return self._client.batch_infer(prompts, max_workers, Sampling.of(sampling))

    # ------------------------------------------------------------------ embeddings and tokens

    def embed(self, texts: str | Sequence[str], *, normalize: bool = True) -> list[list[float]]:
        """One embedding per text (a single string counts as one text), L2-normalized unless ``normalize=False``.

        Needs a model loaded with ``embeddings=True`` (or a server started with ``--embeddings``).
        """
        return self._client.embed([texts] if isinstance(texts, str) else texts, normalize)

    def tokenize(self, text: str) -> list[int]:
        """The model's token ids for ``text`` (as the server would add them to a prompt, without BOS)."""
        return self._client.tokenize(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ``ids``."""
        return self._client.detokenize(ids)

    # ------------------------------------------------------------------ metrics

    def get_metrics(self) -> dict[str, Any]:
        """Every generation call so far (streamed ones included): requests, failures, tokens, latency, speed."""
        return self._client.metrics.snapshot()

    def reset_metrics(self) -> None:
        """Start :meth:`get_metrics` over from zero."""
        self._client.metrics.reset()


def quick_infer(model: str | os.PathLike[str], prompt: str, **keywords: Any) -> str:
    """Load ``model``, answer ``prompt``, stop the server: one call for a first notebook cell.

    ``keywords`` are the :class:`Sampling` keywords and ``load_model``'s (``gpu_layers``, ``ctx_size``...).
    """
    names = {f.name for f in dataclasses.fields(Sampling)}
    sampling = {k: v for k, v in keywords.items() if k in names}
    load = {k: v for k, v in keywords.items() if k not in names}
    with InferenceEngine() as engine:
        engine.load_model(model, silent=load.pop("silent", True), **load)
        result = engine.infer(prompt, **sampling)
    if not result.success:
        raise RequestError(result.error_message or "the server refused the request")
    return result.text
