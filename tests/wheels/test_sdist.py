"""The llcuda runtime from its sdist, the file PyPI serves to whoever cannot use the wheel: built from the checkout,
then a wheel from the sdist alone (hatchling and the table's build hook, no checkout around it), which must hold
what the wheelhouse's runtime wheel holds, and which a fresh venv installs with the cpu backend and no network."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

from llcuda_factory import REPO_ROOT
from llcuda_factory.project import version
from support import TARGETS, WHEELHOUSE, backend_wheel, without_network


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _contents(wheel: Path) -> dict[str, str]:
    """Each file of a wheel but RECORD, by name, as a sha256 of its bytes."""
    with zipfile.ZipFile(wheel) as zf:
        return {
            i.filename: hashlib.sha256(zf.read(i)).hexdigest()
            for i in zf.infolist()
            if not i.filename.endswith(".dist-info/RECORD")
        }


def test_a_wheel_built_from_the_sdist_alone_is_the_runtime_wheel_and_installs_offline(tmp_path: Path) -> None:
    cpu = backend_wheel(TARGETS["cpu"])
    runtime = WHEELHOUSE / f"llcuda-{version()}-py3-none-any.whl"
    assert runtime.is_file(), f"no runtime wheel {runtime.name} in {WHEELHOUSE} (`nox -s wheels` writes it)"

    out = tmp_path / "sdist"
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)])
    (sdist,) = out.glob("llcuda-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"targets.toml", "factory/hatch_hooks.py", "python/llcuda/__init__.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "docs/", "ci/", "cmake/"))]

    # pip unpacks the sdist into a folder of its own: the build sees the sdist's files only.
    wheel = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(tmp_path / "built")]
    _run([sys.executable, "-m", "pip", *wheel, str(sdist)])
    (built,) = (tmp_path / "built").glob("llcuda-*.whl")
    assert _contents(built) == _contents(runtime)

    where = tmp_path / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    links = ["--find-links", str(cpu.parent), "--find-links", str(WHEELHOUSE / "deps")]
    install = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-index", *links]
    _run(without_network([*install, f"llcuda[cpu] @ {built.as_uri()}"]))
    listed = json.loads(_run([str(where / "bin" / "llcuda"), "backends", "--json"]).stdout)
    assert [(b["target"], b["runs"]) for b in listed] == [("cpu", True)]
