"""llcuda's developer tasks. Sessions are verbs; `nox -l` lists them.

nox -s wheels -- cc50 cc75        # build, repair and audit backend wheels into wheelhouse/ (default: every row)
nox -s tests                      # the test suite (the README's test command); `-- tests/unit` for seconds
nox -s tests_oldglibc             # the wheels on Debian 11 (glibc 2.31, Python 3.9) in a chroot (root)
nox -s tests_trixie               # the wheels on Debian 13 (glibc 2.41, Python 3.13) in a chroot (root)
nox -s lint                       # pre-commit: ruff, mypy, shellcheck, actionlint, zizmor, validate-pyproject
nox -s docs                       # the documentation site (docs/_build/html), checked in headless Chromium
nox -s offline -- cc50            # wheelhouse/offline-cc50/: everything `llcuda[cc50]` needs, no network
nox -s reproduce -- cpu           # build a target again and compare the two wheels byte for byte
nox -s check_release              # is this commit publishable (versions, pins, changelog)?
nox -s release                    # the release's dress rehearsal: dist/, checks, offline installs, every test
nox -s bump_llama -- SHA VERSION  # move the llama.cpp pin (targets.toml's [llama-cpp], the submodule)
nox -s upstream                   # llama.cpp's own server tests against every backend wheel's llama-server
nox -s bench                      # speed and size measurements (benchmarks/)
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
from dataclasses import dataclass
from pathlib import Path

import nox

# What ci/install-build-deps.sh installs in .venv and the test group pins: an older nox says so and stops.
nox.needs_version = ">=2025.2.9"

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# The one sys.path edit of the project: nox imports this file as a script, and the sessions need the build
# library (factory/llcuda_factory) to read targets.toml. Everything else gets factory/ through PYTHONPATH
# (FACTORY_ENV) or pytest's `pythonpath`.
sys.path.insert(0, str(ROOT / "factory"))

from llcuda_factory import results  # noqa: E402
from llcuda_factory.errors import FactoryError  # noqa: E402
from llcuda_factory.targets import Target, all_targets, get_target  # noqa: E402
from llcuda_factory.variants import is_variant_file  # noqa: E402

# Both can be moved (the factory's own tests build into temporary directories).
WHEELHOUSE = Path(os.environ.get("LLCUDA_WHEELHOUSE", ROOT / "wheelhouse")).resolve()
BUILD = Path(os.environ.get("LLCUDA_BUILD_DIR", ROOT / "build")).resolve()
# The build library and the test kit, for what the sessions run (pytest, benchmarks, the factory's commands).
FACTORY_ENV = {"PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("factory", "testkit"))}


def _group(name: str) -> list[str]:
    """A [dependency-groups] entry of pyproject.toml, with its include-groups resolved."""
    return list(nox.project.dependency_groups(PYPROJECT, name))


nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


def _factory(session: nox.Session, *args: str, env: dict[str, str] | None = None) -> None:
    session.run("python", "-m", "llcuda_factory", *args, env={**FACTORY_ENV, **(env or {})})


def _targets(session: nox.Session, names: list[str]) -> list[Target]:
    """The named rows of targets.toml; an unknown name is one clear line, before anything is built."""
    try:
        return [get_target(n) for n in names]
    except FactoryError as err:
        session.error(str(err))


def _source_date_epoch() -> str:
    """Timestamps inside the wheels: $SOURCE_DATE_EPOCH, else the commit time of HEAD (same commit, same bytes)."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    proc = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "1667997441"


@nox.session
def prepare(session: nox.Session) -> None:
    """Fetch the pinned llama.cpp source (submodule, $LLCUDA_LLAMA_CPP_SOURCE, or the verified offline sdist)."""
    session.install(*_group("build"))
    _factory(session, "source")


# ---------------------------------------------------------------------------------------------- wheels


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


def _publish(staged: Path, dest_dir: Path) -> Path:
    """Move a finished file into ``dest_dir`` in one atomic rename: a reader never sees half a wheel."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / staged.name
    staged.replace(final)
    return final


def _download_deps(session: nox.Session, wheel: Path, house: House) -> None:
    """A wheel's dependencies (with theirs) into wheelhouse/deps/, so that it installs with `pip --no-index`."""
    got = house.staging / "deps"
    _factory(session, "deps", str(wheel), "--dest", str(got))
    for whl in got.glob("*.whl"):
        _publish(whl, house.deps)


