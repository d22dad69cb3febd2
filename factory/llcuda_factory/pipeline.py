"""The factory's pipeline: build each row's wheel, finish it (repair → deps → audit), and publish it into a
wheelhouse by rename; build a second time and compare (``reproduce``).

``nox -s wheels`` and ``nox -s reproduce`` call these through ``python -m llcuda_factory wheels|reproduce``, and
cibuildwheel's repair hook (``ci/cibw.sh repair``) calls ``finish``: the one way a raw wheel becomes a checked one.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import REPO_ROOT, audit, repair, source, toolkit, wheelfile, wheelhouse
from .errors import FactoryError
from .release import write_sums
from .reproducible import compare_wheels
from .targets import Target
from .variants import is_variant_file, write_variants

# A fixed fallback of SOURCE_DATE_EPOCH outside a git checkout (an sdist, an exported tree).
_FALLBACK_EPOCH = "1667997441"


def log(message: str) -> None:
    """One line of the pipeline's progress, in order with the output of the tools it runs."""
    print(f"llcuda-factory: {message}", flush=True)


@dataclass(frozen=True)
class House:
    """Where one run of the factory builds (``build``) and what it publishes to (``wheelhouse``)."""

    wheelhouse: Path
    build: Path

    @property
    def deps(self) -> Path:
        return self.wheelhouse / "deps"

    @property
    def staging(self) -> Path:
        # Beside the wheelhouse (same file system, so publishing is one rename), never inside it: an interrupted
        # or failed build leaves the wheelhouse as it was.
        return self.wheelhouse.parent / f".{self.wheelhouse.name}-staging"


@dataclass(frozen=True)
class Finished:
    """A repaired wheel that passed the audit gate, its audit report, and where its dependencies were put."""

    wheel: Path
    report: dict[str, Any]
    deps: Path


def publish(staged: Path, dest_dir: Path) -> Path:
    """Move a finished file into ``dest_dir`` in one atomic rename: a reader never sees half a wheel."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / staged.name
    staged.replace(final)
    return final


def source_date_epoch() -> str:
    """Timestamps inside the wheels: $SOURCE_DATE_EPOCH, else the commit time of HEAD (same commit, same bytes)."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    proc = subprocess.run(["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else _FALLBACK_EPOCH


def build_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the builds: fixed timestamps, every core, a ccache large enough for four rows."""
    return {
        **os.environ,
        "SOURCE_DATE_EPOCH": source_date_epoch(),
        # every core, whatever generator CMake picks (make builds serially without it)
        "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2)),
        "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "8G"),
        # the backend projects' metadata provider and CMake's helper commands import this package
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "factory"), os.environ.get("PYTHONPATH")])),
        **(extra or {}),
    }


def _run(cmd: list[str], env: Mapping[str, str]) -> None:
    proc = subprocess.run(cmd, env=dict(env), check=False)
    if proc.returncode != 0:
        raise FactoryError(f"{' '.join(cmd[:6])} ... failed (exit {proc.returncode}); its output is above")


def _pip_wheel(project: Path, out: Path, env: Mapping[str, str], *config: str) -> Path:
    """``pip wheel`` of one project (no dependencies, no isolation: the build group is installed) into ``out``."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out)]
    _run([*cmd, *config, str(project)], env)
    (whl,) = out.glob("*.whl")
    return whl


def children_cpu_seconds() -> float:
    """User + system CPU time of every finished child process (and theirs): a build's compilers included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def finish(
    raw_wheel: Path, target: Target, out_dir: Path, deps: Path | None = None, tk: toolkit.Toolkit | None = None
) -> Finished:
    """Repair a raw wheel into ``out_dir``, download its dependencies (into ``deps``, default ``out_dir/deps``) and
    run the audit gate on it (with ``tk``, the toolkit it was built with, when known): a FactoryError unless the
    wheel passes."""
    repaired = repair.repair(raw_wheel, target, out_dir)
    deps = deps or out_dir / "deps"
    deps.mkdir(parents=True, exist_ok=True)  # pip's --find-links of the audit, even for a wheel with no dependency
    wheelhouse.download_dependencies(wheelfile.requires(repaired), deps)
    report = audit.audit(repaired, target, [deps], tk=tk)
    return Finished(repaired, report, deps)


def _replace_older(house: House, pattern: str, new: Path) -> None:
    """Remove older builds of ``new``; the llcuda wheel's variants are replaced by :func:`build_runtime_wheel`."""
    for old in house.wheelhouse.glob(pattern):
        if old.name != new.name and not is_variant_file(old):
            old.unlink()


