"""Every documented nox command runs from a fresh ``.nox``: a session that imports what it never installs fails only
where a new user runs it. .ci/run runs lint, wheels, reproduce, check_release, docs, tests, upstream and
tests_oldglibc/tests_trixie in a clean clone; these are the documented others, each in its own new ``--envdir``.
(``crossbuild`` needs a container engine, which these machines do not have; ``release`` is the rehearsal run
before each release, CONTRIBUTING.md.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT, project, source
from support import TARGETS, WHEELHOUSE, backend_wheel


def _nox(envdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX_", "VIRTUAL_ENV"))}
    env["LLCUDA_WHEELHOUSE"] = str(WHEELHOUSE)
    cmd = [sys.executable, "-m", "nox", "-f", str(REPO_ROOT / "noxfile.py"), "--envdir", str(envdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=1200)


def test_offline_from_a_fresh_nox_writes_the_bundle_docs_install_gives(tmp_path: Path) -> None:
    """docs/install.md's air-gapped command, `nox -s offline -- cpu`, as a new user runs it."""
    backend_wheel(TARGETS["cpu"])
    proc = _nox(tmp_path / "nox", "-s", "offline", "--", "cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bundle = WHEELHOUSE / "offline-cpu"
    names = sorted(p.name for p in bundle.iterdir())
    assert "requirements.txt" in names and any(n.startswith("llcuda_cpu-") for n in names), names
    assert f"{bundle} (" in proc.stdout  # the factory's listing, with the file count


def test_prepare_and_a_dry_run_of_bump_llama_from_a_fresh_nox(tmp_path: Path) -> None:
    """`nox -s prepare` resolves the pinned tree; `nox -s bump_llama -- ... --dry-run` with the pin's own sdist checks
    it vendors the commit and changes no file."""
    envdir = tmp_path / "nox"
    prepared = _nox(envdir, "-s", "prepare")
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    pin = project.llama_cpp_pin()
    sdist = source.cache_dir() / "downloads" / pin.offline_sdist_file
    if not sdist.is_file():
        pytest.fail(f"{sdist} is missing after `nox -s prepare`, which fetches it")
    table = (REPO_ROOT / "targets.toml").read_text()
    version = pin.offline_sdist.split("==")[1]
    bump = _nox(
        envdir, "-s", "bump_llama", "--", pin.commit, version, "--tag", pin.tag, "--sdist", str(sdist), "--dry-run"
    )
    assert bump.returncode == 0, bump.stdout[-3000:] + bump.stderr[-3000:]
    assert (
        f"commit = {pin.commit}" in bump.stdout and f"offline-sdist-sha256 = {pin.offline_sdist_sha256}" in bump.stdout
    )
    assert "--dry-run: checked, nothing written" in bump.stdout
    assert "Running session wheels" not in bump.stdout + bump.stderr  # a dry run notifies nothing
    assert (REPO_ROOT / "targets.toml").read_text() == table
    wrong = _nox(envdir, "-s", "bump_llama", "--", "0" * 40, version, "--sdist", str(sdist), "--dry-run")
    assert wrong.returncode != 0 and f"vendors llama.cpp {pin.commit}, not {'0' * 40}" in wrong.stdout + wrong.stderr


def test_bench_from_a_fresh_nox_writes_where_it_is_told(tmp_path: Path) -> None:
    """`nox -s bench -- runtime --out DIR`: the cheapest part, and the summary, into DIR (nothing committed moves)."""
    backend_wheel(TARGETS["cpu"])
    out = tmp_path / "results"
    proc = _nox(tmp_path / "nox", "-s", "bench", "--", "runtime", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "runtime_overhead.json").is_file()
    summary = (out / "summary.md").read_text()
    assert (
        "## Runtime overhead\n" in summary
        and "Not measured yet: `python benchmarks/runtime_overhead.py`" not in summary
    )
    assert "Not measured yet: `python benchmarks/sizes.py`" in summary  # only what was asked for was measured
