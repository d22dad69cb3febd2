"""The release: one version for all four distributions, the llama.cpp pin beside it, the checks before
publishing, and the one-step pin bump.

``python/llcuda/_version.py`` holds ``__version__`` (llcuda and every backend). ``targets.toml``'s
``[llama-cpp]`` holds the whole llama.cpp pin: the release tag, the commit and its offline copy (the
llama-cpp-python sdist and its sha256). The ``llama.cpp/`` submodule's gitlink is the second record of that
commit, and the check below compares the two. Both files are read through :mod:`.project`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import REPO_ROOT, backends, cudaruntime, project, source, toolchain, variants
from .errors import FactoryError
from .project import TABLE
from .targets import all_targets
from .wheelfile import requires as wheel_requires

CHANGELOG = Path("CHANGELOG.md")
SUMS = "SHA256SUMS"  # beside the files of dist/: what the release tested, what it uploads
SUBMODULE = "llama.cpp"
_SDIST_NAME = "llama-cpp-python"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_PUBLIC_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")


@dataclass(frozen=True)
class Release:
    version: str
    llama_cpp_tag: str
    llama_cpp_commit: str


def read_release(root: Path = REPO_ROOT) -> Release:
    pin = project.llama_cpp_pin(root)
    return Release(project.version(root), pin.tag, pin.commit)


def submodule_commit(root: Path = REPO_ROOT) -> str | None:
    """The commit recorded for ``llama.cpp/`` in git's index, or None outside a git checkout."""
    proc = subprocess.run(["git", "-C", str(root), "ls-files", "-s", SUBMODULE], capture_output=True, text=True)
    fields = proc.stdout.split()
    return fields[1] if proc.returncode == 0 and fields and fields[0] == "160000" else None


def check(root: Path = REPO_ROOT, dist: Path | None = None, *, draft: bool = False) -> list[str]:
    """Every reason not to publish: an empty list means the release is consistent. Each named check below says
    what it wants; ``draft`` (CI before a release) accepts a CHANGELOG entry still marked unreleased."""
    rel = read_release(root)
    table = project.table(root)
    return [
        *_check_version(rel),
        *_check_changelog(root, rel, draft=draft),
        *_check_pin(root, rel, table),
        *backends.problems(all_targets(root / TABLE), root),
        *_check_cuda_versions(root, table, dist),
        *(_check_dist(dist, rel, sorted(table["targets"])) if dist is not None else []),
        *(_check_variants(dist, rel, root) if dist is not None else []),
    ]


def _check_version(rel: Release) -> list[str]:
    """A public PEP 440 version: PyPI refuses ``+local`` parts."""
    if _PUBLIC_VERSION.match(rel.version):
        return []
    return [f"version {rel.version!r} is not a public PEP 440 version (PyPI refuses local versions)"]


def _check_changelog(root: Path, rel: Release, *, draft: bool) -> list[str]:
    """CHANGELOG.md has a ``## VERSION`` entry, dated (not "unreleased") unless ``draft``."""
    changelog = root / CHANGELOG
    entry = re.compile(rf"^##\s+\[?{re.escape(rel.version)}\]?(\s.*)?$", re.MULTILINE)
    m = entry.search(changelog.read_text()) if changelog.is_file() else None
    if m is None:
        return [f"{CHANGELOG} has no '## {rel.version}' entry"]
    if not draft and "unreleased" in m.group(0).lower():
        dated = f"'## {rel.version} (YYYY-MM-DD)'"
        return [f"{CHANGELOG}: the {rel.version} entry says unreleased; give it the release date: {dated}"]
    return []


def _check_pin(root: Path, rel: Release, table: dict[str, Any]) -> list[str]:
    """The submodule gitlink and targets.toml's ``[llama-cpp]`` name the same full commit; the offline source is
    an exact pin."""
    problems: list[str] = []
    if not _HEX40.match(rel.llama_cpp_commit):
        problems.append(f"targets.toml: [llama-cpp] commit {rel.llama_cpp_commit!r} is not a full commit hash")
    gitlink = submodule_commit(root)
    if gitlink is not None and gitlink != rel.llama_cpp_commit:
        problems.append(f"the llama.cpp submodule is at {gitlink}, targets.toml pins {rel.llama_cpp_commit}")
    sdist = table["llama-cpp"]["offline-sdist"]
    if not re.match(rf"^{_SDIST_NAME}==[\w.]+$", sdist):
        problems.append(f"targets.toml: offline-sdist {sdist!r} is not an exact {_SDIST_NAME}==VERSION pin")
    return problems


