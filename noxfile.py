"""llcuda's developer tasks. Sessions are verbs; `nox -l` lists them. Each installs what it needs and calls one
command of the factory (`python -m llcuda_factory`), the test kit (`python -m llcuda_testkit`) or a tool, which does
the work:

nox -s wheels -- cc50 cc75        # build, repair and audit backend wheels into wheelhouse/ (default: every row)
nox -s tests                      # the test suite (the README's test command); `-- tests/unit` for seconds
nox -s tests_oldglibc             # the wheels on Debian 11 (glibc 2.31, Python 3.9) in a chroot (root)
nox -s tests_trixie               # the wheels on Debian 13 (glibc 2.41, Python 3.13) in a chroot (root)
nox -s lint                       # pre-commit: ruff, mypy, shellcheck, actionlint, zizmor, typos, gersemi, ...
nox -s docs                       # the documentation site (docs/_build/html), checked in headless Chromium
nox -s offline -- cc50            # wheelhouse/offline-cc50/: everything `llcuda[cc50]` needs, no network
nox -s reproduce -- cpu           # build a target again and compare the two wheels byte for byte
nox -s check_release              # is this commit publishable (versions, pins, changelog)?
nox -s release                    # the release's dress rehearsal: dist/, checks, offline installs, every test
nox -s bump_llama -- SHA VERSION  # move the llama.cpp pin (targets.toml's [llama-cpp], the submodule)
nox -s upstream                   # llama.cpp's own server tests against every backend wheel's llama-server
nox -s bench                      # speed and size measurements (benchmarks/)
nox -s record                     # make the latest run's measurements (benchmarks/latest/) the recorded ones
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import nox

# What ci/install-build-deps.sh installs in .venv and the test group pins: an older nox says so and stops.
nox.needs_version = ">=2025.2.9"

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# The build library and the test kit, importable by what the sessions run (`python -m llcuda_factory`, pytest).
TOOL_ENV = {"PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("factory", "testkit"))}

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


def _group(name: str) -> list[str]:
    """A [dependency-groups] entry of pyproject.toml, with its include-groups resolved."""
    return list(nox.project.dependency_groups(PYPROJECT, name))


def _factory(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "llcuda_factory", *args, env=TOOL_ENV)


def _testkit(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "llcuda_testkit", *args, env=TOOL_ENV)


def _install_tests(session: nox.Session) -> None:
    """The test group and the runtime (editable): what pytest and the benchmarks import."""
    session.install(*_group("test"))
    session.install("-e", ".")


# ---------------------------------------------------------------------------------------------- wheels


@nox.session
def prepare(session: nox.Session) -> None:
    """Fetch the pinned llama.cpp source (submodule, $LLCUDA_LLAMA_CPP_SOURCE, or the verified offline sdist)."""
    session.install(*_group("build"))
    _factory(session, "source")


@nox.session
def wheels(session: nox.Session) -> None:
    """Build, repair and audit backend wheels into wheelhouse/: `nox -s wheels -- [targets...]` (default: all).

    The runtime wheel (with its variants) and each row's wheel are staged beside the wheelhouse and published into it
    by rename once audited; $LLCUDA_WHEELHOUSE and $LLCUDA_BUILD_DIR move the two (llcuda_factory.pipeline).
    """
    session.install(*_group("build"))
    _factory(session, "wheels", *session.posargs)


@nox.session
def reproduce(session: nox.Session) -> None:
    """Build targets a second time (new build dir) and compare with wheelhouse/: `-- [--no-ccache] TARGET...`.

    With ccache (default) the second build reuses the compiled objects, so this checks packaging: timestamps,
    file order, permissions, paths. `--no-ccache` compiles everything again and checks the compilers too.
    """
    session.install(*_group("build"))
    _factory(session, "reproduce", *session.posargs)


@nox.session
def offline(session: nox.Session) -> None:
    """Write wheelhouse/offline-<targets>/ for air-gapped installs: `-- TARGET... [--python-version 3.12]`.

    `--without-cuda-wheels` leaves NVIDIA's CUDA runtime wheels out (offline-<targets>-nocuda/), for machines that
    have them already: Colab, Kaggle with internet off.
    """
    session.install(*_group("build"))  # the factory's own imports (packaging, platformdirs) and pip download
    wheelhouse = os.environ.get("LLCUDA_WHEELHOUSE", str(ROOT / "wheelhouse"))
    _factory(session, "offline", "--wheelhouse", wheelhouse, *session.posargs)


@nox.session
def crossbuild(session: nox.Session) -> None:
    """Build one backend wheel with cibuildwheel in PyPA's manylinux_2_28 image, the cross-check of the recipe's
    (never what ships): `-- TARGET`; then `python -m llcuda_factory compare-wheels RECIPE dist/WHEEL`."""
    session.install(*[r for r in _group("test") if r.startswith("cibuildwheel")])
    (target,) = session.posargs or ["cpu"]
    package = f"python/backends/{target}"
    if not (ROOT / package / "pyproject.toml").is_file():
        session.error(f"no backend project {package}: name a row of targets.toml")
    session.run("cibuildwheel", package, "--platform=linux", "--config-file=pyproject.toml", "--output-dir=dist")


# ---------------------------------------------------------------------------------------------- release


@nox.session
def check_release(session: nox.Session) -> None:
    """Refuse to publish unless versions, the llama.cpp pin and the changelog agree: `-- [DIST_DIR] [--draft]`."""
    session.install(*_group("build"))
    _factory(session, "check-release", *session.posargs)


@nox.session
def bump_llama(session: nox.Session) -> None:
    """Move the llama.cpp pin in one step: `-- COMMIT LLAMA_CPP_PYTHON_VERSION [--tag bNNNN] [--sdist FILE]`; then
    build the wheels of the new pin and rerun upstream's server tests against a stock build of it (`nox -s upstream
    -- --against-stock`): no test may have another outcome on a wheel than on stock, and tests/upstream/ is
    rewritten for review. `--dry-run` checks that the sdist vendors the commit and writes nothing."""
    session.install(*_group("build"))
    _factory(session, "bump-llama", *session.posargs)
    if "--dry-run" not in session.posargs:
        session.notify("wheels")
        session.notify("upstream", ["--against-stock"])


@nox.session
def release(session: nox.Session) -> None:
    """The release's dress rehearsal, everything but the upload: `-- [--build-only | --from-dist] [--draft]`.

    Build dist/ with the README's recipe (and SHA256SUMS), check it, install each extra with no network from it, run
    every test and the platform tiers (as root) against it, check it again: llcuda_testkit.rehearsal has the steps.
    """
    session.install(*_group("build"), "twine>=6.1", "build>=1.2")
    _install_tests(session)
    _testkit(session, "release", *session.posargs)


# ---------------------------------------------------------------------------------------------- checks


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite: `nox -s tests` (every test the wheelhouse allows), `-- tests/unit` (seconds, no wheel).

    The end-to-end tests (tests/wheels/) drive the real llama-server of the wheels in wheelhouse/ (`nox -s wheels`)
    and run for each target whose wheel is there; `-- --run-wheels=all` requires every target's wheel (CI).
    """
    _install_tests(session)
    _testkit(session, "suite", "--", *session.posargs)


@nox.session
def tests_oldglibc(session: nox.Session) -> None:
    """Run the built wheels on Debian 11 (glibc 2.31, Python 3.9) in a chroot: `nox -s tests_oldglibc` (as root).

    ci/platform-root.sh makes the root once ($LLCUDA_OLD_GLIBC_ROOT, default /var/cache/llcuda/bullseye-root) and
    keeps it; tests/platforms/ installs every wheel of wheelhouse/ into a new venv there and runs its scenarios.
    """
    _install_tests(session)
    _testkit(session, "platform", "bullseye", "--", *session.posargs)


@nox.session
def tests_trixie(session: nox.Session) -> None:
    """Run the built wheels on Debian 13 (glibc 2.41, Python 3.13: Colab's Python, Ubuntu 24.04's glibc) in a
    chroot: `nox -s tests_trixie` (as root). The same tests as tests_oldglibc, in a root of ci/platform-root.sh
    ($LLCUDA_TRIXIE_ROOT, default /var/cache/llcuda/trixie-root)."""
    _install_tests(session)
    _testkit(session, "platform", "trixie", "--", *session.posargs)


@nox.session
def upstream(session: nox.Session) -> None:
    """Run llama.cpp's own server tests (the pinned tree's tools/server/tests) against the installed llama-server
    of every backend wheel in wheelhouse/ (llcuda_testkit.upstream_tier): every test passes or is listed in
    tests/upstream/expected.toml, and the skips equal the stock build's; the counts go to benchmarks/latest/.

    `-- --against-stock` builds stock llama.cpp's llama-server from the same tree, runs the whole suite on it,
    writes tests/upstream/stock-outcomes.txt, and compares every wheel's outcomes with it test by test (no list
    applied); tests/unit/test_upstream_lists.py then checks expected.toml against the new stock outcomes.
    """
    session.install(*_group("upstream"))
    _testkit(session, "upstream", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into docs/_build/html (warnings are errors), then check it as a reader would
    (tests/docs/): links and anchors with no network, the API reference, headless Chromium (ci/install-docs-deps.sh
    installs it) rendering the pages and searching; screenshots in docs/_build/screenshots/."""
    session.install(*_group("docs"), "pytest>=8")
    session.install("-e", ".")
    out = ROOT / "docs" / "_build"
    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    session.run("sphinx-build", "-W", "--keep-going", "-n", "-q", "-b", "html", "docs", str(out / "html"))
    session.log(f"docs: built in {time.monotonic() - start:.1f} s into {out / 'html'}")
    session.run("pytest", "-p", "no:cacheprovider", "tests/docs", f"--site={out / 'html'}", env=TOOL_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """Run every pre-commit hook on every file: ruff (check, format), mypy (tooling at 3.11, the runtime at 3.9),
    shellcheck, actionlint, zizmor, validate-pyproject, typos and gersemi. The hooks install from PyPI
    (.pre-commit-config.yaml)."""
    session.install(*_group("lint"))
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure speed and size against the anchors into benchmarks/results/: `-- [PART...] [--out DIR]`
    (benchmarks/run.py names the parts; --out writes the results elsewhere).

    No argument runs every part but `compress` and `build`, which take half an hour and hours on 2 cores: name them
    to run them. The GPU part runs on a GPU machine (benchmarks/gpu/). benchmarks/results/summary.md gathers the
    latest results.
    """
    _install_tests(session)
    session.run("python", "benchmarks/run.py", *session.posargs, env=TOOL_ENV)


@nox.session(python=False)
def record(session: nox.Session) -> None:
    """Make the latest run's measurements (benchmarks/latest/: CI's wall time, the upstream tier's counts) the
    recorded ones in benchmarks/results/, which the docs include, to commit them: CI itself never changes the tree.
    """
    session.run(sys.executable, "-m", "llcuda_factory", "record", *session.posargs, env=TOOL_ENV)
