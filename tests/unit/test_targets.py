"""targets.toml is the single source: arch parsing, the backend projects' template, and a whole new row (cc61)
followed through configure, metadata, extras, the CI matrix and `llcuda doctor`'s recommendation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from llcuda import catalog, fit, gpu, installed
from llcuda_factory import REPO_ROOT, backends
from llcuda_factory.errors import FactoryError
from llcuda_factory.targets import CudaArch, all_targets
from support import fake_toolkit

CC61_ROW = """
[targets.cc61]
description = "NVIDIA Pascal, compute capability 6.1 (GTX 1060, GTX 1050, MX150)"
cuda_architectures = ["61"]
cuda = "12.4"
max_wheel_mb = 60
cmake = { GGML_CUDA_FORCE_CUBLAS = "ON", GGML_CUDA_FA = "OFF" }
"""
GTX1060 = "0, NVIDIA GeForce GTX 1060 6GB, 6.1, 6144, 6000, 535.104.05"


# ---------------------------------------------------------------- CUDA architectures, parsed once


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("50", CudaArch(50, "", sass=True, ptx=True)),
        ("75-real", CudaArch(75, "", sass=True, ptx=False)),
        ("86-virtual", CudaArch(86, "", sass=False, ptx=True)),
        ("90a", CudaArch(90, "a", sass=True, ptx=True)),
        ("100f-real", CudaArch(100, "f", sass=True, ptx=False)),
    ],
)
def test_cmake_arch_strings_parse_once_into_what_the_runtime_reads(text: str, parsed: CudaArch) -> None:
    assert CudaArch.parse(text) == parsed
    assert catalog.CudaArch.from_json(parsed.as_json()) == catalog.CudaArch(
        parsed.cc, parsed.suffix, parsed.sass, parsed.ptx
    )


def test_a_malformed_arch_is_a_table_error(tmp_path: Path) -> None:
    table = tmp_path / "targets.toml"
    table.write_text(
        '[targets.x]\ndescription = "x"\ncuda_architectures = ["sm_90"]\ncuda = "12.4"\nmax_wheel_mb = 1\n'
    )
    with pytest.raises(FactoryError, match=r"target x: CUDA architecture 'sm_90' is not CMake's"):
        all_targets(table)


@pytest.mark.parametrize(
    ("arch", "cc", "expected"),
    [
        ("90a", 90, "native"),
        ("90a", 100, "unsupported"),  # arch-specific code runs on exactly that GPU, PTX included
        ("75", 86, "ptx"),
        ("75-real", 86, "unsupported"),
        ("61", 62, "native"),
        ("50", 61, "ptx"),
    ],
)
def test_the_fit_policy_reads_parsed_archs_without_crashing(arch: str, cc: int, expected: str) -> None:
    archs = (catalog.CudaArch.from_json(CudaArch.parse(arch).as_json()),)
    assert fit.arch_fit(archs, cc) == expected


# ---------------------------------------------------------------- backend projects: one template


def test_every_backend_project_is_the_template_rendered() -> None:
    assert backends.problems(all_targets()) == []


def test_an_edited_or_missing_backend_project_is_named_with_the_fix(tmp_path: Path) -> None:
    for rel in ["targets.toml", "pyproject.toml", *(str(backends.path(t, Path())) for t in all_targets().values())]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, tmp_path / rel)
    cc50 = backends.path(all_targets()["cc50"], tmp_path)
    cc50.write_text(cc50.read_text().replace("requires-python", "# requires-python"))
    backends.path(all_targets()["cpu"], tmp_path).unlink()
    found = backends.problems(all_targets(tmp_path / "targets.toml"), tmp_path)
    fix = "run `PYTHONPATH=factory python -m llcuda_factory backend-project"
    assert found == [
        f"target cpu has no python/backends/cpu/pyproject.toml: {fix} cpu`",
        f"python/backends/cc50/pyproject.toml differs from the template (factory/llcuda_factory/backends.py): "
        f"{fix} cc50`",
    ]


# ---------------------------------------------------------------- a new row: cc61


def _copy_project(dest: Path) -> Path:
    """What a contributor edits to add a target, copied: the table, the projects, the factory, the runtime."""
    skip = shutil.ignore_patterns("__pycache__", "build", "_targets.json", "*.egg-info")
    for rel in ["targets.toml", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "ci/cibw.sh"]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, dest / rel)
    for rel in ["factory", "python"]:
        shutil.copytree(REPO_ROOT / rel, dest / rel, ignore=skip)
    return dest


def _factory(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "llcuda_factory", *args],
        env={**os.environ, "PYTHONPATH": str(root / "factory"), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _doctor(runtime: Path, tmp_path: Path) -> dict[str, Any]:
    """`llcuda doctor --json` of the runtime unpacked at ``runtime``, on a machine whose GPU is a GTX 1060."""
    bin_dir = tmp_path / "smi"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho '{GTX1060}'\n")
    smi.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(runtime), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(
        [sys.executable, "-m", "llcuda", "doctor", "--json"], env=env, capture_output=True, text=True, check=True
    )
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_adding_cc61_takes_one_row_and_one_generated_file(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    root = _copy_project(tmp_path / "repo")
    with (root / "targets.toml").open("a") as f:
        f.write(CC61_ROW)
    print(_factory(root, "backend-project", "cc61"))
    assert (root / "python" / "backends" / "cc61" / "pyproject.toml").is_file()

    # the CI matrix, and the release check (projects, extras, CUDA versions) with nothing else edited
    matrix = json.loads(_factory(root, "matrix"))["include"]
    assert {"target": "cc61", "cuda": "12.4"} in matrix
    assert "ready to release" in _factory(root, "check-release", "--draft")

    # configure (a stub toolkit: CUDA 12.4 that lists compute_61) and the wheel metadata
    cuda = tmp_path / "cuda-12.4"
    fake_toolkit(cuda, "12.4", [50, 52, 60, 61, 70, 75, 80, 86, 89, 90])
    tree = tmp_path / "llama"
    (tree / "ggml").mkdir(parents=True)
    (tree / "CMakeLists.txt").touch()
    (tree / "ggml" / "CMakeLists.txt").touch()
    settings = tmp_path / "cc61.cmake"
    toolkit_env = {"LLCUDA_CUDA_HOME": str(cuda)}
    args = ["--target", "cc61", "--binary-dir", str(tmp_path / "b"), "--out", str(settings), "--source", str(tree)]
    _factory(root, "configure", *args, env=toolkit_env)
    cmake = settings.read_text()
    assert 'set(LLCUDA_CUDA_ARCHITECTURES "61")' in cmake
    assert 'set(LLCUDA_PACKAGE "llcuda_cc61")' in cmake
    assert f'set(LLCUDA_CUDA_COMPILER "{cuda}/bin/nvcc")' in cmake
    code = "import json; from llcuda_factory import metadata as m; "
    code += "print(json.dumps(m.dynamic_metadata({'target': 'cc61'}, {})))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(root / "factory"), **toolkit_env},
        capture_output=True,
        text=True,
        check=True,
    )
    meta = json.loads(proc.stdout)
    assert "Pascal" in meta["description"]
    assert [d.split(">=")[0] for d in meta["dependencies"]] == ["nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"]

    # the llcuda runtime wheel: its extras and its table of targets
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("llcuda-*.whl")
    from llcuda_factory import wheelfile

    version = wheelfile.metadata(wheel)["Version"]
    assert f"llcuda-cc61=={version}; extra == 'cc61'" in wheelfile.requires(wheel)
    runtime = tmp_path / "runtime"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(runtime)
        names = [t["name"] for t in json.loads(zf.read("llcuda/_targets.json"))["targets"]]
    assert names == list(all_targets(root / "targets.toml"))

    # doctor on a GTX 1060 recommends the new row; this checkout's runtime, without it, recommends cc50 (PTX JIT)
    report = _doctor(runtime, tmp_path)
    assert report["compute_capability"] == "6.1"
    assert report["recommended_target"] == "cc61"
    assert 'pip install "llcuda[cc61]"' in report["recommendation"]
    assert _doctor(Path(catalog.__file__).parents[1], tmp_path)["recommended_target"] == "cc50"


# ---------------------------------------------------------------- runtime duties


def test_the_recommendation_follows_the_table() -> None:
    pascal = gpu.GPU(0, "GTX 1060", (6, 1), 6144, 6000, "535")
    with_cc61 = (
        *catalog.targets(),
        catalog.TargetInfo("cc61", "Pascal", "12.4", (catalog.CudaArch(61),)),
    )
    assert fit.target_for(pascal, catalog.targets()) == "cc50"
    assert fit.target_for(pascal, with_cc61) == "cc61"
    assert fit.target_for(None, with_cc61) == "cpu"
    assert fit.target_for(gpu.GPU(0, "K80", (3, 7), 1, 1, "470"), with_cc61) == "cpu"


def test_a_driver_older_than_the_cuda_runtime_gets_the_cpu_build_and_the_driver_to_install() -> None:
    # the rule the wheel variants encode: below CUDA 12.0's driver no CUDA 12 row runs (uv picks the null variant)
    t4 = gpu.GPU(0, "Tesla T4", (7, 5), 15360, 15000, "520.61.05")
    assert fit.target_for(t4) == "cpu"
    assert fit.target_for(replace(t4, driver_version="525.60.13")) == "cc75"
    assert fit.target_for(replace(t4, driver_version="")) == "cc75"  # unknown: the benefit of the doubt
    report = fit.check_gpu_compatibility(gpus=[t4], installed=[])
    assert report["recommended_target"] == "cpu"
    assert "driver 520.61.05 is too old for llcuda-cc75 (it needs >= 525.60.13)" in report["recommendation"]
    assert 'then pip install "llcuda[cc75]"' in report["recommendation"]
    assert report["install_pip"] == 'pip install "llcuda[cpu]"'


def test_doctor_gives_the_uv_line_with_the_tables_index() -> None:
    from llcuda_factory.targets import variants_index

    assert catalog.variants_index() == variants_index()
    report = fit.check_gpu_compatibility(gpus=[], installed=[])
    uv = f"uv pip install --preview-features wheel-variants --extra-index-url {variants_index()} llcuda"
    assert report["install_uv"] == uv


def test_one_broken_backend_is_skipped_with_a_warning_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, info in (("llcuda_good", '{"cuda": {}}'), ("llcuda_bad", "{not json")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").touch()
        (tmp_path / name / "build_info.json").write_text(info)
    monkeypatch.syspath_prepend(str(tmp_path))

    class EP:
        def __init__(self, name: str, value: str) -> None:
            self.name, self.value, self.dist = name, value, None

    eps = [EP("good", "llcuda_good"), EP("bad", "llcuda_bad"), EP("gone", "llcuda_gone")]
    monkeypatch.setattr(installed, "_entry_points", lambda: eps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = installed.backends()
    assert [b.target for b in found] == ["good"]
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("skipping the broken backend llcuda-bad (llcuda_bad)") for m in messages), messages
    assert any(m.startswith("skipping the broken backend llcuda-gone (llcuda_gone)") for m in messages), messages


def test_the_runtime_and_the_factory_share_one_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llcuda import cachedir
    from llcuda_factory import source

    monkeypatch.delenv("LLCUDA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cachedir.cache_dir() == source.cache_dir() == tmp_path / "xdg" / "llcuda"
    monkeypatch.setenv("LLCUDA_CACHE_DIR", str(tmp_path / "mine"))
    assert cachedir.cache_dir() == source.cache_dir() == tmp_path / "mine"
