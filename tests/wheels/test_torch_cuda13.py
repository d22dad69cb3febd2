"""The T4 beside a CUDA 13 torch, simulated: a venv holding what torch installs for CUDA, without torch itself.

PyTorch on PyPI is CUDA 13 since 2.11: ``torch==2.15.0`` requires ``cuda-toolkit[cublas,cudart]==13.2.2`` (cuBLAS
13.4.1.3, cudart 13.2.86, NVRTC 13.2.86), ``torch==2.12.1`` ``nvidia-cublas`` 13.1.0.3-13.1.1.3 with
``cuda-toolkit[cudart]==13.0.2`` (cudart 13.0.96). In such a venv a CUDA 13 backend must download no NVIDIA wheel,
every library each of its ELF files needs must resolve inside the venv (or be one manylinux lets the system
provide, or the driver), the seed's quick test must answer on the CPU fallback, and ``llcuda doctor``'s rule must
name that backend, where the CUDA 12 one would download some 675 MB.

NVIDIA's wheels are downloaded once into llcuda's cache (``~/.cache/llcuda/wheels``, CI keeps it), then installed
from there with no index.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from llcuda_factory import cudaruntime, pypitoolkit
from llcuda_factory.wheelfile import site_packages
from llcuda_factory.wheelhouse import is_cuda_runtime_wheel
from support import TARGETS, WHEELHOUSE, backend_wheel

# What each torch release installs for CUDA (its Requires-Dist, resolved the way pip resolves them).
TORCH_CUDA = {
    "torch-2.15": ["cuda-toolkit[cublas,cudart]==13.2.2"],
    "torch-2.12": ["cuda-toolkit[cudart]==13.0.2", "nvidia-cublas==13.1.0.3"],
}
CUDA13 = sorted(n for n, t in TARGETS.items() if t.is_cuda and t.cuda_version[0] == 13)
CUDA12 = sorted(n for n, t in TARGETS.items() if t.is_cuda and t.cuda_version[0] == 12)


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _cached(specs: list[str]) -> Path:
    """NVIDIA's wheels for ``specs`` (with their dependencies) in llcuda's wheel cache, downloaded if missing."""
    cache = pypitoolkit.wheels_cache()
    cache.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-index",
            "--find-links",
            str(cache),
            "-d",
            str(cache),
            *specs,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", str(cache), *specs],
            capture_output=True,
            text=True,
            check=False,
        )
        assert got.returncode == 0, got.stderr[-2000:]
    return cache


@pytest.fixture(scope="module", params=sorted(TORCH_CUDA))
def torch_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(name, python, site-packages) of a venv holding what that torch installs for CUDA."""
    specs = TORCH_CUDA[request.param]
    cache = _cached(specs)
    where = tmp_path_factory.mktemp(request.param) / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    got = _pip(python, "install", "-q", "--no-index", "--find-links", str(cache), *specs)
    assert got.returncode == 0, got.stderr
    return request.param, python, site_packages(python)


def _install(python: Path, spec: str) -> None:
    """``pip install spec`` from the wheelhouse and its deps/ only."""
    links = ["--find-links", str(WHEELHOUSE), "--find-links", str(WHEELHOUSE / "deps")]
    got = _pip(python, "install", "-q", "--no-index", *links, spec)
    assert got.returncode == 0, got.stderr


def _would_install(python: Path, spec: str, report: Path) -> dict[str, str]:
    """What `pip install spec` would install into the venv from the wheelhouse (name -> version), by pip's report."""
    links = ["--find-links", str(WHEELHOUSE), "--find-links", str(WHEELHOUSE / "deps")]
    dry = _pip(python, "install", "--dry-run", "--no-index", *links, "--report", str(report), spec)
    assert dry.returncode == 0, dry.stderr
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


def _deps_mb(would: dict[str, str]) -> float:
    """The size of the NVIDIA wheels among ``would``, as wheelhouse/deps holds them."""
    total = 0
    for name, version in would.items():
        if is_cuda_runtime_wheel(name):
            files = list((WHEELHOUSE / "deps").glob(f"{name.replace('-', '_')}-{version}-*.whl"))
            assert files, (name, version)
            total += files[0].stat().st_size
    return total / 1e6


@pytest.mark.parametrize("name", CUDA13)
def test_a_torch_venv_downloads_no_nvidia_wheel_for_the_cuda13_backend(
    name: str, torch_env: tuple[str, Path, Path], tmp_path: Path
) -> None:
    env_name, python, _ = torch_env
    backend_wheel(TARGETS[name])
    would = _would_install(python, f"llcuda[{name}]", tmp_path / "report.json")
    nvidia = sorted(n for n in would if n.startswith("nvidia-") and n != "nvidia-ml-py")
    print(f"\n{env_name}: pip install llcuda[{name}] would install {sorted(would)}")
    assert nvidia == [], nvidia
    assert {"llcuda", TARGETS[name].distribution} <= set(would)
    for cuda12 in CUDA12:  # the CUDA 12 build in the same venv: what the doctor's rule weighs against
        other = _would_install(python, f"llcuda[{cuda12}]", tmp_path / f"{cuda12}.json")
        mb = _deps_mb(other)
        print(f"{env_name}: pip install llcuda[{cuda12}] would download {mb:.0f} MB of NVIDIA wheels")
        assert "nvidia-cublas-cu12" in other and mb > 500


