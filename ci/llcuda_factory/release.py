"""The release: one version for all four distributions, the llama.cpp pin beside it, the checks before
publishing, and the one-step pin bump.

``python/llcuda/_version.py`` holds ``__version__`` (llcuda, llcuda-cpu, llcuda-cc50, llcuda-cc75) and the
llama.cpp release those backends are built from (``LLAMA_CPP_TAG``, ``LLAMA_CPP_COMMIT``). ``targets.toml``
names the offline copy of that commit (the llama-cpp-python sdist and its sha256), and the ``llama.cpp/``
submodule's gitlink points at the same commit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

from . import REPO_ROOT
from .errors import FactoryError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the build requires tomli there
    import tomli as tomllib

VERSION_FILE = Path("python") / "llcuda" / "_version.py"
TABLE = Path("targets.toml")
CHANGELOG = Path("CHANGELOG.md")
SUBMODULE = "llama.cpp"
_SDIST_NAME = "llama-cpp-python"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_PUBLIC_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")


@dataclass(frozen=True)
class Release:
    version: str
    llama_cpp_tag: str
    llama_cpp_commit: str


def _field(text: str, name: str, where: Path) -> str:
    m = re.search(rf'^{name}\s*=\s*"([^"]*)"', text, re.MULTILINE)
    if not m:
        raise FactoryError(f"no {name} in {where}")
    return m.group(1)


def read_release(root: Path = REPO_ROOT) -> Release:
    path = root / VERSION_FILE
    text = path.read_text()
    return Release(
        _field(text, "__version__", path), _field(text, "LLAMA_CPP_TAG", path), _field(text, "LLAMA_CPP_COMMIT", path)
    )


def submodule_commit(root: Path = REPO_ROOT) -> str | None:
    """The commit recorded for ``llama.cpp/`` in git's index, or None outside a git checkout."""
    proc = subprocess.run(["git", "-C", str(root), "ls-files", "-s", SUBMODULE], capture_output=True, text=True)
    fields = proc.stdout.split()
    return fields[1] if proc.returncode == 0 and fields and fields[0] == "160000" else None


