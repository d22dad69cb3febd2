"""Fault, load and bad-input matrix of the runtime, against the real llama-server of the installed ``llcuda-cpu``
wheel and tiny GGUF models written by the tests. Each fault gets one clear error, loses nothing and leaves no
stray process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gguf
import numpy as np
import pytest

from llcuda import server as server_mod
from llcuda.engine import InferenceEngine
from llcuda.errors import ModelError, ModelLoadError, ModelNotFoundError, PortInUseError, ServerCrashedError
from llcuda.server import ServerManager
from llcuda_testkit.tinymodel import write_tiny_llama
from support import wait_gone

pytestmark = pytest.mark.usefixtures("cpu_backend")


def servers_on(path: Path | str) -> list[int]:
    """PIDs of llama-server processes started on ``path``."""
    out = subprocess.run(["pgrep", "-f", f"llama-server --model {path}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[InferenceEngine]:
    eng = InferenceEngine(ServerManager(log_dir=tmp_path / "logs"))
    yield eng
    eng.unload_model()


# ---------------------------------------------------------------- bad models


def _unknown_architecture(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "fancyarch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _bad_model(kind: str, tmp: Path, good: Path) -> Path:
    path = tmp / f"{kind}.gguf"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.touch()
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "truncated-header":
        path.write_bytes(good.read_bytes()[:200])
    elif kind == "wrong-magic":
        path.write_bytes(b"PK\x03\x04" + good.read_bytes()[4:])
    elif kind == "unknown-architecture":
        _unknown_architecture(path)
    return path


@pytest.mark.parametrize(
    ("kind", "error", "says", "launched"),
    [
        ("missing", ModelNotFoundError, "model file not found", False),
        ("directory", ModelError, "is a directory; pass the .gguf file inside it", False),
        ("empty", ModelError, "is empty (0 bytes)", False),
        ("wrong-magic", ModelError, "is not a GGUF model (starts with b'PK\\x03\\x04'", False),
        ("truncated", ModelLoadError, "The model file is truncated or corrupt", True),
        ("truncated-header", ModelLoadError, "The model file is truncated or corrupt", True),
        ("unknown-architecture", ModelLoadError, "architecture 'fancyarch' is not supported", True),
    ],
)
def test_a_bad_model_gets_one_clear_error_and_leaves_no_server(
    engine: InferenceEngine, tmp_path: Path, tiny_gguf: Path, kind: str, error: type, says: str, launched: bool
) -> None:
    path = _bad_model(kind, tmp_path, tiny_gguf)
    with pytest.raises(error) as err:
        engine.load_model(path, silent=True)
    assert isinstance(err.value, ModelError)  # every bad model can be caught as one type
    assert says in str(err.value)
    assert str(path) in str(err.value).splitlines()[0]  # the first line names the file
    logs = list((tmp_path / "logs").glob("*.log")) if (tmp_path / "logs").exists() else []
    assert bool(logs) == launched  # files that are plainly not models never reach llama-server
    assert not engine.is_loaded() and not engine.server.is_running()
    assert servers_on(path) == []


def test_a_path_with_spaces_and_non_ascii_characters_works(
    engine: InferenceEngine, tmp_path: Path, tiny_gguf: Path
) -> None:
    folder = tmp_path / "mödels für Tëst" / "日本語 dir"
    folder.mkdir(parents=True)
    model = folder / "tiny llama ünïcode.gguf"
    model.write_bytes(tiny_gguf.read_bytes())
    engine.load_model(model, ctx_size=256, silent=True, threads=2)
    assert engine.model_path == model
    assert engine.infer("Hi", max_tokens=3).tokens_generated > 0


# ---------------------------------------------------------------- ports and several engines


def test_a_requested_port_in_use_is_a_clear_error(
    engine: InferenceEngine, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            engine.load_model(tiny_gguf, port=port, silent=True)
        # The port taken between our check and the server's bind: llama-server's own failure, diagnosed.
        monkeypatch.setattr(server_mod, "port_is_free", lambda *_: True)
        with pytest.raises(PortInUseError) as err:
            engine.load_model(tiny_gguf, port=port, silent=True)
        assert "port is already in use" in err.value.diagnosis
    assert not engine.server.is_running()


def test_two_engines_in_one_process(tmp_path: Path, tiny_gguf: Path) -> None:
    with InferenceEngine() as a, InferenceEngine() as b:
        a.load_model(tiny_gguf, ctx_size=256, silent=True, threads=1)
        b.load_model(tiny_gguf, ctx_size=256, silent=True, threads=1)
        assert a.server.port != b.server.port and a.api_key != b.api_key
        with ThreadPoolExecutor(2) as pool:
            ra, rb = pool.map(lambda e: e.infer("Hello", max_tokens=4, temperature=0), (a, b))
        assert ra.success and rb.success and ra.text == rb.text  # same model, greedy: same answer


def test_two_engines_in_two_processes(engine: InferenceEngine, tmp_path: Path, tiny_gguf: Path) -> None:
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import pathlib, time, llcuda
        with llcuda.InferenceEngine() as e:
            e.load_model({str(tiny_gguf)!r}, ctx_size=256, silent=True, threads=1)
            pathlib.Path({str(ready)!r}).write_text(str(e.server.port))
            while not pathlib.Path({str(ready)!r} + ".done").exists():
                r = e.infer("Hello", max_tokens=4, temperature=0)
                assert r.success and r.tokens_generated > 0
            print("OTHER OK", r.text == e.infer("Hello", max_tokens=4, temperature=0).text)
    """)
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        engine.load_model(tiny_gguf, ctx_size=256, silent=True, threads=1)
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert other.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert int(ready.read_text()) != engine.server.port
        for _ in range(5):  # both serve at the same time
            assert engine.infer("Hello", max_tokens=4, temperature=0).success
        Path(f"{ready}.done").touch()
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 0 and "OTHER OK True" in out
    finally:
        if other.poll() is None:
            other.kill()
        other.communicate()  # reaps it and closes its pipe


