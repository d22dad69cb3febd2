"""Bigger than one GPU, without the hardware: the multi-GPU report from fake NVML data, the mapping of the split
keywords to llama-server flags (a fake llama-server), and the RPC checks against fake RPC servers that speak the
protocol's handshake (the real ones are in tests/wheels/test_rpc.py)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from llcuda import cli, discovery, fit, gpu, placement, rpc, rpcwire
from llcuda.engine import InferenceEngine
from llcuda.errors import (
    InsecureBindError,
    ModelTooLargeError,
    RPCBusyError,
    RPCProtocolError,
    RPCUnreachableError,
    ServerNotFoundError,
)
from llcuda.installed import Backend
from llcuda.server import ServerManager

FAKE = Path(__file__).with_name("fake_llama_server.py")
MIB = 1 << 20


# ---------------------------------------------------------------- fake NVML: Kaggle's two T4s


def fake_pynvml(cards: list[tuple[str, tuple[int, int], int, int]]) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's ``pynvml`` reporting ``cards`` (name, cc, total MiB, free MiB)."""
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    mem = types.SimpleNamespace
    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.nvmlInit = lambda: None  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: "550.54.15"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(cards)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: cards[h][0].encode()  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCudaComputeCapability = lambda h: cards[h][1]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: mem(total=cards[h][2] * MIB, free=cards[h][3] * MIB)  # type: ignore[attr-defined]
    return mod


TWO_T4 = [("Tesla T4", (7, 5), 15360, 15000), ("Tesla T4", (7, 5), 15360, 14800)]


def cc75_backend(tmp_path: Path) -> Backend:
    info = {"cuda": {"architectures": ["75"], "archs": [{"cc": 75, "sass": True, "ptx": True, "suffix": ""}]}}
    return Backend("cc75", tmp_path / "llcuda_cc75", info)


def test_two_gpus_are_listed_with_their_memory_and_the_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(TWO_T4))
    gpus = gpu.detect_gpus()
    assert [(g.index, g.name, g.memory_total_mb, g.memory_free_mb) for g in gpus] == [
        (0, "Tesla T4", 15360, 15000),
        (1, "Tesla T4", 15360, 14800),
    ]
    cc75 = cc75_backend(tmp_path)
    report = fit.check_gpu_compatibility(installed=[cc75])
    assert report["gpu_count"] == 2
    assert report["memory_total_mb"] == 30720 and report["memory_free_mb"] == 29800
    assert [g["index"] for g in report["gpus"]] == [0, 1]
    assert report["compatible"] is True
    assert "2 GPUs, 30720 MiB in all: llama-server splits a model across them by layers." in report["reason"]

    monkeypatch.setattr(fit, "backends", lambda: [cc75])
    monkeypatch.setattr(cli, "backends", lambda: [cc75])
    monkeypatch.setattr(discovery, "find_llama_server", lambda: tmp_path / "llama-server")
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "GPU 0: Tesla T4, CC 7.5, 15000/15360 MiB free" in out
    assert "GPU 1: Tesla T4, CC 7.5, 14800/15360 MiB free" in out
    assert "GPUs: 2, 29800/30720 MiB free in all" in out


def test_a_second_gpu_the_backend_has_no_code_for_is_named(tmp_path: Path) -> None:
    t4 = gpu.GPU(0, "Tesla T4", (7, 5), 15360, 15000, "550.54.15")
    m940 = gpu.GPU(1, "GeForce 940M", (5, 0), 2048, 2000, "550.54.15")
    report = fit.check_gpu_compatibility(gpus=[t4, m940], installed=[cc75_backend(tmp_path)])
    assert "llcuda-cc75 has no code for GPU 1 GeForce 940M (CC 5.0)" in report["reason"]
    assert "CUDA_VISIBLE_DEVICES" in report["reason"]


# ---------------------------------------------------------------- split keywords


