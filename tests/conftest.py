"""Shared options and fixtures: the targets table, tiny GGUF models, fresh venvs with a backend wheel installed.

``tests/unit/`` runs in seconds with no wheel (and imports neither gguf nor numpy while collecting).
``tests/wheels/`` drives the real llama-server of the built wheels; those tests run with ``--run-wheels``:

    pytest tests/unit                       # the fast unit tests
    pytest --run-wheels=cpu                 # and the end-to-end tests of the cpu wheel (`nox -s wheels -- cpu`)
    pytest --run-wheels=all                 # CI: every target's wheel is required
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT as ROOT
from llcuda_factory.targets import Target, all_targets
from llcuda_factory.wheelfile import site_packages

WHEELHOUSE = Path(os.environ.get("LLCUDA_WHEELHOUSE", ROOT / "wheelhouse"))
TARGETS = all_targets()

# A test run started as a background job of a non-interactive shell (`cmd &`, nohup) has SIGINT ignored, and
# every child would inherit that: the Ctrl-C tests would send SIGINT into the void. Catching it here makes the
# children start with the default disposition, as they do from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


_RUN_WHEELS: set[str] = set()
_EXPECT_BACKEND: list[str | None] = [None]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-wheels",
        metavar="TARGETS",
        default=None,
        help="run the tests of the built wheels (tests/wheels/) for these targets: 'all' or a comma list such as "
        "'cpu,cc50'; a missing wheel of a named target fails",
    )
    parser.addoption(
        "--expect-backend",
        metavar="TARGET",
        default=None,
        help="the backend installed in this interpreter, which the smoke tests check (ci/cibw.sh test)",
    )
    parser.addoption(
        "--platform-root",
        metavar="DIR",
        default=None,
        help="run tests/platforms/ in this Debian root (ci/platform-root.sh; root only): `nox -s tests_oldglibc`, "
        "`nox -s tests_trixie`",
    )
    parser.addoption(
        "--site",
        metavar="DIR",
        default=None,
        help="run tests/docs/ against this built documentation site (`nox -s docs` builds it and passes it)",
    )
    parser.addoption(
        "--netns",
        choices=("auto", "require"),
        default="auto",
        help="the tests marked netns (hosts as network namespaces, root only): 'auto' skips them where namespaces "
        "cannot be made, 'require' fails them there (CI, which runs as root)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/platforms/ runs only in its own tiers, with a root to run in (`nox -s tests_oldglibc`, `nox -s
    tests_trixie`); tests/docs/ only with a built site (`nox -s docs`)."""
    if collection_path.name == "platforms" and not config.getoption("--platform-root"):
        return True
    if collection_path.name == "docs" and collection_path.parent == Path(__file__).parent:
        return not config.getoption("--site")  # tests/docs/ runs on a built site only (`nox -s docs`)
    return None


def pytest_configure(config: pytest.Config) -> None:
    raw = config.getoption("--run-wheels")
    if raw is not None:
        names = set(TARGETS) if raw.strip() == "all" else {t.strip() for t in raw.split(",") if t.strip()}
        unknown = sorted(names - set(TARGETS))
        if unknown:
            raise pytest.UsageError(
                f"--run-wheels: unknown target {', '.join(unknown)}; the targets are {sorted(TARGETS)}"
            )
        _RUN_WHEELS.update(names)
    _EXPECT_BACKEND[0] = config.getoption("--expect-backend")


@pytest.fixture(scope="session")
def netns_ok(request: pytest.FixtureRequest) -> None:
    """Network namespaces can be made here; else skip (or fail, with --netns=require)."""
    from llcuda_testkit import netns

    why = netns.unavailable()
    if why is None:
        return
    if request.config.getoption("--netns") == "require":
        pytest.fail(f"--netns=require: {why}")
    pytest.skip(why)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/wheels/ is a wheel test; without --run-wheels (or --expect-backend) it is skipped."""
    wheels_dir = Path(__file__).parent / "wheels"
    run = bool(_RUN_WHEELS) or _EXPECT_BACKEND[0] is not None
    skip = pytest.mark.skip(reason="a test of the built wheels: pass --run-wheels=all (or a target list)")
    for item in items:
        if wheels_dir in item.path.parents:
            item.add_marker(pytest.mark.wheels)
            if not run:
                item.add_marker(skip)


def wait_gone(pid: int, seconds: float) -> float:
    """Seconds until ``pid`` is gone (or a zombie, which its parent has yet to reap); fails after ``seconds``."""
    start = time.monotonic()
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() - start < seconds, f"process {pid} still alive after {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - start


def required_wheels() -> set[str]:
    """Targets whose wheels must be present (``--run-wheels``)."""
    return set(_RUN_WHEELS)


def expected_backend() -> str | None:
    """The target ``--expect-backend`` names (the release build's smoke test), or None."""
    return _EXPECT_BACKEND[0]


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
    from llcuda_testkit.tinymodel import write_tiny_llama  # gguf and numpy: not while collecting the unit tests

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
    return Installed(target, python, site_packages(python), bundle)


@pytest.fixture(scope="session", params=sorted(TARGETS))
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """``llcuda[<target>]`` in a fresh venv, once per target for the whole run (a CUDA target's venv holds NVIDIA's
    cuBLAS: some 600 MB to unpack); the tests only read it and run its tools."""
    target = TARGETS[request.param]
    yield install_backend(target, tmp_path_factory.mktemp(f"venv-{target.name}"))
