"""The wheel factory under bad input and interruption, driven through `nox -s wheels` as a user runs it.

Each fault stops with one clear error before anything compiles, and none leaves anything half-written in the
wheelhouse (here a temporary one, with an older wheel in it that must survive untouched).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT as ROOT
from support import TARGETS


@pytest.fixture
def house(tmp_path: Path) -> dict[str, Path]:
    """A wheelhouse holding one older, complete wheel, and an empty build directory."""
    wheelhouse, build = tmp_path / "wheelhouse", tmp_path / "build"
    wheelhouse.mkdir()
    build.mkdir()
    old = wheelhouse / "llcuda_cpu-0.0.1-py3-none-manylinux_2_35_x86_64.whl"
    with zipfile.ZipFile(old, "w") as zf:
        zf.writestr("llcuda_cpu-0.0.1.dist-info/METADATA", "Name: llcuda-cpu\nVersion: 0.0.1\n")
    return {"wheelhouse": wheelhouse, "build": build, "old": old}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def nox_wheels(house: dict[str, Path], *targets: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`nox -s wheels -- TARGETS` into the temporary wheelhouse; ``env`` values of "" unset a variable."""
    full_env = {
        **os.environ,
        "LLCUDA_WHEELHOUSE": str(house["wheelhouse"]),
        "LLCUDA_BUILD_DIR": str(house["build"]),
        **env,
    }
    full_env = {k: v for k, v in full_env.items() if v}
    return subprocess.run(
        [sys.executable, "-m", "nox", "-s", "wheels", "--", *targets],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_nothing_built(house: dict[str, Path], before: dict[str, bytes]) -> None:
    assert snapshot(house["wheelhouse"]) == before
    assert list(house["build"].iterdir()) == []  # no target's build directory: no compile started
    assert not (house["wheelhouse"].parent / ".wheelhouse-staging").exists()


def test_an_unknown_target(house: dict[str, Path]) -> None:
    before = snapshot(house["wheelhouse"])
    out = nox_wheels(house, "cc99")
    assert out.returncode != 0
    known = ", ".join(sorted(TARGETS))
    assert f"unknown target 'cc99'; the targets are: {known} (see targets.toml)" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert_nothing_built(house, before)


def test_a_missing_toolkit(house: dict[str, Path], tmp_path: Path) -> None:
    before = snapshot(house["wheelhouse"])
    out = nox_wheels(house, "cpu", "cc50", LLCUDA_CUDA_HOME=str(tmp_path / "no-cuda-here"))
    assert out.returncode != 0
    assert f"LLCUDA_CUDA_HOME={tmp_path / 'no-cuda-here'} has no bin/nvcc" in out.stdout + out.stderr
    assert_nothing_built(house, before)  # not even the cpu target, named first, was built


def test_a_toolkit_of_another_version(house: dict[str, Path], tmp_path: Path) -> None:
    """A working toolkit of another CUDA version than the row names: refused before anything compiles."""
    nvcc = tmp_path / "cuda-11.8" / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text('#!/bin/sh\necho "Cuda compilation tools, release 11.8, V11.8.89"\n')
    nvcc.chmod(0o755)
    before = snapshot(house["wheelhouse"])
    out = nox_wheels(house, "cc50", LLCUDA_CUDA_HOME=str(nvcc.parent.parent))
    text = out.stdout + out.stderr
    assert out.returncode != 0
    row = TARGETS["cc50"].cuda
    assert f"target cc50 is built with CUDA {row} (targets.toml), and no usable CUDA {row} is installed" in text
    assert f"CUDA 11.8, not the {row} that targets.toml names for cc50" in text
    assert "Install it: sudo bash ci/install-cuda-toolkit.sh" in text
    assert "Traceback" not in text
    assert_nothing_built(house, before)


def test_a_pypi_toolkit_prefix_of_another_version(
    house: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The factory's own prefix of NVIDIA's wheels holds another CUDA 13.x (say, edited by hand): the row's build
    stops before compiling, naming the version found and the prefix to remove."""
    from llcuda_factory import pypitoolkit

    (name,) = [n for n, t in TARGETS.items() if t.toolkit is not None and t.toolkit.source == "pypi"]
    pin = TARGETS[name].toolkit
    assert pin is not None
    monkeypatch.setenv(pypitoolkit.ENV_DIR, str(tmp_path / "toolkits"))  # here and in the session
    nvcc = pypitoolkit.root(pin) / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text('#!/bin/sh\necho "Cuda compilation tools, release 13.2, V13.2.78"\n')
    nvcc.chmod(0o755)
    prefix = pypitoolkit.prefix(pin)
    (prefix / pypitoolkit.STAMP).write_text(pypitoolkit._stamp(pin) + "\n")
    before = snapshot(house["wheelhouse"])
    out = nox_wheels(house, name)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert f"{nvcc} is CUDA 13.2, not the {pin.version} that targets.toml names for {name}" in text
    assert f"Remove {prefix} and run again" in text
    assert "Traceback" not in text
    assert_nothing_built(house, before)


def test_an_offline_source_archive_with_a_wrong_hash(house: dict[str, Path], tmp_path: Path) -> None:
    from llcuda_factory.project import llama_cpp_pin

    if (ROOT / "llama.cpp" / "CMakeLists.txt").exists():
        pytest.skip("the llama.cpp submodule is checked out: the offline archive is not used")
    pin = llama_cpp_pin()
    cache = tmp_path / "cache"
    archive = cache / "downloads" / pin.offline_sdist_file
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"not the pinned sdist")
    before = snapshot(house["wheelhouse"])
    out = nox_wheels(house, "cpu", LLCUDA_CACHE_DIR=str(cache), LLCUDA_LLAMA_CPP_SOURCE="")
    assert out.returncode != 0
    assert (
        f"sha256 mismatch for {pin.offline_sdist_file}: expected {pin.offline_sdist_sha256}" in out.stdout + out.stderr
    )
    assert not archive.exists() and archive.with_name(archive.name + ".sha256-mismatch").exists()
    assert not (cache / "src").exists() or list((cache / "src").iterdir()) == []  # nothing unpacked
    assert_nothing_built(house, before)


def compiled_objects(build: Path) -> int:
    """Objects of llama.cpp compiled so far (CMake's own try-compile objects live elsewhere and come and go)."""
    try:
        return sum(1 for _ in (build / "llama.cpp").rglob("*.o"))
    except OSError:  # a folder removed while it was being listed
        return 0


def test_a_build_interrupted_midway_leaves_the_wheelhouse_whole(house: dict[str, Path]) -> None:
    old = house["old"].read_bytes()
    env = {**os.environ, "LLCUDA_WHEELHOUSE": str(house["wheelhouse"]), "LLCUDA_BUILD_DIR": str(house["build"])}
    log = house["build"].parent / "nox.log"  # a file, not a pipe: a full pipe would stall the build
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nox", "-s", "wheels", "--", "cpu"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 600  # a fresh machine downloads the runtime's dependencies first
    while compiled_objects(house["build"] / "cpu") <= 3:  # llama.cpp's objects are being compiled (ninja or make)
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the build never started compiling:\n" + log.read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    proc.wait(timeout=120)
    output = log.read_text(errors="replace")
    assert proc.returncode != 0, output
    files = snapshot(house["wheelhouse"])
    assert files.pop(house["old"].name) == old  # the older wheel of the target is untouched
    for name in files:  # whatever else is there is complete: the runtime wheel, its variants and deps
        assert name.startswith(("llcuda-", "deps/")), name
        if name.endswith("-variants.json"):
            json.loads((house["wheelhouse"] / name).read_text())
            continue
        with zipfile.ZipFile(house["wheelhouse"] / name) as zf:
            assert zf.testzip() is None
    assert not [n for n in files if n.startswith("llcuda_cpu-")]
    assert not (house["wheelhouse"].parent / ".wheelhouse-staging").exists()