def _wheel_metadata(wheel: Path) -> tuple[str, str, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    return str(meta["Name"]), str(meta["Version"]), meta.get_all("Requires-Dist") or []


def check(root: Path = REPO_ROOT, dist: Path | None = None) -> list[str]:
    """Every reason not to publish: an empty list means the release is consistent.

    - the version is a public PEP 440 version (PyPI refuses ``+local`` parts) and has a CHANGELOG entry;
    - the submodule gitlink, ``_version.py`` and the offline source name the same llama.cpp commit;
    - every target of targets.toml has its backend project, whose version comes from ``_version.py``;
    - the runtime's extras pin each backend to exactly this version;
    - the release build (``[tool.cibuildwheel]``, ``ci/cibw.sh``) installs the CUDA version each row names;
    - with ``dist``: every llcuda wheel or sdist there has this version, and the runtime wheel's extras match;
      each CUDA backend was built with its row's CUDA version and requires that major's NVIDIA wheels.
    """
    rel = read_release(root)
    problems: list[str] = []
    if not _PUBLIC_VERSION.match(rel.version):
        problems.append(f"version {rel.version!r} is not a public PEP 440 version (PyPI refuses local versions)")
    changelog = root / CHANGELOG
    entry = re.compile(rf"^##\s+\[?{re.escape(rel.version)}\]?(\s|$)", re.MULTILINE)
    if not changelog.is_file() or not entry.search(changelog.read_text()):
        problems.append(f"{CHANGELOG} has no '## {rel.version}' entry")
    if not _HEX40.match(rel.llama_cpp_commit):
        problems.append(f"LLAMA_CPP_COMMIT {rel.llama_cpp_commit!r} is not a full commit hash")
    gitlink = submodule_commit(root)
    if gitlink is not None and gitlink != rel.llama_cpp_commit:
        problems.append(f"the llama.cpp submodule is at {gitlink}, _version.py pins {rel.llama_cpp_commit}")

    with (root / TABLE).open("rb") as f:
        table = tomllib.load(f)
    sdist = table["llama-cpp"]["offline-sdist"]
    if not re.match(rf"^{_SDIST_NAME}==[\w.]+$", sdist):
        problems.append(f"targets.toml: offline-sdist {sdist!r} is not an exact {_SDIST_NAME}==VERSION pin")

    targets = sorted(table["targets"])
    for name in targets:
        project = root / "python" / "backends" / name / "pyproject.toml"
        if not project.is_file():
            problems.append(f"target {name} has no {project.relative_to(root)}")
            continue
        with project.open("rb") as f:
            cfg = tomllib.load(f)
        if cfg["project"]["name"] != f"llcuda-{name}" or "version" not in cfg["project"].get("dynamic", []):
            problems.append(f"{project.relative_to(root)}: must be llcuda-{name} with a dynamic version")
        providers = cfg.get("tool", {}).get("dynamic-metadata", [])
        if not any(p.get("target") == name and "llcuda_factory.metadata" in str(p.get("provider")) for p in providers):
            problems.append(f"{project.relative_to(root)}: its version must come from llcuda_factory.metadata")

    problems += _check_cuda_versions(root, table, dist)

    expected = {f'llcuda-{t}=={rel.version}; extra == "{t}"' for t in targets}
    if dist is not None:
        found = sorted([*dist.glob("llcuda*.whl"), *dist.glob("llcuda*.tar.gz")])
        if not found:
            problems.append(f"{dist}: no llcuda wheel or sdist")
        for path in found:
            version = re.split(r"-", path.name)[1].removesuffix(".tar.gz")
            if version != rel.version:
                problems.append(f"{path.name} is version {version}, not {rel.version}")
            if path.name.startswith("llcuda-") and path.suffix == ".whl":
                _, _, requires = _wheel_metadata(path)
                extras = {r.replace("'", '"') for r in requires if "extra ==" in r}
                if extras != expected:
                    problems.append(f"{path.name}: extras {sorted(extras)} are not {sorted(expected)}")
    return problems


def _check_cuda_versions(root: Path, table: dict[str, Any], dist: Path | None) -> list[str]:
    """The release builds with the CUDA version each row names, and the built wheels show it."""
    from . import toolkit

    problems: list[str] = []
    rows = {name: row.get("cuda") for name, row in table["targets"].items() if row.get("cuda_architectures")}
    with (root / "pyproject.toml").open("rb") as f:
        cibw = tomllib.load(f).get("tool", {}).get("cibuildwheel", {})
    pinned = cibw.get("environment", {}).get("CUDA_VERSION") if isinstance(cibw.get("environment"), dict) else None
    for name, version in rows.items():
        if pinned is not None and pinned != version:
            problems.append(f"[tool.cibuildwheel] builds CUDA {pinned}, targets.toml names CUDA {version} for {name}")
    hooks = (root / "ci" / "cibw.sh").read_text()
    if not re.search(r"install-cuda-toolkit\.sh\S*\s+--target", hooks):
        problems.append(
            "ci/cibw.sh does not install the toolkit of the row it builds (install-cuda-toolkit.sh --target)"
        )
    if dist is None:
        return problems
    for name, version in rows.items():
        for wheel in sorted(dist.glob(f"llcuda_{name}-*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                info = json.loads(zf.read(f"llcuda_{name}/build_info.json"))
            built = str(info.get("cuda", {}).get("toolkit_version", ""))
            if not built.startswith(f"{version}."):
                problems.append(f"{wheel.name} was built with CUDA {built or '?'}, targets.toml names {version}")
            wheels = toolkit.runtime_wheels(int(str(version).split(".")[0]))
            _, _, requires = _wheel_metadata(wheel)
            names = {re.split(r"[<>=!~; ]", r, maxsplit=1)[0] for r in requires}
            if names != {wheels.cudart, wheels.cublas}:
                problems.append(f"{wheel.name} requires {sorted(names)}, not {wheels.cudart} and {wheels.cublas}")
    return problems


# ---------------------------------------------------------------------------------------------- the pin bump


def _download_sdist(version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", _SDIST_NAME, "--dest", str(dest)]
    proc = subprocess.run([*cmd, f"{_SDIST_NAME}=={version}"], capture_output=True, text=True)
    found = sorted(dest.glob(f"llama_cpp_python-{version}.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = "\n".join(proc.stderr.strip().splitlines()[-4:])
        raise FactoryError(f"could not download {_SDIST_NAME}=={version} (exit {proc.returncode}):\n{tail}")
    return found[0]


def vendored_commit(archive: Path, subdir: str) -> str:
    """The llama.cpp commit an llama-cpp-python sdist vendors, read from the git metadata it ships."""
    top = subdir.split("/", maxsplit=1)[0]
    with tarfile.open(archive, "r:gz") as tar:
        names = set(tar.getnames())
        for required in ("CMakeLists.txt", "ggml/CMakeLists.txt"):
            if f"{subdir}/{required}" not in names:
                raise FactoryError(f"{archive.name} has no llama.cpp tree at {subdir}/")
        head = tar.extractfile(f"{top}/.git/modules/vendor/llama.cpp/HEAD") if (
            f"{top}/.git/modules/vendor/llama.cpp/HEAD" in names) else None  # fmt: skip
        if head is None:
            raise FactoryError(f"{archive.name} does not record which llama.cpp commit it vendors")
        return head.read().decode().strip()


def _replace(text: str, key: str, value: str, where: Path) -> str:
    pattern = re.compile(rf'^({re.escape(key)}\s*=\s*)"[^"]*"', re.MULTILINE)
    if not pattern.search(text):
        raise FactoryError(f"no {key} in {where}")
    return pattern.sub(lambda m: f'{m.group(1)}"{value}"', text, count=1)


def bump_llama(
    commit: str, sdist_version: str, *, tag: str | None = None, sdist: Path | None = None, root: Path = REPO_ROOT
) -> dict[str, str]:
    """Move the llama.cpp pin in one step: ``_version.py``, targets.toml's offline source and the submodule.

    The sdist is downloaded (or taken from ``sdist``), hashed, and must vendor exactly ``commit``; nothing is
    written unless it does. The sdist does not record llama.cpp's release tag: pass ``tag`` (``b1234``), or the
    pin is recorded as ``g<short commit>`` with build number 0.
    """
    if not _HEX40.match(commit):
        raise FactoryError(f"{commit!r} is not a full 40-hex llama.cpp commit")
    if tag is not None and not re.match(r"^b\d+$", tag):
        raise FactoryError(f"tag {tag!r} is not a llama.cpp release tag (b1234)")
    file_name = f"llama_cpp_python-{sdist_version}.tar.gz"
    subdir = f"llama_cpp_python-{sdist_version}/vendor/llama.cpp"
    with tempfile.TemporaryDirectory(prefix="bump-") as tmp:
        archive = sdist or _download_sdist(sdist_version, Path(tmp))
        if archive.name != file_name:
            raise FactoryError(f"{archive.name} is not {file_name}")
        vendored = vendored_commit(archive, subdir)
        if vendored != commit:
            raise FactoryError(f"{file_name} vendors llama.cpp {vendored}, not {commit}; pick the matching version")
        from .source import sha256_of

        digest = sha256_of(archive)

    new = {
        "LLAMA_CPP_COMMIT": commit,
        "LLAMA_CPP_TAG": tag or f"g{commit[:7]}",
        "offline-sdist": f"{_SDIST_NAME}=={sdist_version}",
        "offline-sdist-file": file_name,
        "offline-sdist-sha256": digest,
        "offline-sdist-subdir": subdir,
    }
    version_path, table_path = root / VERSION_FILE, root / TABLE
    version_text, table_text = version_path.read_text(), table_path.read_text()
    for key in ("LLAMA_CPP_COMMIT", "LLAMA_CPP_TAG"):
        version_text = _replace(version_text, key, new[key], version_path)
    for key in ("offline-sdist", "offline-sdist-file", "offline-sdist-sha256", "offline-sdist-subdir"):
        table_text = _replace(table_text, key, new[key], table_path)
    version_path.write_text(version_text)
    table_path.write_text(table_text)
    if submodule_commit(root) is not None:
        subprocess.run(
            ["git", "-C", str(root), "update-index", "--cacheinfo", f"160000,{commit},{SUBMODULE}"], check=True
        )
    return new
