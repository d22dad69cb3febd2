"""The release pipeline's local half: the cibuildwheel configuration, the release check, the pin bump, the
workflows' wiring to the targets table, and wheel reproducibility comparison."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT, cudaruntime, release, variants
from llcuda_factory.errors import FactoryError
from llcuda_factory.project import llama_cpp_pin
from llcuda_factory.reproducible import compare_wheels
from llcuda_factory.targets import all_targets

PIN = llama_cpp_pin()


# ---------------------------------------------------------------- cibuildwheel


@pytest.mark.parametrize("target", sorted(all_targets()))
def test_cibuildwheel_builds_each_backend_once(target: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cibuildwheel",
            "--print-build-identifiers",
            "--platform",
            "linux",
            f"python/backends/{target}",
            "--config-file",
            "pyproject.toml",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cp312-manylinux_x86_64"]  # a py3-none wheel: one interpreter builds it


def test_workflow_matrix_is_the_targets_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llcuda_factory", "matrix"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO_ROOT / "factory")},
    )
    assert [row["target"] for row in json.loads(out.stdout)["include"]] == list(all_targets())
    wheels = (REPO_ROOT / ".github" / "workflows" / "wheels.yml").read_text()
    assert "python -m llcuda_factory matrix" in wheels and "fromJSON(needs.matrix.outputs.matrix)" in wheels
    assert "nox -s crossbuild" in wheels


# ---------------------------------------------------------------- the release check


def test_this_commit_is_releasable_once_its_changelog_entry_is_dated() -> None:
    assert release.check(draft=True) == []
    rel = release.read_release()
    assert rel.llama_cpp_commit == PIN.commit == release.submodule_commit()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with this one's release files: version, table, changelog, backend projects, gitlink."""
    root = tmp_path / "repo"
    for rel in [
        "python/llcuda/_version.py",
        "targets.toml",
        "CHANGELOG.md",
        "pyproject.toml",
        "ci/cibw.sh",
        *(f"python/backends/{t}/pyproject.toml" for t in all_targets()),
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, root / rel)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(
        ["git", "-C", str(root), "update-index", "--add", "--cacheinfo", f"160000,{PIN.commit},llama.cpp"], check=True
    )
    return root


