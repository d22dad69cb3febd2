"""``ServerManager``: launch llama-server on loopback, wait until it is ready, watch it, stop it.

- a free port (bind 0) unless one is asked for, ``--host 127.0.0.1``, ``--offline``, ``--no-ui`` and a
  random API key per launch;
- output is drained by a thread into a log file and an in-memory tail: never an undrained pipe;
- startup waits on ``/health`` (503 "Loading model" is progress) and checks process exit first;
- a crash raises an error carrying the last log lines and a diagnosis of the known failures;
- stop is SIGTERM then SIGKILL; the server also dies with this process (``PR_SET_PDEATHSIG``, set from one
  long-lived launcher thread) and at exit.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .cachedir import cache_dir
from .discovery import Found, discover, found_at
from .errors import (
    DriverTooOldError,
    EngineStateError,
    ModelLoadError,
    PortInUseError,
    RPCHostLostError,
    ServerCrashedError,
    ServerError,
    ServerStartError,
)
from .gpu import GPU
from .process import ManagedProcess

LOOPBACK = "127.0.0.1"

# (pattern in the server's output, plain-language cause, error class). The first match wins, so the specific
# model failures come before the generic "failed to load model".
_DIAGNOSES: list[tuple[re.Pattern[str], str, type[ServerError]]] = [
    (
        re.compile(r"error while loading shared libraries: (\S+?):"),
        "A shared library is missing ({0}). Reinstall the backend: pip install --force-reinstall "
        '"llcuda[<target>]"; for a loose llama.cpp build, keep its lib/ next to bin/.',
        ServerStartError,
    ),
    (
        re.compile(r"no kernel image is available"),
        "This backend has no code for your GPU (wrong compute capability). "
        "Run `llcuda doctor` and install the backend it recommends.",
        ServerStartError,
    ),
    (
        re.compile(r"out of memory|cudaMalloc failed|failed to allocate .*buffer", re.IGNORECASE),
        "Out of GPU memory: lower gpu_layers or ctx_size, or close other programs using the GPU.",
        ServerStartError,
    ),
    (
        re.compile(r"couldn't bind|Address already in use|bind: .*in use", re.IGNORECASE),
        "The port is already in use: pass another port, or none to get a free one.",
        PortInUseError,
    ),
    (
        re.compile(r"unknown model architecture: '([^']*)'"),
        "The model's architecture '{0}' is not supported by this llama.cpp build: use a GGUF of a supported "
        "architecture, or a newer llcuda.",
        ModelLoadError,
    ),
    (
        re.compile(r"not within the file bounds|exceeds remaining file size|failed to read key-value"),
        "The model file is truncated or corrupt (an unfinished download or copy?): download it again.",
        ModelLoadError,
    ),
    (
        re.compile(r"invalid magic"),
        "The file is not a GGUF model.",
        ModelLoadError,
    ),
    (
        re.compile(r"failed to load model|error loading model"),
        "llama-server could not load the model; its last lines below say why.",
        ModelLoadError,
    ),
]


# llama.cpp's RPC client aborts with this when a remote server dies, resets the connection or answers nonsense; it
# does not say which server.
_RPC_ABORT = re.compile(r"Remote RPC server crashed or returned malformed response|RPC server version mismatch")


def _diagnosis(log_tail: str, rpc_hosts: tuple[str, ...] = ()) -> tuple[str, type[ServerError]]:
    if rpc_hosts and _RPC_ABORT.search(log_tail):
        hosts = ", ".join(rpc_hosts)
        return (
            f"An RPC server this model is split over ({hosts}) crashed, was stopped or became unreachable. Check "
            "each host (`llcuda rpc-server` still running, the network up), then load the model again.",
            RPCHostLostError,
        )
    for pattern, text, cls in _DIAGNOSES:
        m = pattern.search(log_tail)
        if m:
            return text.format(*m.groups()), cls
    return "", ServerStartError


# llama-server prints "listening on http://127.0.0.1:PORT" once its HTTP server is up (at b11312, after the model has
# loaded); from then on every health check gets an HTTP answer. One that answers nothing is unreachable: said in
# seconds, not after the stall timeout.
_LISTENING = re.compile(r"listening on (\S+)")
LISTEN_GRACE_S = 5.0


def diagnose(log_tail: str, rpc_hosts: tuple[str, ...] = ()) -> str:
    """A plain-language cause for a server failure, from its last output lines ('' when unknown)."""
    return _diagnosis(log_tail, rpc_hosts)[0]


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def option_args(options: dict[str, Any]) -> list[str]:
    """Map keyword options to llama-server flags: ``n_parallel=4`` -> ``--n-parallel 4``, ``mlock=True`` ->
    ``--mlock``, ``False``/``None`` -> omitted, a list -> the flag repeated."""
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


class ServerManager(ManagedProcess):
    """One llama-server process. Usable as a context manager."""

    def __init__(self, server_path: str | os.PathLike[str] | None = None, log_dir: Path | None = None) -> None:
        super().__init__(log_dir or cache_dir() / "logs")
        self._server_path = Path(server_path) if server_path else None
        self._discovered: Found | None = None  # made for the next start (LocalServer's fit checks), used once
        self.port: int | None = None
        self.api_key: str | None = None
        self.model_path: Path | None = None
        self.rpc_hosts: tuple[str, ...] = ()  # the RPC servers this llama-server uses (``--rpc``), for diagnoses
        self._listening: tuple[float, str] | None = None  # when llama-server said "listening on", and where

    # ------------------------------------------------------------------ discovery

    def discover(self, gpus: list[GPU] | None = None) -> Found:
        """Pick the llama-server this manager runs (the one it was given, else discovery's pick, kept from then on)
        for ``gpus`` (probed when not given): what the next :meth:`start_server` launches, with its backend's build
        info and the GPUs (see :func:`llcuda.discovery.discover`)."""
        found = found_at(self._server_path, gpus) if self._server_path else discover(gpus)
        self._server_path = found.server
        self._discovered = found
        return found

    def find_llama_server(self) -> Path:
        """The llama-server this manager runs (see :func:`llcuda.discovery.find_llama_server`)."""
        return self._server_path or self.discover().server

    # ------------------------------------------------------------------ state

    @property
    def server_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running llama-server; :class:`EngineStateError` when none runs."""
        if self.port is None:
            raise EngineStateError("llama-server is not running: start_server() first")
        return f"http://{LOOPBACK}:{self.port}"

    def check_health(self, timeout: float = 2.0) -> tuple[int, str]:
        """(HTTP status, status text) of ``/health``; (0, reason) when nothing answers."""
        try:
            with urllib.request.urlopen(self.server_url + "/health", timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}").get("status", "")
        except urllib.error.HTTPError as err:
            with err:  # an HTTPError holds the response's socket
                body = err.read()
            try:
                message = json.loads(body).get("error", {}).get("message", "")
            except ValueError:
                message = body.decode(errors="replace")
            return err.code, message
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            return 0, str(err)

    # ------------------------------------------------------------------ start / stop

    def start_server(
        self,
        model_path: str | os.PathLike[str],
        port: int | None = None,
        gpu_layers: int | str | None = None,
        ctx_size: int | None = None,
        *,
        timeout: float = 300.0,
        stall_timeout: float = 120.0,
        silent: bool = True,
        verbose: bool = False,
        **options: Any,
    ) -> None:
        """Launch llama-server on ``model_path`` and return once ``/health`` answers 200.

        ``gpu_layers=None`` leaves offload to llama-server, which fits layers to free VRAM itself.
        Raises :class:`PortInUseError`, :class:`DriverTooOldError` when the backend has code for the GPU but the
        driver is older than its CUDA runtime (``gpu_layers=0`` runs on the CPU regardless), or
        :class:`ServerStartError` with the log tail and a diagnosis.
        """
        if self.is_running():
            self.stop_server()
        found, self._discovered = self._discovered or self.discover(), None
        exe = found.server
        if str(gpu_layers) != "0" and (problem := found.driver_problem()):
            raise DriverTooOldError(problem)
        if port is not None and not port_is_free(port):
            raise PortInUseError(f"port {port} on {LOOPBACK} is already in use; pass another port, or none")
        self.port = port if port is not None else free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.model_path = Path(model_path)
        args = [str(exe), "--model", str(model_path), "--host", LOOPBACK, "--port", str(self.port)]
        args += ["--api-key", self.api_key, "--offline", "--no-ui"]
        if gpu_layers is not None:
            args += ["--n-gpu-layers", str(gpu_layers)]
        if ctx_size is not None:
            args += ["--ctx-size", str(ctx_size)]
        if verbose:
            args.append("--verbose")
        args += option_args(options)
        rpc = options.get("rpc")
        self.rpc_hosts = tuple(str(rpc).split(",")) if rpc else ()

        self._listening = None
        log_name = f"llama-server-{self.port}-{int(time.time())}.log"
        self._spawn(args, found.env(), log_name, echo=not silent)
        try:
            self._wait_ready(timeout, stall_timeout)
        except BaseException:  # including KeyboardInterrupt during a load: leave nothing running
            self.stop_server()
            raise

    def _on_line(self, line: str) -> None:
        if self._listening is None and (m := _LISTENING.search(line)):
            self._listening = (self._last_output, m.group(1))

    def _diagnosis(self) -> tuple[str, type[ServerError]]:
        """The diagnosis of everything kept of the output (a backtrace can push the cause out of the tail shown)."""
        return _diagnosis("\n".join(self._tail), self.rpc_hosts)

    def _failure(self, message: str, *, exited: bool = False) -> ServerError:
        """The error for a failed start: for an exit, the class of its diagnosis (bad model, port in use, a lost
        RPC host)."""
        if self._drain is not None:
            self._drain.join(timeout=2)
        tail = self.log_tail()
        diagnosis, cls = self._diagnosis()
        if not exited:
            cls = ServerStartError
        elif cls is ModelLoadError:
            message = f"llama-server could not load {self.model_path}; {message}"
        return cls(f"{message} (log: {self.log_path})", log_tail=tail, diagnosis=diagnosis)

    def crashed(self, err: BaseException) -> ServerCrashedError:
        """The error for a request that lost its server, with the exit code, the log's tail and the diagnosis.

        A dropped connection usually means a dying server: it gets a moment to be reaped and to flush its last
        lines, so that the error can say how it ended and why.
        """
        code = self.wait_exit(timeout=1.0)
        tail = self.log_tail()
        state = f"exited with code {code}" if code is not None else "stopped answering"
        diagnosis, cls = self._diagnosis()
        error = RPCHostLostError if cls is RPCHostLostError else ServerCrashedError
        return error(f"llama-server {state} during a request ({err})", log_tail=tail, diagnosis=diagnosis)

    def _wait_ready(self, timeout: float, stall_timeout: float) -> None:
        assert self.process is not None
        start = last_answer = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:  # exit is checked before health
                raise self._failure(f"llama-server exited with code {code} while starting", exited=True)
            status, _ = self.check_health()
            if status == 200:
                return
            now = time.monotonic()
            if status:  # any HTTP answer (503 "Loading model") is a sign of life, like new output
                last_answer = now
            elif self._listening is not None and now - max(self._listening[0], last_answer) > LISTEN_GRACE_S:
                where = self._listening[1]
                raise self._failure(
                    f"llama-server says it is listening on {where}, but nothing answered there for "
                    f"{LISTEN_GRACE_S:.0f} s: the loopback interface is probably down (in a container or network "
                    f"namespace: `ip link set lo up`), or a firewall drops local connections"
                )
            if now - start > timeout:
                raise self._failure(f"llama-server not ready after {timeout:.0f} s")
            if now - max(self._last_output, last_answer) > stall_timeout:
                raise self._failure(f"llama-server printed nothing and answered nothing for {stall_timeout:.0f} s")
            time.sleep(0.05 if status == 0 else 0.2)

    def stop_server(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Safe to call twice."""
        self.terminate(timeout)

    def __enter__(self) -> ServerManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_server()