def _needed_and_resolved(elf: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    needed = subprocess.run(["patchelf", "--print-needed", str(elf)], capture_output=True, text=True, check=True)
    ldd = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env=env, check=False).stdout
    resolved = {k: v for k, v in re.findall(r"^\s*(\S+) => (\S+)", ldd, re.MULTILINE)}
    return needed.stdout.split(), resolved


@pytest.mark.parametrize("name", CUDA13)
def test_every_needed_library_resolves_inside_the_torch_venv(name: str, torch_env: tuple[str, Path, Path]) -> None:
    """Each NEEDED of each ELF of the installed backend: inside the venv (cuBLAS and cudart from nvidia/cu13/lib,
    the wheel's own libraries), a library manylinux_2_28 lets the system provide, or the driver (libcuda.so.1,
    absent on this machine without a GPU)."""
    from auditwheel.policy import Architecture, Libc, WheelPolicies

    target = TARGETS[name]
    env_name, python, site = torch_env
    _install(python, f"llcuda[{name}]")
    system = (
        WheelPolicies(libc=Libc.GLIBC, arch=Architecture.x86_64).get_policy_by_name("manylinux_2_28_x86_64").whitelist
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    elf_magic = b"\x7fELF"
    elfs = [p for p in (site / target.package).rglob("*") if p.is_file() and p.read_bytes()[:4] == elf_magic]
    elfs += [p for p in site.glob(f"{target.package}.libs/*") if p.is_file()]
    assert len(elfs) > 10, elfs
    cuda_dir = site / cudaruntime.runtime_wheels(target.cuda_version[0]).lib_dirs[0]
    for elf in elfs:
        needed, resolved = _needed_and_resolved(elf, env)
        for soname in needed:
            where = resolved.get(soname, "not")
            if soname == cudaruntime.DRIVER_SONAME or soname.startswith("ld-linux"):
                continue  # the machine's driver; glibc's dynamic loader itself (ldd lists it without "=>")
            assert where != "not", f"{env_name}: {elf.relative_to(site)} needs {soname}, which does not resolve"
            real = Path(where).resolve()
            if site.resolve() in real.parents:
                if soname in cudaruntime.runtime_wheels(target.cuda_version[0]).sonames:
                    assert real.parent == cuda_dir.resolve(), (soname, real)
                continue
            assert soname in system, f"{env_name}: {elf.name} takes {soname} from {real}, outside the venv"
    (cuda_lib,) = (site / target.package / "bin").glob("libggml-cuda.so")
    _, resolved = _needed_and_resolved(cuda_lib, env)
    assert Path(resolved["libcublas.so.13"]).resolve().parent == cuda_dir.resolve()


@pytest.mark.parametrize("name", CUDA13)
def test_the_seed_quick_test_answers_in_the_torch_venv(
    name: str, torch_env: tuple[str, Path, Path], tiny_gguf: Path
) -> None:
    """The old guide's quick test, verbatim but for the model path, with the CUDA 13 backend on its CPU fallback."""
    env_name, python, _ = torch_env
    _install(python, f"llcuda[{name}]")
    quick = (
        "import llcuda\n"
        "engine = llcuda.InferenceEngine()\n"
        f"engine.load_model({str(tiny_gguf)!r}, gpu_layers=15, ctx_size=1024, silent=False)\n"
        "result = engine.infer('What is 2+2?', max_tokens=50)\n"
        "print(result.text)\n"
        "print('SERVER', engine.server.find_llama_server())\n"
        "print('TOKENS', result.tokens_generated)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LLAMA_SERVER_PATH")}
    out = subprocess.run([str(python), "-c", quick], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, f"{env_name}: {out.stderr[-3000:]}"
    server = re.search(r"^SERVER (.+)$", out.stdout, re.MULTILINE)
    assert server and f"/{TARGETS[name].package}/bin/llama-server" in server.group(1), out.stdout
    tokens = re.search(r"^TOKENS (\d+)$", out.stdout, re.MULTILINE)
    assert tokens and int(tokens.group(1)) > 0, out.stdout


@pytest.mark.parametrize(("driver", "want"), [("580.82.07", "cuda13"), ("535.104.05", "cuda12")])
def test_the_doctors_rule_reads_the_torch_venv_and_the_driver(
    torch_env: tuple[str, Path, Path], driver: str, want: str
) -> None:
    """`llcuda doctor`'s rule, run in the venv on a simulated T4: with driver 580 the CUDA 13 row (nothing to
    download beside torch's wheels), with 535 the CUDA 12 row (CUDA 13 needs 580.65.06)."""
    _, python, _ = torch_env
    _install(python, "llcuda")
    code = (
        "import json, sys; from llcuda import cudawheels, fit, gpu\n"
        f"t4 = gpu.GPU(0, 'Tesla T4', (7, 5), 15360, 15000, {driver!r})\n"
        "r = fit.recommend(t4, have=cudawheels.installed())\n"
        "print(json.dumps({'target': r.target, 'mb': r.download.mb if r.download else None, 'why': r.why}))\n"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    rec = json.loads(out.stdout)
    (expected,) = [n for n in (CUDA13 if want == "cuda13" else CUDA12) if 75 in TARGETS[n].sm_archs]  # the T4's
    assert rec["target"] == expected, rec
    if want == "cuda13":
        assert rec["mb"] == 0.0 and "0 MB of NVIDIA's CUDA wheels" in rec["why"], rec
    else:
        assert "would need driver >= 580.65.06" in rec["why"], rec