def test_release_check_names_each_inconsistency(repo: Path) -> None:
    assert release.check(repo, draft=True) == []
    version = repo / "python" / "llcuda" / "_version.py"
    version.write_text(version.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.2.0+cu118"'))
    subprocess.run(["git", "-C", str(repo), "update-index", "--cacheinfo", f"160000,{'1' * 40},llama.cpp"], check=True)
    (repo / "python" / "backends" / "cc50" / "pyproject.toml").unlink()
    problems = "\n".join(release.check(repo, draft=True))
    assert "'0.2.0+cu118' is not a public PEP 440 version" in problems
    assert "CHANGELOG.md has no '## 0.2.0+cu118' entry" in problems
    assert f"the llama.cpp submodule is at {'1' * 40}, targets.toml pins {PIN.commit}" in problems
    assert "target cc50 has no python/backends/cc50/pyproject.toml" in problems


def test_an_unreleased_changelog_entry_blocks_only_a_real_release(repo: Path) -> None:
    changelog = repo / "CHANGELOG.md"
    version = release.read_release(repo).version
    changelog.write_text(f"# Changelog\n\n## {version} (unreleased)\n\nFirst release.\n")
    assert release.check(repo, draft=True) == []
    assert release.check(repo) == [
        f"CHANGELOG.md: the {version} entry says unreleased; give it the release date: '## {version} (YYYY-MM-DD)'"
    ]
    changelog.write_text(f"# Changelog\n\n## {version} (2026-12-01)\n\nFirst release.\n")
    assert release.check(repo) == []


def _wheel(path: Path, name: str, version: str, requires: list[str], cuda: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
        zf.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", meta)
        if name != "llcuda":
            info = {"cuda": {"toolkit_version": cuda or ""}}
            zf.writestr(f"{name.replace('-', '_')}/build_info.json", json.dumps(info))
    return path


def _variants(dist: Path, version: str) -> list[Path]:
    """Stand-ins for the llcuda wheel's variants and their variants.json, as the rule gives them (the real files
    are made by variantlib: tests/unit/test_variants.py)."""
    files, listed = [], {}
    extras = [f'llcuda-{t}=={version}; extra == "{t}"' for t in all_targets()]
    for v in variants.plan(version):
        files.append(_wheel(dist / v.file_name(version), "llcuda", version, [*extras, v.requires]))
        listed[v.label] = v.listed()
    index = dist / f"llcuda-{version}-variants.json"
    index.write_text(json.dumps({"variants": listed}))
    return [*files, index]


def _cuda_requires(target: str) -> list[str]:
    row = all_targets()[target]
    wheels = cudaruntime.runtime_wheels(row.cuda_version[0])
    return [f"{wheels.cudart}>={row.cuda}.127", f"{wheels.cublas}>={row.cuda}.5.8"]


def test_release_check_of_built_files_wants_one_version_and_exact_backend_pins(repo: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    good = [f'llcuda-{t}==0.1.0; extra == "{t}"' for t in all_targets()]
    _wheel(dist / "llcuda-0.1.0-py3-none-any.whl", "llcuda", "0.1.0", ["platformdirs>=3", *good])
    cc50 = all_targets()["cc50"]
    _wheel(
        dist / "llcuda_cc50-0.1.0-py3-none-manylinux_2_28_x86_64.whl",
        "llcuda-cc50",
        "0.1.0",
        _cuda_requires("cc50"),
        f"{cc50.cuda}.131",
    )
    assert release.check(repo, dist, draft=True) == [
        f"{dist}: no wheel variants of llcuda (`llcuda_factory variants` writes them)"
    ]
    made = _variants(dist, "0.1.0")
    assert release.check(repo, dist, draft=True) == []
    # a variant that brings the wrong backend, or properties that are not the rule's, or one missing
    _wheel(made[0], "llcuda", "0.1.0", [*good, "llcuda-cc75==0.1.0"])
    index = json.loads(made[-1].read_text())
    index["variants"]["cc50"]["nvidia"]["sm_arch"].append("75_real")
    made[-1].write_text(json.dumps(index))
    made[1].unlink()
    found = release.check(repo, dist, draft=True)
    assert f"{made[0].name} does not require llcuda-cpu==0.1.0" in found
    assert f"{dist}: {made[1].name} is missing" in found
    assert any(p.startswith(f"{made[-1].name}: variant cc50 is ") for p in found), found
    for f in made:
        f.unlink(missing_ok=True)
    _variants(dist, "0.1.0")
    loose = [g.replace("==0.1.0", ">=0.1.0") for g in good]
    _wheel(dist / "llcuda-0.1.0-py3-none-any.whl", "llcuda", "0.1.0", loose)
    _wheel(
        dist / "llcuda_cc75-0.0.9-py3-none-manylinux_2_28_x86_64.whl",
        "llcuda-cc75",
        "0.0.9",
        _cuda_requires("cc75"),
        f"{all_targets()['cc75'].cuda}.131",
    )
    problems = "\n".join(release.check(repo, dist, draft=True))
    assert "llcuda-0.1.0-py3-none-any.whl: extras" in problems
    assert "llcuda_cc75-0.0.9-py3-none-manylinux_2_28_x86_64.whl is version 0.0.9, not 0.1.0" in problems


def test_release_check_wants_the_tables_tag_and_exact_sums(repo: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    good = [f'llcuda-{t}==0.1.0; extra == "{t}"' for t in all_targets()]
    _wheel(dist / "llcuda-0.1.0-py3-none-any.whl", "llcuda", "0.1.0", ["platformdirs>=3", *good])
    cpu = _wheel(dist / "llcuda_cpu-0.1.0-py3-none-manylinux_2_35_x86_64.whl", "llcuda-cpu", "0.1.0", [])
    _variants(dist, "0.1.0")
    release.write_sums(dist)
    assert release.check(repo, dist, draft=True) == [
        f"{cpu.name} is not tagged py3-none-manylinux_2_28_x86_64 (targets.toml [toolchain])"
    ]
    cpu.rename(dist / "llcuda_cpu-0.1.0-py3-none-manylinux_2_28_x86_64.whl")
    assert release.check(repo, dist, draft=True) == [
        f"SHA256SUMS lists {cpu.name}, which is not in {dist}",
        f"llcuda_cpu-0.1.0-py3-none-manylinux_2_28_x86_64.whl is in {dist} but not in SHA256SUMS",
    ]
    release.write_sums(dist)
    assert release.check(repo, dist, draft=True) == []
    with zipfile.ZipFile(dist / "llcuda-0.1.0-py3-none-any.whl", "a") as zf:
        zf.writestr("changed-after-the-tests", "x")
    assert release.check(repo, dist, draft=True) == [
        "llcuda-0.1.0-py3-none-any.whl does not match its sha256 in SHA256SUMS"
    ]


def test_release_check_wants_the_tables_cuda_version_in_the_release_build_and_the_wheels(
    repo: Path, tmp_path: Path
) -> None:
    cc75 = all_targets()["cc75"]
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'environment = { LLCUDA_SYSROOT = "none" }',
            'environment = { LLCUDA_SYSROOT = "none", CUDA_VERSION = "12.9" }',
        )
    )
    hooks = repo / "ci" / "cibw.sh"
    hooks.write_text(
        hooks.read_text().replace('install-cuda-toolkit.sh" --target "$target"', 'install-cuda-toolkit.sh"')
    )
    dist = tmp_path / "dist"
    dist.mkdir()
    _wheel(
        dist / "llcuda_cc75-0.1.0-py3-none-manylinux_2_28_x86_64.whl",
        "llcuda-cc75",
        "0.1.0",
        ["nvidia-cuda-runtime-cu11>=11.8", "nvidia-cublas-cu11>=11.11"],
        "11.8.89",
    )
    problems = "\n".join(release.check(repo, dist, draft=True))
    assert f"[tool.cibuildwheel] builds CUDA 12.9, targets.toml names CUDA {cc75.cuda} for cc75" in problems
    assert "ci/cibw.sh does not install the toolkit of the row it builds" in problems
    assert f"was built with CUDA 11.8.89, targets.toml names {cc75.cuda}" in problems
    assert "requires ['nvidia-cublas-cu11', 'nvidia-cuda-runtime-cu11']" in problems


# ---------------------------------------------------------------- the pin bump


def fake_sdist(path: Path, version: str, vendored: str) -> Path:
    """An llama-cpp-python sdist with a vendored llama.cpp tree and the submodule's git HEAD."""
    top = f"llama_cpp_python-{version}"
    files = {
        f"{top}/vendor/llama.cpp/CMakeLists.txt": b"project(llama.cpp)\n",
        f"{top}/vendor/llama.cpp/ggml/CMakeLists.txt": b"project(ggml)\n",
        f"{top}/.git/modules/vendor/llama.cpp/HEAD": f"{vendored}\n".encode(),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_bump_moves_the_pin_in_one_step(repo: Path, tmp_path: Path) -> None:
    new = "a" * 40
    sdist = fake_sdist(tmp_path / "llama_cpp_python-0.3.99.tar.gz", "0.3.99", new)
    result = release.bump_llama(new, "0.3.99", tag="b12000", sdist=sdist, root=repo)
    rel = release.read_release(repo)
    assert (rel.llama_cpp_commit, rel.llama_cpp_tag) == (new, "b12000")
    assert release.submodule_commit(repo) == new
    table = (repo / "targets.toml").read_text()
    assert 'offline-sdist = "llama-cpp-python==0.3.99"' in table
    assert 'offline-sdist-file = "llama_cpp_python-0.3.99.tar.gz"' in table
    assert 'offline-sdist-subdir = "llama_cpp_python-0.3.99/vendor/llama.cpp"' in table
    from llcuda_factory.source import sha256_of

    assert result["offline-sdist-sha256"] == sha256_of(sdist)
    assert f'offline-sdist-sha256 = "{sha256_of(sdist)}"' in table
    assert "[targets.cc50]" in table  # the rest of the table is untouched
    assert not [p for p in release.check(repo, draft=True) if "submodule" in p or "commit" in p]


def test_bump_without_a_tag_records_the_short_commit(repo: Path, tmp_path: Path) -> None:
    new = "b" * 40
    sdist = fake_sdist(tmp_path / "llama_cpp_python-0.4.0.tar.gz", "0.4.0", new)
    release.bump_llama(new, "0.4.0", sdist=sdist, root=repo)
    assert release.read_release(repo).llama_cpp_tag == "gbbbbbbb"


def test_bump_refuses_an_sdist_of_another_commit_and_writes_nothing(repo: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in (repo / "targets.toml", repo / "python" / "llcuda" / "_version.py")}
    sdist = fake_sdist(tmp_path / "llama_cpp_python-0.3.99.tar.gz", "0.3.99", "c" * 40)
    with pytest.raises(FactoryError, match=f"vendors llama\\.cpp {'c' * 40}, not {'d' * 40}"):
        release.bump_llama("d" * 40, "0.3.99", sdist=sdist, root=repo)
    with pytest.raises(FactoryError, match=r"is not a full 40-hex llama\.cpp commit"):
        release.bump_llama("0c1e570", "0.3.99", sdist=sdist, root=repo)
    assert {p: p.read_bytes() for p in before} == before
    assert release.submodule_commit(repo) == PIN.commit


# ---------------------------------------------------------------- reproducibility comparison


def test_compare_wheels_reports_what_differs(tmp_path: Path) -> None:
    def make(name: str, payload: bytes, when: tuple[int, int, int, int, int, int]) -> Path:
        (tmp_path / name).mkdir()
        path = tmp_path / name / "llcuda_cpu-0.1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(zipfile.ZipInfo("llcuda_cpu/bin/libggml.so", when), payload)
            zf.writestr(zipfile.ZipInfo("llcuda_cpu/build_info.json", when), b"{}")
        return path

    epoch = (2026, 11, 1, 0, 0, 0)
    a, b = make("a", b"same", epoch), make("b", b"same", epoch)
    assert compare_wheels(a, b)["identical"]
    c = make("c", b"other", (2026, 11, 2, 0, 0, 0))
    report = compare_wheels(a, c)
    assert not report["identical"]
    assert [(d["entry"], d["what"]) for d in report["differences"]] == [
        ("llcuda_cpu/bin/libggml.so", "content, timestamp"),
        ("llcuda_cpu/build_info.json", "timestamp"),
    ]
    assert report["differences"][0]["diff"][-2:] == ["-same", "+other"]  # a text entry's change is shown


def test_publishing_splits_a_tested_dist_into_pypis_files_and_the_variants_index(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    good = [f'llcuda-{t}==0.1.0; extra == "{t}"' for t in all_targets()]
    plain = _wheel(dist / "llcuda-0.1.0-py3-none-any.whl", "llcuda", "0.1.0", good)
    backend = _wheel(dist / "llcuda_cpu-0.1.0-py3-none-manylinux_2_28_x86_64.whl", "llcuda-cpu", "0.1.0", [])
    made = _variants(dist, "0.1.0")
    with pytest.raises(FactoryError, match="SHA256SUMS is missing"):
        release.split_for_publishing(dist, tmp_path / "pypi", tmp_path / "pages")
    release.write_sums(dist)
    files, simple = release.split_for_publishing(dist, tmp_path / "pypi", tmp_path / "pages")
    assert sorted(f.name for f in files) == sorted([plain.name, backend.name])  # no variant, no SHA256SUMS
    indexed = sorted(p.name for p in (simple / "llcuda").iterdir())
    assert indexed == sorted(["index.html", plain.name, *(f.name for f in made)])
    with zipfile.ZipFile(made[0], "a") as zf:
        zf.writestr("changed-after-the-tests", "x")
    with pytest.raises(FactoryError, match="does not match its sha256"):
        release.split_for_publishing(dist, tmp_path / "pypi2", tmp_path / "pages2")
