"""The release's dress rehearsal, everything but the upload (``python -m llcuda_testkit release``, ``nox -s
release``):

1. Build every wheel with the README's recipe and the sdist; dist/ gets exactly those files and SHA256SUMS
   (``build_only`` stops here: the release workflow's build job).
2. ``from_dist`` takes dist/ as it is (the workflow's test job, on the built artifact) and checks its sums.
3. The release checks and ``twine check --strict`` on dist/.
4. Every dependency into dist-deps/ beside it; each extra installs in a fresh venv with no network (``unshare -n``)
   from dist/ and dist-deps/ only, and uv picks the llcuda wheel's null variant.
5. The whole suite and the platform tiers (bullseye, trixie; as root) against dist/. The workflow publishes what
   passed, and dist/ is checked once more: nothing in it changed while it was tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from llcuda_factory import release, wheelfile, wheelhouse
from llcuda_factory.errors import FactoryError
from llcuda_factory.pipeline import House, log, make_dist
from llcuda_factory.project import version
from llcuda_factory.targets import all_targets
from llcuda_factory.variants import is_variant_file

from .tiers import PLATFORM_ROOTS, run_platform, run_suite

# What the rehearsal writes beside dist/, kept for inspection and ignored by git (.gitignore names both).
DEPS = "dist-deps"
TESTED_HOUSE = ".release-house"


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FactoryError(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def _check(dist: Path, draft: bool) -> None:
    problems = release.check(dist=dist, draft=draft)
    if problems:
        raise FactoryError("not releasable:\n  " + "\n  ".join(problems))
    log(f"{dist}: the sums, versions, pins, tags and changelog agree")


def unshared_network() -> list[str]:
    """A command prefix with no network at all: `unshare -n` as root, `unshare -rn` otherwise."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode == 0:
            return prefix
    raise FactoryError("cannot make a network namespace (unshare -n / -rn) for the offline install check")


def _listed(venv: Path) -> list[str]:
    out = _run([str(venv / "bin" / "llcuda"), "backends", "--json"], "llcuda backends")
    return [b["target"] for b in json.loads(out)]


def install_offline(dist: Path, deps: Path) -> None:
    """Each extra in a fresh venv from ``dist`` and ``deps`` alone, in a network namespace with no network; then
    uv with the llcuda wheel's variants, which with no GPU here brings the cpu backend."""
    links = ["--find-links", str(dist), "--find-links", str(deps)]
    for target in all_targets():
        with tempfile.TemporaryDirectory(prefix=f"llcuda-release-{target}-") as tmp:
            venv = Path(tmp) / "venv"
            _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
            spec = f"llcuda[{target}]=={version()}"
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", *links, spec]
            _run([*unshared_network(), *pip], f"pip install {spec} with no network")
            if target not in _listed(venv):
                raise FactoryError(f"{spec} installed, but `llcuda backends` does not list {target}")
            log(f"{spec}: installed with no network from dist/ and dist-deps/")
    uv = str(Path(sys.executable).parent / "uv") if (Path(sys.executable).parent / "uv").exists() else "uv"
    with tempfile.TemporaryDirectory(prefix="llcuda-release-uv-") as tmp:
        venv = Path(tmp) / "venv"
        _run([uv, "venv", "-q", "--python", sys.executable, str(venv)], "uv venv")
        cmd = [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-index", "--no-cache"]
        cmd += ["--preview-features", "wheel-variants", *links, f"llcuda=={version()}"]
        _run([*unshared_network(), *cmd], "uv pip install llcuda (wheel variants) with no network")
        if _listed(venv) != ["cpu"]:
            raise FactoryError(
                f"uv installed llcuda's variants with no GPU, and `llcuda backends` lists {_listed(venv)}"
            )
        log("uv pip install llcuda (wheel variants): the cpu backend, with no network and no GPU")


def _test_house(dist: Path, deps: Path) -> Path:
    """The suite reads a wheelhouse: dist/'s files and deps/, hard-linked (the same bytes; a symlink would point
    outside the old-glibc root, where the tier mounts the wheelhouse), and the tests write bundles beside them."""
    house = dist.parent / TESTED_HOUSE
    shutil.rmtree(house, ignore_errors=True)
    (house / "deps").mkdir(parents=True)
    for f in dist.iterdir():
        os.link(f, house / f.name)
    for f in deps.iterdir():
        os.link(f, house / "deps" / f.name)
    return house


def rehearse(
    dist: Path, house: House, *, build_only: bool = False, from_dist: bool = False, draft: bool = False
) -> None:
    """The steps of the module's docstring; a FactoryError at the first that fails."""
    if not from_dist:
        make_dist(list(all_targets().values()), house, dist)
        if build_only:
            return
    elif not (dist / release.SUMS).is_file():
        raise FactoryError("--from-dist: dist/SHA256SUMS is missing (nox -s release -- --build-only writes it)")
    _check(dist, draft)
    pypi = [str(p) for p in sorted(dist.iterdir()) if p.name != release.SUMS and not is_variant_file(p)]
    _run([sys.executable, "-m", "twine", "check", "--strict", *pypi], "twine check --strict")  # the files PyPI takes
    log("twine check --strict: passed")
    deps = dist.parent / DEPS
    shutil.rmtree(deps, ignore_errors=True)
    deps.mkdir()
    for wheel in sorted(p for p in dist.glob("*.whl") if not is_variant_file(p)):
        wheelhouse.download_dependencies(wheelfile.requires(wheel), deps)
    install_offline(dist, deps)
    tested = _test_house(dist, deps)
    root = os.geteuid() == 0
    if run_suite(tested, ["tests", "--run-wheels=all", *(["--netns=require"] if root else [])]) != 0:
        raise FactoryError("the test suite failed against dist/ (its report is above)")
    if root:
        for suite in PLATFORM_ROOTS:
            if run_platform(suite, tested, []) != 0:
                raise FactoryError(f"the {suite} tier failed against dist/ (its report is above)")
    else:
        log("warning: not root: the platform tiers and the netns tests did not run (the release workflow runs them)")
    _check(dist, draft)  # nothing in dist/ changed while it was tested
    log(f"dist/ tested: {(dist / release.SUMS).read_text().count(chr(10))} files, {dist / release.SUMS}")
