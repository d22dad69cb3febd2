"""Start a real llama-server for end-to-end tests: loopback, a free port, logs to a file (never a pipe)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llcuda.server import free_port


@dataclass(frozen=True)
class Server:
    base_url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def post(self, path: str, body: Mapping[str, Any], timeout: float = 60) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result


@contextlib.contextmanager
def running_server(
    exe: Path,
    model: Path,
    log: Path,
    args: list[str] | None = None,
    timeout: float = 120,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    port = free_port()
    cmd = [str(exe), "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "256"]
    cmd += ["--threads", "2", "--no-ui", "--offline", *(args or [])]
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"} | dict(extra_env or {})
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = Server(f"http://127.0.0.1:{port}", log, proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{server.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(server.base_url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama-server not healthy after {timeout} s:\n{server.log_text()[-3000:]}")
            time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