def test_split_keywords_map_to_llama_server_flags() -> None:
    assert placement.split_options("layer", [3, 1], 1, gpu_count=2) == {
        "split_mode": "layer",
        "tensor_split": "3,1",
        "main_gpu": "1",
    }
    assert placement.split_options(None, [0.6, 0.4], None, gpu_count=0) == {"tensor_split": "0.6,0.4"}
    assert placement.split_options("none", None, 0, gpu_count=2) == {"split_mode": "none", "main_gpu": "0"}
    assert placement.split_options(None, None, None, gpu_count=2) == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split_mode": "row"}, "does not support split buffers"),
        ({"split_mode": "tensor"}, "needs flash attention"),
        ({"split_mode": "rows"}, "expected one of 'none', 'layer'"),
        ({"tensor_split": [0, 0]}, "not all 0"),
        ({"tensor_split": [1, -1]}, "must be >= 0"),
        ({"tensor_split": "3,1"}, "a list of proportions"),
        ({"split_mode": "none", "tensor_split": [1, 1]}, "does not apply with split_mode='none'"),
        ({"main_gpu": 2}, "this machine has 2 GPU(s), indices 0-1"),
        ({"main_gpu": -1}, "expected a GPU index"),
    ],
)
def test_bad_split_keywords_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    args = {"split_mode": None, "tensor_split": None, "main_gpu": None, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        placement.split_options(args["split_mode"], args["tensor_split"], args["main_gpu"], gpu_count=2)  # type: ignore[arg-type]


def test_a_model_that_fits_no_combination_of_devices_is_a_clear_error() -> None:
    gpus = [gpu.GPU(i, "Tesla T4", (7, 5), 15360, 15000, "550") for i in range(2)]
    remote = rpc.RemoteHost(
        rpc.Endpoint("10.0.0.2", 50052),
        rpcwire.Version(7, 0, 0),
        (rpcwire.DeviceMemory(8 * 1024 * MIB, 8 * 1024 * MIB),),
    )
    assert placement.memory_shortfall(30_000 * MIB, gpus, [], ram_mb=4000) is None
    why = placement.memory_shortfall(70_000 * MIB, gpus, [remote], ram_mb=12000)
    assert why is not None
    assert "needs at least 70000 MiB" in why and "all devices together have 50192 MiB free" in why
    assert "GPU 0 Tesla T4 15000 MiB, GPU 1 Tesla T4 15000 MiB, RPC 10.0.0.2:50052 8192 MiB, RAM 12000 MiB" in why
    assert placement.memory_shortfall(70_000 * MIB, gpus, [], ram_mb=None) is None


def test_ram_available_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20480000 kB\n")
    assert placement.ram_available_mb(meminfo) == 20000
    assert placement.ram_available_mb(tmp_path / "missing") is None


# ---------------------------------------------------------------- fake RPC servers


class FakeRPC:
    """A TCP server speaking the first messages of ggml's RPC protocol, one client at a time, like the real one.

    mode: ``ok`` (answers HELLO with ``version`` and one device), ``hangup`` (closes on HELLO, like an older
    server), ``silent`` (accepts, never answers: a server busy with another client).
    """

    def __init__(self, mode: str = "ok", version: tuple[int, int, int] = (7, 0, 0)) -> None:
        self.mode, self.version = mode, version
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                if self.mode == "silent":
                    self._stop.wait(10)
                    continue
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        while True:
            head = conn.recv(9, socket.MSG_WAITALL)
            if len(head) < 9:
                return
            cmd, size = head[0], struct.unpack("<Q", head[1:])[0]
            payload = conn.recv(size, socket.MSG_WAITALL) if size else b""
            if self.mode == "hangup":
                return
            if cmd == rpcwire.CMD_HELLO:
                assert len(payload) == rpcwire.CONN_CAPS_SIZE
                reply = bytes([*self.version, 0]) + bytes(rpcwire.CONN_CAPS_SIZE)
            elif cmd == rpcwire.CMD_DEVICE_COUNT:
                reply = struct.pack("<I", 1)
            elif cmd == rpcwire.CMD_GET_DEVICE_MEMORY:
                reply = struct.pack("<QQ", 3000 * MIB, 4096 * MIB)
            else:
                return
            conn.sendall(struct.pack("<Q", len(reply)) + reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=12)
        self.sock.close()


@pytest.fixture
def fake_rpc() -> Iterator[type[FakeRPC]]:
    made: list[FakeRPC] = []

    def make(*args: object, **kwargs: object) -> FakeRPC:
        server = FakeRPC(*args, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in made:
        server.close()


def test_probe_reads_the_version_and_free_memory_then_hangs_up(fake_rpc: type[FakeRPC]) -> None:
    server = fake_rpc()
    host = rpc.probe(server.endpoint, expected=rpcwire.Version(7, 0, 0))
    assert host.version == rpcwire.Version(7, 0, 0) and host.free_mb == 3000
    assert host.devices == (rpcwire.DeviceMemory(3000 * MIB, 4096 * MIB),)
    # the slot is free again at once: a second probe is served
    assert rpc.probe(server.endpoint).version == rpcwire.Version(7, 0, 0)
    assert server.connections == 2


def test_a_server_of_another_protocol_version_is_named_with_both_versions(fake_rpc: type[FakeRPC]) -> None:
    server = fake_rpc(version=(6, 1, 0))
    with pytest.raises(
        RPCProtocolError, match=r"speaks RPC protocol 6\.1\.0, this llcuda's llama-server speaks 7\.0\.0"
    ):
        rpc.probe(server.endpoint, expected=rpcwire.Version(7, 0, 0))
    newer_minor = fake_rpc(version=(7, 1, 0))  # the client refuses a newer minor too (negotiate_hello)
    with pytest.raises(RPCProtocolError, match=r"7\.1\.0"):
        rpc.probe(newer_minor.endpoint, expected=rpcwire.Version(7, 0, 0))
    older_patch = fake_rpc(version=(7, 0, 3))
    assert rpc.probe(older_patch.endpoint, expected=rpcwire.Version(7, 0, 0)).version.patch == 3


def test_a_server_that_hangs_up_on_the_handshake_probably_differs_in_version(fake_rpc: type[FakeRPC]) -> None:
    server = fake_rpc("hangup")
    with pytest.raises(RPCProtocolError, match=r"hung up on the handshake .* probably speaks another RPC protocol"):
        rpc.probe(server.endpoint, expected=rpcwire.Version(7, 0, 0))


def test_a_busy_server_is_reported_as_busy_within_the_timeout(fake_rpc: type[FakeRPC]) -> None:
    server = fake_rpc("silent")
    start = time.monotonic()
    with pytest.raises(
        RPCBusyError, match=f"RPC endpoint {server.endpoint} accepted the connection .* serving another"
    ):
        rpc.probe(server.endpoint, timeout=1.0)
    assert time.monotonic() - start < 3


def test_nothing_listening_is_unreachable_and_names_the_endpoint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RPCUnreachableError, match=f"RPC endpoint 127.0.0.1:{port}: connection refused"):
        rpc.probe(f"127.0.0.1:{port}")


@pytest.mark.parametrize("text", ["nohost", ":50052", "host:", "host:0", "host:70000", "a:1,b:2", "host:port"])
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid RPC endpoint"):
        rpc.parse_endpoint(text)


def test_endpoints_from_a_list_or_a_comma_separated_string() -> None:
    want = [rpc.Endpoint("10.0.0.2", 50052), rpc.Endpoint("gpu-box", 50053)]
    assert rpc.parse_endpoints("10.0.0.2:50052,gpu-box:50053") == want
    assert rpc.parse_endpoints(["10.0.0.2:50052", "gpu-box:50053"]) == want
    with pytest.raises(ValueError, match="listed twice"):
        rpc.parse_endpoints(["a:1", "a:1"])


# ---------------------------------------------------------------- binding


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_needs_no_opt_in(host: str) -> None:
    assert rpc.check_bind(host, 50052, allow_remote=False) is None


@pytest.mark.parametrize("host", ["10.0.0.2", "192.168.1.20", "0.0.0.0", "gpu-box.lan"])
def test_any_other_address_needs_the_opt_in_and_warns(host: str) -> None:
    with pytest.raises(InsecureBindError, match=f"refusing to serve RPC on {host}:50052 without the opt-in"):
        rpc.RPCServer(host, 50052)
    warning = rpc.check_bind(host, 50052, allow_remote=True)
    assert warning is not None and "no authentication" in warning and "ssh -N -L 50052:127.0.0.1:50052" in warning


def test_cli_refuses_a_remote_bind_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rpc-server", "--host", "10.0.0.2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llcuda: error: refusing to serve RPC on 10.0.0.2:50052 without the opt-in")
    assert "Traceback" not in err


def test_cli_refuses_a_bad_port_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rpc-server", "--port", "99999"]) == 1
    err = capsys.readouterr().err
    assert err == "llcuda: error: invalid port 99999: expected 1-65535\n"


def test_no_rpc_server_beside_llama_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServerNotFoundError, match="no ggml-rpc-server beside"):
        rpc.find_rpc_server(tmp_path / "llama-server")


