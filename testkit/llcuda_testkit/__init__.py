"""What the tests and the benchmarks share: tiny random-weight GGUF models (``tinymodel``, written with ``gguf``)
and a llama-server started and stopped around a block (``serverproc``). Never shipped in a wheel."""
