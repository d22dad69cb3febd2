"""What tests/platforms/test_platform.py runs inside a Debian root (ci/platform-root.sh), under its Python and glibc.

It imports only the standard library and the installed llcuda, and prints one JSON object for the host to check:

    python scenarios.py serve MODEL SERVER      load, infer, stream, chat, tokenize, detokenize with one llama-server
    python scenarios.py embed MODEL SERVER      an embeddings engine
    python scenarios.py bad-model FILE          the error a corrupt model gives
    python scenarios.py crash MODEL SLOW        the error a llama-server killed mid-stream gives, then a reload
    python scenarios.py rpc MODEL SERVER        a model served through an llcuda rpc-server on loopback
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import llcuda


def _env(server: str) -> None:
    os.environ["LLAMA_SERVER_PATH"] = server  # this backend's llama-server, not the best one for the machine


def serve(model: str, server: str) -> dict[str, Any]:
    _env(server)
    with llcuda.InferenceEngine() as engine:
        engine.load_model(model, ctx_size=512, silent=True)
        result = engine.infer("Hello", max_tokens=8, temperature=0)
        streamed = "".join(engine.infer_stream("Hello", max_tokens=8, temperature=0))
        chat = engine.chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        ids = engine.tokenize("Hello world")
        return {
            "glibc": platform.libc_ver()[1],
            "python": platform.python_version(),
            "infer": {"success": result.success, "text": result.text, "tokens": result.tokens_generated},
            "stream": streamed,
            "chat": {"success": chat.success, "tokens": chat.tokens_generated},
            "tokens": ids,
            "detokenized": engine.detokenize(ids),
        }


def embed(model: str, server: str) -> dict[str, Any]:
    _env(server)
    with llcuda.InferenceEngine() as engine:
        engine.load_model(model, ctx_size=512, silent=True, embeddings=True)
        vectors = engine.embed(["one", "two"])
        return {
            "count": len(vectors),
            "dims": sorted({len(v) for v in vectors}),
            "norm": sum(x * x for x in vectors[0]),
        }


def bad_model(path: str) -> dict[str, Any]:
    try:
        llcuda.InferenceEngine().load_model(path, silent=True)
    except llcuda.LLCudaError as err:
        return {"error": type(err).__name__, "message": str(err)}
    return {"error": None}


def crash(model: str, slow: str) -> dict[str, Any]:
    """llama-server killed mid-stream (a model slow enough that 3000 tokens take seconds), then a reload."""
    with llcuda.InferenceEngine() as engine:
        engine.load_model(slow, ctx_size=4096, silent=True, threads=1)
        assert engine.server.process is not None
        stream = engine.infer_stream("Hello", max_tokens=3000, temperature=0)
        next(stream)
        engine.server.process.send_signal(signal.SIGKILL)
        try:
            for _ in stream:
                pass
            error: dict[str, Any] = {"error": None}
        except llcuda.LLCudaError as err:
            error = {"error": type(err).__name__, "message": str(err)}
        engine.load_model(model, ctx_size=512, silent=True)
        error["reloaded"] = engine.infer("Hi", max_tokens=2, temperature=0).success
        return error


def rpc(model: str, server: str) -> dict[str, Any]:
    _env(server)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rpc_server = str(Path(server).with_name("ggml-rpc-server"))
    with (
        tempfile.TemporaryDirectory() as logs,
        llcuda.RPCServer(port=port, server_path=rpc_server, log_dir=Path(logs)) as host,
        llcuda.InferenceEngine() as engine,
    ):
        engine.load_model(model, ctx_size=512, silent=True, rpc=[host.endpoint])
        result = engine.infer("Hello", max_tokens=8, temperature=0)
        return {
            "endpoint": host.endpoint,
            "version": str(host.version),
            "hosts": [str(h.endpoint) for h in engine.rpc_hosts],
            "success": result.success,
            "tokens": result.tokens_generated,
        }


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "serve": serve,
    "embed": embed,
    "bad-model": bad_model,
    "crash": crash,
    "rpc": rpc,
}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])))