def test_a_server_started_from_a_short_lived_thread_outlives_the_thread(
    engine: InferenceEngine, tiny_gguf: Path
) -> None:
    worker = threading.Thread(target=lambda: engine.load_model(tiny_gguf, ctx_size=256, silent=True, threads=1))
    worker.start()
    worker.join()
    time.sleep(1.0)  # PR_SET_PDEATHSIG would have fired when the forking thread ended
    assert engine.server.is_running()
    assert engine.infer("Hi", max_tokens=2).success


def _load_in_child(model: str) -> None:  # runs in a fork()ed child
    with InferenceEngine() as eng:
        eng.load_model(model, ctx_size=256, silent=True, threads=1)
        assert eng.infer("Hi", max_tokens=2).success


def test_a_forked_child_starts_its_own_server(engine: InferenceEngine, tiny_gguf: Path) -> None:
    engine.load_model(tiny_gguf, ctx_size=256, silent=True, threads=1)  # the parent's launcher thread is running
    child = multiprocessing.get_context("fork").Process(target=_load_in_child, args=(str(tiny_gguf),))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert engine.infer("Hi", max_tokens=2).success


# ---------------------------------------------------------------- crashes


def test_server_killed_during_a_request_raises_within_2_s_and_the_engine_recovers(
    engine: InferenceEngine, tmp_path: Path, tiny_gguf: Path
) -> None:
    slow = write_tiny_llama(tmp_path / "slow.gguf", n_layer=4, n_embd=256, n_ff=1024, n_ctx=4096)
    engine.load_model(slow, ctx_size=4096, silent=True, threads=1)
    assert engine.server.process is not None
    pid, killed_at = engine.server.process.pid, []

    def kill() -> None:
        killed_at.append(time.monotonic())
        os.kill(pid, signal.SIGKILL)

    threading.Timer(0.5, kill).start()
    with pytest.raises(ServerCrashedError) as err:
        engine.infer("Hello", max_tokens=3000, temperature=0)
    assert killed_at and time.monotonic() - killed_at[0] < 2  # the kill landed mid-request, the error came fast
    assert "exited with code -9" in str(err.value) and err.value.log_tail
    engine.load_model(tiny_gguf, ctx_size=256, silent=True)
    assert engine.infer("Hi", max_tokens=2).success


