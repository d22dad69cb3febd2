"""Unit tests of the llcuda runtime against a fake llama-server (tests/fake_llama_server.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import llcuda
from llcuda import cachedir, discovery, fit, gpu, server
from llcuda.engine import InferenceEngine
from llcuda.errors import (
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    PortInUseError,
    ServerNotFoundError,
    ServerStartError,
)
from llcuda.installed import Backend
from llcuda.models import resolve_model
from support import wait_gone

FAKE = Path(__file__).with_name("fake_llama_server.py")
CC = shutil.which("cc") or "/usr/bin/cc"


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    argv = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return argv


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    return path


def manager(tmp_path: Path) -> server.ServerManager:
    return server.ServerManager(FAKE, log_dir=tmp_path / "logs")


# ---------------------------------------------------------------- import


def test_import_does_no_network_io_and_leaves_the_environment_alone() -> None:
    code = (
        "import os, socket\n"
        "def refuse(*a, **k): raise AssertionError('network at import')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "before = dict(os.environ)\n"
        "import llcuda\n"
        "assert dict(os.environ) == before\n"
        "import sys; assert 'huggingface_hub' not in sys.modules and 'pynvml' not in sys.modules\n"
        "print(llcuda.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == llcuda.__version__


# ---------------------------------------------------------------- launch and arguments


def test_launch_maps_options_to_flags_and_binds_loopback(tmp_path: Path, fake_env: Path, model: Path) -> None:
    with manager(tmp_path) as m:
        m.start_server(
            model, gpu_layers=10, ctx_size=512, n_parallel=4, mlock=True, no_mmap=False, lora=["a.gguf", "b.gguf"]
        )
        argv = json.loads(fake_env.read_text())["argv"]
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--port") + 1] == str(m.port)
        assert argv[argv.index("--api-key") + 1] == m.api_key and len(m.api_key or "") >= 24
        assert "--offline" in argv and "--no-ui" in argv
        assert argv[argv.index("--n-gpu-layers") + 1] == "10"
        assert argv[argv.index("--ctx-size") + 1] == "512"
        assert argv[argv.index("--n-parallel") + 1] == "4"
        assert "--mlock" in argv and "--no-mmap" not in argv
        assert argv.count("--lora") == 2
        assert m.check_health()[0] == 200
    assert not m.is_running()


def test_gpu_layers_none_leaves_offload_to_the_server(tmp_path: Path, fake_env: Path, model: Path) -> None:
    with manager(tmp_path) as m:
        m.start_server(model)
        assert "--n-gpu-layers" not in json.loads(fake_env.read_text())["argv"]


def test_each_launch_gets_a_new_key_and_a_free_port(tmp_path: Path, fake_env: Path, model: Path) -> None:
    with manager(tmp_path) as a, manager(tmp_path) as b:
        a.start_server(model)
        b.start_server(model)
        assert a.port != b.port and a.api_key != b.api_key


def test_loading_503_is_progress_not_failure(
    tmp_path: Path, fake_env: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "ok")
    monkeypatch.setenv("FAKE_LOAD_S", "4")
    with manager(tmp_path) as m:
        start = time.monotonic()
        m.start_server(model, stall_timeout=3)  # 4 s of silent 503s: progress, not a stall
        assert time.monotonic() - start >= 3.9


def test_requested_port_in_use_is_refused_before_launch(tmp_path: Path, fake_env: Path, model: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(PortInUseError, match=f"port {s.getsockname()[1]} .* already in use"):
            manager(tmp_path).start_server(model, port=s.getsockname()[1])
    assert not fake_env.exists()


@pytest.mark.parametrize(
    ("output", "diagnosis", "error"),
    [
        (
            "llama-server: error while loading shared libraries: libllama.so: cannot open shared object file",
            "A shared library is missing (libllama.so)",
            ServerStartError,
        ),
        (
            "CUDA error: no kernel image is available for execution on the device",
            "no code for your GPU",
            ServerStartError,
        ),
        (
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 900 MiB: cudaMalloc failed: out of memory\n"
            "llama_model_load_from_file_impl: failed to load model",
            "Out of GPU memory",
            ServerStartError,
        ),
        ("gguf_init_from_file_impl: invalid magic characters", "The file is not a GGUF model", ModelLoadError),
        (
            "llama_model_load: error loading model: unknown model architecture: 'foo'",
            "architecture 'foo' is not supported",
            ModelLoadError,
        ),
        (
            "llama_model_load: error loading model: tensor 'x' data is not within the file bounds",
            "truncated or corrupt",
            ModelLoadError,
        ),
        ("llama_model_load_from_file_impl: failed to load model", "could not load the model", ModelLoadError),
        (
            "couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080",
            "The port is already in use",
            PortInUseError,
        ),
    ],
)
def test_crash_on_start_carries_log_tail_and_diagnosis(
    tmp_path: Path,
    fake_env: Path,
    model: Path,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
    diagnosis: str,
    error: type[ServerStartError],
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", f"exit:{output}")
    m = manager(tmp_path)
    with pytest.raises(ServerStartError) as err:
        m.start_server(model)
    assert type(err.value) is error
    assert "exited with code 1 while starting" in str(err.value)
    assert diagnosis in err.value.diagnosis
    assert output.splitlines()[-1] in err.value.log_tail
    assert m.log_path is not None and output.splitlines()[-1] in m.log_path.read_text()
    assert not m.is_running()


def test_stalled_server_is_stopped_with_a_clear_error(
    tmp_path: Path, fake_env: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "stall")
    m = manager(tmp_path)
    with pytest.raises(ServerStartError, match="printed nothing and answered nothing for 1 s"):
        m.start_server(model, stall_timeout=1)
    assert not m.is_running()


def test_ten_megabytes_of_logs_never_stall_the_engine(
    tmp_path: Path, fake_env: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "spam")
    monkeypatch.setenv("FAKE_SPAM_MB", "11")
    with manager(tmp_path) as m:
        m.start_server(model, timeout=60)
        assert m.log_path is not None
        assert m.log_path.stat().st_size > 10 * 1024 * 1024
        assert len(m.log_tail(10).splitlines()) == 10


def test_engine_round_trip_and_metrics(tmp_path: Path, fake_env: Path, model: Path) -> None:
    with InferenceEngine(manager(tmp_path)) as engine:
        assert engine.load_model(model, silent=True)
        result = engine.infer("hi", max_tokens=3)
        assert result.success and result.text == "ababab" and result.tokens_generated == 3
        assert result.finish_reason == "length" and result.tokens_per_sec == 100.0
        results = engine.batch_infer(["a", "b", "c", "d", "e"], max_tokens=2, max_workers=3)
        assert [r.tokens_generated for r in results] == [2] * 5
        metrics = engine.get_metrics()
        assert metrics["requests"] == 6 and metrics["tokens_generated"] == 13
        assert engine.base_url.endswith("/v1") and engine.api_key
    assert not engine.is_loaded()


# ---------------------------------------------------------------- discovery


@pytest.fixture
def elf_server(tmp_path: Path) -> Path:
    """A real ELF executable that answers --version."""
    src = tmp_path / "fake.c"
    src.write_text('#include <stdio.h>\nint main(void) { puts("version: 1 (fake)"); return 0; }\n')
    exe = tmp_path / "elf" / "llama-server"
    exe.parent.mkdir()
    subprocess.run([CC, "-o", str(exe), str(src)], check=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
    return exe


@pytest.fixture
def clean_discovery(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("LLAMA_SERVER_PATH", "LLAMA_CPP_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setattr(discovery, "SYSTEM_PATHS", ())
    monkeypatch.setattr(discovery, "backends", list)


def test_llama_server_path_wins(clean_discovery: None, elf_server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_SERVER_PATH", str(elf_server))
    monkeypatch.setenv("LLAMA_CPP_DIR", str(elf_server.parent))
    assert discovery.find_llama_server(gpus=[]) == elf_server


@pytest.mark.parametrize(
    ("content", "mode", "why"),
    [
        (b"#!/bin/sh\necho hi\n", 0o755, "is not an ELF executable"),
        (b"\x7fELF....", 0o644, "is not executable"),
    ],
)
def test_llama_server_path_to_a_bad_file_is_a_clear_error(
    clean_discovery: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, mode: int, why: str
) -> None:
    bad = tmp_path / "bad-server"
    bad.write_bytes(content)
    bad.chmod(mode)
    monkeypatch.setenv("LLAMA_SERVER_PATH", str(bad))
    with pytest.raises(ServerNotFoundError, match=f"LLAMA_SERVER_PATH={bad} {why}"):
        discovery.find_llama_server(gpus=[])


@pytest.mark.parametrize("sub", ["bin", "build/bin"])
def test_llama_cpp_dir_bin_and_build_bin(
    clean_discovery: None, elf_server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sub: str
) -> None:
    root = tmp_path / "llama.cpp"
    (root / sub).mkdir(parents=True)
    target = root / sub / "llama-server"
    target.write_bytes(elf_server.read_bytes())
    target.chmod(0o755)
    monkeypatch.setenv("LLAMA_CPP_DIR", str(root))
    assert discovery.find_llama_server(gpus=[]) == target
    env = discovery.child_env(target)
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(target.parent)


def test_user_cache_then_path(
    clean_discovery: None, elf_server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(elf_server.parent))
    assert discovery.find_llama_server(gpus=[]) == elf_server
    cached = cachedir.cache_dir() / "bin" / "llama-server"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(elf_server.read_bytes())
    cached.chmod(0o755)
    assert discovery.find_llama_server(gpus=[]) == cached


def test_nothing_found_lists_every_place_and_the_install_line(
    clean_discovery: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    t4 = gpu.GPU(0, "Tesla T4", (7, 5), 15360, 15000, "535.104")
    with pytest.raises(ServerNotFoundError) as err:
        discovery.find_llama_server(gpus=[t4])
    text = str(err.value)
    assert text.splitlines()[0] == (
        'llama-server not found; for this machine (Tesla T4 (CC 7.5)) install the backend: pip install "llcuda[cc75]"'
    )
    assert "LLAMA_CPP_DIR" in text and "llcuda cache" in text


def parsed(archs: list[str]) -> list[dict[str, object]]:
    """build_info.json's ``cuda.archs`` for CMake arch strings, as the factory writes it (plain "NN" entries)."""
    return [{"cc": int(a), "suffix": "", "sass": True, "ptx": True} for a in archs]