def _publish_deps(got: Path, house: House) -> None:
    for whl in got.glob("*.whl"):
        publish(whl, house.deps)


def build_runtime_wheel(house: House, env: Mapping[str, str]) -> Path:
    """The pure-Python llcuda wheel (its extras pin the backends), its variants and its dependencies."""
    whl = _pip_wheel(REPO_ROOT, house.staging / "runtime", env)
    wheelhouse.download_dependencies(wheelfile.requires(whl), house.staging / "deps")
    _publish_deps(house.staging / "deps", house)
    _replace_older(house, "llcuda-*.whl", whl)
    staged = write_variants(whl, house.staging / "variants")  # each file arrives whole, in one rename
    new = {f.name for f in staged}
    for old in house.wheelhouse.glob("llcuda-*"):
        if is_variant_file(old) and old.name not in new:
            old.unlink()
    for f in staged:
        publish(f, house.wheelhouse)
    return publish(whl, house.wheelhouse)


def build_backend_wheel(
    target: Target, house: House, env: Mapping[str, str], tk: toolkit.Toolkit | None = None
) -> Path:
    """Build, repair and audit one target; only an audited wheel reaches the wheelhouse (with its audit report).
    ``tk``: the CUDA toolkit :func:`check_inputs` picked, handed to the build and the audit (found once)."""
    start, cpu_start = time.monotonic(), children_cpu_seconds()
    build_dir = f"build-dir={house.build / target.name}"
    if tk is not None:
        choice = toolkit.write_choice(target, tk, house.staging / f"{target.name}.toolkit.json")
        env = {**env, toolkit.CHOSEN_ENV: str(choice)}
    raw = _pip_wheel(target.project_dir, house.staging / target.name, env, "--config-settings", build_dir)
    built_s, built_cpu = time.monotonic() - start, children_cpu_seconds() - cpu_start
    log(f"{target.name}: built in {built_s:.0f} s ({built_cpu:.0f} CPU seconds: user + sys of the build)")
    done = finish(raw, target, house.staging / "repaired", house.staging / "deps", tk)
    _publish_deps(done.deps, house)
    report = {**done.report, "build_seconds": round(built_s, 1), "build_cpu_seconds": round(built_cpu, 1)}
    report_file = house.staging / f"{target.name}.audit.json"
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    _replace_older(house, f"{target.package}-*.whl", done.wheel)
    wheel = publish(done.wheel, house.wheelhouse)
    publish(report_file, house.wheelhouse)
    log(
        f"{target.name}: {wheel.name} {report['compressed_bytes'] / 1e6:.1f} MB "
        f"({report['unpacked_bytes'] / 1e6:.1f} MB unpacked), audit passed"
    )
    return wheel


def check_inputs(targets: list[Target]) -> dict[str, toolkit.Toolkit]:
    """What can fail before any compile: the llama.cpp source (fetched and verified) and each row's CUDA toolkit;
    the toolkit of each CUDA row (the build and the audit use it as found here)."""
    log(f"llama.cpp source: {source.resolve()}")
    found: dict[str, toolkit.Toolkit] = {}
    for target in targets:
        if target.is_cuda:
            found[target.name] = tk = toolkit.select(target)
            log(f"{target.name}: CUDA {tk.version_str} ({tk.nvcc})")
    return found