def test_ctrl_c_during_a_real_load_leaves_nothing_running(tmp_path: Path, tiny_gguf: Path) -> None:
    model = tmp_path / "interrupted model.gguf"
    model.write_bytes(tiny_gguf.read_bytes())
    pid_file = tmp_path / "pid"
    # A real SIGINT, sent the moment llama-server has been started and load_model is waiting for it.
    code = textwrap.dedent(f"""
        import os, signal, sys, llcuda
        from llcuda.server import ServerManager
        original = ServerManager.check_health
        def interrupt_once(self, timeout=2.0):
            open({str(pid_file)!r}, "w").write(str(self.process.pid))
            ServerManager.check_health = original
            os.kill(os.getpid(), signal.SIGINT)
            return original(self, timeout)
        ServerManager.check_health = interrupt_once
        try:
            llcuda.InferenceEngine().load_model({str(model)!r}, silent=True)
        except KeyboardInterrupt:
            sys.exit(42)
    """)
    proc = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True, text=True)
    assert proc.returncode == 42, proc.stderr
    wait_gone(int(pid_file.read_text()), 5)
    assert servers_on(model) == []


# ---------------------------------------------------------------- logs


def test_more_than_10_mb_of_server_logs_never_stall_the_engine(engine: InferenceEngine, tiny_gguf: Path) -> None:
    engine.load_model(tiny_gguf, ctx_size=512, silent=True, verbose=True, threads=2)  # --verbose: ~0.5 MB a request
    log = engine.server.log_path
    assert log is not None
    slowest, deadline = 0.0, time.monotonic() + 180
    while log.stat().st_size <= 10 * 1024 * 1024:
        assert time.monotonic() < deadline, f"only {log.stat().st_size} bytes of log in 180 s"
        result = engine.infer("Hello", max_tokens=64, temperature=0)
        assert result.success
        slowest = max(slowest, result.latency_ms)
    assert slowest < 10_000  # every request answered promptly while the log grew
    assert engine.server.is_running() and len(engine.server.log_tail(20).splitlines()) == 20


# ---------------------------------------------------------------- load


def test_200_requests_from_16_clients_on_4_slots_all_succeed(engine: InferenceEngine, tiny_gguf: Path) -> None:
    engine.load_model(tiny_gguf, ctx_size=2048, silent=True, parallel=4, threads=2)
    prompts = [f"request {i}: hello" for i in range(200)]
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda p: engine.infer(p, max_tokens=16, temperature=0.7, seed=1), prompts))
    wall = time.perf_counter() - start
    failures = [r.error_message for r in results if not r.success]
    assert failures == [] and all(r.tokens_generated > 0 for r in results)
    latencies = sorted(r.latency_ms for r in results)
    tokens = sum(r.tokens_generated for r in results)
    print(
        f"\nload: 200 requests, 16 clients, 4 slots: 0 errors, p50 {statistics.median(latencies):.0f} ms, "
        f"p99 {latencies[197]:.0f} ms, {tokens / wall:.0f} tokens/s"
    )
    assert engine.get_metrics()["failed_requests"] == 0


# ---------------------------------------------------------------- security


def test_the_server_listens_on_loopback_only(engine: InferenceEngine, tiny_gguf: Path) -> None:
    engine.load_model(tiny_gguf, ctx_size=256, silent=True)
    port = f"{engine.server.port:04X}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and local.endswith(f":{port}"):  # 0A: LISTEN
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"]  # 127.0.0.1, and nothing on 0.0.0.0 or ::
