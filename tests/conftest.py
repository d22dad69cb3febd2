"""Shared options and fixtures: the targets table, tiny GGUF models, fresh venvs with a backend wheel installed.

``tests/unit/`` runs in seconds with no wheel (and imports neither gguf nor numpy while collecting).
``tests/wheels/`` drives the real llama-server of the built wheels; those tests run with ``--run-wheels``:

    pytest tests/unit                       # the fast unit tests
    pytest --run-wheels=cpu                 # and the end-to-end tests of the cpu wheel (`nox -s wheels -- cpu`)
    pytest --run-wheels=all                 # CI: every target's wheel is required
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import EXPECT_BACKEND, RUN_WHEELS, TARGETS, Installed, install_backend, required_wheels

# A test run started as a background job of a non-interactive shell (`cmd &`, nohup) has SIGINT ignored, and
# every child would inherit that: the Ctrl-C tests would send SIGINT into the void. Catching it here makes the
# children start with the default disposition, as they do from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
        RUN_WHEELS.update(names)
    EXPECT_BACKEND[0] = config.getoption("--expect-backend")


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
    run = bool(RUN_WHEELS) or EXPECT_BACKEND[0] is not None
    skip = pytest.mark.skip(reason="a test of the built wheels: pass --run-wheels=all (or a target list)")
    for item in items:
        if wheels_dir in item.path.parents:
            item.add_marker(pytest.mark.wheels)
            if not run:
                item.add_marker(skip)


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


@pytest.fixture(scope="session", params=sorted(TARGETS))
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """``llcuda[<target>]`` in a fresh venv, once per target for the whole run (a CUDA target's venv holds NVIDIA's
    cuBLAS: some 600 MB to unpack); the tests only read it and run its tools."""
    target = TARGETS[request.param]
    yield install_backend(target, tmp_path_factory.mktemp(f"venv-{target.name}"))