def _replace_older(house: House, pattern: str, new: Path) -> None:
    """Remove older builds of ``new``; the llcuda wheel's variants are replaced by the factory's `variants`."""
    for old in house.wheelhouse.glob(pattern):
        if old.name != new.name and not is_variant_file(old):
            old.unlink()


def _build_runtime_wheel(session: nox.Session, house: House, env: dict[str, str]) -> None:
    """The pure-Python llcuda wheel (its extras pin the backends), plus its dependencies."""
    out = house.staging / "runtime"
    session.run("pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT), env=env)
    (whl,) = out.glob("llcuda-*.whl")
    _download_deps(session, whl, house)
    _replace_older(house, "llcuda-*.whl", whl)
    staged = house.staging / "variants"  # beside the wheelhouse: each file arrives whole, in one rename
    _factory(session, "variants", str(whl), "--dest", str(staged), env=env)
    new = {f.name for f in staged.iterdir()}
    for old in house.wheelhouse.glob("llcuda-*"):
        if is_variant_file(old) and old.name not in new:
            old.unlink()
    for f in sorted(staged.iterdir()):
        _publish(f, house.wheelhouse)
    _publish(whl, house.wheelhouse)


def _build_backend_wheel(session: nox.Session, target: Target, house: House, env: dict[str, str]) -> None:
    """Build, repair and audit one target; only an audited wheel reaches the wheelhouse."""
    raw = house.staging / target.name
    start, cpu_start = time.monotonic(), _children_cpu_seconds()
    session.run(
        *("pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(raw)),
        *("--config-settings", f"build-dir={house.build / target.name}", str(target.project_dir)),
        env={**FACTORY_ENV, **env},
    )
    built_s, built_cpu = time.monotonic() - start, _children_cpu_seconds() - cpu_start
    (raw_wheel,) = raw.glob("*.whl")
    session.log(f"{target.name}: built in {built_s:.0f} s ({built_cpu:.0f} CPU seconds: user + sys of the build)")
    repaired_dir = house.staging / "repaired"
    _factory(session, "repair", str(raw_wheel), "--target", target.name, "--out", str(repaired_dir), env=env)
    (repaired,) = repaired_dir.glob(f"{target.package}-*.whl")
    _download_deps(session, repaired, house)
    report_file = house.staging / f"{target.name}.audit.json"
    with report_file.open("w") as out:
        session.run(
            *("python", "-m", "llcuda_factory", "audit", str(repaired), "--target", target.name),
            *("--find-links", str(house.deps)),
            env=FACTORY_ENV,
            stdout=out,
            stderr=sys.stderr,  # the audit's reasons, not into the report
        )
    report = json.loads(report_file.read_text())
    report["build_seconds"] = round(built_s, 1)
    report["build_cpu_seconds"] = round(built_cpu, 1)
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    _replace_older(house, f"{target.package}-*.whl", repaired)
    _publish(repaired, house.wheelhouse)
    _publish(report_file, house.wheelhouse)
    session.log(
        f"{target.name}: {repaired.name} {report['compressed_bytes'] / 1e6:.1f} MB "
        f"({report['unpacked_bytes'] / 1e6:.1f} MB unpacked), audit passed"
    )


def _children_cpu_seconds() -> float:
    """User + system CPU time of every finished child process (and theirs): a build's compilers included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _build(session: nox.Session, targets: list[Target], house: House, env: dict[str, str] | None = None) -> None:
    """Check everything that can fail early, then build the runtime wheel and each target's wheel."""
    session.install(*_group("build"))
    _factory(session, "source")  # a bad source archive fails here
    for target in targets:  # a missing or unfit CUDA toolkit fails here, before any compile
        _factory(session, "toolkit", "--target", target.name)
    build_env = {
        "SOURCE_DATE_EPOCH": _source_date_epoch(),
        # every core, whatever generator CMake picks (make builds serially without it)
        "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2)),
        "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "8G"),
        **(env or {}),
    }
    shutil.rmtree(house.staging, ignore_errors=True)
    house.staging.mkdir(parents=True)
    try:
        _build_runtime_wheel(session, house, build_env)
        for target in targets:
            _build_backend_wheel(session, target, house, build_env)
    finally:
        shutil.rmtree(house.staging, ignore_errors=True)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build, repair and audit backend wheels into wheelhouse/: `nox -s wheels -- [targets...]` (default: all)."""
    targets = _targets(session, session.posargs or list(all_targets()))
    _build(session, targets, House(WHEELHOUSE, BUILD))


@nox.session
def reproduce(session: nox.Session) -> None:
    """Build targets a second time (new build dir) and compare with wheelhouse/: `-- [--no-ccache] TARGET...`.

    With ccache (default) the second build reuses the compiled objects, so this checks packaging: timestamps,
    file order, permissions, paths. `--no-ccache` compiles everything again and checks the compilers too.
    """
    args = list(session.posargs)
    no_ccache = "--no-ccache" in args
    targets = _targets(session, [a for a in args if a != "--no-ccache"] or ["cpu"])
    missing = [t.name for t in targets if not sorted(WHEELHOUSE.glob(f"{t.package}-*.whl"))]
    if missing:
        session.error(f"no wheel to compare with for {', '.join(missing)}: run `nox -s wheels -- {' '.join(missing)}`")
    # The second build directory sits at the same depth as the first (build-reproduce/<target> beside
    # build/<target>), so the compile commands, which name the sources relative to it, are the same.
    second_build = BUILD.parent / f"{BUILD.name}-reproduce"
    shutil.rmtree(second_build, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="llcuda-reproduce-") as tmp:
        house = House(Path(tmp) / "wheelhouse", second_build)
        _build(session, targets, house, {"CCACHE_DISABLE": "1"} if no_ccache else None)
        failed = []
        for target in targets:
            (first,) = sorted(WHEELHOUSE.glob(f"{target.package}-*.whl"))
            (second,) = sorted(house.wheelhouse.glob(f"{target.package}-*.whl"))
            report_file = WHEELHOUSE / f"{target.name}.reproduce.json"
            with report_file.open("w") as out:
                compare = ("python", "-m", "llcuda_factory", "compare", str(first), str(second))
                session.run(*compare, env=FACTORY_ENV, stdout=out)
            report = json.loads(report_file.read_text())
            report["ccache"] = not no_ccache
            report_file.write_text(json.dumps(report, indent=2) + "\n")
            session.log(f"{target.name}: {report['summary']}")
            if not report["identical"]:
                failed.append(target.name)
                kept = WHEELHOUSE / "reproduce"  # the second wheel, to diff its files against the first
                kept.mkdir(exist_ok=True)
                shutil.copy2(second, kept / second.name)
        shutil.rmtree(second_build, ignore_errors=True)
        if failed:
            session.error(
                f"not reproducible: {', '.join(failed)} "
                "(see wheelhouse/<target>.reproduce.json; the second wheels are in wheelhouse/reproduce/)"
            )


@nox.session
def offline(session: nox.Session) -> None:
    """Write wheelhouse/offline-<targets>/ for air-gapped installs: `-- TARGET... [--python-version 3.12]`.

    `--without-cuda-wheels` leaves NVIDIA's CUDA runtime wheels out (offline-<targets>-nocuda/), for machines that
    have them already: Colab, Kaggle with internet off.
    """
    args = list(session.posargs)
    extra: list[str] = []
    for flag in ("--python-version", "--platform"):
        if flag in args:
            i = args.index(flag)
            extra += args[i : i + 2]
            del args[i : i + 2]
    if "--without-cuda-wheels" in args:
        args.remove("--without-cuda-wheels")
        extra.append("--without-cuda-wheels")
    targets = _targets(session, args)
    if not targets:
        session.error(f"name the targets to bundle: `nox -s offline -- cc50` (the targets: {', '.join(all_targets())})")
    session.install(*_group("build"))  # the factory's own imports (packaging, platformdirs) and pip download
    _factory(session, "offline", *(t.name for t in targets), "--wheelhouse", str(WHEELHOUSE), *extra)


# ---------------------------------------------------------------------------------------------- release


@nox.session
def check_release(session: nox.Session) -> None:
    """Refuse to publish unless versions, the llama.cpp pin and the changelog agree: `-- [DIST_DIR]`."""
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


DIST = ROOT / "dist"


@nox.session
def release(session: nox.Session) -> None:
    """The release's dress rehearsal, everything but the upload: `-- [--build-only | --from-dist] [--draft]`.

    1. Build every wheel with the README's recipe (`nox -s wheels`) and the sdist; dist/ gets exactly those files
       and SHA256SUMS (`--build-only` stops here: the release workflow's build job).
    2. `--from-dist` takes dist/ as it is (the workflow's test job, on the built artifact) and checks its sums.
    3. check_release and `twine check --strict` on dist/.
    4. Every dependency into dist-deps/ beside it; each extra installs in a fresh venv with no network
       (`unshare -n`) from dist/ and dist-deps/ only.
    5. The whole suite and the platform tiers (bullseye, trixie; as root) against dist/. The workflow publishes what
       passed.

    `--draft` accepts a CHANGELOG entry still marked unreleased (a rehearsal before the release commit).
    """
    from llcuda_factory import release as rel

    args = set(session.posargs)
    draft = ["--draft"] if "--draft" in args else []  # a rehearsal before the CHANGELOG entry is dated
    args -= {"--draft"}
    unknown = args - {"--build-only", "--from-dist"}
    if unknown or len(args) > 1:
        session.error(f"nox -s release -- [--build-only | --from-dist] [--draft], not {' '.join(session.posargs)}")
    if "--from-dist" not in args:
        targets = list(all_targets().values())
        _build(session, targets, House(WHEELHOUSE, BUILD))
        shutil.rmtree(DIST, ignore_errors=True)
        DIST.mkdir()
        _runtime_sdist(session, DIST)
        for pattern in ["llcuda-*.whl", *(f"{t.package}-*.whl" for t in targets)]:
            (wheel,) = sorted(p for p in WHEELHOUSE.glob(pattern) if not is_variant_file(p))
            shutil.copy2(wheel, DIST / wheel.name)
        for variant in sorted(p for p in WHEELHOUSE.glob("llcuda-*") if is_variant_file(p)):
            shutil.copy2(variant, DIST / variant.name)  # PyPI may not take these: the release indexes them too
        session.log(f"dist/: {', '.join(sorted(p.name for p in DIST.iterdir()))}")
        rel.write_sums(DIST)
        if "--build-only" in args:
            return
    elif not (DIST / rel.SUMS).is_file():
        session.error("--from-dist: dist/SHA256SUMS is missing (nox -s release -- --build-only writes it)")
    session.install(*_group("build"), "twine>=6.1", *[r for r in _group("test") if r.startswith("uv==")])
    _factory(session, "check-release", str(DIST), *draft)  # the sums, versions, pins, tags, changelog
    pypi = [p for p in sorted(DIST.iterdir()) if p.name != rel.SUMS and not is_variant_file(p)]
    session.run("twine", "check", "--strict", *map(str, pypi))  # the files PyPI takes
    deps = DIST.parent / "dist-deps"
    shutil.rmtree(deps, ignore_errors=True)
    for wheel in sorted(p for p in DIST.glob("*.whl") if not is_variant_file(p)):
        _factory(session, "deps", str(wheel), "--dest", str(deps))
    _install_offline(session, DIST, deps)
    # The suite reads a wheelhouse: dist/'s files and deps/, hard-linked (the same bytes; a symlink would point
    # outside the old-glibc root, where the tier mounts the wheelhouse), and the tests write bundles beside them.
    house = DIST.parent / ".release-house"
    shutil.rmtree(house, ignore_errors=True)
    (house / "deps").mkdir(parents=True)
    for f in DIST.iterdir():
        os.link(f, house / f.name)
    for f in deps.iterdir():
        os.link(f, house / "deps" / f.name)
    _suite(session, house, ["tests", "--run-wheels=all", *(["--netns=require"] if os.geteuid() == 0 else [])])
    if os.geteuid() == 0:
        for suite in PLATFORM_ROOTS:
            _platform_tier(session, suite, house, [])
    else:
        session.warn("not root: the platform tiers and the netns tests did not run (the release workflow runs them)")
    _factory(session, "check-release", str(DIST), *draft)  # nothing in dist/ changed while it was tested
    session.log(f"dist/ tested: {(DIST / rel.SUMS).read_text().count(chr(10))} files, {DIST / rel.SUMS}")


def _runtime_sdist(session: nox.Session, out: Path) -> None:
    """The llcuda runtime's sdist (the wheels come from the recipe, not from this build)."""
    session.install("build>=1.2")
    with tempfile.TemporaryDirectory(prefix="llcuda-sdist-") as tmp:
        env = {"SOURCE_DATE_EPOCH": _source_date_epoch()}
        session.run("python", "-m", "build", "--sdist", "--outdir", tmp, str(ROOT), env=env)
        (sdist,) = Path(tmp).glob("llcuda-*.tar.gz")
        shutil.copy2(sdist, out / sdist.name)


def _install_offline(session: nox.Session, dist: Path, deps: Path) -> None:
    """Each extra in a fresh venv from ``dist`` and ``deps`` alone, in a network namespace with no network."""
    from llcuda_factory.project import version

    for target in all_targets():
        with tempfile.TemporaryDirectory(prefix=f"llcuda-release-{target}-") as tmp:
            venv = Path(tmp) / "venv"
            session.run("python", "-m", "venv", str(venv))
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index"]
            links = ["--find-links", str(dist), "--find-links", str(deps)]
            spec = f"llcuda[{target}]=={version()}"
            session.run(*_unshared_network(), *pip, *links, spec, external=True)
            listed = session.run(str(venv / "bin" / "llcuda"), "backends", "--json", external=True, silent=True)
            if target not in [b["target"] for b in json.loads(str(listed))]:
                session.error(f"{spec} installed, but `llcuda backends` does not list {target}: {listed}")
            session.log(f"{spec}: installed with no network from dist/ and dist-deps/")
    # uv and the llcuda wheel's variants: with no GPU here, the null variant brings the cpu backend
    with tempfile.TemporaryDirectory(prefix="llcuda-release-uv-") as tmp:
        venv = Path(tmp) / "venv"
        session.run("uv", "venv", "-q", "--python", sys.executable, str(venv))
        uv = ["uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-index", "--no-cache"]
        uv += ["--preview-features", "wheel-variants", "--find-links", str(dist), "--find-links", str(deps)]
        session.run(*_unshared_network(), *uv, f"llcuda=={version()}", external=True)
        listed = session.run(str(venv / "bin" / "llcuda"), "backends", "--json", external=True, silent=True)
        if [b["target"] for b in json.loads(str(listed))] != ["cpu"]:
            session.error(f"uv installed llcuda's variants with no GPU, and `llcuda backends` says: {listed}")
        session.log("uv pip install llcuda (wheel variants): the cpu backend, with no network and no GPU")


def _unshared_network() -> list[str]:
    """A command prefix with no network at all: `unshare -n` as root, `unshare -rn` otherwise."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode == 0:
            return prefix
    raise FactoryError("cannot make a network namespace (unshare -n / -rn) for the offline install check")


@nox.session
def crossbuild(session: nox.Session) -> None:
    """Build one backend wheel with cibuildwheel in PyPA's manylinux_2_28 image, the cross-check of the recipe's
    (never what ships): `-- TARGET`; then `python -m llcuda_factory compare-wheels RECIPE dist/WHEEL`."""
    (target,) = _targets(session, session.posargs or ["cpu"])
    session.install(*[r for r in _group("test") if r.startswith("cibuildwheel")])
    package = str(target.project_dir.relative_to(ROOT))
    session.run("cibuildwheel", package, "--platform=linux", "--config-file=pyproject.toml", "--output-dir=dist")


# ---------------------------------------------------------------------------------------------- checks


def _suite(session: nox.Session, house: Path, args: list[str]) -> None:
    """pytest against the wheels of ``house`` (a wheelhouse: backend wheels, the runtime wheel, deps/)."""
    session.install(*_group("test"))
    session.install("-e", ".")
    cpu = sorted(house.glob("llcuda_cpu-*.whl"))
    if cpu:  # the runtime's end-to-end tests drive the real llama-server of the cpu wheel
        session.install("--no-deps", "--force-reinstall", str(cpu[-1]))
    built = [t.name for t in all_targets().values() if sorted(house.glob(f"{t.package}-*.whl"))]
    args = args or ["tests", *([f"--run-wheels={','.join(built)}"] if built else [])]
    session.run("pytest", *args, env={**FACTORY_ENV, "LLCUDA_WHEELHOUSE": str(house)})


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite: `nox -s tests` (every test the wheelhouse allows), `-- tests/unit` (seconds, no wheel).

    The end-to-end tests (tests/wheels/) drive the real llama-server of the wheels in wheelhouse/ (`nox -s wheels`)
    and run for each target whose wheel is there; `-- --run-wheels=all` requires every target's wheel (CI).
    """
    _suite(session, WHEELHOUSE, list(session.posargs))


@nox.session
def tests_oldglibc(session: nox.Session) -> None:
    """Run the built wheels on Debian 11 (glibc 2.31, Python 3.9) in a chroot: `nox -s tests_oldglibc` (as root).

    ci/platform-root.sh makes the root once ($LLCUDA_OLD_GLIBC_ROOT, default /var/cache/llcuda/bullseye-root) and
    keeps it; tests/platforms/ installs every wheel of wheelhouse/ into a new venv there and runs its scenarios.
    """
    _platform_tier(session, "bullseye", WHEELHOUSE, list(session.posargs))


@nox.session
def tests_trixie(session: nox.Session) -> None:
    """Run the built wheels on Debian 13 (glibc 2.41, Python 3.13: Colab's Python, Ubuntu 24.04's glibc) in a
    chroot: `nox -s tests_trixie` (as root). The same tests as tests_oldglibc, in a root of ci/platform-root.sh
    ($LLCUDA_TRIXIE_ROOT, default /var/cache/llcuda/trixie-root)."""
    _platform_tier(session, "trixie", WHEELHOUSE, list(session.posargs))


PLATFORM_ROOTS = {"bullseye": "LLCUDA_OLD_GLIBC_ROOT", "trixie": "LLCUDA_TRIXIE_ROOT"}  # suite -> its override


def _platform_tier(session: nox.Session, suite: str, house: Path, args: list[str]) -> None:
    if os.geteuid() != 0:
        session.error(f"the {suite} tier needs root (debootstrap, chroot and mounts): sudo .venv/bin/nox -s ...")
    root = os.environ.get(PLATFORM_ROOTS[suite], f"/var/cache/llcuda/{suite}-root")
    session.run("bash", str(ROOT / "ci" / "platform-root.sh"), suite, root, external=True)
    _suite(session, house, ["tests/platforms", f"--platform-root={root}", "--run-wheels=all", *args])


UPSTREAM = ROOT / "tests" / "upstream"
# The CUDA wheels run the files whose tests evaluate a model (every graph path: llama, MoE with a draft model and
# a LoRA, BERT embeddings and reranking, infill); the files that test the HTTP surface (OpenAI/Anthropic/GCP
# compatibility, the router, MCP, tools, metrics, security) exercise code no backend option changes, and run on cpu.
UPSTREAM_CUDA_SUBSET = (
    "unit/test_basic.py",
    "unit/test_completion.py",
    "unit/test_ctx_shift.py",
    "unit/test_embedding.py",
    "unit/test_infill.py",
    "unit/test_lora.py",
    "unit/test_rerank.py",
    "unit/test_speculative.py",
    "unit/test_tokenize.py",
)


UPSTREAM_SECONDS: dict[str, float] = {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _upstream_run(
    session: nox.Session, work: Path, server: Path, label: str, files: tuple[str, ...] = (), expected: bool = True
) -> Path:
    """One run of upstream's server tests against ``server``; returns its outcomes file."""
    results = work / f"outcomes-{label}.txt"
    env = {
        **FACTORY_ENV,
        "LLAMA_SERVER_BIN_PATH": str(server),
        "LLCUDA_UPSTREAM_MODELS": str(work / "models"),
        "LLCUDA_UPSTREAM_RESULTS": str(results),
        "PORT": str(_free_port()),
        "LLAMA_CACHE": str(work / "cache"),  # what a test may look for there stays empty: no hub
    }
    if expected:
        env["LLCUDA_UPSTREAM_EXPECTED"] = str(UPSTREAM / "expected.toml")
        env["LLCUDA_UPSTREAM_STOCK"] = str(UPSTREAM / "stock-outcomes.txt")
    start = time.monotonic()
    with session.chdir(work / "tree" / "tools" / "server" / "tests"):
        session.run(
            *("pytest", "-p", "llcuda_testkit.upstream_plugin", "-p", "no:cacheprovider"),
            *("-m", "not slow", "-q", "-rfE", "--durations=5", *files),
            env=env,
            success_codes=[0] if expected else [0, 1],  # on stock, the failures are what the run records
        )
    UPSTREAM_SECONDS[label] = time.monotonic() - start
    session.log(f"upstream on {label}: {UPSTREAM_SECONDS[label]:.0f} s")
    return results


def _stock_server(session: nox.Session, src: Path) -> Path:
    """llama.cpp's llama-server as its own CMake builds it by default (native CPU, OpenMP), from the pinned tree."""
    build = BUILD / "stock-llama.cpp"
    launcher = [f"-DCMAKE_{lang}_COMPILER_LAUNCHER=ccache" for lang in ("C", "CXX") if shutil.which("ccache")]
    session.run("cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *launcher, external=True)
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    session.run("cmake", "--build", str(build), "--target", "llama-server", "-j", jobs, external=True)
    return build / "bin" / "llama-server"


@nox.session
def upstream(session: nox.Session) -> None:
    """Run llama.cpp's own server tests (the pinned tree's tools/server/tests) against the installed llama-server
    of every backend wheel in wheelhouse/: all of them on cpu, UPSTREAM_CUDA_SUBSET on cc50 and cc75 (their CPU
    fallback here). Models are local stand-ins (testkit/llcuda_testkit/standins.py); every test passes or is
    listed in tests/upstream/expected.toml, and the skips equal the stock build's.

    `-- --against-stock` builds stock llama.cpp's llama-server from the same tree, runs the whole suite on it,
    writes tests/upstream/stock-outcomes.txt, and compares every wheel's outcomes with it test by test (no list
    applied); tests/unit/test_upstream_lists.py then checks expected.toml against the new stock outcomes.
    """
    against_stock = "--against-stock" in session.posargs
    session.install(*_group("upstream"))
    src = Path(str(session.run("python", "-m", "llcuda_factory", "source", env=FACTORY_ENV, silent=True)).strip())
    # Outside the repository: upstream's grep tool test searches the tree's root and skips folders named build/.
    work = Path(tempfile.gettempdir()) / f"llcuda-upstream-{os.getuid()}"
    shutil.rmtree(work, ignore_errors=True)
    # A copy where upstream's relative paths resolve (../../../models/templates, ../../../tools/mtmd): the tests
    # write into their folder, and the pinned tree stays untouched; what they only read is linked.
    tests = work / "tree" / "tools" / "server" / "tests"
    shutil.copytree(src / "tools" / "server" / "tests", tests)
    (work / "tree" / "models").symlink_to(src / "models")
    (work / "tree" / "tools" / "mtmd").symlink_to(src / "tools" / "mtmd")
    session.install("-r", str(tests / "requirements.txt"))
    write = "import sys; from pathlib import Path; from llcuda_testkit.standins import write_all; "
    write += "write_all(Path(sys.argv[1]), Path(sys.argv[2]))"
    session.run("python", "-c", write, str(work / "models"), str(src / "models"), env=FACTORY_ENV)
    if not (work / "models" / "tinyllama2.gguf").is_file():
        session.error(f"the stand-in models were not written into {work / 'models'}")
    wheels = {t.name: sorted(WHEELHOUSE.glob(f"{t.package}-*.whl")) for t in all_targets().values()}
    missing = [name for name, found in wheels.items() if not found]
    if missing:
        session.error(f"no wheel for {', '.join(missing)} in {WHEELHOUSE}: run `nox -s wheels` first")
    session.install("--no-index", "--find-links", str(WHEELHOUSE / "deps"), *(str(w[-1]) for w in wheels.values()))
    code = "import sysconfig; print(sysconfig.get_paths()['platlib'])"
    site = Path(str(session.run("python", "-c", code, silent=True)).strip())
    runs: dict[str, Path] = {}
    if against_stock:
        stock = _upstream_run(session, work, _stock_server(session, src), "stock", expected=False)
        commit = session.run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD", external=True, silent=True)
        header = (
            f"# llama.cpp's server tests on a stock build of the pinned tree (nox -s upstream -- --against-stock, "
            f"llcuda {str(commit).strip()}, {time.strftime('%Y-%m-%d')}): OUTCOME<TAB>NODEID\n"
        )
        (UPSTREAM / "stock-outcomes.txt").write_text(header + stock.read_text())
    for target in all_targets().values():
        server = site / target.package / "bin" / "llama-server"
        files = () if not target.is_cuda else UPSTREAM_CUDA_SUBSET
        # Against stock, every outcome is compared with the stock run's: the lists are not applied (a bump's new
        # failures would stop the run before the comparison that names them).
        runs[target.name] = _upstream_run(session, work, server, target.name, files, expected=not against_stock)
    if against_stock:
        _compare_with_stock(session, runs)
        runs = {"stock": work / "outcomes-stock.txt", **runs}
    _write_upstream_summary(runs)


def _write_upstream_summary(runs: dict[str, Path]) -> None:
    """benchmarks/latest/upstream.md, the counts per build and the expected failures (`nox -s record` makes it the
    docs' figure)."""
    from llcuda_testkit.upstream import read_expected, read_outcomes, summary_markdown

    xfail, flaky = read_expected(UPSTREAM / "expected.toml")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    note = f"{time.strftime('%Y-%m-%d')}, commit {commit.stdout.strip() or '?'}, {os.cpu_count()} cores"
    outcomes = {label: read_outcomes(path) for label, path in runs.items()}
    text = summary_markdown(outcomes, UPSTREAM_SECONDS, xfail, flaky, note)
    results.latest("upstream.md").write_text(text)


def _compare_with_stock(session: nox.Session, runs: dict[str, Path]) -> None:
    """No test may have another outcome on a wheel than on the stock build (but the flaky ones)."""
    from llcuda_testkit.upstream import differences, read_expected, read_outcomes

    stock = read_outcomes(UPSTREAM / "stock-outcomes.txt")
    _, flaky = read_expected(UPSTREAM / "expected.toml")
    differ = [
        f"{label}: {d}" for label, path in runs.items() for d in differences(stock, read_outcomes(path), set(flaky))
    ]
    if differ:
        session.error("outcomes that differ from the stock build:\n  " + "\n  ".join(differ))
    session.log(f"every outcome of {', '.join(runs)} equals the stock build's")


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
    session.run("pytest", "-p", "no:cacheprovider", "tests/docs", f"--site={out / 'html'}", env=FACTORY_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """Run every pre-commit hook on every file: ruff (check, format), mypy (tooling at 3.11, the runtime at 3.9),
    shellcheck, actionlint, zizmor and validate-pyproject. The hooks install from PyPI (.pre-commit-config.yaml)."""
    session.install(*_group("lint"))
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


BENCHMARKS = {  # part -> script; `nox -s bench` runs them in this order (all but build), then the summary
    "runtime": "benchmarks/runtime_overhead.py",
    "load": "benchmarks/load.py",
    "throughput": "benchmarks/throughput.py",
    "rpc": "benchmarks/rpc_split.py",  # root: its two hosts are network namespaces
    "size": "benchmarks/sizes.py",
    "cuda_size": "benchmarks/cuda_size_options.py",  # reads build/<target>: after `nox -s wheels`
    "build": "benchmarks/build_times.py",  # hours on 2 cores: run it in the background
}


@nox.session
def bench(session: nox.Session) -> None:
    """Measure speed and size against the anchors into benchmarks/results/: `-- [PART...] [--out DIR]` (see
    BENCHMARKS; --out writes the results elsewhere).

    No argument runs every part but `build`, which takes hours on 2 cores: name it to run it. The GPU part runs on
    a GPU machine (benchmarks/gpu/). benchmarks/results/summary.md gathers the latest results.
    """
    args = list(session.posargs)
    out: list[str] = []
    if "--out" in args:
        i = args.index("--out")
        out = args[i : i + 2]
        del args[i : i + 2]
    # build takes hours; rpc needs root (network namespaces): both run only when named.
    parts = args or [p for p in BENCHMARKS if p != "build" and (p != "rpc" or os.geteuid() == 0)]
    unknown = [p for p in parts if p not in BENCHMARKS]
    if unknown:
        session.error(f"unknown benchmark {', '.join(unknown)}; the parts are: {', '.join(BENCHMARKS)}")
    cpu = sorted(WHEELHOUSE.glob("llcuda_cpu-*.whl"))
    if not cpu:
        session.error("no llcuda-cpu wheel in wheelhouse/: run `nox -s wheels -- cpu` first")
    session.install(*_group("test"))
    session.install("-e", ".")
    session.install("--no-deps", "--force-reinstall", str(cpu[-1]))
    for part in parts:
        session.run("python", BENCHMARKS[part], *out, env=FACTORY_ENV)
    session.run("python", "benchmarks/report.py", *out)


@nox.session(python=False)
def record(session: nox.Session) -> None:
    """Make the latest run's measurements (benchmarks/latest/: CI's wall time, the upstream tier's counts) the
    recorded ones in benchmarks/results/, which the docs include, to commit them: CI itself never changes the tree.
    """
    session.run(sys.executable, "-m", "llcuda_factory", "record", *session.posargs, env=FACTORY_ENV)