def _check_dist(dist: Path, rel: Release, targets: list[str]) -> list[str]:
    """Every llcuda wheel or sdist in ``dist`` has this version; the runtime wheel pins each backend exactly; each
    backend wheel is tagged ``[toolchain] platform``; ``SHA256SUMS``, where present, lists exactly these files."""
    problems: list[str] = [*_check_sums(dist)]
    platform = toolchain.get().platform
    rows = all_targets()
    for target in targets:
        for wheel in sorted(dist.glob(f"{rows[target].package}-*.whl")):
            if not wheel.name.endswith(f"-py3-none-{platform}.whl"):
                problems.append(f"{wheel.name} is not tagged py3-none-{platform} (targets.toml [toolchain])")
    expected = {f'llcuda-{t}=={rel.version}; extra == "{t}"' for t in targets}
    found = sorted([*dist.glob("llcuda*.whl"), *dist.glob("llcuda*.tar.gz"), *dist.glob("llcuda*-variants.json")])
    if not found:
        problems.append(f"{dist}: no llcuda wheel or sdist")
    for path in found:
        version = re.split(r"-", path.name)[1].removesuffix(".tar.gz")
        if version != rel.version:
            problems.append(f"{path.name} is version {version}, not {rel.version}")
        if path.name.startswith("llcuda-") and path.suffix == ".whl":
            extras = {r.replace("'", '"') for r in wheel_requires(path) if "extra ==" in r}
            if extras != expected:
                problems.append(f"{path.name}: extras {sorted(extras)} are not {sorted(expected)}")
    return problems


def _check_variants(dist: Path, rel: Release, root: Path) -> list[str]:
    """The llcuda wheel's variants: one per row with the properties the runtime's rule gives it, each requiring
    its backend exactly, and the ``variants.json`` that describes them; none at all is a release without them."""
    present = sorted(p for p in dist.iterdir() if variants.is_variant_file(p))
    if not present:
        return [f"{dist}: no wheel variants of llcuda (`llcuda_factory variants` writes them)"]
    problems: list[str] = []
    plan = variants.plan(rel.version, root / TABLE, root)
    index_name = f"llcuda-{rel.version}-variants.json"
    wanted = {v.file_name(rel.version) for v in plan} | {index_name}
    names = {p.name for p in present}
    problems += [f"{dist}: {n} is missing" for n in sorted(wanted - names)]
    problems += [f"{dist}: {n} is not a variant of this release" for n in sorted(names - wanted)]
    if index_name in names:
        listed = json.loads((dist / index_name).read_text()).get("variants", {})
        for v in plan:
            got = {ns: {f: sorted(x) for f, x in feats.items()} for ns, feats in listed.get(v.label, {}).items()}
            if v.label not in listed or got != v.listed():
                wrong = f"variant {v.label} is {listed.get(v.label)}, the rule gives {v.listed()}"
                problems.append(f"{index_name}: {wrong}")
    for v in plan:
        wheel = dist / v.file_name(rel.version)
        if wheel.is_file() and v.requires not in wheel_requires(wheel):
            problems.append(f"{wheel.name} does not require {v.requires}")
    return problems


def _check_sums(dist: Path) -> list[str]:
    """``dist/SHA256SUMS`` (``sha256sum`` format) names every other file of ``dist`` once, with its digest."""
    sums = dist / SUMS
    if not sums.is_file():
        return []
    listed: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {p.name for p in dist.iterdir() if p.is_file() and p.name != SUMS}
    problems = [f"{SUMS} lists {n}, which is not in {dist}" for n in sorted(set(listed) - present)]
    problems += [f"{n} is in {dist} but not in {SUMS}" for n in sorted(present - set(listed))]
    problems += [
        f"{n} does not match its sha256 in {SUMS}"
        for n in sorted(present & set(listed))
        if source.sha256_of(dist / n) != listed[n]
    ]
    return problems


def split_for_publishing(dist: Path, pypi: Path, pages: Path) -> tuple[list[Path], Path]:
    """The tested ``dist/`` as it is published: ``pypi`` gets copies of the files PyPI takes (the sdist and the
    wheels), ``pages/simple/`` the PEP 503 index of the llcuda wheel's variants, which PyPI may not take
    (:func:`variants.write_index`). Refuses a ``dist/`` that fails its ``SHA256SUMS``."""
    bad = _check_sums(dist)
    if bad or not (dist / SUMS).is_file():
        raise FactoryError("; ".join(bad) or f"{dist}/{SUMS} is missing: publish only a tested dist/")
    pypi.mkdir(parents=True, exist_ok=True)
    files = []
    for f in sorted(dist.iterdir()):
        if f.name != SUMS and not variants.is_variant_file(f):
            files.append(Path(shutil.copy2(f, pypi / f.name)))
    return files, variants.write_index(dist, pages)


def write_sums(dist: Path) -> Path:
    """``dist/SHA256SUMS`` for every file in ``dist``, sorted, in ``sha256sum -c`` format."""
    files = sorted(p for p in dist.iterdir() if p.is_file() and p.name != SUMS)
    (dist / SUMS).write_text("".join(f"{source.sha256_of(p)}  {p.name}\n" for p in files))
    return dist / SUMS


