"""A model split across machines, for real: ``llcuda rpc-server`` (the cpu wheel's ggml-rpc-server) on hosts that
are network namespaces joined by veth pairs, the engine in the root namespace. The tests marked netns need root
(``.ci/run`` passes ``--netns=require``, which fails them where namespaces cannot be made); the others use
loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llcuda import InferenceEngine, RPCHostLostError, RPCServer, RPCUnreachableError, StreamStalledError
from llcuda.rpc import probe
from llcuda_testkit import netns
from llcuda_testkit.tinymodel import write_tiny_llama
from support import wait_gone

pytestmark = pytest.mark.usefixtures("cpu_backend")

GREEDY: dict[str, Any] = {"temperature": 0, "seed": 7, "top_k": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four layers to spread; big enough that 3000 greedy tokens over RPC take seconds (a kill lands mid-stream)."""
    return write_tiny_llama(tmp_path_factory.mktemp("rpc") / "split.gguf", n_layer=4, n_embd=256, n_ff=1024, n_ctx=4096)


@pytest.fixture
def two_hosts(netns_ok: None, tmp_path: Path) -> Iterator[tuple[netns.RemoteRPC, netns.RemoteRPC]]:
    """Two hosts, each with ``llcuda rpc-server`` on its own address; everything removed after, failures included."""
    with netns.hosts(2) as (a, b):
        yield (
            netns.start_rpc_server(a, tmp_path / "a.log"),
            netns.start_rpc_server(b, tmp_path / "b.log"),
        )


def _local_answer(model: Path, prompt: str) -> str:
    with InferenceEngine() as local:
        local.load_model(model, ctx_size=512, silent=True, threads=1)
        result = local.infer(prompt, max_tokens=24, **GREEDY)
        assert result.success and result.tokens_generated == 24
        return result.text


@pytest.mark.netns
def test_a_model_split_over_two_hosts_answers_as_it_does_locally(
    two_hosts: tuple[netns.RemoteRPC, netns.RemoteRPC], model: Path
) -> None:
    a, b = two_hosts
    for remote in two_hosts:  # each reports what it serves
        assert f"RPC server v7.0.0 on {remote.endpoint}" in remote.text()
        assert "CPU:" in remote.text() and "MiB free" in remote.text()
        assert "WARNING: ggml-rpc-server has no authentication" in remote.text()  # the opt-in's warning
    with InferenceEngine() as engine:
        engine.load_model(model, ctx_size=512, silent=True, threads=1, rpc=[a.endpoint, b.endpoint])
        assert [str(h.endpoint) for h in engine.rpc_hosts] == [a.endpoint, b.endpoint]
        assert all(str(h.version) == "7.0.0" and h.free_mb > 0 for h in engine.rpc_hosts)
        split = engine.infer("Hello", max_tokens=24, **GREEDY)
        assert split.success and split.tokens_generated == 24
    for remote in two_hosts:  # each host held a share of the weights: GGML_RPC_DEBUG logs every tensor it got
        text = remote.text()
        assert "Accepted client connection" in text
        assert text.count("[set_tensor]") + text.count("[set_tensor_hash]") >= 4, text[-3000:]
        assert "[graph_compute]" in text
    assert split.text == _local_answer(model, "Hello")


@pytest.mark.netns
def test_a_host_killed_mid_stream_is_a_specific_error_and_leaves_nothing_running(
    two_hosts: tuple[netns.RemoteRPC, netns.RemoteRPC], model: Path
) -> None:
    a, b = two_hosts
    engine = InferenceEngine()
    engine.load_model(model, ctx_size=4096, silent=True, threads=1, rpc=[a.endpoint, b.endpoint])
    server_pid = engine.server.process.pid  # type: ignore[union-attr]
    stream = engine.infer_stream("Hello", max_tokens=3000, **GREEDY)
    assert next(stream)
    victim = b.server_pid()
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(RPCHostLostError) as err:
        list(stream)
    assert time.monotonic() - start < 10
    assert f"({a.endpoint}, {b.endpoint}) crashed, was stopped or became unreachable" in err.value.diagnosis
    assert engine.server.log_path is not None
    assert "Remote RPC server crashed or returned malformed response" in engine.server.log_path.read_text()
    assert wait_gone(server_pid, 10) < 10  # llama-server aborted
    engine.unload_model()
    assert b.cli.wait(timeout=10) == 1  # llcuda rpc-server saw its server die and said so
    assert "ggml-rpc-server stopped" in b.text()
    a_server = a.server_pid()  # read before Ctrl-C: the CLI may stop it at once
    a.cli.send_signal(signal.SIGINT)  # Ctrl-C: the other host stops cleanly, with its server
    assert a.cli.wait(timeout=15) == 0 and "stopped" in a.text()
    assert a_server is not None and wait_gone(a_server, 5) < 5


