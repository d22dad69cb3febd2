"""One install line for every machine: uv installs the llcuda wheel variant that fits the (simulated) GPU, and the
backend that variant requires, from the wheelhouse the factory wrote. Wheel variants are a uv preview of draft
standards (PEP 817/825/850); uv is pinned in the test dependency group.

The GPU is simulated with the NVIDIA provider's own override variables. For each case the runtime's rule
(``llcuda.fit.target_for``, what ``llcuda doctor`` recommends from NVML) must name the same backend as uv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llcuda_factory import fatbin, variants, wheelfile
from support import TARGETS, WHEELHOUSE, backend_wheel

# simulated GPU (compute capability, CUDA version of its driver) -> the backend uv must install
CASES = [
    ("5.0", "12.4", "cc50"),  # GeForce 940M: machine code
    ("5.2", "12.4", "cc50"),  # GTX 970: sm_50 cubins run on 5.2
    ("6.1", "12.4", "cc50"),  # GTX 1060: compute_50 PTX
    ("7.0", "12.4", "cc50"),  # V100: compute_50 PTX (cc75's code needs 7.5)
    ("7.5", "12.4", "cc75"),  # Tesla T4: machine code
    ("8.6", "12.4", "cc75"),  # RTX 3060: compute_75 PTX
    ("8.9", "12.4", "cc75"),  # L4: compute_75 PTX
    ("9.0", "12.4", "cc75"),  # H100: compute_75 PTX
    ("12.0", "12.8", "cc75"),  # RTX 5090: compute_75 PTX (its drivers are all past the PTX-JIT floor)
    ("7.5", "12.8", "cc75"),  # a T4 on driver 570: below CUDA 13's 580, never the cu13 variant
    ("7.5", "13.0", "cc75"),  # a T4 on driver 580 (Colab, Kaggle): both run; CUDA 12 first, the table's order
    ("9.0", "13.0", "cc75"),  # H100 on 580: the same, through PTX
    ("5.0", "13.0", "cc50"),  # a 940M on R580: CUDA 13 has no Maxwell
    (None, None, "cpu"),  # no GPU
    ("7.5", "11.8", "cpu"),  # a T4 whose driver is older than CUDA 12.0: nothing CUDA 12 runs
]
# The driver each simulated CUDA version stands for (the driver of that toolkit).
DRIVER_OF_CUDA = {cuda: driver for cuda, driver in fatbin.PTX_ISA_DRIVER.values()}
CASE_IDS = [f"{cc or 'no-gpu'}-cuda{cuda or '-'}" for cc, cuda, _ in CASES]


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _env(cc: str | None, cuda: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NV_VARIANT_PROVIDER_", "UV_", "PIP_"))}
    env["UV_NO_CACHE"] = "1"
    if cc is not None and cuda is not None:
        env["NV_VARIANT_PROVIDER_FORCE_SM_ARCH"] = cc
        env["NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION"] = cuda
    return env


def _venv(where: Path) -> Path:
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(where)], check=True)
    return where / "bin" / "python"


def _uv_install(python: Path, links: list[Path], *args: str, env: dict[str, str], preview: bool = True) -> str:
    cmd = [_uv(), "pip", "install", "--python", str(python), "--no-index"]
    cmd += [a for link in links for a in ("--find-links", str(link))]
    if preview:
        cmd += ["--preview-features", "wheel-variants"]
    proc = subprocess.run([*cmd, *args], check=False, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd + list(args))}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _installed_llcuda(python: Path) -> tuple[str | None, list[str]]:
    """The variant label of the installed llcuda (None: the plain wheel) and its Requires-Dist."""
    (dist_info,) = wheelfile.site_packages(python).glob("llcuda-*.dist-info")
    variant = dist_info / "variant.json"
    labels = list(json.loads(variant.read_text())["variants"]) if variant.is_file() else [None]
    assert len(labels) == 1, labels
    meta = (dist_info / "METADATA").read_text()
    return labels[0], [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]


@pytest.fixture(scope="module")
def house() -> Path:
    """The wheelhouse with every backend, the llcuda wheel, its variants and variants.json."""
    for target in TARGETS.values():
        backend_wheel(target)  # skip, or fail when required, without every backend
    found = sorted(p.name for p in WHEELHOUSE.glob("llcuda-*") if variants.is_variant_file(p))
    assert any(n.endswith("-variants.json") for n in found), f"no variants in {WHEELHOUSE}: {found}"
    return WHEELHOUSE


def _policy(cc: str | None, cuda: str | None, python: Path) -> str:
    """What the installed runtime's own rule recommends for that GPU and driver."""
    code = (
        "import sys; from llcuda import fit, gpu\n"
        "cc, driver = sys.argv[1], sys.argv[2]\n"
        "g = None if cc == '-' else gpu.GPU(0, 'sim', tuple(map(int, cc.split('.'))), 16000, 16000, driver)\n"
        "print(fit.target_for(g))\n"
    )
    driver = DRIVER_OF_CUDA[cuda] if cuda else "-"
    out = subprocess.run([str(python), "-c", code, cc or "-", driver], check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.mark.parametrize(("cc", "cuda", "backend"), CASES, ids=CASE_IDS)
def test_uv_installs_the_backend_that_fits_the_gpu(
    house: Path, tmp_path: Path, cc: str | None, cuda: str | None, backend: str
) -> None:
    python = _venv(tmp_path / "venv")
    env = _env(cc, cuda)
    # The whole resolution, dependencies and all, without installing the CUDA wheels.
    out = _uv_install(python, [house, house / "deps"], "--dry-run", "llcuda", env=env)
    arriving = {line.split()[1].split("==")[0] for line in out.splitlines() if line.strip().startswith("+ ")}
    backends = sorted(n for n in arriving if n in {t.distribution for t in TARGETS.values()})
    assert backends == [f"llcuda-{backend}"], out
    # The variant itself: its label, and the requirement that brings the backend.
    _uv_install(python, [house], "--no-deps", "llcuda", env=env)
    label, requires = _installed_llcuda(python)
    assert label == (variants.NULL_LABEL if backend == "cpu" else TARGETS[backend].variant_label)
    version = wheelfile.metadata(backend_wheel(TARGETS[backend]))["Version"]
    assert f"llcuda-{backend}=={version}" in requires
    # The doctor's rule, run by the llcuda that uv installed, agrees.
    assert _policy(cc, cuda, python) == backend


@pytest.mark.parametrize(("cuda", "backend"), [("13.0", "cc75-cu13"), ("12.8", "cc75")])
def test_with_cuda_13_first_uv_brings_the_cuda13_backend_only_where_the_driver_runs_it(
    house: Path, tmp_path: Path, cuda: str, backend: str
) -> None:
    """The variants of this build with [variant.providers.llcuda]'s order turned around (what a publisher would do
    once the platforms' images hold CUDA 13): on a T4 with a 580 driver uv resolves llcuda-cc75-cu13 and its CUDA
    13 wheels; with a 570 one still llcuda-cc75."""
    flipped, backends = tmp_path / "flipped", tmp_path / "backends"
    flipped.mkdir()
    backends.mkdir()
    for f in house.glob("llcuda-*"):  # the plain wheel, its variants and their JSON
        os.link(f, flipped / f.name)
    for target in TARGETS.values():
        wheel = backend_wheel(target)
        os.link(wheel, backends / wheel.name)
    (index,) = flipped.glob("*-variants.json")
    data = json.loads(index.read_text())
    data["providers"]["llcuda"]["static-properties"]["cuda"].reverse()
    index.unlink()  # a new file, not the wheelhouse's (they share the inode)
    index.write_text(json.dumps(data))
    python = _venv(tmp_path / "venv")
    out = _uv_install(python, [flipped, backends, house / "deps"], "--dry-run", "llcuda", env=_env("7.5", cuda))
    arriving = {line.split()[1].split("==")[0] for line in out.splitlines() if line.strip().startswith("+ ")}
    assert sorted(n for n in arriving if n in {t.distribution for t in TARGETS.values()}) == [f"llcuda-{backend}"]
    nvidia = {n for n in arriving if n.startswith("nvidia-cu")}
    assert nvidia == (
        {"nvidia-cublas", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc"}
        if cuda == "13.0"
        else {"nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cuda-nvrtc-cu12"}
    ), out


def test_uv_installs_the_cpu_backend_with_no_gpu_and_it_runs(house: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _uv_install(python, [house, house / "deps"], "llcuda", env=_env(None, None))
    listed = subprocess.run(
        [str(python.parent / "llcuda"), "backends", "--json"], check=True, capture_output=True, text=True
    )
    assert [b["target"] for b in json.loads(listed.stdout)] == ["cpu"]


def test_pip_skips_the_variants_and_the_extras_work_unchanged(house: Path, tmp_path: Path) -> None:
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(house)]
    pip += ["--find-links", str(house / "deps")]
    report = tmp_path / "report.json"
    subprocess.run([*pip, "--dry-run", "--report", str(report), "llcuda[cc50]"], check=True)
    chosen = {i["metadata"]["name"]: i["download_info"]["url"] for i in json.loads(report.read_text())["install"]}
    assert chosen["llcuda"].endswith("-py3-none-any.whl") and variants.variant_label(Path(chosen["llcuda"])) is None
    assert "llcuda-cc50" in chosen and not {"llcuda-cc75", "llcuda-cpu"} & set(chosen)
    subprocess.run([*pip, "--no-deps", "llcuda"], check=True)
    label, requires = _installed_llcuda(python)
    assert label is None and not any(r.startswith("llcuda-") and "extra" not in r for r in requires)


def test_uv_without_the_preview_installs_the_plain_wheel(house: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _uv_install(python, [house], "--no-deps", "llcuda", env=_env("7.5", "12.4"), preview=False)
    label, _ = _installed_llcuda(python)
    assert label is None


def test_without_their_json_uv_ignores_the_variants(house: Path, tmp_path: Path) -> None:
    """A folder of variant wheels copied without ``variants.json``: uv cannot read their properties, so it takes
    the plain wheel where there is one (no backend) and otherwise finds nothing it can install."""
    with_plain, only_variants = tmp_path / "with-plain", tmp_path / "only-variants"
    for folder in (with_plain, only_variants):
        folder.mkdir()
    for f in house.glob("llcuda-*.whl"):  # the plain wheel and its variants (backends are llcuda_<target>-*)
        shutil.copy2(f, with_plain / f.name)
        if variants.variant_label(f) is not None:
            shutil.copy2(f, only_variants / f.name)
    python = _venv(tmp_path / "venv")
    _uv_install(python, [with_plain], "--no-deps", "llcuda", env=_env("7.5", "12.4"))
    label, _ = _installed_llcuda(python)
    assert label is None
    python = _venv(tmp_path / "venv2")
    cmd = [_uv(), "pip", "install", "--python", str(python), "--no-index", "--find-links", str(only_variants)]
    cmd += ["--preview-features", "wheel-variants", "--no-deps", "llcuda"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env("7.5", "12.4"))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "only unsupported wheel variants" in proc.stderr, proc.stderr


def test_a_bundle_of_every_target_lets_uv_pick_offline(house: Path, tmp_path: Path) -> None:
    from llcuda_factory.wheelhouse import offline_bundle

    bundle = offline_bundle(list(TARGETS.values()), house, without_cuda_wheels=True)
    names = {p.name for p in bundle.iterdir()}
    assert any(n.endswith("-variants.json") for n in names)
    for cc, cuda, backend in (("5.0", "12.4", "cc50"), ("7.5", "12.4", "cc75"), (None, None, "cpu")):
        python = _venv(tmp_path / f"venv-{backend}")
        _uv_install(python, [bundle], "--no-deps", "llcuda", env=_env(cc, cuda))
        label, requires = _installed_llcuda(python)
        assert label == (variants.NULL_LABEL if backend == "cpu" else TARGETS[backend].variant_label)
        wheel = bundle / backend_wheel(TARGETS[backend]).name  # the backend it requires is in the bundle
        assert wheel.is_file() and f"llcuda-{backend}=={wheelfile.metadata(wheel)['Version']}" in requires
    # a single-target bundle keeps the plain wheel only: its variants would name backends it lacks
    single = offline_bundle([TARGETS["cpu"]], house, without_cuda_wheels=True)
    assert not [p.name for p in single.iterdir() if variants.is_variant_file(p)]
