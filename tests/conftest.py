"""Shared fixtures: the targets table, tiny GGUF models, and fresh venvs with a backend wheel installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ci"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llcuda_factory.targets import Target, all_targets  # noqa: E402
from tinymodel import write_tiny_llama  # noqa: E402

WHEELHOUSE = Path(os.environ.get("LLCUDA_WHEELHOUSE", ROOT / "wheelhouse"))
TARGETS = all_targets()

# A test run started as a background job of a non-interactive shell (`cmd &`, nohup) has SIGINT ignored, and
# every child would inherit that: the Ctrl-C tests would send SIGINT into the void. Catching it here makes the
# children start with the default disposition, as they do from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def required_wheels() -> set[str]:
    """Targets whose wheels must be present: ``LLCUDA_REQUIRE_WHEELS=all`` (CI) or a comma list."""
    raw = os.environ.get("LLCUDA_REQUIRE_WHEELS", "")
    return set(TARGETS) if raw.strip() == "all" else {t for t in raw.split(",") if t}


def backend_wheel(target: Target) -> Path:
    """The audited wheel of ``target`` in the wheelhouse; skip (or fail, when required) if absent."""
    found = sorted(WHEELHOUSE.glob(f"{target.package}-*.whl"))
    if not found:
        msg = f"no {target.distribution} wheel in {WHEELHOUSE}; build it with `nox -s wheels -- {target.name}`"
        if target.name in required_wheels():
            pytest.fail(msg)
        pytest.skip(msg)
    return found[-1]


@pytest.fixture(scope="session")
def cpu_backend() -> None:
    """The llcuda-cpu backend is installed in this interpreter (`nox -s tests` installs it from the wheelhouse)."""
    import llcuda

    if not any(b.target == "cpu" for b in llcuda.backends()):
        msg = "llcuda-cpu is not installed here (`nox -s wheels -- cpu`, then `nox -s tests`)"
        if "cpu" in required_wheels():
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama.gguf")


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
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return Installed(target, python, Path(site), bundle)


@pytest.fixture(scope="module", params=sorted(TARGETS))
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    target = TARGETS[request.param]
    yield install_backend(target, tmp_path_factory.mktemp(f"venv-{target.name}"))
