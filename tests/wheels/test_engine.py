"""What notebooks and apps build on, against the real llama-server of the cpu wheel and tiny random-weight models:
embeddings, tokens, streamed chat, one set of sampling keywords with metrics, structured output, attaching to a
running server, quick_infer, and the errors of each."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llcuda
from llcuda import EngineStateError, InferenceEngine, RequestError, ServerCrashedError, ServerStartError
from llcuda_testkit.tinymodel import write_tiny_llama
from support import without_network

pytestmark = pytest.mark.usefixtures("cpu_backend")

ANSWER = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["answer", "n"],
    "additionalProperties": False,
}
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> Iterator[InferenceEngine]:
    eng = InferenceEngine()
    eng.load_model(tiny_gguf, ctx_size=512, silent=True, parallel=2, threads=2)
    yield eng
    eng.unload_model()


@pytest.fixture(scope="module")
def embedder(tiny_gguf: Path) -> Iterator[InferenceEngine]:
    eng = InferenceEngine()
    eng.load_model(tiny_gguf, ctx_size=512, silent=True, threads=2, embeddings=True)
    yield eng
    eng.unload_model()


def _cmdline(engine: InferenceEngine) -> list[str]:
    assert engine.server.process is not None
    return Path(f"/proc/{engine.server.process.pid}/cmdline").read_bytes().decode().split("\0")


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


# ---------------------------------------------------------------- embeddings


def test_embeddings_of_a_model_without_pooling_get_mean_pooling(embedder: InferenceEngine) -> None:
    args = _cmdline(embedder)
    assert "--embeddings" in args and args[args.index("--pooling") + 1] == "mean"
    vectors = embedder.embed(["hello", "world", "a longer text, with more tokens"])
    assert len(vectors) == 3 and {len(v) for v in vectors} == {64}  # n_embd of the tiny model
    assert all(abs(_norm(v) - 1.0) < 1e-4 for v in vectors)
    assert vectors[0] != vectors[1]
    assert vectors[0] == pytest.approx(embedder.embed("hello")[0], abs=1e-5)  # a str is one text
    raw = embedder.embed("hello", normalize=False)[0]
    assert abs(_norm(raw) - 1.0) > 1e-3
    assert [x / _norm(raw) for x in raw] == pytest.approx(vectors[0], abs=1e-4)


def test_more_texts_than_one_batch_keep_their_order(embedder: InferenceEngine) -> None:
    texts = [f"text number {i}" for i in range(70)]  # three requests of at most 32
    vectors = embedder.embed(texts)
    assert len(vectors) == 70
    assert vectors[45] == pytest.approx(embedder.embed(texts[45])[0], abs=1e-5)


def test_the_openai_client_embeds_through_the_engine(embedder: InferenceEngine) -> None:
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=embedder.base_url, api_key=embedder.api_key) as client:
        got = client.embeddings.create(model="tiny", input=["hello", "world"])
        assert [d.index for d in got.data] == [0, 1]
        assert got.data[0].embedding == pytest.approx(embedder.embed("hello")[0], abs=1e-4)


def test_an_explicit_pooling_is_passed_through(tiny_gguf: Path) -> None:
    with InferenceEngine() as eng:
        eng.load_model(tiny_gguf, ctx_size=256, silent=True, threads=2, embeddings=True, pooling="last")
        args = _cmdline(eng)
        assert args[args.index("--pooling") + 1] == "last"
        assert len(eng.embed("hello")[0]) == 64


def test_an_embeddings_engine_does_not_generate_and_a_generating_one_does_not_embed(
    embedder: InferenceEngine, engine: InferenceEngine
) -> None:
    for call in (
        lambda: embedder.infer("Hello"),
        lambda: embedder.chat(HI),
        lambda: list(embedder.chat_stream(HI)),
        lambda: list(embedder.infer_stream("Hello")),
    ):
        with pytest.raises(EngineStateError, match="loaded with embeddings=True, and llama-server then serves"):
            call()
    with pytest.raises(
        EngineStateError, match=r"without embeddings: load it with engine.load_model\(model, embeddings"
    ):
        engine.embed("hello")
    with pytest.raises(ValueError, match="pooling= applies to embeddings"):
        InferenceEngine().load_model(embedder.model_path or "", pooling="mean")


def test_llcuda_serve_embeddings_with_the_openai_client(tiny_gguf: Path) -> None:
    openai = pytest.importorskip("openai")
    cmd = [sys.executable, "-m", "llcuda", "serve", str(tiny_gguf), "--embeddings", "--ctx-size", "256"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            first, key = proc.stdout.readline(), proc.stdout.readline()
            assert first.startswith("serving embeddings of "), (first, proc.stderr)
            with openai.OpenAI(base_url=first.split(" at ")[1].strip(), api_key=key.split(": ")[1].strip()) as client:
                served = client.embeddings.create(model="tiny", input="hello").data[0].embedding
                assert len(served) == 64
            # the line it prints attaches another engine (here: this process) to that server
            attach = proc.stdout.readline()
            m = re.search(r"InferenceEngine\(server_url='([^']+)', api_key='([^']+)'\)", attach)
            assert m, attach
            other = InferenceEngine(server_url=m.group(1), api_key=m.group(2))
            assert other.is_loaded() and other.embed("hello")[0] == pytest.approx(served, abs=1e-5)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


# ---------------------------------------------------------------- tokens


def test_tokenize_and_detokenize_round_trip(engine: InferenceEngine) -> None:
    ids = engine.tokenize("Hello world")
    assert len(ids) == len("Hello world") and all(isinstance(i, int) for i in ids)
    assert engine.detokenize(ids) == "Hello world"
    result = engine.infer("Hello world", max_tokens=2, temperature=0)
    assert result.prompt_tokens == len(ids) + 1  # and BOS
    assert engine.chat(HI, max_tokens=2).prompt_tokens > len(engine.tokenize("Hi"))  # the chat template's tokens


# ---------------------------------------------------------------- streamed chat, sampling, metrics


def test_chat_stream_yields_what_chat_answers(engine: InferenceEngine) -> None:
    chunks = list(engine.chat_stream(HI, max_tokens=8, temperature=0, seed=3))
    assert len(chunks) >= 2
    assert "".join(chunks) == engine.chat(HI, max_tokens=8, temperature=0, seed=3).text


def test_chat_honours_stop(engine: InferenceEngine) -> None:
    free = engine.chat(HI, max_tokens=24, temperature=0).text
    # random weights print arbitrary bytes: stop at the first printable ASCII character that is new in the text
    at = next((i for i, c in enumerate(free) if i and c.isascii() and c.isprintable() and c not in free[:i]), None)
    assert at is not None, f"no printable character to stop at in {free!r}"
    stopped = engine.chat(HI, max_tokens=24, temperature=0, stop=[free[at]])
    assert stopped.text == free[:at] and stopped.finish_reason == "stop"


def test_one_set_of_sampling_keywords_and_every_call_in_the_metrics(engine: InferenceEngine) -> None:
    kw: dict[str, Any] = {"max_tokens": 4, "temperature": 0.5, "top_p": 0.8, "top_k": 20, "min_p": 0.05}
    kw.update(repeat_penalty=1.1, seed=7, stop=["\n\n"])
    engine.reset_metrics()
    assert engine.get_metrics()["requests"] == 0
    assert engine.infer("Hello", **kw).success
    assert "".join(engine.infer_stream("Hello", **kw))
    assert engine.chat(HI, **kw).success
    assert "".join(engine.chat_stream(HI, **kw))
    assert all(r.success for r in engine.batch_infer(["a", "b"], **kw))
    metrics = engine.get_metrics()
    assert metrics["requests"] == 6 and metrics["failed_requests"] == 0
    assert metrics["tokens_generated"] >= 6 and metrics["mean_latency_ms"] > 0
    wrong = "unknown sampling keyword temprature; the keywords are: max_tokens"
    with pytest.raises(TypeError, match=wrong):
        engine.infer("a", temprature=0.1)
    with pytest.raises(TypeError, match=wrong):
        list(engine.infer_stream("a", temprature=0.1))
    with pytest.raises(TypeError, match=wrong):
        engine.chat(HI, temprature=0.1)
    with pytest.raises(TypeError, match=wrong):
        list(engine.chat_stream(HI, temprature=0.1))
    with pytest.raises(TypeError, match=wrong):
        engine.batch_infer(["a"], temprature=0.1)


def test_a_failed_chat_is_recorded_with_its_latency(engine: InferenceEngine) -> None:
    engine.reset_metrics()
    bad = engine.chat(HI, max_tokens=2, json_schema={"type": "no-such-type"})
    assert not bad.success and bad.error_message and "HTTP 4" in bad.error_message
    assert bad.latency_ms > 0
    assert engine.get_metrics()["failed_requests"] == 1 and engine.get_metrics()["mean_latency_ms"] > 0


# ---------------------------------------------------------------- structured output


@pytest.mark.parametrize("how", ["infer", "chat"])
def test_json_schema_constrains_the_answer(engine: InferenceEngine, how: str) -> None:
    for prompt in ("Answer:", "Is it?"):
        if how == "infer":
            result = engine.infer(prompt, max_tokens=256, temperature=0.8, seed=11, json_schema=ANSWER)
        else:
            result = engine.chat(
                [{"role": "user", "content": prompt}], max_tokens=256, temperature=0.8, seed=11, json_schema=ANSWER
            )
        assert result.success, result.error_message
        value = json.loads(result.text)
        assert set(value) == {"answer", "n"} and value["answer"] in ("yes", "no") and 0 <= value["n"] <= 9


def test_a_schema_the_server_rejects_is_a_failed_result_with_its_reason(engine: InferenceEngine) -> None:
    for result in (
        engine.infer("x", json_schema={"type": "no-such-type"}),
        engine.chat(HI, json_schema={"type": "no-such-type"}),
    ):
        assert not result.success
        assert result.error_message and "unrecognized type no-such-type" in result.error_message


# ---------------------------------------------------------------- attaching


def test_attach_to_a_running_server_and_detach_without_stopping_it(engine: InferenceEngine) -> None:
    with InferenceEngine(server_url=engine.base_url, api_key=engine.api_key) as attached:
        assert attached.attached and attached.is_loaded()
        assert (
            attached.infer("Hello", max_tokens=4, temperature=0).text
            == engine.infer("Hello", max_tokens=4, temperature=0).text
        )
        assert attached.tokenize("Hi") == engine.tokenize("Hi")
        with pytest.raises(EngineStateError, match=f"attached to the llama-server at {engine.server_url}"):
            attached.load_model("other.gguf")
    assert not attached.is_loaded()  # detached
    with pytest.raises(EngineStateError, match="no model loaded"):
        attached.infer("Hello")
    assert engine.is_loaded() and engine.infer("Hello", max_tokens=2).success  # the server still runs
    wrong_key = InferenceEngine(server_url=engine.server_url, api_key="wrong")
    refused = wrong_key.infer("Hello", max_tokens=2)
    assert not refused.success and refused.error_message and "HTTP 401" in refused.error_message


@pytest.fixture(scope="module")
def slow_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model big enough that 3000 greedy tokens take seconds (measured: 2.9 s), so a kill lands mid-stream;
    greedy, it runs to the length limit without an end-of-text."""
    return write_tiny_llama(tmp_path_factory.mktemp("slow") / "slow.gguf", n_layer=4, n_embd=256, n_ff=1024, n_ctx=4096)


