"""The test tiers as commands (``python -m llcuda_testkit suite|platform``): the suite against a wheelhouse's wheels,
and the same suite's platform scenarios in a Debian root. ``nox -s tests``, ``tests_oldglibc``, ``tests_trixie`` and
the release rehearsal call them; each runs pytest in the interpreter it is given (the session's venv)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from llcuda_factory import REPO_ROOT
from llcuda_factory.errors import FactoryError
from llcuda_factory.targets import all_targets

# The build library and the test kit, for what the tiers run (pytest, the factory's commands).
PYTHONPATH = os.pathsep.join(str(REPO_ROOT / d) for d in ("factory", "testkit"))
# suite -> the variable that moves its root (ci/platform-root.sh makes it once and keeps it)
PLATFORM_ROOTS = {"bullseye": "LLCUDA_OLD_GLIBC_ROOT", "trixie": "LLCUDA_TRIXIE_ROOT"}


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment with the factory and the test kit importable."""
    return {**os.environ, "PYTHONPATH": PYTHONPATH, **(extra or {})}


def pip(*args: str) -> None:
    """``pip install ARGS`` into this interpreter, or one FactoryError."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=False)
    if proc.returncode != 0:
        raise FactoryError(f"pip install {' '.join(args)} failed (exit {proc.returncode})")


def install_cpu_backend(house: Path) -> bool:
    """Install the wheelhouse's llcuda-cpu wheel here (the end-to-end tests and the benchmarks drive its real
    llama-server); False when there is none."""
    cpu = sorted(house.glob("llcuda_cpu-*.whl"))
    if cpu:
        pip("--no-deps", "--force-reinstall", str(cpu[-1]))
    return bool(cpu)


def run_suite(house: Path, args: list[str]) -> int:
    """pytest against the wheels of ``house`` (backend wheels, the runtime wheel, deps/): ``args``, or the whole
    suite with every target whose wheel is there; pytest's exit status."""
    install_cpu_backend(house)
    built = [t.name for t in all_targets().values() if sorted(house.glob(f"{t.package}-*.whl"))]
    args = args or ["tests", *([f"--run-wheels={','.join(built)}"] if built else [])]
    cmd = [sys.executable, "-m", "pytest", *args]
    return subprocess.run(cmd, env=tool_env({"LLCUDA_WHEELHOUSE": str(house)}), cwd=REPO_ROOT).returncode


def platform_root(suite: str) -> Path:
    """Make (once, kept) the Debian root of ``suite`` with ci/platform-root.sh; its path. Root only."""
    if suite not in PLATFORM_ROOTS:
        raise FactoryError(f"no platform tier {suite!r} (the tiers: {', '.join(PLATFORM_ROOTS)})")
    if os.geteuid() != 0:
        raise FactoryError(f"the {suite} tier needs root (debootstrap, chroot and mounts): sudo .venv/bin/nox -s ...")
    root = os.environ.get(PLATFORM_ROOTS[suite], f"/var/cache/llcuda/{suite}-root")
    proc = subprocess.run(["bash", str(REPO_ROOT / "ci" / "platform-root.sh"), suite, root], check=False)
    if proc.returncode != 0:
        raise FactoryError(f"ci/platform-root.sh {suite} {root} failed (exit {proc.returncode})")
    return Path(root)


def run_platform(suite: str, house: Path, args: list[str]) -> int:
    """The built wheels of ``house`` in the Debian root of ``suite`` (tests/platforms/); pytest's exit status."""
    root = platform_root(suite)
    return run_suite(house, ["tests/platforms", f"--platform-root={root}", "--run-wheels=all", *args])
