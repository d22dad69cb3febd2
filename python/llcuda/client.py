"""The HTTP client of one llama-server, whoever started it: completions, chat, streams, structured output,
embeddings, tokens, and the metrics of every generation call. It sends its requests to an :class:`Endpoint`
(:mod:`llcuda.endpoints`: a server llcuda launched, or one it attached to), which also says what a failure there
means; :class:`~llcuda.InferenceEngine` composes the two."""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .errors import RequestError, ServerCrashedError, StreamStalledError

_FINISH = {"eos": "stop", "word": "stop", "limit": "length"}
# What llama-server answers on /v1/embeddings for a model whose pooling type is none (or unspecified).
_NO_POOLING_REFUSAL = "Pooling type 'none' is not OAI compatible"
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


class Endpoint(Protocol):
    """Where a :class:`LlamaClient` sends its requests, and what a failure there means."""

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the server; :class:`~llcuda.errors.EngineStateError` when there is none."""
        ...

    @property
    def api_key(self) -> str:
        """The key each request carries."""
        ...

    def check_ready(self) -> None:
        """Raise :class:`~llcuda.errors.EngineStateError` unless a request can be sent now."""

    def check_generates(self) -> None:
        """Raise :class:`~llcuda.errors.EngineStateError` if the server cannot generate text."""

    def check_embeds(self) -> None:
        """Raise :class:`~llcuda.errors.EngineStateError` if the server cannot embed text."""

    def lost(self, err: BaseException) -> ServerCrashedError:
        """The error for a request whose server went away."""
        ...

    def stalled(self, message: str) -> StreamStalledError:
        """The error for a stream that got no token for the stream timeout (``message`` says which)."""
        ...


class LlamaClient:
    """llama-server's HTTP API, as llcuda speaks it: one instance per engine, thread-safe for concurrent calls."""

    def __init__(self, endpoint: Endpoint, stream_timeout: float) -> None:
        self.endpoint = endpoint
        self.stream_timeout = stream_timeout
        self.metrics = _Metrics()

    # ------------------------------------------------------------------ requests

    def _request(self, path: str, body: dict[str, Any]) -> urllib.request.Request:
        self.endpoint.check_ready()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.endpoint.api_key}"}
        return urllib.request.Request(self.endpoint.url + path, data=json.dumps(body).encode(), headers=headers)

    @staticmethod
    def _http_error(path: str, err: urllib.error.HTTPError) -> RequestError:
        with err:  # an HTTPError holds the response's socket
            raw = err.read().decode(errors="replace")
        try:
            message = json.loads(raw).get("error", {}).get("message") or raw
        except (ValueError, AttributeError):
            message = raw
        return RequestError(f"{path}: HTTP {err.code}: {message[:500]}")

    def post(self, path: str, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``; the decoded answer. A refusal is a :class:`RequestError`."""
        req = self._request(path, body)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except urllib.error.HTTPError as err:
            raise self._http_error(path, err) from err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise self.endpoint.lost(err) from err

    def events(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The server-sent events of a streamed request, until ``[DONE]``/the final event; a cut-off stream raises
        :class:`ServerCrashedError`, a silent one :class:`StreamStalledError`."""
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
            raise self.endpoint.lost(err) from err
        except (http.client.HTTPException, OSError, json.JSONDecodeError) as err:
            raise self.endpoint.lost(err) from err
        raise self.endpoint.lost(ConnectionError("the stream ended without its final event"))

    def _stalled(self) -> StreamStalledError:
        return self.endpoint.stalled(
            f"no token from the llama-server at {self.endpoint.url} for {self.stream_timeout:g} s"
        )

    def pools(self) -> bool:
        """Whether the server pools embeddings, asked of llama-server itself with a one-token request (it knows the
        model's pooling type; its default log does not print it)."""
        try:
            self.post("/v1/embeddings", {"input": ["x"]})
        except RequestError as err:
            if _NO_POOLING_REFUSAL in str(err):
                return False
            raise
        return True

    # ------------------------------------------------------------------ generation

    def _timed(self, call: Callable[[], InferResult]) -> InferResult:
        """Run one non-streamed generation; a request the server rejects gives ``success=False``. Recorded."""
        self.endpoint.check_generates()
        start = time.perf_counter()
        try:
            result = call()
        except RequestError as err:
            result = InferResult(success=False, error_message=str(err))
        except BaseException:
            self.metrics.record(0, (time.perf_counter() - start) * 1000, ok=False)
            raise
        result.latency_ms = (time.perf_counter() - start) * 1000
        if result.success and not result.tokens_per_sec and result.latency_ms:
            result.tokens_per_sec = result.tokens_generated / (result.latency_ms / 1000)
        self.metrics.record(result.tokens_generated, result.latency_ms, result.success)
        return result

    def _streamed(self, chunks: Iterator[tuple[str, int | None]]) -> Iterator[str]:
        """Yield the text of ``chunks`` ((text, tokens so far or None)); recorded once the stream ends."""
        self.endpoint.check_generates()
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
            self.metrics.record(tokens or pieces, (time.perf_counter() - start) * 1000, ok)

    def infer(self, prompt: str, json_schema: dict[str, Any] | None, sampling: Sampling) -> InferResult:
        """``/completion`` of ``prompt``."""
        body = {"prompt": prompt, **sampling.completion()}
        if json_schema is not None:
            body["json_schema"] = json_schema

        def call() -> InferResult:
            out = self.post("/completion", body)
            timings = out.get("timings", {})
            return InferResult(
                text=out.get("content", ""),
                tokens_generated=int(out.get("tokens_predicted", 0)),
                prompt_tokens=int(out.get("tokens_evaluated", timings.get("prompt_n", 0)) or 0),
                tokens_per_sec=float(timings.get("predicted_per_second") or 0.0),
                finish_reason=_FINISH.get(out.get("stop_type", ""), out.get("stop_type", "")),
            )

        return self._timed(call)

    def infer_stream(self, prompt: str, sampling: Sampling) -> Iterator[str]:
        """``/completion`` of ``prompt``, streamed."""
        events = self.events("/completion", {"prompt": prompt, "stream": True, **sampling.completion()})
        return self._streamed((e.get("content", ""), e.get("tokens_predicted")) for e in events)

    def chat(
        self, messages: Sequence[dict[str, str]], json_schema: dict[str, Any] | None, sampling: Sampling
    ) -> InferResult:
        """One turn of ``/v1/chat/completions``."""
        body: dict[str, Any] = {"messages": list(messages), **sampling.chat()}
        if json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"schema": json_schema}}

        def call() -> InferResult:
            out = self.post("/v1/chat/completions", body)
            choice = out["choices"][0]
            usage = out.get("usage", {})
            return InferResult(
                text=choice["message"].get("content") or "",
                tokens_generated=int(usage.get("completion_tokens", 0)),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                finish_reason=choice.get("finish_reason") or "",
            )

        return self._timed(call)

    def chat_stream(self, messages: Sequence[dict[str, str]], sampling: Sampling) -> Iterator[str]:
        """One turn of ``/v1/chat/completions``, streamed."""
        body = {
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling.chat(),
        }

        def chunks() -> Iterator[tuple[str, int | None]]:
            for event in self.events("/v1/chat/completions", body):
                usage = event.get("usage") or {}
                text = "".join((c.get("delta") or {}).get("content") or "" for c in event.get("choices") or [])
                yield text, usage.get("completion_tokens")

        return self._streamed(chunks())

    def batch_infer(self, prompts: Sequence[str], max_workers: int, sampling: Sampling) -> list[InferResult]:
        """``prompts`` concurrently across the server's slots, in the prompts' order."""
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            return list(pool.map(lambda p: self.infer(p, None, sampling), prompts))

    # ------------------------------------------------------------------ embeddings and tokens

    def embed(self, texts: Sequence[str], normalize: bool) -> list[list[float]]:
        """``/v1/embeddings`` of ``texts``, in batches."""
        self.endpoint.check_embeds()
        items = list(texts)
        vectors: list[list[float]] = []
        for i in range(0, len(items), _EMBED_BATCH):
            batch = items[i : i + _EMBED_BATCH]
            body = {"input": batch, "encoding_format": "float", "embd_normalize": 2 if normalize else -1}
            out = self.post("/v1/embeddings", body)
            data = sorted(out["data"], key=lambda d: int(d["index"]))
            vectors += [[float(x) for x in d["embedding"]] for d in data]
        return vectors

    def tokenize(self, text: str) -> list[int]:
        """``/tokenize``."""
        return [int(t) for t in self.post("/tokenize", {"content": text})["tokens"]]

    def detokenize(self, ids: Sequence[int]) -> str:
        """``/detokenize``."""
        return str(self.post("/detokenize", {"tokens": [int(i) for i in ids]})["content"])