def backend(target: str, archs: list[str], tmp_path: Path) -> Backend:
    return Backend(target, tmp_path / f"llcuda_{target}", {"cuda": {"architectures": archs, "archs": parsed(archs)}})


def test_backends_rank_native_then_ptx_then_cpu(tmp_path: Path) -> None:
    cpu, cc50, cc75 = backend("cpu", [], tmp_path), backend("cc50", ["50"], tmp_path), backend("cc75", ["75"], tmp_path)
    m940 = gpu.GPU(0, "GeForce 940M", (5, 0), 2048, 1900, "470")
    t4 = gpu.GPU(0, "Tesla T4", (7, 5), 15360, 15000, "535")
    h100 = gpu.GPU(0, "H100", (9, 0), 81000, 80000, "580")
    assert fit.rank_backends([cpu, cc50, cc75], m940) == [cc50, cpu]  # cc75 has no code for 5.0
    assert fit.rank_backends([cpu, cc50, cc75], t4) == [cc75, cc50, cpu]
    # both through PTX: the newer PTX first, the backend target_for (and the wheel variants) choose
    assert fit.rank_backends([cpu, cc50, cc75], h100) == [cc75, cc50, cpu]
    assert fit.target_for(h100) == "cc75"
    assert fit.rank_backends([cc75, cpu], None) == [cpu, cc75]


