"""End-to-end tests of the runtime with the real llama-server of the installed ``llcuda-cpu`` wheel and a
tiny GGUF written by the tests (``nox -s tests`` installs the wheel from wheelhouse/)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import llcuda
from llcuda.engine import InferenceEngine
from llcuda.errors import ServerCrashedError
from llcuda_testkit.tinymodel import write_tiny_llama
from support import wait_gone

pytestmark = pytest.mark.usefixtures("cpu_backend")


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> Iterator[InferenceEngine]:
    eng = InferenceEngine()
    eng.load_model(tiny_gguf, ctx_size=512, silent=True, parallel=4, threads=2)
    yield eng
    eng.unload_model()


def test_the_seeds_quick_test_works_with_a_local_path(tiny_gguf: Path, tmp_path: Path) -> None:
    script = tmp_path / "quick.py"
    script.write_text(
        textwrap.dedent(f"""
        import llcuda

        engine = llcuda.InferenceEngine()
        engine.load_model(
            "{tiny_gguf}",
            gpu_layers=15,
            ctx_size=1024,
            silent=False
        )

        result = engine.infer("What is 2+2?", max_tokens=50)
        print(result.text)
        print("TOKENS", result.tokens_generated, result.success)
    """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "llama_server: listening on http://127.0.0.1:" in out.stderr  # silent=False shows the server's output
    tokens, success = out.stdout.strip().splitlines()[-1].split()[1:]
    assert int(tokens) > 0 and success == "True"


def test_infer_stream_chat_batch(engine: InferenceEngine) -> None:
    result = engine.infer("Hello", max_tokens=8, temperature=0, seed=1)
    assert result.success and result.tokens_generated > 0 and result.latency_ms > 0 and result.tokens_per_sec > 0
    assert result.finish_reason in ("length", "stop")
    again = engine.infer("Hello", max_tokens=8, temperature=0, seed=1)
    assert again.text == result.text  # greedy is deterministic
    chunks = list(engine.infer_stream("Hello", max_tokens=8, temperature=0, seed=1))
    assert "".join(chunks) == result.text
    chat = engine.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert chat.success and chat.tokens_generated > 0
    batch = engine.batch_infer([f"prompt {i}" for i in range(8)], max_tokens=4, max_workers=4)
    assert len(batch) == 8 and all(r.success and r.tokens_generated > 0 for r in batch)
    assert engine.get_metrics()["requests"] >= 11


def test_requests_without_the_launch_key_get_401(engine: InferenceEngine) -> None:
    req = urllib.request.Request(
        engine.server_url + "/completion", data=b'{"prompt": "x"}', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    with err.value:  # the error holds the response's socket
        assert err.value.code == 401


def test_openai_client_talks_to_the_engine(engine: InferenceEngine) -> None:
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=engine.base_url, api_key=engine.api_key) as client:
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert reply.choices[0].message.role == "assistant"
        assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_server_killed_mid_stream_raises_and_the_engine_reloads(tiny_gguf: Path, tmp_path: Path) -> None:
    # A model big enough that 3000 tokens take seconds, so the kill lands mid-stream.
    slow = write_tiny_llama(tmp_path / "slow.gguf", n_layer=4, n_embd=256, n_ff=1024, n_ctx=4096)
    with InferenceEngine() as eng:
        eng.load_model(slow, ctx_size=4096, silent=True, threads=1)
        assert eng.server.process is not None
        stream = eng.infer_stream("Hello", max_tokens=3000, temperature=0)
        next(stream)
        eng.server.process.send_signal(signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(ServerCrashedError) as err:
            for _ in stream:
                pass
        assert time.monotonic() - start < 2
        assert "last server output" in str(err.value)
        eng.load_model(tiny_gguf, ctx_size=512, silent=True)
        assert eng.infer("Hi", max_tokens=2).success


def test_server_dies_with_its_python_parent(tiny_gguf: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = textwrap.dedent(f"""
        import time, llcuda
        e = llcuda.InferenceEngine()
        e.load_model("{tiny_gguf}", ctx_size=256, silent=True)
        open("{pid_file}", "w").write(str(e.server.process.pid))
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.2)
    child = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    wait_gone(child, 5)  # llama-server does not outlive its SIGKILLed parent


def test_cli_backends_doctor_and_run(tiny_gguf: Path) -> None:
    cli = [sys.executable, "-m", "llcuda"]
    out = subprocess.run([*cli, "backends", "--json"], capture_output=True, text=True, check=True)
    listed = {b["target"]: b for b in json.loads(out.stdout)}
    assert listed["cpu"]["runs"] is True  # no GPU here: the cpu backend is the one that runs
    spec = importlib.util.find_spec("llcuda_cpu")
    assert spec is not None and spec.submodule_search_locations is not None
    assert listed["cpu"]["path"] == str(Path(spec.submodule_search_locations[0]))
    doctor = subprocess.run([*cli, "doctor"], capture_output=True, text=True, check=True)
    assert "backend llcuda-cpu: cpu" in doctor.stdout and "llama-server: " in doctor.stdout
    run = subprocess.run(
        [*cli, "run", str(tiny_gguf), "Hello", "--max-tokens", "6", "--temperature", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    # Greedy decoding: the command prints exactly what the engine streams for the same model, prompt and settings.
    with InferenceEngine() as engine:
        engine.load_model(tiny_gguf, silent=True)
        expected = "".join(engine.infer_stream("Hello", max_tokens=6, temperature=0))
    assert expected
    assert run.stdout == expected + "\n"


def test_cli_serve_with_the_openai_client_and_ctrl_c(tiny_gguf: Path, tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    model = tmp_path / "served model ünïcode.gguf"  # its own path (so pgrep sees only this server), spaces too
    model.write_bytes(tiny_gguf.read_bytes())
    proc = subprocess.Popen(
        [sys.executable, "-m", "llcuda", "serve", str(model), "--ctx-size", "512"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with proc:  # closes the pipes, whatever happens
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            key = proc.stdout.readline()
            assert first.startswith("serving ") and key.startswith("api key: "), (first, proc.stderr)
            with openai.OpenAI(base_url=first.split(" at ")[1].strip(), api_key=key.split(": ")[1].strip()) as client:
                reply = client.completions.create(model="tiny", prompt="Hello", max_tokens=3)
                assert reply.choices[0].text is not None
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=30) == 0
                assert "stopped" in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    leftover = subprocess.run(["pgrep", "-f", f"llama-server --model {model}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_bad_models_leave_no_server_running(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(llcuda.ModelError) as err:
        InferenceEngine().load_model(truncated, silent=True)
    assert f"llama-server could not load {truncated}" in str(err.value)
    assert subprocess.run(["pgrep", "-f", str(truncated)], capture_output=True).stdout == b""
