"""Pack what the GPU benchmark carries to a lent GPU machine (no network there): ``.device/``.

    python benchmarks/gpu/pack.py            # writes .device/llama.cpp.tar.xz and .device/whl/

- the pinned llama.cpp tree (the one the wheel factory builds), trimmed to what the build reads: no docs,
  models, tests, examples, web UI or other GPU backends' sources; xz-packed, with its sha256 recorded;
- the pure-Python wheels the benchmark needs there and that machine lacks (gguf, platformdirs).

``.device/`` is git-ignored; the device tool's ``carry`` takes it along.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from llcuda_factory import source
from llcuda_factory.project import llama_cpp_pin
from llcuda_factory.wheelhouse import pip_download

ROOT = Path(__file__).resolve().parents[2]

OUT = ROOT / ".device"
DROP_TOP = {
    "docs",
    "models",
    "media",
    "tests",
    "examples",
    "pocs",
    "benches",
    "gguf-py",
    "conversion",
    "skills",
    "app",
    ".github",
    ".devops",
}
DROP = {
    *(
        f"ggml/src/ggml-{b}"
        for b in (
            "vulkan",
            "sycl",
            "metal",
            "opencl",
            "hexagon",
            "webgpu",
            "openvino",
            "et",
            "cann",
            "musa",
            "hip",
            "rpc",
            "zdnn",
            "kompute",
            "blas",
            "virtgpu",
            "zendnn",
        )
    )
}
WHEELS = ["gguf==0.19.0", "platformdirs>=4"]


def _keep(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] not in DROP_TOP and not any(rel == d or rel.startswith(d + "/") for d in DROP)


def pack_tree(tree: Path, dest: Path) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz", preset=6) as tar:
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree).as_posix()
            if path.is_file() and _keep(rel):
                tar.add(path, arcname=f"llama.cpp/{rel}", recursive=False)
    dest.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main() -> None:
    OUT.mkdir(exist_ok=True)
    tree = source.resolve()
    digest = pack_tree(tree, OUT / "llama.cpp.tar.xz")
    pin = llama_cpp_pin()
    (OUT / "llama.cpp.tar.xz.sha256").write_text(f"{digest}  llama.cpp.tar.xz  # llama.cpp {pin.tag} {pin.commit}\n")
    whl = OUT / "whl"
    whl.mkdir(exist_ok=True)
    pip_download(["--no-deps", *WHEELS], whl)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {size / 2**20:.1f} MiB (llama.cpp {pin.tag}, tree sha256 {digest[:16]}…)")


if __name__ == "__main__":
    main()
