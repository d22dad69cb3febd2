"""``InferenceEngine``: load a model into a bundled llama-server and talk to it over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RequestError
from .models import resolve_model
from .server import ServerManager

_FINISH = {"eos": "stop", "word": "stop", "limit": "length"}


@dataclass
class InferResult:
    text: str = ""
    tokens_generated: int = 0
    latency_ms: float = 0.0
    tokens_per_sec: float = 0.0
    finish_reason: str = ""
    success: bool = True
    error_message: str | None = None


class InferenceEngine:
    """One model served by one llama-server. ``base_url``/``api_key`` plug into the ``openai`` client."""

    def __init__(self, server_manager: ServerManager | None = None) -> None:
        self.server = server_manager or ServerManager()
        self.model_path: Path | None = None
        self._lock = threading.Lock()
        self._requests = 0
        self._failures = 0
        self._tokens = 0
        self._latency_ms = 0.0

    # ------------------------------------------------------------------ lifecycle

    def load_model(
        self,
        model: str | os.PathLike[str],
        gpu_layers: int | str | None = None,
        ctx_size: int | None = None,
        silent: bool = False,
        verbose: bool = False,
        **server_options: Any,
    ) -> bool:
        """Resolve ``model`` (path, alias or ``"repo:file.gguf"``), start llama-server on it, wait until ready.

        ``gpu_layers=None`` lets llama-server fit the offload to free VRAM. Extra keywords become server flags
        (``n_parallel=4`` -> ``--n-parallel 4``). Returns True; raises an :class:`~llcuda.errors.LLCudaError`.
        """
        path = resolve_model(model)
        self.server.start_server(
            path, gpu_layers=gpu_layers, ctx_size=ctx_size, silent=silent, verbose=verbose, **server_options
        )
        self.model_path = path
        return True

    def unload_model(self) -> None:
        self.server.stop_server()
        self.model_path = None

    def is_loaded(self) -> bool:
        return self.model_path is not None and self.server.is_running()

    def __enter__(self) -> InferenceEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload_model()

    @property
    def server_url(self) -> str:
        return self.server.server_url

    @property
    def base_url(self) -> str:
        """OpenAI-compatible root: ``OpenAI(base_url=engine.base_url, api_key=engine.api_key)``."""
        return self.server.server_url + "/v1"

    @property
    def api_key(self) -> str:
        if self.server.api_key is None:
            raise RuntimeError("no model loaded")
        return self.server.api_key

    # ------------------------------------------------------------------ HTTP

    def _request(self, path: str, body: dict[str, Any]) -> urllib.request.Request:
        if not self.is_loaded():
            raise RuntimeError("no model loaded: call load_model() first")
        return urllib.request.Request(
            self.server_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )

    def _post(self, path: str, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        req = self._request(path, body)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except urllib.error.HTTPError as err:
            raise RequestError(f"{path}: HTTP {err.code}: {err.read().decode(errors='replace')[:500]}") from err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise self.server.crashed(err) from err

    def _record(self, result: InferResult) -> InferResult:
        with self._lock:
            self._requests += 1
            self._failures += not result.success
            self._tokens += result.tokens_generated
            self._latency_ms += result.latency_ms
        return result

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _sampling(
        max_tokens: int, temperature: float, top_p: float, seed: int | None, stop: Sequence[str] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"n_predict": max_tokens, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            body["seed"] = seed
        if stop:
            body["stop"] = list(stop)
        return body

    def infer(
        self,
        prompt: str,
        max_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> InferResult:
        """Complete ``prompt``. A request the server rejects gives ``success=False``; a dead server raises."""
        start = time.perf_counter()
        try:
            out = self._post(
                "/completion", {"prompt": prompt, **self._sampling(max_tokens, temperature, top_p, seed, stop)}
            )
        except RequestError as err:
            return self._record(
                InferResult(success=False, error_message=str(err), latency_ms=(time.perf_counter() - start) * 1000)
            )
        latency = (time.perf_counter() - start) * 1000
        n = int(out.get("tokens_predicted", 0))
        timings = out.get("timings", {})
        tps = float(timings.get("predicted_per_second") or (n / (latency / 1000) if latency else 0.0))
        return self._record(
            InferResult(
                text=out.get("content", ""),
                tokens_generated=n,
                latency_ms=latency,
                tokens_per_sec=tps,
                finish_reason=_FINISH.get(out.get("stop_type", ""), out.get("stop_type", "")),
            )
        )

    def infer_stream(
        self,
        prompt: str,
        max_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Yield the completion of ``prompt`` as text chunks as the server produces them."""
        body = {"prompt": prompt, "stream": True, **self._sampling(max_tokens, temperature, top_p, seed, stop)}
        req = self._request("/completion", body)
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:
                for raw in resp:
                    line = raw.decode(errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if event.get("content"):
                        yield event["content"]
                    if event.get("stop"):
                        return
        except urllib.error.HTTPError as err:
            raise RequestError(f"/completion: HTTP {err.code}: {err.read().decode(errors='replace')[:500]}") from err
        except (urllib.error.URLError, http.client.HTTPException, OSError, json.JSONDecodeError) as err:
            raise self.server.crashed(err) from err
        # The stream ended without its final event: the server died or dropped the connection.
        raise self.server.crashed(ConnectionError("the stream ended without its final event"))

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        max_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
    ) -> InferResult:
        """One chat turn through the OpenAI-compatible endpoint (the model's chat template applies)."""
        body: dict[str, Any] = {
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
        }
        if seed is not None:
            body["seed"] = seed
        start = time.perf_counter()
        try:
            out = self._post("/v1/chat/completions", body)
        except RequestError as err:
            return self._record(InferResult(success=False, error_message=str(err)))
        latency = (time.perf_counter() - start) * 1000
        choice = out["choices"][0]
        n = int(out.get("usage", {}).get("completion_tokens", 0))
        return self._record(
            InferResult(
                text=choice["message"].get("content") or "",
                tokens_generated=n,
                latency_ms=latency,
                tokens_per_sec=n / (latency / 1000) if latency else 0.0,
                finish_reason=choice.get("finish_reason", ""),
            )
        )

    def batch_infer(
        self, prompts: Sequence[str], max_tokens: int = 128, max_workers: int = 4, **kwargs: Any
    ) -> list[InferResult]:
        """Run ``prompts`` concurrently across the server's slots; results keep the prompts' order."""
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            return list(pool.map(lambda p: self.infer(p, max_tokens=max_tokens, **kwargs), prompts))

    def get_metrics(self) -> dict[str, Any]:
        with self._lock:
            n = self._requests
            return {
                "requests": n,
                "failed_requests": self._failures,
                "tokens_generated": self._tokens,
                "mean_latency_ms": self._latency_ms / n if n else 0.0,
                "tokens_per_sec": self._tokens / (self._latency_ms / 1000) if self._latency_ms else 0.0,
            }