# ---------------------------------------------------------------- the engine's arguments


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ServerManager, Path, Path]:
    argv = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv))
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(TWO_T4))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    return ServerManager(FAKE, log_dir=tmp_path / "logs"), argv, model


def test_load_model_passes_the_split_and_the_checked_rpc_hosts(
    fake_server: tuple[ServerManager, Path, Path], fake_rpc: type[FakeRPC]
) -> None:
    manager, argv_file, model = fake_server
    a, b = fake_rpc(), fake_rpc()
    with InferenceEngine(manager) as engine:
        engine.load_model(
            model, silent=True, split_mode="layer", tensor_split=[3, 1], main_gpu=1, rpc=[a.endpoint, b.endpoint]
        )
        argv = json.loads(argv_file.read_text())["argv"]
        assert argv[argv.index("--split-mode") + 1] == "layer"
        assert argv[argv.index("--tensor-split") + 1] == "3,1"
        assert argv[argv.index("--main-gpu") + 1] == "1"
        assert argv[argv.index("--rpc") + 1] == f"{a.endpoint},{b.endpoint}"
        assert "--n-gpu-layers" not in argv  # gpu_layers=None: llama-server places the layers
        assert [str(h.endpoint) for h in engine.rpc_hosts] == [a.endpoint, b.endpoint]
        assert manager.rpc_hosts == (a.endpoint, b.endpoint)
    assert a.connections == 1 and b.connections == 1  # probed once each, and let go