def test_check_gpu_compatibility_keeps_the_old_keys(tmp_path: Path) -> None:
    cc75 = backend("cc75", ["75"], tmp_path)
    m940 = gpu.GPU(0, "GeForce 940M", (5, 0), 2048, 1900, "470.256")
    report = fit.check_gpu_compatibility(gpus=[m940], installed=[cc75])
    assert report["gpu_name"] == "GeForce 940M" and report["compute_capability"] == "5.0"
    assert report["compatible"] is False and report["backends"] == {"cc75": "unsupported"}
    assert 'pip install "llcuda[cc50]"' in report["recommendation"]
    none = fit.check_gpu_compatibility(gpus=[], installed=[])
    assert none["gpu_name"] is None and none["recommended_target"] == "cpu"
    assert "llcuda[cpu]" in none["recommendation"]


FLOORS = {"sass_driver": "525.60.13", "ptx_jit_driver": "550.54.14"}


def cuda12_backend(target: str, archs: list[str], tmp_path: Path) -> Backend:
    info = {"cuda": {"architectures": archs, "archs": parsed(archs), "toolkit_version": "12.4.131"}, "driver": FLOORS}
    return Backend(target, tmp_path / f"llcuda_{target}", info)


@pytest.mark.parametrize(
    ("gpu_", "driver", "problem"),
    [
        (("Tesla T4", (7, 5)), "470.256.02", "its machine code for this GPU needs driver >= 525.60.13"),
        (("Tesla T4", (7, 5)), "525.60.13", None),
        (("H100", (9, 0)), "535.104.05", "JIT-compiling its PTX for this GPU needs driver >= 550.54.14"),
        (("H100", (9, 0)), "580.82.07", None),
    ],
)
def test_a_driver_older_than_the_backends_floor_is_named_with_the_version_needed(
    tmp_path: Path, gpu_: tuple[str, tuple[int, int]], driver: str, problem: str | None
) -> None:
    cc75 = cuda12_backend("cc75", ["75"], tmp_path)
    card = gpu.GPU(0, gpu_[0], gpu_[1], 15360, 15000, driver)
    report = fit.check_gpu_compatibility(gpus=[card], installed=[cc75])
    if problem is None:
        assert report["driver_problems"] == {} and report["compatible"] is True
        return
    text = report["driver_problems"]["cc75"]
    assert text.startswith(f"NVIDIA driver {driver} is too old for llcuda-cc75 (built with CUDA 12.4.131)")
    assert problem in text
    assert report["compatible"] is False
    assert report["reason"] == text
    assert "Update the NVIDIA driver to" in report["recommendation"]


