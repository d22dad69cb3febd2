"""Colab and Kaggle, simulated: a venv that already holds their CUDA 12 wheels gets only llcuda's own wheels.

Colab (and Kaggle, built on Colab's image) ship ``nvidia-cublas-cu12`` 12.8.4.1 and ``nvidia-cuda-runtime-cu12``
12.8.90 beside torch. A CUDA 12 backend must reuse them: pip downloads no NVIDIA CUDA wheel, and the installed
``libggml-cuda.so`` resolves cuBLAS and cudart into those preinstalled wheels. With the internet off (a Kaggle
setting), the ``--without-cuda-wheels`` offline bundle installs with no network at all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import venv
from pathlib import Path

import pytest

from llcuda_factory import cudaruntime
from llcuda_factory.wheelfile import site_packages
from llcuda_factory.wheelhouse import is_cuda_runtime_wheel, offline_bundle, parse_wheel_name, pip_download
from support import TARGETS, WHEELHOUSE, backend_wheel, without_network

COLAB_CUDA_WHEELS = ["nvidia-cublas-cu12==12.8.4.1", "nvidia-cuda-runtime-cu12==12.8.90"]
CUDA12 = sorted(n for n, t in TARGETS.items() if t.is_cuda and t.cuda_version[0] == 12)


def _pip(python: Path, *args: str, offline: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(without_network(cmd) if offline else cmd, capture_output=True, text=True, check=False)


def _colab_wheels() -> Path:
    """Colab's two CUDA wheels, downloaded once into wheelhouse/colab/ (about 600 MB, kept for later runs)."""
    dest = WHEELHOUSE / "colab"
    have = {parse_wheel_name(w) for w in dest.glob("*.whl")}
    want = {(n.split("==")[0], n.split("==")[1]) for n in COLAB_CUDA_WHEELS}
    if not want <= have:
        pip_download(["--no-deps", *COLAB_CUDA_WHEELS], dest)
    return dest


@pytest.fixture
def colab(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh venv with Colab's CUDA wheels preinstalled: (python, site-packages)."""
    where = tmp_path / "colab-venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    got = _pip(python, "install", "-q", "--no-index", "--find-links", str(_colab_wheels()), *COLAB_CUDA_WHEELS)
    assert got.returncode == 0, got.stderr
    return python, site_packages(python)


@pytest.mark.parametrize("name", CUDA12)
def test_colab_downloads_no_cuda_wheel_and_links_its_own(name: str, colab: tuple[Path, Path], tmp_path: Path) -> None:
    target = TARGETS[name]
    backend_wheel(target)
    python, site = colab
    links = ["--find-links", str(WHEELHOUSE), "--find-links", str(WHEELHOUSE / "deps")]
    report = tmp_path / "report.json"
    dry = _pip(python, "install", "--dry-run", "--no-index", *links, "--report", str(report), f"llcuda[{name}]")
    assert dry.returncode == 0, dry.stderr
    would = sorted(item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"])
    print(f"\nColab, pip install llcuda[{name}] would download: {would}")
    assert not [n for n in would if is_cuda_runtime_wheel(n)], would
    assert {"llcuda", target.distribution} <= set(would)

    got = _pip(python, "install", "-q", "--no-index", *links, f"llcuda[{name}]")
    assert got.returncode == 0, got.stderr
    lib = site / target.package / "bin" / "libggml-cuda.so"
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, env=env, check=True).stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.MULTILINE))
    for soname in cudaruntime.runtime_wheels(target.cuda_version[0]).sonames:
        assert soname in resolved, ldd
        assert (site / "nvidia") in Path(resolved[soname]).resolve().parents, (soname, resolved[soname])
    versions = _pip(python, "list", "--format=json")
    installed = {p["name"].lower(): p["version"] for p in json.loads(versions.stdout)}
    for pin in COLAB_CUDA_WHEELS:  # still Colab's own: nothing replaced them
        dist, version = pin.split("==")
        assert installed[dist] == version


@pytest.mark.parametrize("name", CUDA12)
def test_offline_bundle_without_cuda_wheels_installs_with_no_network(
    name: str, colab: tuple[Path, Path], tmp_path: Path
) -> None:
    target = TARGETS[name]
    backend_wheel(target)
    bundle = offline_bundle([target], WHEELHOUSE, without_cuda_wheels=True)
    assert bundle.name == f"offline-{name}-nocuda"
    files = sorted(bundle.glob("*.whl"))
    names = {parse_wheel_name(f)[0] for f in files}
    assert not [n for n in names if is_cuda_runtime_wheel(n)], names
    assert {"llcuda", target.distribution} <= names
    size = sum(f.stat().st_size for f in files)
    print(f"\noffline-{name}-nocuda: {len(files)} wheels, {size / 1e6:.1f} MB")
    python, site = colab
    got = _pip(python, "install", "-q", "--no-index", "--find-links", str(bundle), f"llcuda[{name}]", offline=True)
    assert got.returncode == 0, got.stderr
    assert (site / target.package / "bin" / "llama-server").is_file()


@pytest.mark.parametrize("name", CUDA12)
def test_cuda_wheels_in_another_site_packages_reach_the_server(name: str, tmp_path: Path) -> None:
    """NVIDIA's wheels outside the backend's site-packages (a --user install beside a venv, a venv with system
    site packages): the relative RUNPATH misses them, the runtime finds them on sys.path for the server."""
    target = TARGETS[name]
    wheel = backend_wheel(target)
    where = tmp_path / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    links = ["--find-links", str(WHEELHOUSE), "--find-links", str(WHEELHOUSE / "deps")]
    got = _pip(python, "install", "-q", "--no-index", *links, "llcuda")
    assert got.returncode == 0, got.stderr
    got = _pip(python, "install", "-q", "--no-index", "--no-deps", str(wheel))
    assert got.returncode == 0, got.stderr
    other = tmp_path / "other-site"
    colab = ["--find-links", str(_colab_wheels()), "--target", str(other), *COLAB_CUDA_WHEELS]
    got = _pip(python, "install", "-q", "--no-index", "--no-deps", *colab)
    assert got.returncode == 0, got.stderr
    code = (
        "import json, llcuda; from llcuda.discovery import child_env; "
        f"(b,) = [b for b in llcuda.backends() if b.target == {name!r}]; "
        "print(json.dumps({'lib': str(b.bin_dir / 'libggml-cuda.so'), 'env': child_env(b.llama_server)}))"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    for on_path in (False, True):
        env = {**base, "PYTHONPATH": str(other)} if on_path else base
        out = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, check=True)
        found = json.loads(out.stdout)
        ldd = subprocess.run(["ldd", found["lib"]], env=found["env"], capture_output=True, text=True).stdout
        resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.MULTILINE))
        if not on_path:  # nowhere to be found: the server would skip the CUDA backend
            assert resolved.get("libcublas.so.12") == "not", ldd
            continue
        for soname in cudaruntime.runtime_wheels(target.cuda_version[0]).sonames:
            assert (other / "nvidia") in Path(resolved[soname]).resolve().parents, (soname, ldd)