def test_an_unreachable_rpc_host_fails_before_llama_server_starts(
    fake_server: tuple[ServerManager, Path, Path], fake_rpc: type[FakeRPC]
) -> None:
    manager, argv_file, model = fake_server
    good = fake_rpc()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(RPCUnreachableError, match=f"RPC endpoint {dead}"):
        InferenceEngine(manager).load_model(model, rpc=f"{good.endpoint},{dead}")
    assert not argv_file.exists() and manager.process is None


def test_a_model_bigger_than_every_device_is_refused_before_launch(
    fake_server: tuple[ServerManager, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, argv_file, model = fake_server
    model.write_bytes(b"GGUF" + b"\0" * (3 * MIB))
    monkeypatch.setattr("llcuda.endpoints.ram_available_mb", lambda: 1)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([("GeForce 940M", (5, 0), 2048, 1)]))
    with pytest.raises(ModelTooLargeError, match=r"needs at least 3 MiB .* together have 2 MiB free"):
        InferenceEngine(manager).load_model(model)
    assert not argv_file.exists()


def test_a_lost_rpc_host_is_diagnosed_with_the_endpoints() -> None:
    from llcuda import server

    tail = "llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:612: Remote RPC server crashed or returned malformed response"
    text = server.diagnose(tail, ("10.0.0.2:50052", "10.0.1.2:50052"))
    assert "(10.0.0.2:50052, 10.0.1.2:50052) crashed, was stopped or became unreachable" in text
    assert server.diagnose(tail) == ""  # without RPC hosts it is not about them


def test_serve_and_run_take_the_same_split_and_rpc_flags() -> None:
    for command in (["serve", "m.gguf"], ["run", "m.gguf", "hi"]):
        flags = ["--rpc", "10.0.0.2:50052,10.0.1.2:50052", "--split-mode", "layer", "--tensor-split", "3,1"]
        args = cli.build_parser().parse_args([*command, *flags, "--main-gpu", "1"])
        assert (args.rpc, args.split_mode, args.tensor_split, args.main_gpu) == (
            "10.0.0.2:50052,10.0.1.2:50052",
            "layer",
            [3.0, 1.0],
            1,
        )


def test_cli_split_mode_row_is_one_line_with_the_reason(
    fake_server: tuple[ServerManager, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, argv_file, model = fake_server
    assert cli.main(["run", str(model), "hi", "--split-mode", "row"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llcuda: error: split_mode='row' was removed from llama.cpp's CUDA backend")
    assert "Traceback" not in err and not argv_file.exists()


def test_one_load_probes_the_gpus_once_and_reads_the_installed_backends_once(
    fake_server: tuple[ServerManager, Path, Path], fake_rpc: type[FakeRPC], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery hands the launch a backend with its build info and the GPUs, so a load asks NVML and the installed
    backends (each one's build_info.json) one time each, with or without RPC hosts."""
    from llcuda import endpoints

    manager, _, model = fake_server
    calls = {"gpus": 0, "backends": 0}

    def probe() -> list[gpu.GPU]:
        calls["gpus"] += 1
        return gpu.detect_gpus()

    def installed() -> list[object]:
        calls["backends"] += 1
        return []

    for module in (endpoints, discovery):
        monkeypatch.setattr(module, "detect_gpus", probe)
    monkeypatch.setattr(discovery, "backends", installed)
    with InferenceEngine(manager) as engine:
        engine.load_model(model, silent=True)
        assert calls == {"gpus": 1, "backends": 1}
        engine.load_model(model, silent=True, rpc=[fake_rpc().endpoint])
        assert calls == {"gpus": 2, "backends": 2}
