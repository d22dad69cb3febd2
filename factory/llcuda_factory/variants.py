"""The llcuda wheel's variants: one install line that picks the backend by GPU.

Wheel variants are a draft standard (PEP 817 the overview, PEP 825 the format, PEP 850 the providers); uv
implements them behind ``--preview-features wheel-variants``. Each row of ``targets.toml`` gives one variant of
the pure-Python ``llcuda`` wheel: the plain wheel plus an unconditional ``Requires-Dist`` on that row's backend at
exactly this version, labelled with the row's name. The CPU row is the ``null`` variant, which uv installs when no
GPU variant fits. pip skips variant file names and keeps installing the plain wheel and its extras.

A GPU variant's properties come from the runtime's own rule (:func:`llcuda.fit.target_for`, what ``llcuda
doctor`` recommends), evaluated for every GPU the NVIDIA provider can name:

- ``nvidia :: sm_arch :: XY_real`` for each arch the row has machine code for, where the rule picks that row;
- ``nvidia :: sm_arch :: X0_virtual`` for each newer major whose GPUs the rule sends to this row's PTX;
- ``nvidia :: cuda_version_lower_bound :: 12.0`` (13.0 for a CUDA 13 row): the CUDA runtime's driver floor
  (minor-version compatibility, driver 525.60.13; 580.65.06), so that no driver below it ever gets the variant.
  The provider ranks this feature above ``sm_arch`` and a higher bound wins, so a PTX floor here (12.4) would beat
  the native variant; the PTX-JIT driver stays a run-time check (``llcuda doctor`` names it);
- ``llcuda :: cuda :: 12``: the row's CUDA major, in llcuda's own static namespace, ranked above ``nvidia``. Its
  values' order in targets.toml (``[variant.providers.llcuda]``) decides between two rows that differ only in
  their CUDA major (cc75 and cc75-cu13) on a driver that runs both; without it the higher
  ``cuda_version_lower_bound`` would always win.

For a GPU of compute capability X.Y the provider accepts ``X{Y..0}_real`` then ``X0_virtual``, in that order of
priority (wheelnext/nvidia-variant-provider, ``plugin.py``), for majors 5 to 12. The tests install the variants
with uv for each simulated GPU and check that uv and :func:`llcuda.fit.target_for` agree.

The variants are built by variantlib (``make-variant``, ``generate-index-json``) from PEP 825's ``[variant]``
table, kept in targets.toml (validate-pyproject refuses unknown top-level tables in pyproject.toml); the
``Requires-Dist`` goes in with ``wheel unpack``/``wheel pack``.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT, cudaruntime, project
from .errors import FactoryError
from .source import sha256_of
from .targets import (
    TABLE,
    VARIANT_CUDA_FEATURE,
    VARIANT_NAMESPACE,
    Target,
    all_targets,
    cuda_preference,
    runtime_table,
)

# The sm_arch majors the NVIDIA provider can name (its values run from 50_real to 129_real).
PROVIDER_MAJORS = range(5, 13)
NULL_LABEL = "null"  # variantlib's label for the variant with no properties
# llcuda-0.1.0-py3-none-any-cc50.whl: a wheel name with a sixth, variant-label field.
_VARIANT_WHEEL = re.compile(r"^(?P<stem>[^-]+-[^-]+-[^-]+-[^-]+-[^-]+)-(?P<label>[0-9a-z._]+)\.whl$")


@dataclass(frozen=True)
class Variant:
    """One variant of the llcuda wheel: the row it installs, its label and its provider properties."""

    target: str
    label: str
    properties: tuple[str, ...]  # "nvidia :: sm_arch :: 75_real", ...
    requires: str  # "llcuda-cc75==0.1.0"

    def file_name(self, version: str) -> str:
        return f"llcuda-{version}-py3-none-any-{self.label}.whl"

    def listed(self) -> dict[str, dict[str, list[str]]]:
        """The properties as ``variants.json`` lists them: namespace -> feature -> sorted values (``{}`` for null)."""
        out: dict[str, dict[str, list[str]]] = {}
        for prop in self.properties:
            namespace, feature, value = (x.strip() for x in prop.split("::"))
            out.setdefault(namespace, {}).setdefault(feature, []).append(value)
        return {ns: {f: sorted(v) for f, v in feats.items()} for ns, feats in out.items()}


def variant_label(path: Path) -> str | None:
    """The variant label of a wheel file name (``...-any-cc50.whl`` -> ``cc50``); None for a plain wheel."""
    m = _VARIANT_WHEEL.match(path.name)
    return m.group("label") if m else None


def is_variant_file(path: Path) -> bool:
    """A variant wheel or a ``*-variants.json`` index file: the files pip and PyPI do not take."""
    return variant_label(path) is not None or path.name.endswith("-variants.json")


def plan(version: str, table: Path = TABLE, root: Path = REPO_ROOT) -> list[Variant]:
    """The variants of llcuda ``version``, one per row of ``table``, by the runtime's rule.

    A CUDA row's ``sm_arch`` values are the GPUs :func:`llcuda.fit.target_for` gives it when its own CUDA major
    comes first (the choice by architecture; which major wins among equal rows is ``llcuda :: cuda``'s order)."""
    fit = project.runtime_package_module("fit", root)
    catalog = project.runtime_package_module("catalog", root)
    gpu_module = project.runtime_package_module("gpu", root)
    rows = catalog.parse(runtime_table(table))
    targets = all_targets(table)
    preference = tuple(cuda_preference(table))
    cpu_rows = [r.name for r in rows if not r.is_cuda]
    if len(cpu_rows) != 1:
        raise FactoryError(f"{table}: the variants need exactly one CPU row for the null variant (got {cpu_rows})")
    props: dict[str, list[str]] = {r.name: [] for r in rows if r.is_cuda}
    for major in PROVIDER_MAJORS:
        for minor in range(10):
            cc = major * 10 + minor
            # A driver at every row's floor: the choice by architecture alone.
            gpu = gpu_module.GPU(0, f"CC {major}.{minor}", (major, minor), 0, 0, "")
            for first in preference:
                prefer = (first, *(m for m in preference if m != first))
                chosen = fit.target_for(gpu, rows, prefer=prefer)
                row = next(r for r in rows if r.name == chosen)
                if not row.is_cuda or row.cuda_major != first:
                    continue
                how = fit.arch_fit(row.archs, cc)
                value = f"{cc}_real" if how == "native" and any(a.sass and a.cc == cc for a in row.archs) else None
                if how == "ptx" and minor == 0:
                    value = f"{major}0_virtual"
                if value and value not in props[chosen]:
                    props[chosen].append(value)
    variants = []
    for r in rows:
        target = targets[r.name]
        requires = f"{target.distribution}=={version}"
        if not r.is_cuda:
            variants.append(Variant(r.name, NULL_LABEL, (), requires))
            continue
        if not props[r.name]:
            raise FactoryError(f"target {r.name}: no GPU the NVIDIA provider can name would pick it")
        floor = cudaruntime.runtime_wheels(target.cuda_version[0]).floor_cuda
        properties = (
            f"{VARIANT_NAMESPACE} :: {VARIANT_CUDA_FEATURE} :: {target.cuda_version[0]}",
            f"nvidia :: cuda_version_lower_bound :: {floor}",
            *(f"nvidia :: sm_arch :: {v}" for v in props[r.name]),
        )
        variants.append(Variant(r.name, target.variant_label, properties, requires))
    return variants


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise FactoryError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _with_requirement(plain: Path, requirement: str, work: Path) -> Path:
    """A copy of the wheel ``plain`` whose METADATA also says ``Requires-Dist: requirement``."""
    unpacked = work / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    _run([sys.executable, "-m", "wheel", "unpack", "-d", str(unpacked), str(plain)], "wheel unpack")
    (metadata,) = unpacked.glob("*/*.dist-info/METADATA")
    head, sep, body = metadata.read_text(encoding="utf-8").partition("\n\n")
    metadata.write_text(f"{head}\nRequires-Dist: {requirement}{sep}{body}", encoding="utf-8")
    out = work / "packed"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    (tree,) = unpacked.iterdir()
    _run([sys.executable, "-m", "wheel", "pack", "-d", str(out), str(tree)], "wheel pack")
    (packed,) = out.glob("*.whl")
    return packed


def write_variants(plain: Path, dest: Path, *, table: Path = TABLE) -> list[Path]:
    """Write the variants of the plain llcuda wheel ``plain`` and ``llcuda-<version>-variants.json`` into
    ``dest``, replacing older ones; return the new files."""
    parts = plain.name.split("-")
    if len(parts) != 5 or parts[0] != "llcuda" or plain.suffix != ".whl":
        raise FactoryError(f"{plain.name} is not a plain llcuda wheel (llcuda-VERSION-py3-none-any.whl)")
    if not plain.is_file():
        raise FactoryError(f"{plain} does not exist: build it with `nox -s wheels`")
    version = parts[1]
    variants = plan(version, table)
    main = [sys.executable, "-c", "import sys; from variantlib.commands.main import main; sys.exit(main())"]
    with tempfile.TemporaryDirectory(prefix="llcuda-variants-") as tmp:
        work, staged = Path(tmp), Path(tmp) / "variants"
        staged.mkdir()
        for v in variants:
            src = _with_requirement(plain, v.requires, work)
            cmd = [*main, "make-variant", "-f", str(src), "-o", str(staged), "--pyproject-toml", str(table)]
            # uv carries the NVIDIA provider itself; it is not on PyPI, so variantlib cannot load it to validate.
            cmd.append("--skip-plugin-validation")
            if v.properties:
                cmd += ["--variant-label", v.label, "-p", *v.properties]
            else:
                cmd.append("--null-variant")
            _run(cmd, f"variantlib make-variant ({v.label})")
        _run([*main, "generate-index-json", "-d", str(staged)], "variantlib generate-index-json")
        made = sorted(staged.iterdir())
        expected = sorted([*(v.file_name(version) for v in variants), f"llcuda-{version}-variants.json"])
        if [p.name for p in made] != expected:
            raise FactoryError(f"variantlib wrote {[p.name for p in made]}, expected {expected}")
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("llcuda-*"):
            if is_variant_file(old):
                old.unlink()
        return [Path(shutil.move(str(p), dest / p.name)) for p in made]


def bundle_variants(wheelhouse: Path, version: str, targets: list[Target]) -> list[Path]:
    """The variant files a bundle of ``targets`` carries: all of them when it holds every row's backend (uv can
    pick offline), none otherwise (a variant would name a backend the bundle lacks)."""
    if {t.name for t in targets} != set(all_targets()):
        return []
    files = [wheelhouse / v.file_name(version) for v in plan(version)]
    files.append(wheelhouse / f"llcuda-{version}-variants.json")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FactoryError(f"{wheelhouse} lacks {', '.join(missing)}: rebuild with `nox -s wheels`")
    return files


def write_index(dist: Path, out: Path) -> Path:
    """A PEP 503 index of llcuda for the files PyPI may not take, at ``out/simple/``: the plain llcuda wheel, its
    variants and ``variants.json``, each linked with its sha256 from ``simple/llcuda/`` (uv reads the JSON from
    there). The backends stay on PyPI. Return ``out/simple``."""
    files = sorted(p for p in dist.glob("llcuda-*") if is_variant_file(p) or p.name.endswith("-none-any.whl"))
    if not any(p.name.endswith("-variants.json") for p in files):
        raise FactoryError(f"{dist} has no llcuda-*-variants.json: nothing to index")
    simple = out / "simple"
    project_dir = simple / "llcuda"
    shutil.rmtree(simple, ignore_errors=True)
    project_dir.mkdir(parents=True)
    links = []
    for f in files:
        shutil.copy2(f, project_dir / f.name)
        name = html.escape(f.name)
        links.append(f'    <a href="{name}#sha256={sha256_of(f)}">{name}</a><br>')
    page = "<!DOCTYPE html>\n<html>\n  <head><title>{title}</title></head>\n  <body>\n{body}\n  </body>\n</html>\n"
    (project_dir / "index.html").write_text(page.format(title="Links for llcuda", body="\n".join(links)))
    root_link = '    <a href="llcuda/">llcuda</a><br>'
    (simple / "index.html").write_text(page.format(title="llcuda's wheel variants", body=root_link))
    return simple