def test_a_server_gone_mid_request_is_a_crash_naming_its_url(slow_gguf: Path) -> None:
    owner = InferenceEngine()
    owner.load_model(slow_gguf, ctx_size=4096, silent=True, threads=1)
    attached = InferenceEngine(server_url=owner.server_url, api_key=owner.api_key)
    stream = attached.chat_stream(HI, max_tokens=3000, temperature=0)
    assert next(stream)
    owner.server.process.kill()  # type: ignore[union-attr]
    with pytest.raises(ServerCrashedError) as err:
        list(stream)
    assert f"the llama-server at {owner.server_url} went away during a request" in str(err.value)
    assert err.value.log_tail == "" and "exit" not in str(err.value)
    assert not attached.is_loaded()
    owner.unload_model()


def test_a_chat_stream_cut_by_a_dying_own_server_raises_the_crash(slow_gguf: Path) -> None:
    with InferenceEngine() as own:
        own.load_model(slow_gguf, ctx_size=4096, silent=True, threads=1)
        stream = own.chat_stream(HI, max_tokens=3000, temperature=0)
        assert next(stream)
        os.kill(own.server.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        with pytest.raises(ServerCrashedError, match="llama-server exited with code -9 during a request"):
            list(stream)
        assert own.get_metrics()["failed_requests"] == 1


# ---------------------------------------------------------------- quick_infer and unreachable servers


def test_quick_infer_loads_answers_and_stops(tiny_gguf: Path, tmp_path: Path) -> None:
    model = tmp_path / "quick.gguf"  # its own path: pgrep sees only this server
    model.write_bytes(tiny_gguf.read_bytes())
    text = llcuda.quick_infer(model, "Hello", max_tokens=4, temperature=0, ctx_size=256)
    assert isinstance(text, str) and text
    leftover = subprocess.run(["pgrep", "-f", f"llama-server --model {model}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_a_listening_server_that_nothing_reaches_is_named_within_seconds(tiny_gguf: Path, tmp_path: Path) -> None:
    """A network namespace with its loopback down: llama-server binds and says it listens, nothing connects."""
    script = tmp_path / "load.py"
    script.write_text(
        textwrap.dedent(f"""
            import sys, time
            import llcuda
            start = time.monotonic()
            try:
                llcuda.InferenceEngine().load_model({str(tiny_gguf)!r}, ctx_size=256, silent=True, threads=2)
            except llcuda.ServerStartError as err:
                print(f"{{time.monotonic() - start:.1f}}", str(err).splitlines()[0])
                sys.exit(0)
            sys.exit("loaded?")
        """)
    )
    out = subprocess.run(without_network([sys.executable, str(script)]), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, message = out.stdout.split(" ", 1)
    assert float(seconds) < 10, out.stdout
    assert "llama-server says it is listening on http://127.0.0.1:" in message
    assert "the loopback interface is probably down" in message
    assert issubclass(ServerStartError, llcuda.LLCudaError) and issubclass(RequestError, llcuda.LLCudaError)
