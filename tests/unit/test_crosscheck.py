"""`python -m llcuda_factory compare-wheels`: a recipe wheel against another build of it, on wheels made here that
differ in each way the comparison checks (files, CUDA archs, driver floors, Requires-Dist, symbol floors)."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from llcuda_factory import crosscheck, toolchain
from llcuda_factory.__main__ import main

PLATFORM = "manylinux_2_28_x86_64"
INFO: dict[str, Any] = {
    "target": "cc75",
    "cuda": {"archs": [{"arch": 75, "sass": True, "ptx": True}]},
    "driver": {"sass_driver": "525.60.13", "ptx_jit_driver": "550.54.14", "ptx_isa": "8.4"},
}
REQUIRES = ["nvidia-cuda-runtime-cu12>=12.4.127", "nvidia-cublas-cu12>=12.4.5.8"]


def _lib(tmp_path: Path, name: str, code: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(code)
    out = tmp_path / f"{name}.so"
    subprocess.run(
        [shutil.which("gcc") or "gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src), "-lm"], check=True
    )
    return out


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("elf")
    return {
        "old": _lib(tmp, "old", "int f(int x) { return x + 1; }\n"),
        "new": _lib(tmp, "new", "#include <math.h>\ndouble f(double x) { return exp(x); }\n"),  # GLIBC_2.29
    }


def _wheel(
    path: Path,
    lib: Path,
    *,
    info: dict[str, Any] | None = None,
    requires: list[str] | None = None,
    extra: tuple[str, ...] = (),
) -> Path:
    meta = "Metadata-Version: 2.4\nName: llcuda-cc75\nVersion: 0.1.0\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in (REQUIRES if requires is None else requires))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("llcuda_cc75/build_info.json", json.dumps(INFO if info is None else info))
        zf.write(lib, "llcuda_cc75/bin/libggml-base.so")
        for name in extra:
            zf.write(lib, name)
        zf.writestr("llcuda_cc75-0.1.0.dist-info/METADATA", meta)
        zf.writestr("llcuda_cc75-0.1.0.dist-info/RECORD", f"{path.name}\n")
    return path


def test_two_builds_that_agree(tmp_path: Path, libs: dict[str, Path]) -> None:
    recipe = _wheel(tmp_path / "a.whl", libs["old"], extra=(f"llcuda_cc75/bin/{toolchain.CXX_RUNTIME}",))
    other = _wheel(tmp_path / "b.whl", libs["old"])
    assert crosscheck.compare(recipe, other, PLATFORM) == []  # the C++ runtime carrier is the difference by design
    assert main(["compare-wheels", str(recipe), str(other)]) == 0


def test_a_file_only_one_build_has(tmp_path: Path, libs: dict[str, Path]) -> None:
    recipe = _wheel(tmp_path / "a.whl", libs["old"])
    other = _wheel(tmp_path / "b.whl", libs["old"], extra=("llcuda_cc75/bin/libextra.so",))
    assert crosscheck.compare(recipe, other, PLATFORM) == ["only in the other wheel: llcuda_cc75/bin/libextra.so"]
    assert main(["compare-wheels", str(recipe), str(other)]) == 2


def test_other_cuda_architectures(tmp_path: Path, libs: dict[str, Path]) -> None:
    archs = {**INFO, "cuda": {"archs": [{"arch": 75, "sass": True, "ptx": False}]}}
    recipe = _wheel(tmp_path / "a.whl", libs["old"])
    other = _wheel(tmp_path / "b.whl", libs["old"], info=archs)
    (problem,) = crosscheck.compare(recipe, other, PLATFORM)
    assert problem.startswith("CUDA architectures (build_info.json): recipe [{'arch': 75, 'sass': True, 'ptx': True}]")


def test_another_driver_floor(tmp_path: Path, libs: dict[str, Path]) -> None:
    floors = {**INFO, "driver": {**INFO["driver"], "ptx_jit_driver": "570.86.10"}}
    recipe = _wheel(tmp_path / "a.whl", libs["old"])
    other = _wheel(tmp_path / "b.whl", libs["old"], info=floors)
    assert crosscheck.compare(recipe, other, PLATFORM) == [
        "driver floor ptx_jit_driver: recipe 550.54.14, other 570.86.10"
    ]


def test_other_requirements(tmp_path: Path, libs: dict[str, Path]) -> None:
    recipe = _wheel(tmp_path / "a.whl", libs["old"])
    other = _wheel(tmp_path / "b.whl", libs["old"], requires=[REQUIRES[0], "nvidia-cublas-cu12>=12.8.4.1"])
    (problem,) = crosscheck.compare(recipe, other, PLATFORM)
    assert problem.startswith("Requires-Dist: recipe ")
    assert "nvidia-cublas-cu12>=12.8.4.1" in problem


def test_a_symbol_floor_beyond_the_tag(tmp_path: Path, libs: dict[str, Path]) -> None:
    recipe = _wheel(tmp_path / "a.whl", libs["old"])
    other = _wheel(tmp_path / "b.whl", libs["new"])
    assert crosscheck.compare(recipe, other, PLATFORM) == [
        f"other: llcuda_cc75/bin/libggml-base.so needs GLIBC_2.29, which {PLATFORM} does not allow"
    ]