def build(targets: list[Target], house: House, extra_env: Mapping[str, str] | None = None) -> list[Path]:
    """Check the inputs, then build the runtime wheel and each target's wheel into ``house``; the wheels."""
    toolkits = check_inputs(targets)
    env = build_env(extra_env)
    # auditwheel (repair, in this process) dates the repaired wheel's files from it, as the build does
    os.environ["SOURCE_DATE_EPOCH"] = env["SOURCE_DATE_EPOCH"]
    shutil.rmtree(house.staging, ignore_errors=True)
    house.staging.mkdir(parents=True)
    try:
        built = [build_runtime_wheel(house, env)]
        built += [build_backend_wheel(target, house, env, toolkits.get(target.name)) for target in targets]
    finally:
        shutil.rmtree(house.staging, ignore_errors=True)
    return built


def reproduce(targets: list[Target], house: House, *, ccache: bool = True) -> list[str]:
    """Build ``targets`` again (a new build dir beside ``house.build``) and compare each wheel with the one in
    ``house.wheelhouse``; write ``<target>.reproduce.json`` there and return the targets that differ (their second
    wheels are kept in ``wheelhouse/reproduce/``)."""
    missing = [t.name for t in targets if not sorted(house.wheelhouse.glob(f"{t.package}-*.whl"))]
    if missing:
        hint = f"run `nox -s wheels -- {' '.join(missing)}`"
        raise FactoryError(f"no wheel to compare with for {', '.join(missing)}: {hint}")
    # The second build directory sits at the same depth as the first (build-reproduce/<target> beside
    # build/<target>), so the compile commands, which name the sources relative to it, are the same.
    second_build = house.build.parent / f"{house.build.name}-reproduce"
    shutil.rmtree(second_build, ignore_errors=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix="llcuda-reproduce-") as tmp:
        second = House(Path(tmp) / "wheelhouse", second_build)
        build(targets, second, None if ccache else {"CCACHE_DISABLE": "1"})
        for target in targets:
            (first_wheel,) = sorted(house.wheelhouse.glob(f"{target.package}-*.whl"))
            (second_wheel,) = sorted(second.wheelhouse.glob(f"{target.package}-*.whl"))
            report = {**compare_wheels(first_wheel, second_wheel), "ccache": ccache}
            (house.wheelhouse / f"{target.name}.reproduce.json").write_text(json.dumps(report, indent=2) + "\n")
            log(f"{target.name}: {report['summary']}")
            if not report["identical"]:
                failed.append(target.name)
                kept = house.wheelhouse / "reproduce"  # the second wheel, to diff its files against the first
                kept.mkdir(exist_ok=True)
                shutil.copy2(second_wheel, kept / second_wheel.name)
    shutil.rmtree(second_build, ignore_errors=True)
    return failed


def runtime_sdist(out: Path) -> Path:
    """The llcuda runtime's sdist into ``out`` (the backend wheels come from the recipe, not from an sdist)."""
    with tempfile.TemporaryDirectory(prefix="llcuda-sdist-") as tmp:
        cmd = [sys.executable, "-m", "build", "--sdist", "--outdir", tmp, str(REPO_ROOT)]
        _run(cmd, {**os.environ, "SOURCE_DATE_EPOCH": source_date_epoch()})
        (sdist,) = Path(tmp).glob("llcuda-*.tar.gz")
        return Path(shutil.copy2(sdist, out / sdist.name))


def make_dist(targets: list[Target], house: House, dist: Path) -> list[Path]:
    """Build every wheel with the recipe (:func:`build`) and the sdist; ``dist`` gets exactly those files, the
    llcuda wheel's variants and SHA256SUMS (what the release tests and uploads)."""
    build(targets, house)
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    runtime_sdist(dist)
    for pattern in ["llcuda-*.whl", *(f"{t.package}-*.whl" for t in targets)]:
        (wheel,) = sorted(p for p in house.wheelhouse.glob(pattern) if not is_variant_file(p))
        shutil.copy2(wheel, dist / wheel.name)
    for variant in sorted(p for p in house.wheelhouse.glob("llcuda-*") if is_variant_file(p)):
        shutil.copy2(variant, dist / variant.name)  # PyPI may not take these: the release indexes them too
    write_sums(dist)
    files = sorted(dist.iterdir())
    log(f"{dist}: {', '.join(p.name for p in files)}")
    return files