@pytest.mark.netns
def test_a_cut_link_stalls_the_stream_into_a_clear_error_naming_the_hosts(
    two_hosts: tuple[netns.RemoteRPC, netns.RemoteRPC], model: Path
) -> None:
    a, b = two_hosts
    engine = InferenceEngine(stream_timeout=5)
    engine.load_model(model, ctx_size=4096, silent=True, threads=1, rpc=[a.endpoint, b.endpoint])
    server_pid = engine.server.process.pid  # type: ignore[union-attr]
    stream = engine.infer_stream("Hello", max_tokens=3000, **GREEDY)
    assert next(stream)
    b.host.cut()  # no reset, no error: packets just vanish, and ggml's RPC has no timeouts
    start = time.monotonic()
    with pytest.raises(StreamStalledError) as err:
        list(stream)
    waited = time.monotonic() - start
    assert 4 < waited < 30
    assert "for 5 s" in str(err.value)
    assert f"split over the RPC hosts {a.endpoint}, {b.endpoint}" in err.value.diagnosis
    assert wait_gone(server_pid, 10) < 10  # the stuck llama-server was stopped
    assert not engine.is_loaded()


@pytest.mark.netns
def test_unreachable_endpoints_fail_fast_with_the_endpoint_named(netns_ok: None, tmp_path: Path, model: Path) -> None:
    with netns.hosts(1, "u") as (host,):
        remote = netns.start_rpc_server(host, tmp_path / "u.log", debug=False)
        silent = host.gateway.rsplit(".", 1)[0] + ".9"  # an address on the link that nobody has: no ARP answer
        for endpoint in (f"{host.ip}:{remote.port + 1}", f"{silent}:50052"):
            engine = InferenceEngine()
            start = time.monotonic()
            with pytest.raises(
                RPCUnreachableError, match=f"RPC endpoint {endpoint}: (connection refused|no answer|cannot)"
            ):
                engine.load_model(model, silent=True, rpc=[remote.endpoint, endpoint])
            assert time.monotonic() - start < 6
            assert engine.server.process is None  # no llama-server was started


@pytest.mark.netns
def test_a_non_loopback_bind_without_the_opt_in_is_refused(netns_ok: None, tmp_path: Path) -> None:
    with netns.hosts(1, "b") as (host,):
        proc = subprocess.run(
            [*netns.enter(host.ns), sys.executable, "-m", "llcuda", "rpc-server", "--host", host.ip],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1
        assert f"refusing to serve RPC on {host.ip}:50052 without the opt-in" in proc.stderr
        assert "--allow-remote" in proc.stderr and "Traceback" not in proc.stderr
        with pytest.raises(RPCUnreachableError, match="connection refused"):
            probe(f"{host.ip}:50052")  # nothing was started


def test_rpc_server_on_loopback_reports_its_devices_and_stops(tmp_path: Path) -> None:
    """No namespace needed: the Python API on 127.0.0.1 (the default, no opt-in)."""
    with RPCServer(port=free_port(), log_dir=tmp_path) as server:
        pid = server.process.pid  # type: ignore[union-attr]
        assert str(server.version) == "7.0.0"
        assert server.devices and server.devices[0].name == "CPU" and server.devices[0].memory_free_mb > 0
        assert f"RPC server v7.0.0 on 127.0.0.1:{server.port}" in server.describe()
        assert probe(server.endpoint).free_mb > 0
    assert wait_gone(pid, 5) < 5


def test_an_rpc_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llcuda", "rpc-server", "--device", "CUDA9", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "llcuda: error: ggml-rpc-server exited with code 1 while starting" in proc.stderr
    assert "error: unknown device: CUDA9" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_run_over_rpc_prints_the_local_answer(tmp_path: Path, model: Path) -> None:
    with RPCServer(port=free_port(), log_dir=tmp_path) as server:
        cmd = [sys.executable, "-m", "llcuda", "run", str(model), "Hello", "--max-tokens", "24", "--temperature", "0"]
        over = subprocess.run([*cmd, "--rpc", server.endpoint], capture_output=True, text=True, timeout=120, check=True)
    local = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    assert f"RPC {server.endpoint}: protocol 7.0.0" in over.stderr
    assert over.stdout == local.stdout and over.stdout.strip()


def free_port() -> int:
    from llcuda.server import free_port as free

    return free()
