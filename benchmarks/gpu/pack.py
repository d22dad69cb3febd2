"""Pack what the GPU benchmark carries to a lent GPU machine (no network there): ``.device/``.

    python benchmarks/gpu/pack.py                    # writes .device/llama.cpp.tar.xz and .device/whl/
    python benchmarks/gpu/pack.py --wheel cc75-cu13  # and the built wheels: llcuda and llcuda-cc75-cu13

- the pinned llama.cpp tree (the one the wheel factory builds), trimmed to what the build reads: no docs,
  models, tests, examples, web UI or other GPU backends' sources; xz-packed, with its sha256 recorded;
- the pure-Python wheels the benchmark needs there and that machine lacks (gguf, platformdirs, and for the
  runtime packaging and nvidia-ml-py);
- with ``--wheel TARGET``, that backend wheel from wheelhouse/ exactly as it ships and the llcuda wheel beside it:
  ``TARGET=... WHEEL=1 bash benchmarks/gpu/device_bench.sh`` runs them, not a build. NVIDIA's CUDA wheels are not
  carried: the GPU machine has its own.

``.device/`` is git-ignored; the device tool's ``carry`` takes it along (64 MiB per call at most: checked here).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

from llcuda_factory import source
from llcuda_factory.project import llama_cpp_pin
from llcuda_factory.targets import get_target
from llcuda_factory.variants import is_variant_file
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
WHEELS = ["gguf==0.19.0", "platformdirs>=4", "packaging>=22", "nvidia-ml-py>=12"]
CARRY_LIMIT = 64 * 2**20  # what the device tool takes along per call


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


def carry_wheels(target: str, wheelhouse: Path, dest: Path) -> list[Path]:
    """The backend wheel of ``target`` and the plain llcuda wheel, copied from ``wheelhouse`` as built."""
    package = get_target(target).package
    found = []
    for pattern in (f"{package}-*.whl", "llcuda-*-none-any.whl"):
        wheels = sorted(p for p in wheelhouse.glob(pattern) if not is_variant_file(p))
        if not wheels:
            raise SystemExit(f"no {pattern} in {wheelhouse}: `nox -s wheels -- {target}` first")
        found.append(Path(shutil.copy2(wheels[-1], dest / wheels[-1].name)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", default=None, metavar="TARGET", help="carry this target's built wheel too")
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "wheelhouse")
    args = parser.parse_args()
    shutil.rmtree(OUT / "whl", ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    tree = source.resolve()
    digest = pack_tree(tree, OUT / "llama.cpp.tar.xz")
    pin = llama_cpp_pin()
    (OUT / "llama.cpp.tar.xz.sha256").write_text(f"{digest}  llama.cpp.tar.xz  # llama.cpp {pin.tag} {pin.commit}\n")
    whl = OUT / "whl"
    whl.mkdir(exist_ok=True)
    pip_download(["--no-deps", *WHEELS], whl)
    if args.wheel:
        for wheel in carry_wheels(args.wheel, args.wheelhouse, whl):
            print(f"carried: {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB)")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {size / 2**20:.1f} MiB (llama.cpp {pin.tag}, tree sha256 {digest[:16]}…)")
    if size > CARRY_LIMIT:
        raise SystemExit(
            f"{OUT} is {size / 2**20:.1f} MiB, over the {CARRY_LIMIT / 2**20:.0f} MiB a device call carries"
        )


if __name__ == "__main__":
    main()
