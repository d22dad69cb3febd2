"""The built wheels on other systems than the build machine's, each a Debian root made by ``ci/platform-root.sh``:

- bullseye (``nox -s tests_oldglibc``): glibc 2.31 and Python 3.9, the oldest system these machines can run;
- trixie (``nox -s tests_trixie``): glibc 2.41 and Python 3.13, where Colab's Python and Ubuntu 24.04's glibc sit.

The session runs this file as root with ``--platform-root``. pip in the root installs ``llcuda[<every row>]`` from
``wheelhouse/``, and each dependency from the package index for the root's Python (``wheelhouse/deps`` holds the
build machine's cp311 wheels). There is no ``libcuda.so.1`` there, so the CUDA backends serve on the CPU, as on any
machine without a driver.

Every scenario runs in the root (``scenarios.py``, under its Python) and prints JSON that the tests check here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llcuda_factory import project
from llcuda_testkit.platformroot import WORK, PlatformRoot
from support import TARGETS, WHEELHOUSE, backend_wheel

pytestmark = pytest.mark.platform
VENV = f"{WORK}/venv"
HERE = Path(__file__).parent
# What each root is: (glibc, Python)
PLATFORMS = {"bullseye": ("2.31", "3.9"), "trixie": ("2.41", "3.13")}


@dataclass(frozen=True)
class Platform:
    root: PlatformRoot
    model: str  # paths inside the root
    scenarios: str

    @property
    def glibc(self) -> str:
        return PLATFORMS[self.root.suite][0]

    @property
    def python(self) -> str:
        return PLATFORMS[self.root.suite][1]

    def site(self, venv: str = VENV) -> str:
        return f"{venv}/lib/python{self.python}/site-packages"

    def server(self, target: str) -> str:
        return f"{self.site()}/{TARGETS[target].package}/bin/llama-server"

    def scenario(self, *args: str, timeout: float = 180) -> dict[str, object]:
        out = self.root.run(["python", self.scenarios, *args], venv=VENV, timeout=timeout).stdout
        result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
        return result


@pytest.fixture(scope="session")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    from llcuda_testkit.tinymodel import write_tiny_llama

    root_dir = Path(request.config.getoption("--platform-root"))
    for target in TARGETS.values():
        backend_wheel(target)  # fails, naming the missing wheel
    if not sorted(WHEELHOUSE.glob(f"llcuda-{project.version()}-*.whl")):
        pytest.fail(f"no llcuda {project.version()} runtime wheel in {WHEELHOUSE}; `nox -s wheels` builds it")
    work = tmp_path_factory.mktemp("platform")
    write_tiny_llama(work / "tiny-llama.gguf")
    write_tiny_llama(work / "slow-llama.gguf", n_layer=4, n_embd=256, n_ff=1024, n_ctx=4096)
    shutil.copy(HERE / "scenarios.py", work / "scenarios.py")
    (work / "wheelhouse").mkdir()
    with PlatformRoot(root_dir, work) as root:
        root.bind(WHEELHOUSE, f"{WORK}/wheelhouse")
        root.run(["python3", "-m", "venv", VENV])
        extras = ",".join(sorted(TARGETS))
        links = ["--find-links", f"{WORK}/wheelhouse", "--find-links", f"{WORK}/wheelhouse/deps"]
        # Pinned: an unrelated older "llcuda" project on the index must never win.
        spec = f"llcuda[{extras}]=={project.version()}"
        root.run(["python", "-m", "pip", "install", "-q", *links, spec], venv=VENV, timeout=900)
        yield Platform(root, f"{WORK}/tiny-llama.gguf", f"{WORK}/scenarios.py")


def test_the_root_has_its_glibc_and_python(platform: Platform) -> None:
    libc = platform.root.run(["ldd", "--version"]).stdout.splitlines()[0]
    assert libc.endswith(f" {platform.glibc}")
    python = platform.root.run(["python", "--version"], venv=VENV).stdout.strip()
    assert python.startswith(f"Python {platform.python}."), python


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_backend_loads_infers_streams_chats_and_tokenizes(platform: Platform, target: str) -> None:
    out = platform.scenario("serve", platform.model, platform.server(target))
    assert out["glibc"] == platform.glibc
    assert str(out["python"]).startswith(f"{platform.python}.")
    assert out["infer"]["success"] is True  # type: ignore[index]
    assert out["chat"]["success"] is True  # type: ignore[index]
    assert isinstance(out["stream"], str)
    assert out["tokens"]
    assert out["detokenized"] == "Hello world"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_backend_embeds(platform: Platform, target: str) -> None:
    out = platform.scenario("embed", platform.model, platform.server(target))
    assert out["count"] == 2
    assert out["dims"] == [64]
    assert abs(float(out["norm"]) - 1.0) < 1e-3  # type: ignore[arg-type]


# llama-server: std::stoi throws std::invalid_argument inside libllcuda-stdcxx.so, common/arg.cpp (libllama-common.so)
# wraps and rethrows it and catches it in common_params_parse. llama-bench: std::stoi's std::out_of_range, thrown
# inside libllcuda-stdcxx.so, caught in the llama-bench executable.
BAD_ARGUMENTS = {
    "llama-server": (["--ctx-size", "abc"], 'error while handling argument "--ctx-size": stoi'),
    "llama-bench": (["-p", "99999999999"], "error: stoi"),
}


@pytest.mark.parametrize("tool", sorted(BAD_ARGUMENTS))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_bad_argument_crosses_libraries_as_an_exception_and_exits_1(
    platform: Platform, target: str, tool: str
) -> None:
    """The exception is thrown in one library and caught in another: llama.cpp's own error line and exit 1, never
    std::terminate's abort (exit 134), on the root's glibc."""
    args, line = BAD_ARGUMENTS[tool]
    binary = str(Path(platform.server(target)).with_name(tool))
    proc = platform.root.run([binary, *args], check=False, timeout=60)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "terminate called" not in proc.stderr
    assert line in proc.stderr


def test_doctor_and_backends(platform: Platform) -> None:
    listed = json.loads(platform.root.run(["llcuda", "backends", "--json"], venv=VENV).stdout)
    assert sorted(b["target"] for b in listed) == sorted(TARGETS)
    doctor = platform.root.run(["llcuda", "doctor"], venv=VENV).stdout
    assert "GPU: none found" in doctor
    assert "Running on the CPU" in doctor
    for target in TARGETS.values():
        assert target.distribution in doctor or target.name in doctor


def test_a_corrupt_model_is_a_model_error(platform: Platform) -> None:
    bad = platform.root.host_path(f"{WORK}/corrupt.gguf")
    bad.write_bytes(b"GGUF" + bytes(range(64)))
    out = platform.scenario("bad-model", f"{WORK}/corrupt.gguf")
    assert out["error"] == "ModelLoadError"
    assert f"llama-server could not load {WORK}/corrupt.gguf" in str(out["message"])


def test_a_server_killed_mid_stream_is_a_crash_error_and_the_engine_reloads(platform: Platform) -> None:
    out = platform.scenario("crash", platform.model, f"{WORK}/slow-llama.gguf")
    assert out["error"] == "ServerCrashedError"
    assert "last server output" in str(out["message"])
    assert out["reloaded"] is True


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_rpc_on_loopback(platform: Platform, target: str) -> None:
    out = platform.scenario("rpc", platform.model, platform.server(target))
    assert out["version"] == "7.0.0"
    assert out["hosts"] == [out["endpoint"]]
    assert out["success"] is True


# One row per CUDA major, the newest GPU's (the T4's: Kaggle's GPU), whose NVIDIA wheels the notebook holds.
_PER_MAJOR = {t.cuda_version[0]: t for t in sorted(TARGETS.values(), key=lambda t: t.sm_archs) if t.is_cuda}


@pytest.mark.parametrize("name", sorted(t.name for t in _PER_MAJOR.values()))
def test_offline_install_of_a_nocuda_bundle_made_for_the_roots_python(platform: Platform, name: str) -> None:
    """What a Kaggle notebook with the internet off does, on the root's Python: NVIDIA's CUDA wheels are there
    already, llcuda's own wheels come from a `-nocuda` bundle made with `--python-version`, and pip has no
    network."""
    from llcuda_factory.wheelhouse import offline_bundle

    target = TARGETS[name]
    bundle = offline_bundle([target], WHEELHOUSE, python_version=platform.python, without_cuda_wheels=True)
    assert bundle.name == f"offline-{name}-nocuda"
    host_bundle = platform.root.host_path(f"{WORK}/bundle-{name}")
    shutil.copytree(bundle, host_bundle)
    venv = f"{WORK}/venv-offline-{name}"
    root = platform.root
    root.run(["python3", "-m", "venv", venv])
    nvidia = [r for r in _requires(bundle, target.package) if r.startswith("nvidia-")]
    links = ["--find-links", f"{WORK}/wheelhouse/deps"]
    root.run(["python", "-m", "pip", "install", "-q", "--no-index", *links, *nvidia], venv=venv, network=False)
    cmd = ["python", "-m", "pip", "install", "-q", "--no-index", "--find-links", f"{WORK}/bundle-{name}"]
    root.run([*cmd, f"llcuda[{name}]=={project.version()}"], venv=venv, network=False)
    server = f"{platform.site(venv)}/{target.package}/bin/llama-server"
    version = root.run([server, "--version"], network=False)
    pin = project.llama_cpp_pin()
    assert f"(build {pin.tag[1:]}, commit {pin.commit[:7]})" in version.stdout + version.stderr


def _requires(bundle: Path, package: str) -> list[str]:
    from llcuda_factory import wheelfile

    (wheel,) = sorted(bundle.glob(f"{package}-*.whl"))
    return [r.split(";")[0].replace(" ", "") for r in wheelfile.requires(wheel)]
