"""``InferenceEngine``: load a model into a bundled llama-server, or attach to one already running, and talk to it
over HTTP: completions, chat, streams, structured output, embeddings and tokens."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import EngineStateError, ModelTooLargeError, RequestError, ServerCrashedError, StreamStalledError
from .gpu import detect_gpus
from .models import resolve_model
from .placement import memory_shortfall, ram_available_mb, split_options
from .rpc import RemoteHost, parse_endpoints, probe, protocol_of
from .server import ServerManager

_FINISH = {"eos": "stop", "word": "stop", "limit": "length"}
# What llama-server answers on /v1/embeddings for a model whose pooling type is none (or unspecified).
_NO_POOLING_REFUSAL = "Pooling type 'none' is not OAI compatible"
_DEFAULT_POOLING = "mean"
_EMBED_BATCH = 32


@dataclass(frozen=True)
class Sampling:
    """The sampling keywords of every generation call: ``infer``, ``infer_stream``, ``chat``, ``chat_stream`` and
    ``batch_infer`` all take exactly these (``None`` leaves the server's default)."""

    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    stop: Sequence[str] | None = None

    @classmethod
    def of(cls, keywords: dict[str, Any]) -> Sampling:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(keywords) - set(names))
        if unknown:
            raise TypeError(f"unknown sampling keyword {', '.join(unknown)}; the keywords are: {', '.join(names)}")
        return cls(**keywords)

    def _common(self) -> dict[str, Any]:
        body: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p}
        extras = {"top_k": self.top_k, "min_p": self.min_p, "repeat_penalty": self.repeat_penalty, "seed": self.seed}
        body.update({k: v for k, v in extras.items() if v is not None})
        if self.stop:
            body["stop"] = list(self.stop)
        return body

    def completion(self) -> dict[str, Any]:
        """The body fields of llama-server's ``/completion``."""
        return {"n_predict": self.max_tokens, **self._common()}

    def chat(self) -> dict[str, Any]:
        """The body fields of the OpenAI-compatible ``/v1/chat/completions`` (llama.cpp's extras included)."""
        return {"max_tokens": self.max_tokens, **self._common()}


@dataclass
class InferResult:
    """One answer: its ``text``, ``tokens_generated`` and ``prompt_tokens``, ``latency_ms``, ``tokens_per_sec`` and
    ``finish_reason`` (``\"stop\"``, ``\"length\"``...); ``success`` is false, with ``error_message``, when the server
    refused the request."""

    text: str = ""
    tokens_generated: int = 0
    latency_ms: float = 0.0
    tokens_per_sec: float = 0.0
    finish_reason: str = ""
    success: bool = True
    error_message: str | None = None
    prompt_tokens: int = 0