def _check_cuda_versions(root: Path, table: dict[str, Any], dist: Path | None) -> list[str]:
    """The release builds with the CUDA version each row names, and the built wheels show it."""
    problems: list[str] = []
    rows = {name: row.get("cuda") for name, row in table["targets"].items() if row.get("cuda_architectures")}
    cibw = project.load_toml(root / "pyproject.toml").get("tool", {}).get("cibuildwheel", {})
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
    packages = {name: t.package for name, t in all_targets(root / TABLE).items()}
    for name, version in rows.items():
        for wheel in sorted(dist.glob(f"{packages[name]}-*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                info = json.loads(zf.read(f"{packages[name]}/build_info.json"))
            built = str(info.get("cuda", {}).get("toolkit_version", ""))
            if not built.startswith(f"{version}."):
                problems.append(f"{wheel.name} was built with CUDA {built or '?'}, targets.toml names {version}")
            wheels = cudaruntime.runtime_wheels(int(str(version).split(".")[0]))
            requires = wheel_requires(wheel)
            names = {re.split(r"[<>=!~; ]", r, maxsplit=1)[0] for r in requires}
            if names != {wheels.cudart, wheels.cublas}:
                problems.append(f"{wheel.name} requires {sorted(names)}, not {wheels.cudart} and {wheels.cublas}")
    return problems


# ---------------------------------------------------------------------------------------------- the pin bump


def vendored_commit(archive: Path, subdir: str) -> str:
    """The llama.cpp commit an llama-cpp-python sdist vendors, read from the git metadata it ships."""
    top = subdir.split("/", maxsplit=1)[0]
    with tarfile.open(archive, "r:gz") as tar:
        names = set(tar.getnames())
        for required in ("CMakeLists.txt", "ggml/CMakeLists.txt"):
            if f"{subdir}/{required}" not in names:
                raise FactoryError(f"{archive.name} has no llama.cpp tree at {subdir}/")
        head = (
            tar.extractfile(f"{top}/.git/modules/vendor/llama.cpp/HEAD")
            if (f"{top}/.git/modules/vendor/llama.cpp/HEAD" in names)
            else None
        )
        if head is None:
            raise FactoryError(f"{archive.name} does not record which llama.cpp commit it vendors")
        return head.read().decode().strip()


def _replace(text: str, key: str, value: str, where: Path) -> str:
    pattern = re.compile(rf'^({re.escape(key)}\s*=\s*)"[^"]*"', re.MULTILINE)
    if not pattern.search(text):
        raise FactoryError(f"no {key} in {where}")
    return pattern.sub(lambda m: f'{m.group(1)}"{value}"', text, count=1)


def bump_llama(
    commit: str,
    sdist_version: str,
    *,
    tag: str | None = None,
    sdist: Path | None = None,
    root: Path = REPO_ROOT,
    dry_run: bool = False,
) -> dict[str, str]:
    """Move the llama.cpp pin in one step: targets.toml's ``[llama-cpp]`` table and the submodule gitlink.

    The sdist is downloaded (or taken from ``sdist``), hashed, and must vendor exactly ``commit``; nothing is
    written unless it does, and nothing at all with ``dry_run`` (the new pin is only returned). The sdist does not
    record llama.cpp's release tag: pass ``tag`` (``b1234``), or the pin is recorded as ``g<short commit>`` with
    build number 0.
    """
    if not _HEX40.match(commit):
        raise FactoryError(f"{commit!r} is not a full 40-hex llama.cpp commit")
    if tag is not None and not re.match(r"^b\d+$", tag):
        raise FactoryError(f"tag {tag!r} is not a llama.cpp release tag (b1234)")
    file_name = f"llama_cpp_python-{sdist_version}.tar.gz"
    subdir = f"llama_cpp_python-{sdist_version}/vendor/llama.cpp"
    with tempfile.TemporaryDirectory(prefix="bump-") as tmp:
        archive = sdist or source.download_sdist(f"{_SDIST_NAME}=={sdist_version}", file_name, Path(tmp))
        if archive.name != file_name:
            raise FactoryError(f"{archive.name} is not {file_name}")
        vendored = vendored_commit(archive, subdir)
        if vendored != commit:
            raise FactoryError(f"{file_name} vendors llama.cpp {vendored}, not {commit}; pick the matching version")
        digest = source.sha256_of(archive)

    new = {
        "tag": tag or f"g{commit[:7]}",
        "commit": commit,
        "offline-sdist": f"{_SDIST_NAME}=={sdist_version}",
        "offline-sdist-file": file_name,
        "offline-sdist-sha256": digest,
        "offline-sdist-subdir": subdir,
    }
    table_path = root / TABLE
    table_text = table_path.read_text()
    for key, value in new.items():
        table_text = _replace(table_text, key, value, table_path)
    if dry_run:
        return new
    table_path.write_text(table_text)
    if submodule_commit(root) is not None:
        subprocess.run(
            ["git", "-C", str(root), "update-index", "--cacheinfo", f"160000,{commit},{SUBMODULE}"], check=True
        )
    return new
