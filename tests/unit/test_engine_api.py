"""The engine's API without a server: one set of sampling keywords, the errors of a state, the exports."""

from __future__ import annotations

import inspect

import pytest

import llcuda
from llcuda import errors
from llcuda.engine import InferenceEngine, Sampling


def test_sampling_maps_to_each_endpoints_names() -> None:
    s = Sampling.of({"max_tokens": 9, "temperature": 0.1, "top_k": 5, "min_p": 0.2, "seed": 4, "stop": ("x",)})
    common = {"temperature": 0.1, "top_p": 0.9, "top_k": 5, "min_p": 0.2, "seed": 4, "stop": ["x"]}
    assert s.completion() == {"n_predict": 9, **common}
    assert s.chat() == {"max_tokens": 9, **common}
    assert "repeat_penalty" not in s.chat()  # None leaves the server's default
    with pytest.raises(TypeError, match="unknown sampling keyword n_predict, temprature; the keywords are: max_tokens"):
        Sampling.of({"temprature": 1.0, "n_predict": 3})


def test_every_generation_call_takes_the_same_sampling_keywords() -> None:
    for name in ("infer", "infer_stream", "chat", "chat_stream", "batch_infer"):
        params = inspect.signature(getattr(InferenceEngine, name)).parameters
        assert params["sampling"].kind is inspect.Parameter.VAR_KEYWORD, name
        assert not {f for f in Sampling.__dataclass_fields__} & set(params), name  # never copied into a signature


def test_an_engine_without_a_model_raises_engine_state_errors() -> None:
    engine = InferenceEngine()
    for call in (
        lambda: engine.infer("x"),
        lambda: engine.chat([{"role": "user", "content": "x"}]),
        lambda: engine.tokenize("x"),
        lambda: engine.api_key,
        lambda: engine.base_url,
    ):
        with pytest.raises(llcuda.EngineStateError, match="no model loaded"):
            call()
    with pytest.raises(llcuda.EngineStateError, match="no model is loaded without embeddings"):
        engine.embed("x")
    assert issubclass(llcuda.EngineStateError, RuntimeError)  # code that caught the old RuntimeError still does
    with pytest.raises(ValueError, match="not both"):
        InferenceEngine(llcuda.ServerManager(), server_url="http://127.0.0.1:1")


def test_every_error_class_is_exported() -> None:
    classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, llcuda.LLCudaError) and obj.__module__ == errors.__name__
    }
    assert len(classes) >= 11
    assert classes <= set(llcuda.__all__)
    assert all(getattr(llcuda, name) is getattr(errors, name) for name in classes)