class _Metrics:
    """Every generation call, streamed or not, failed or not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = self.failures = self.tokens = 0
            self.latency_ms = 0.0

    def record(self, tokens: int, latency_ms: float, ok: bool) -> None:
        with self._lock:
            self.requests += 1
            self.failures += not ok
            self.tokens += tokens
            self.latency_ms += latency_ms

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            n = self.requests
            return {
                "requests": n,
                "failed_requests": self.failures,
                "tokens_generated": self.tokens,
                "mean_latency_ms": self.latency_ms / n if n else 0.0,
                "tokens_per_sec": self.tokens / (self.latency_ms / 1000) if self.latency_ms else 0.0,
            }


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
        self.model_path: Path | None = None
        self._attached = re.sub(r"/v1/?$", "", server_url.rstrip("/")) if server_url else None
        self._attached_key = api_key
        self._embeddings = False
        self._metrics = _Metrics()
        self.stream_timeout = float(stream_timeout)
        self.rpc_hosts: list[RemoteHost] = []  # the RPC servers the loaded model is split over, as probed

    # ------------------------------------------------------------------ lifecycle

    @property
    def attached(self) -> bool:
        """True for an engine talking to a server it did not start."""
        return self._attached is not None

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
                f"this engine is attached to the llama-server at {self._attached}, which serves the model it was "
                "started with; use a new InferenceEngine() to load a model of your own"
            )
        if pooling is not None and not embeddings:
            raise ValueError("pooling= applies to embeddings: pass embeddings=True too")
        path = resolve_model(model)
        gpus = detect_gpus()
        options: dict[str, Any] = dict(server_options, embeddings=embeddings, pooling=pooling)
        options.update(split_options(split_mode, tensor_split, main_gpu, len(gpus)))
        remotes: list[RemoteHost] = []
        if rpc is not None:
            endpoints = parse_endpoints(rpc)
            expected = protocol_of(self.server.find_llama_server())
            remotes = [probe(ep, expected) for ep in endpoints]  # the first failure raises, naming its endpoint
            options["rpc"] = ",".join(map(str, endpoints))
        shortfall = memory_shortfall(path.stat().st_size, gpus, remotes, ram_available_mb())
        if shortfall:
            raise ModelTooLargeError(f"{path} cannot be loaded: {shortfall}")

        def start() -> None:
            self.server.start_server(
                path, gpu_layers=gpu_layers, ctx_size=ctx_size, silent=silent, verbose=verbose, **options
            )

        start()
        self.model_path = path
        self.rpc_hosts = remotes
        self._embeddings = embeddings
        if embeddings and pooling is None and not self._pools():
            # /v1/embeddings refuses pooling "none": a model without a pooling type of its own gets mean pooling.
            options["pooling"] = _DEFAULT_POOLING
            start()
        return True

    def _pools(self) -> bool:
        """Whether the server pools embeddings, asked of llama-server itself with a one-token request (it knows the
        model's pooling type; its default log does not print it)."""
        try:
            self._post("/v1/embeddings", {"input": ["x"]})
        except RequestError as err:
            if _NO_POOLING_REFUSAL in str(err):
                return False
            raise
        return True

    def unload_model(self) -> None:
        """Stop this engine's server; an attached engine detaches and leaves the server running."""
        if self.attached:
            self._attached = None
            return
        self.server.stop_server()
        self.model_path = None
        self.rpc_hosts = []
        self._embeddings = False

    def is_loaded(self) -> bool:
        """A model is loaded and its server answers (for an attached engine: ``/health`` says ok)."""
        if self._attached is not None:
            try:
                with urllib.request.urlopen(self._attached + "/health", timeout=5) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, http.client.HTTPException, OSError):
                return False
        return self.model_path is not None and self.server.is_running()

    def __enter__(self) -> InferenceEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload_model()

    @property
    def server_url(self) -> str:
        """The URL of the llama-server this engine talks to (``http://127.0.0.1:PORT`` when it started one)."""
        if self._attached is not None:
            return self._attached
        if self.server.port is None:
            raise EngineStateError("no model loaded: call load_model() first, or attach with server_url=")
        return self.server.server_url

    @property
    def base_url(self) -> str:
        """OpenAI-compatible root: ``OpenAI(base_url=engine.base_url, api_key=engine.api_key)``."""
        return self.server_url + "/v1"

    @property
    def api_key(self) -> str:
        """The server's API key: a new random one per launch, or the one given to attach."""
        if self._attached is not None:
            return self._attached_key or "no-key"
        if self.server.api_key is None:
            raise EngineStateError("no model loaded: call load_model() first")
        return self.server.api_key

    # ------------------------------------------------------------------ HTTP

    def _request(self, path: str, body: dict[str, Any]) -> urllib.request.Request:
        if self._attached is None and not self.is_loaded():
            raise EngineStateError("no model loaded: call load_model() first")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"}
        return urllib.request.Request(self.server_url + path, data=json.dumps(body).encode(), headers=headers)

    def _lost(self, err: BaseException) -> ServerCrashedError:
        """The error for a request whose server went away."""
        if self._attached is not None:  # not our process: no exit code, no log
            return ServerCrashedError(f"the llama-server at {self._attached} went away during a request ({err})")
        return self.server.crashed(err)

    @staticmethod
    def _http_error(path: str, err: urllib.error.HTTPError) -> RequestError:
        with err:  # an HTTPError holds the response's socket
            raw = err.read().decode(errors="replace")
        try:
            message = json.loads(raw).get("error", {}).get("message") or raw
        except (ValueError, AttributeError):
            message = raw
        return RequestError(f"{path}: HTTP {err.code}: {message[:500]}")

    def _post(self, path: str, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        req = self._request(path, body)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except urllib.error.HTTPError as err:
            raise self._http_error(path, err) from err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise self._lost(err) from err

    def _events(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The server-sent events of a streamed request, until ``[DONE]``/the final event; a cut-off stream raises
        :class:`ServerCrashedError`."""
        req = self._request(path, body)
        try:
            with urllib.request.urlopen(req, timeout=self.stream_timeout) as resp:
                for raw in resp:
                    line = raw.decode(errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    event: dict[str, Any] = json.loads(data)
                    yield event
                    if event.get("stop") is True:  # /completion's final event
                        return
        except urllib.error.HTTPError as err:
            raise self._http_error(path, err) from err
        except (socket.timeout, TimeoutError) as err:
            raise self._stalled() from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (socket.timeout, TimeoutError)):
                raise self._stalled() from err
            raise self._lost(err) from err
        except (http.client.HTTPException, OSError, json.JSONDecodeError) as err:
            raise self._lost(err) from err
        raise self._lost(ConnectionError("the stream ended without its final event"))

    def _stalled(self) -> StreamStalledError:
        """The error for a stream with no token for ``stream_timeout`` s. A server whose model is split over RPC
        hosts cannot recover from a dead link (it waits forever), so it is stopped."""
        where = self.server_url
        message = f"no token from the llama-server at {where} for {self.stream_timeout:g} s"
        if self.rpc_hosts and self._attached is None:
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
        return StreamStalledError(
            message,
            diagnosis="The server is stuck or overloaded; for very long prompts pass a larger stream_timeout.",
        )

    def _generating(self) -> None:
        if self._embeddings:
            raise EngineStateError(
                f"{self.model_path} was loaded with embeddings=True, and llama-server then serves embeddings only: "
                "load it again without embeddings=True (another InferenceEngine) to generate text"
            )

    def _timed(self, call: Callable[[], InferResult]) -> InferResult:
        """Run one non-streamed generation; a request the server rejects gives ``success=False``. Recorded."""
        self._generating()
        start = time.perf_counter()
        try:
            result = call()
        except RequestError as err:
            result = InferResult(success=False, error_message=str(err))
        except BaseException:
            self._metrics.record(0, (time.perf_counter() - start) * 1000, ok=False)
            raise
        result.latency_ms = (time.perf_counter() - start) * 1000
        if result.success and not result.tokens_per_sec and result.latency_ms:
            result.tokens_per_sec = result.tokens_generated / (result.latency_ms / 1000)
        self._metrics.record(result.tokens_generated, result.latency_ms, result.success)
        return result

    def _streamed(self, chunks: Iterator[tuple[str, int | None]]) -> Iterator[str]:
        """Yield the text of ``chunks`` ((text, tokens so far or None)); recorded once the stream ends."""
        self._generating()
        start = time.perf_counter()
        tokens, pieces, ok = 0, 0, False
        try:
            for text, count in chunks:
                if count is not None:
                    tokens = count
                if text:
                    pieces += 1
                    yield text
            ok = True
        finally:
            self._metrics.record(tokens or pieces, (time.perf_counter() - start) * 1000, ok)

    # ------------------------------------------------------------------ generation

    def infer(self, prompt: str, *, json_schema: dict[str, Any] | None = None, **sampling: Any) -> InferResult:
        """Complete ``prompt`` with the :class:`Sampling` keywords. ``json_schema`` constrains the answer to JSON
        matching it (llama-server's grammar). A request the server rejects gives ``success=False`` with its
        reason; a dead server raises :class:`ServerCrashedError`."""
        body = {"prompt": prompt, **Sampling.of(sampling).completion()}
        if json_schema is not None:
            body["json_schema"] = json_schema

        def call() -> InferResult:
            out = self._post("/completion", body)
            timings = out.get("timings", {})
            return InferResult(
                text=out.get("content", ""),
                tokens_generated=int(out.get("tokens_predicted", 0)),
                prompt_tokens=int(out.get("tokens_evaluated", timings.get("prompt_n", 0)) or 0),
                tokens_per_sec=float(timings.get("predicted_per_second") or 0.0),
                finish_reason=_FINISH.get(out.get("stop_type", ""), out.get("stop_type", "")),
            )

        return self._timed(call)

    def infer_stream(self, prompt: str, **sampling: Any) -> Iterator[str]:
        """Yield the completion of ``prompt`` as text chunks as the server produces them."""
        body = {"prompt": prompt, "stream": True, **Sampling.of(sampling).completion()}
        events = self._events("/completion", body)
        return self._streamed((e.get("content", ""), e.get("tokens_predicted")) for e in events)

    def chat(
        self, messages: Sequence[dict[str, str]], *, json_schema: dict[str, Any] | None = None, **sampling: Any
    ) -> InferResult:
        """One chat turn through the OpenAI-compatible endpoint (the model's chat template applies)."""
        body: dict[str, Any] = {"messages": list(messages), **Sampling.of(sampling).chat()}
        if json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"schema": json_schema}}

        def call() -> InferResult:
            out = self._post("/v1/chat/completions", body)
            choice = out["choices"][0]
            usage = out.get("usage", {})
            return InferResult(
                text=choice["message"].get("content") or "",
                tokens_generated=int(usage.get("completion_tokens", 0)),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                finish_reason=choice.get("finish_reason") or "",
            )

        return self._timed(call)

    def chat_stream(self, messages: Sequence[dict[str, str]], **sampling: Any) -> Iterator[str]:
        """Yield one chat turn as text chunks, through the OpenAI-compatible endpoint."""
        body = {
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            **Sampling.of(sampling).chat(),
        }

        def chunks() -> Iterator[tuple[str, int | None]]:
            for event in self._events("/v1/chat/completions", body):
                usage = event.get("usage") or {}
                text = "".join((c.get("delta") or {}).get("content") or "" for c in event.get("choices") or [])
                yield text, usage.get("completion_tokens")

        return self._streamed(chunks())

    def batch_infer(self, prompts: Sequence[str], max_workers: int = 4, **sampling: Any) -> list[InferResult]:
        """Run ``prompts`` concurrently across the server's slots; results keep the prompts' order."""
        Sampling.of(sampling)  # a wrong keyword fails here, once, not in every worker
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            return list(pool.map(lambda p: self.infer(p, **sampling), prompts))

    # ------------------------------------------------------------------ embeddings and tokens

    def embed(self, texts: str | Sequence[str], *, normalize: bool = True) -> list[list[float]]:
        """One embedding per text (a single string counts as one text), L2-normalized unless ``normalize=False``.

        Needs a model loaded with ``embeddings=True`` (or a server started with ``--embeddings``).
        """
        if self._attached is None and not self._embeddings:
            loaded = f"{self.model_path} was loaded" if self.model_path else "no model is loaded"
            raise EngineStateError(
                f"{loaded} without embeddings: load it with engine.load_model(model, embeddings=True) "
                "(or `llcuda serve MODEL --embeddings`) to embed text"
            )
        items = [texts] if isinstance(texts, str) else list(texts)
        vectors: list[list[float]] = []
        for i in range(0, len(items), _EMBED_BATCH):
            batch = items[i : i + _EMBED_BATCH]
            body = {"input": batch, "encoding_format": "float", "embd_normalize": 2 if normalize else -1}
            out = self._post("/v1/embeddings", body)
            data = sorted(out["data"], key=lambda d: int(d["index"]))
            vectors += [[float(x) for x in d["embedding"]] for d in data]
        return vectors

    def tokenize(self, text: str) -> list[int]:
        """The model's token ids for ``text`` (as the server would add them to a prompt, without BOS)."""
        return [int(t) for t in self._post("/tokenize", {"content": text})["tokens"]]

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ``ids``."""
        return str(self._post("/detokenize", {"tokens": [int(i) for i in ids]})["content"])

    # ------------------------------------------------------------------ metrics

    def get_metrics(self) -> dict[str, Any]:
        """Every generation call so far (streamed ones included): requests, failures, tokens, latency, speed."""
        return self._metrics.snapshot()

    def reset_metrics(self) -> None:
        """Start :meth:`get_metrics` over from zero."""
        self._metrics.reset()


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