def test_doctor_prints_the_driver_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llcuda import cli

    cc50 = cuda12_backend("cc50", ["50"], tmp_path)
    m940 = gpu.GPU(0, "GeForce 940M", (5, 0), 2048, 1900, "470.256.02")
    monkeypatch.setattr(fit, "detect_gpus", lambda: [m940])
    monkeypatch.setattr(fit, "backends", lambda: [cc50])
    monkeypatch.setattr(discovery, "find_llama_server", lambda: tmp_path / "llama-server")
    cc50.build_info["cuda"]["runtime_lib_dirs"] = ["nvidia/cublas/lib"]
    cc50.build_info["cuda"]["runtime_wheels"] = ["nvidia-cublas-cu12>=12.4.5.8"]
    monkeypatch.setattr(cli, "backends", lambda: [cc50])
    monkeypatch.setattr(sys, "path", [str(tmp_path / "nowhere")])
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "backend llcuda-cc50: native" in out
    assert "NVIDIA driver 470.256.02 is too old for llcuda-cc50" in out and ">= 525.60.13" in out
    assert "llcuda-cc50: NVIDIA's CUDA libraries are not installed (nvidia/cublas/lib)" in out
    assert 'pip install "nvidia-cublas-cu12>=12.4.5.8"' in out


def test_nvidia_wheels_in_another_site_packages_reach_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --user install beside system-wide NVIDIA wheels: the RUNPATH misses them, the import path finds them."""
    site = tmp_path / "venv-site"
    pkg = site / "llcuda_cc75"
    (pkg / "bin").mkdir(parents=True)
    server = pkg / "bin" / "llama-server"
    server.touch()
    dirs = ["nvidia/cuda_runtime/lib", "nvidia/cublas/lib"]
    info = {"cuda": {"architectures": ["75"], "runtime_lib_dirs": dirs}}
    (pkg / "build_info.json").write_text(json.dumps(info))
    other = tmp_path / "user-site"
    for d in dirs:
        (other / d).mkdir(parents=True)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/x")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "empty"), str(other)])
    env = discovery.child_env(server)
    assert env["LD_LIBRARY_PATH"].split(":") == [str((other / d).resolve()) for d in dirs] + ["/opt/x"]
    assert Backend("cc75", pkg, info).cuda_library_dirs() == ([(other / d).resolve() for d in dirs], [])
    # Beside the backend (the usual venv), the RUNPATH finds them: the environment is left alone.
    for d in dirs:
        (site / d).mkdir(parents=True)
    assert discovery.child_env(server)["LD_LIBRARY_PATH"] == "/opt/x"
    # Nowhere: nothing to add, and the backend says which are missing.
    monkeypatch.setattr(sys, "path", [])
    lonely = Backend("cc75", tmp_path / "x" / "llcuda_cc75", info)
    assert lonely.cuda_library_dirs() == ([], dirs)


# ---------------------------------------------------------------- models


def test_bad_model_files_get_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model file not found"):
        resolve_model(tmp_path / "missing.gguf")
    with pytest.raises(ModelError, match="is a directory"):
        resolve_model(tmp_path)
    (tmp_path / "empty.gguf").touch()
    with pytest.raises(ModelError, match=r"is empty \(0 bytes\)"):
        resolve_model(tmp_path / "empty.gguf")
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04zip")
    with pytest.raises(ModelError, match="is not a GGUF model"):
        resolve_model(tmp_path / "x.gguf")


@pytest.mark.parametrize("spec", ["../../etc:passwd.gguf", "owner/repo:../../x.gguf", "owner/repo:/abs.gguf"])
def test_hub_specs_cannot_escape_the_cache(spec: str) -> None:
    with pytest.raises(ModelError, match="invalid"):
        resolve_model(spec)


def test_offline_and_not_cached_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        resolve_model("unsloth/gemma-3-1b-it-GGUF:gemma-3-1b-it-Q4_K_M.gguf")


# ---------------------------------------------------------------- CLI


def test_cli_user_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "LLAMA_SERVER_PATH": str(tmp_path / "nope")}
    out = subprocess.run(
        [sys.executable, "-m", "llcuda", "run", str(tmp_path / "m.gguf"), "hi"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 1
    assert out.stderr.startswith("llcuda: error: model file not found")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_ctrl_c_during_load_model_leaves_nothing_running(tmp_path: Path, fake_env: Path, model: Path) -> None:
    code = (
        "import sys, pathlib, llcuda\n"
        "from llcuda.server import ServerManager\n"
        f"e = llcuda.InferenceEngine(ServerManager({str(FAKE)!r}, log_dir=pathlib.Path({str(tmp_path)!r})))\n"
        "try:\n"
        f"    e.load_model({str(model)!r}, silent=True)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(42)\n"
    )
    env = {**os.environ, "FAKE_LOAD_S": "60", "PYTHONPATH": str(Path(llcuda.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 30
    while not fake_env.exists() or not fake_env.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server_pid = json.loads(fake_env.read_text())["pid"]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 42
    wait_gone(server_pid, 5)  # the server does not outlive an interrupted load_model


def test_alias_resolves_through_the_registry(monkeypatch: pytest.MonkeyPatch, model: Path) -> None:
    from llcuda import models

    seen: list[tuple[str, str]] = []

    def fake_download(repo: str, filename: str) -> Path:
        seen.append((repo, filename))
        return model

    monkeypatch.setattr(models, "_download", fake_download)
    assert resolve_model("gemma-3-1b-it") == model
    assert seen == [("unsloth/gemma-3-1b-it-GGUF", "gemma-3-1b-it-Q4_K_M.gguf")]
    with pytest.raises(ModelNotFoundError, match="not a file, a known alias"):
        resolve_model("no-such-alias")


def test_nvidia_smi_is_the_fallback_when_nvml_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, Tesla T4, 7.5, 15360, 15101, 535.104.05'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(gpu, "_from_nvml", lambda: None)
    (t4,) = gpu.detect_gpus()
    assert (t4.name, t4.compute_capability, t4.memory_free_mb, t4.driver_version) == (
        "Tesla T4",
        (7, 5),
        15101,
        "535.104.05",
    )
    assert fit.check_gpu_compatibility(installed=[])["recommended_target"] == "cc75"


def test_backends_stays_the_function_once_every_submodule_is_loaded() -> None:
    import llcuda.cli
    import llcuda.discovery
    import llcuda.gpu
    import llcuda.installed

    assert llcuda.backends is llcuda.installed.backends


def test_backends_names_the_one_that_runs_when_a_variant_and_an_extra_bring_two(
    clean_discovery: None,
    elf_server: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from llcuda import cli

    found = []
    for target, archs in (("cc50", ["50"]), ("cc75", ["75"])):
        b = cuda12_backend(target, archs, tmp_path)
        b.build_info["llama_cpp"] = {"tag": "b1"}
        b.bin_dir.mkdir(parents=True)
        shutil.copy2(elf_server, b.llama_server)
        found.append(b)
    monkeypatch.setattr(discovery, "backends", lambda: found)
    monkeypatch.setattr(cli, "backends", lambda: found)
    h100 = gpu.GPU(0, "H100", (9, 0), 81000, 80000, "580.82.07")
    monkeypatch.setattr(gpu, "detect_gpus", lambda: [h100])
    assert cli.main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heads = [line for line in lines if line.startswith("llcuda-")]
    assert [line.endswith("<- runs") for line in heads] == [False, True], lines  # cc75's newer PTX, as doctor says
    assert lines[1:] == [
        "  PTX for this GPU (JIT at first start); llcuda-cc75 ranks first",
        heads[1],
        "  runs: PTX for this GPU (JIT at first start)",
    ]
    assert cli.main(["backends", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {b["target"]: b["runs"] for b in listed} == {"cc50": False, "cc75": True}
    assert {b["target"]: b["why"] for b in listed}["cc75"] == "runs: PTX for this GPU (JIT at first start)"
    m940 = gpu.GPU(0, "GeForce 940M", (5, 0), 2048, 1900, "580.82.07")
    monkeypatch.setattr(gpu, "detect_gpus", lambda: [m940])
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("llama-server  <- runs") and out[1] == "  runs: machine code for this GPU"
    assert out[3] == "  has no code for this GPU"
