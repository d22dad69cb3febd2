"""What the tests share besides fixtures: the targets table and the wheelhouse, the options that say which wheels a
run requires, and the helpers that find a built wheel, fake a CUDA toolkit, install a backend from its offline
bundle with no network, and wait for a process to go. ``conftest.py`` keeps pytest's hooks and the fixtures."""

from __future__ import annotations

import os
import stat
import subprocess
import time
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT as ROOT
from llcuda_factory.targets import Target, all_targets
from llcuda_factory.wheelfile import site_packages

WHEELHOUSE = Path(os.environ.get("LLCUDA_WHEELHOUSE", ROOT / "wheelhouse"))
TARGETS = all_targets()

# Set once by conftest's pytest_configure from --run-wheels and --expect-backend.
RUN_WHEELS: set[str] = set()
EXPECT_BACKEND: list[str | None] = [None]


def wait_gone(pid: int, seconds: float) -> float:
    """Seconds until ``pid`` is gone (or a zombie, which its parent has yet to reap); fails after ``seconds``."""
    start = time.monotonic()
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() - start < seconds, f"process {pid} still alive after {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - start


def required_wheels() -> set[str]:
    """Targets whose wheels must be present (``--run-wheels``)."""
    return set(RUN_WHEELS)


def expected_backend() -> str | None:
    """The target ``--expect-backend`` names (the release build's smoke test), or None."""
    return EXPECT_BACKEND[0]


def backend_wheel(target: Target) -> Path:
    """The audited wheel of ``target`` in the wheelhouse; skip (or fail, when required) if absent."""
    found = sorted(WHEELHOUSE.glob(f"{target.package}-*.whl"))
    if not found:
        msg = f"no {target.distribution} wheel in {WHEELHOUSE}; build it with `nox -s wheels -- {target.name}`"
        if target.name in required_wheels():
            pytest.fail(msg)
        pytest.skip(msg)
    return found[-1]


def fake_toolkit(root: Path, version: str, archs: list[int], *, cublas: bool = True) -> Path:
    """A directory that looks like a CUDA toolkit to the factory: bin/nvcc, bin/ptxas, cuBLAS headers, and the
    versioned cudart/cuBLAS libraries a build links (``libcudart.so -> libcudart.so.X.Y.127``, ``libcublas.so ->
    libcublas.so.X.Y.5.8``: for 12.4 the versions of targets.toml's ``[cuda-toolkits."12.4"]``)."""
    (root / "bin").mkdir(parents=True)
    nvcc = root / "bin" / "nvcc"
    arch_lines = "\\n".join(f"compute_{a}" for a in archs)
    nvcc.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version) echo "Cuda compilation tools, release {version}, V{version}.1";;\n'
        f"--list-gpu-arch) printf '{arch_lines}\\n';; esac\n"
    )
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    (root / "bin" / "ptxas").touch()
    major, minor = version.split(".", maxsplit=1)
    lib = root / "lib64"
    lib.mkdir()
    (lib / f"libcudart.so.{version}.127").touch()
    (lib / "libcudart.so").symlink_to(f"libcudart.so.{version}.127")
    if cublas:
        (root / "include").mkdir()
        (root / "include" / "cublas_v2.h").touch()
        (root / "include" / "cublas_api.h").write_text(
            f"#define CUBLAS_VER_MAJOR {major}\n#define CUBLAS_VER_MINOR {minor}\n"
        )
        (lib / f"libcublas.so.{version}.5.8").touch()
        (lib / "libcublas.so").symlink_to(f"libcublas.so.{version}.5.8")
    return nvcc


@dataclass(frozen=True)
class Installed:
    """A fresh venv holding ``llcuda[<target>]``, installed from the target's offline bundle with no network."""

    target: Target
    python: Path
    site_packages: Path
    bundle: Path

    @property
    def bin_dir(self) -> Path:
        return self.site_packages / self.target.package / "bin"

    def run_python(self, code: str) -> str:
        out = subprocess.run([str(self.python), "-c", code], check=True, capture_output=True, text=True)
        return out.stdout


def without_network(cmd: list[str]) -> list[str]:
    """``cmd`` in a new network namespace (only a down loopback): as root ``unshare -n``, else ``unshare -rn``."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return [*prefix, *cmd]
    pytest.fail("cannot make a network namespace (unshare -n / -rn) to prove the offline install")


def offline_bundle(target: Target) -> Path:
    """``wheelhouse/offline-<target>/``, written by the factory (what `nox -s offline -- <target>` does)."""
    from llcuda_factory.wheelhouse import offline_bundle as make

    backend_wheel(target)
    if not sorted(WHEELHOUSE.glob("llcuda-*.whl")):
        pytest.fail(f"no llcuda runtime wheel in {WHEELHOUSE}; `nox -s wheels` builds it")
    return make([target], WHEELHOUSE)


def install_backend(target: Target, where: Path) -> Installed:
    bundle = offline_bundle(target)
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    probe = "import socket; socket.create_connection(('pypi.org', 443), timeout=5)"
    assert subprocess.run(without_network([str(python), "-c", probe]), capture_output=True).returncode != 0
    cmd = [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(bundle)]
    subprocess.run(without_network([*cmd, "--require-hashes", "-r", str(bundle / "requirements.txt")]), check=True)
    subprocess.run(without_network([*cmd, f"llcuda[{target.name}]"]), check=True)  # what the README tells users
    return Installed(target, python, site_packages(python), bundle)
