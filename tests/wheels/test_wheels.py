"""End-to-end tests of the built backend wheels: each is installed with ``pip --no-index`` into a fresh venv
(as ``llcuda[<target>]``) and its own llama-server serves a tiny GGUF written by the tests."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from llcuda_factory import cudaruntime, symbols, toolchain, wheelfile
from llcuda_factory.audit import is_elf, needed, runpath
from llcuda_factory.configure import TOOLS
from llcuda_factory.errors import FactoryError
from llcuda_factory.project import llama_cpp_pin
from llcuda_factory.targets import all_targets
from llcuda_testkit.serverproc import running_server
from support import TARGETS, WHEELHOUSE, Installed


def test_backend_is_registered_with_its_build_info(installed: Installed) -> None:
    code = (
        "import json, llcuda; print(json.dumps([{'target': b.target, 'server': str(b.llama_server), "
        "'info': b.build_info} for b in llcuda.backends()]))"
    )
    (found,) = json.loads(installed.run_python(code))
    target = installed.target
    info = found["info"]
    assert found["target"] == target.name
    assert Path(found["server"]) == installed.bin_dir / "llama-server"
    assert info["llama_cpp"]["commit"] == llama_cpp_pin().commit
    assert info["cuda"]["architectures"] == list(target.cuda_architectures)
    assert info["options"]["GGML_NATIVE"] == "OFF"
    assert info["options"]["GGML_BACKEND_DL"] == "ON"
    assert info["options"]["GGML_CUDA"] == ("ON" if target.is_cuda else "OFF")
    for key, value in target.cmake.items():
        assert info["options"][key] == value
    if target.is_cuda:
        assert re.match(r"^\d+\.\d+", info["cuda"]["toolkit_version"])
        assert "host" in info["compilers"]["cuda"]
    assert (installed.site_packages / target.package / "LICENSE.llama.cpp").read_text().startswith("MIT License")


def test_ships_every_tool_and_each_library_once(installed: Installed) -> None:
    names = sorted(p.name for p in installed.bin_dir.iterdir())
    for tool in TOOLS:
        assert tool in names
    libs = [n for n in names if ".so" in n]
    assert all(n.endswith(".so") for n in libs), f"versioned copies of a library: {libs}"
    assert len([n for n in libs if n.startswith("libggml-cpu-")]) >= 10  # CPU code picked at run time
    assert ("libggml-cuda.so" in libs) == installed.target.is_cuda
    assert not [n for n in libs if n.startswith("libcuda.so")]


def test_every_elf_finds_its_libraries_through_relative_runpaths(installed: Installed) -> None:
    pkg = installed.site_packages / installed.target.package
    system_driver = "libcuda.so.1" in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    elfs = [p for p in pkg.rglob("*") if p.is_file() and is_elf(p)]
    assert len(elfs) > 10
    shipped = {p.name for p in elfs}
    for elf in elfs:
        entries = runpath(elf)
        # Every ELF that needs a library of the wheel finds it through $ORIGIN; the C++ runtime needs only the
        # system's glibc and libgcc_s, and carries no RUNPATH.
        if set(needed(elf)) & shipped:
            assert entries, f"{elf.name} has no RUNPATH"
        assert all(e.startswith("$ORIGIN") for e in entries), (elf.name, entries)
        ldd = subprocess.run(["ldd", str(elf)], capture_output=True, text=True).stdout
        missing = re.findall(r"^\s*(\S+) => not found", ldd, re.MULTILINE)
        # The driver library comes from the machine, never a wheel: a machine without a driver lacks only it.
        assert missing in ([], ["libcuda.so.1"] if not system_driver and elf.name == "libggml-cuda.so" else []), (
            f"{elf.name}:\n{ldd}"
        )


def test_every_elf_is_within_the_tag_and_shares_the_wheels_one_libstdcxx(installed: Installed) -> None:
    """What the audit checked at build time, again on the installed files: no symbol version beyond
    manylinux_2_28, no unversioned glibc symbol, and every C++ ELF on the wheel's own libstdc++ (one per process)."""
    pkg = installed.site_packages / installed.target.package
    tc = toolchain.get()
    elfs = {p.relative_to(pkg).as_posix(): p for p in pkg.rglob("*") if p.is_file() and is_elf(p)}
    problems, report = symbols.check(elfs, tc.platform)
    assert problems == []
    assert tuple(int(x) for x in report["highest"]["GLIBC"].split(".")) <= tc.glibc
    assert "GLIBCXX" not in report["highest"]  # libstdc++ is the wheel's own, without symbol versions
    info = json.loads((pkg / "build_info.json").read_text())
    assert info["platform"]["tag"] == tc.platform
    assert info["platform"]["glibc"] == tc.glibc_str
    cxx = [rel for rel, path in elfs.items() if toolchain.CXX_RUNTIME in needed(path)]
    assert "bin/llama-server" in cxx and "bin/libllama.so" in cxx and "bin/libggml-base.so" in cxx
    assert not [rel for rel, path in elfs.items() if "libstdc++.so.6" in needed(path)]


def test_cuda_runtime_comes_from_the_venvs_nvidia_wheels(installed: Installed) -> None:
    if not installed.target.is_cuda:
        pytest.skip("CPU target: no CUDA libraries")
    ldd = subprocess.run(["ldd", str(installed.bin_dir / "libggml-cuda.so")], capture_output=True, text=True)
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd.stdout, re.MULTILINE))
    for soname in ("libcudart.so", "libcublas.so", "libcublasLt.so"):
        (path,) = [v for k, v in resolved.items() if k.startswith(soname + ".")]
        assert (installed.site_packages / "nvidia") in Path(path).resolve().parents, (soname, path)


def test_llama_server_serves_the_tiny_model(installed: Installed, tiny_gguf: Path, tmp_path: Path) -> None:
    exe = installed.bin_dir / "llama-server"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert llama_cpp_pin().commit[:7] in version.stdout + version.stderr
    with running_server(exe, tiny_gguf, tmp_path / "server.log") as server:
        out = server.post("/completion", {"prompt": "Hello", "n_predict": 8, "temperature": 0, "ignore_eos": True})
        assert out["tokens_predicted"] == 8
        assert isinstance(out["content"], str)
        # random weights may sample the end-of-text token at any step: ignore_eos makes the count exact
        hi = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "ignore_eos": True}
        chat = server.post("/v1/chat/completions", hi)
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert chat["usage"]["completion_tokens"] == 4
        assert "listening on http://127.0.0.1:" in server.log_text()


def test_each_backend_serves_rpc_with_the_protocol_it_records(installed: Installed, tiny_gguf: Path) -> None:
    """``llcuda rpc-server`` of this backend (with no GPU here, a CUDA build serves the CPU), and a model of the
    same venv's engine split onto it, answering as it does without RPC."""
    code = f"""
import json, llcuda
from llcuda.server import free_port
with llcuda.RPCServer(port=free_port()) as rpc:
    with llcuda.InferenceEngine() as e:
        e.load_model({str(tiny_gguf)!r}, ctx_size=256, silent=True, threads=1, rpc=[rpc.endpoint])
        split = e.infer("Hello", max_tokens=8, temperature=0, top_k=1).text
        host = e.rpc_hosts[0]
    devices = [d.name for d in rpc.devices]
with llcuda.InferenceEngine() as e:
    e.load_model({str(tiny_gguf)!r}, ctx_size=256, silent=True, threads=1)
    local = e.infer("Hello", max_tokens=8, temperature=0, top_k=1).text
print(json.dumps([str(rpc.version), str(host.version), devices, split == local]))
"""
    version, probed, devices, same = json.loads(installed.run_python(code).splitlines()[-1])
    info = json.loads((installed.site_packages / installed.target.package / "build_info.json").read_text())
    assert version == probed == info["rpc"]["protocol"] == "7.0.0"
    assert devices == ["CPU"] and same is True


def test_cpu_code_is_picked_at_run_time_and_no_gpu_means_cpu(
    installed: Installed, tiny_gguf: Path, tmp_path: Path
) -> None:
    out = subprocess.run(
        [str(installed.bin_dir / "llama-server"), "--list-devices"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    if not Path("/dev/nvidia0").exists():
        assert "(none)" in out.stdout  # no GPU: no device, whatever the wheel
    # llama.cpp logs from a thread that an exiting process does not wait for: read a running server's log.
    with running_server(installed.bin_dir / "llama-server", tiny_gguf, tmp_path / "server.log", ["--verbose"]) as srv:
        text = srv.log_text()
    # One wheel for every x86-64 CPU: the best libggml-cpu-<variant>.so for this CPU is loaded.
    assert re.search(r"load_backend: loaded CPU backend from .*/libggml-cpu-\w+\.so", text), text
    if installed.target.is_cuda and not Path("/dev/nvidia0").exists():
        assert "CUDA0" not in text
        if "libcuda.so.1" in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout:
            # A driver library but no GPU: the CUDA backend loads, fails to initialise, and says so.
            assert re.search(r"no CUDA-capable device|failed to initialize CUDA", text), text


def _stub_driver_dir(target_dir: Path) -> Path | None:
    """A folder holding ``libcuda.so.1``: the CUDA toolkit's stub driver library (present on any build machine)."""
    from llcuda_factory import toolkit

    rows = [t for t in all_targets().values() if t.is_cuda]
    for row in rows:
        try:
            root = toolkit.select(row).root
        except FactoryError:
            continue
        for stub in sorted(root.glob("**/stubs/libcuda.so")):
            target_dir.mkdir(parents=True, exist_ok=True)
            (target_dir / "libcuda.so.1").symlink_to(stub)
            return target_dir
    return None


def test_no_gpu_serves_on_the_cpu_with_and_without_a_driver_library(
    installed: Installed, tiny_gguf: Path, tmp_path: Path
) -> None:
    """A fresh machine has no libcuda.so.1; a machine with a driver but no GPU has one. Both serve on the CPU, and
    a CUDA backend that finds a driver library says why it cannot use it."""
    if Path("/dev/nvidia0").exists():
        pytest.skip("this machine has a GPU")
    exe = installed.bin_dir / "llama-server"
    system_driver = "libcuda.so.1" in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    stub_dir = _stub_driver_dir(tmp_path / "driver")
    assert stub_dir is not None, "no CUDA toolkit stub libcuda.so to stand in for a driver"
    runs = {"stub driver": {"LD_LIBRARY_PATH": str(stub_dir)}}
    if not system_driver:
        runs["no driver"] = {}
    for label, env in runs.items():
        with running_server(exe, tiny_gguf, tmp_path / f"{label}.log", ["--verbose"], extra_env=env) as srv:
            out = srv.post("/completion", {"prompt": "Hi", "n_predict": 4, "temperature": 0, "ignore_eos": True})
            text = srv.log_text()
        assert out["tokens_predicted"] == 4, label
        assert "CUDA0" not in text, label
        assert re.search(r"load_backend: loaded CPU backend", text), (label, text[-2000:])
        tried_cuda = re.search(r"failed to initialize CUDA|CUDA driver is a stub library", text)
        if installed.target.is_cuda and label == "stub driver":
            assert tried_cuda, (label, text[-3000:])  # the CUDA backend loaded, and said why it cannot run
        else:
            assert not tried_cuda, (label, text[-3000:])  # no driver: the CUDA backend is skipped silently


def test_build_info_records_the_driver_floor_of_the_fatbin(installed: Installed) -> None:
    """The floors in build_info.json are the ones the shipped library's fatbin gives (SASS and PTX-JIT paths)."""
    from llcuda_factory import fatbin, toolkit

    info = json.loads((installed.site_packages / installed.target.package / "build_info.json").read_text())
    target = installed.target
    if not target.is_cuda:
        assert "driver" not in info and info["cuda"]["runtime_wheels"] == []
        return
    wheels = cudaruntime.runtime_wheels(target.cuda_version[0])
    assert info["cuda"]["toolkit_version"].startswith(f"{target.cuda}.")
    assert info["cuda"]["runtime_lib_dirs"] == list(wheels.lib_dirs)
    cuobjdump = toolkit.select(target).cuobjdump  # reads the compressed PTX
    measured = fatbin.driver_floors(installed.bin_dir / "libggml-cuda.so", wheels.driver_floor, cuobjdump)
    assert measured["sass"] == [f"sm_{a}" for a in sorted(set(target.sm_archs))]
    assert info["driver"]["sass_driver"] == measured["sass_driver"]
    assert info["driver"]["ptx_jit_driver"] == measured["ptx_jit_driver"]
    assert info["driver"]["ptx_isa"] == measured["ptx_isa"]
    floors = [tuple(int(x) for x in info["driver"][k].split(".")) for k in ("sass_driver", "ptx_jit_driver")]
    assert floors[1] >= floors[0] >= tuple(int(x) for x in wheels.driver_floor.split("."))


def test_runtime_extras_pin_the_backends_exactly() -> None:
    wheels = sorted(WHEELHOUSE.glob("llcuda-*.whl"))
    if not wheels:
        pytest.skip("no llcuda runtime wheel built")
    meta = wheelfile.metadata(wheels[-1])
    version = meta["Version"]
    assert {f"llcuda-{name}=={version}; extra == '{name}'" for name in TARGETS} <= set(wheelfile.requires(wheels[-1]))


def test_offline_bundle_holds_every_wheel_pinned_by_hash(installed: Installed) -> None:
    from llcuda_factory.source import sha256_of
    from llcuda_factory.wheelfile import requires as requires_dist
    from llcuda_factory.wheelhouse import parse_wheel_name

    wheels = sorted(installed.bundle.glob("*.whl"))
    names = {parse_wheel_name(w)[0] for w in wheels}
    backend = next(w for w in wheels if parse_wheel_name(w)[0] == installed.target.distribution)
    needed = {re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower() for r in requires_dist(backend)}
    assert {"llcuda", installed.target.distribution, "huggingface-hub", "nvidia-ml-py", "platformdirs"} <= names
    assert needed <= names  # the NVIDIA CUDA runtime and cuBLAS wheels of CUDA targets
    assert any(n.startswith("nvidia-cublas") for n in names) == installed.target.is_cuda
    requirements = (installed.bundle / "requirements.txt").read_text()
    assert requirements.count("--hash=sha256:") == len(wheels)
    for whl in wheels:
        assert f"--hash=sha256:{sha256_of(whl)}" in requirements
    size = sum(w.stat().st_size for w in wheels)
    print(f"\noffline-{installed.target.name}: {len(wheels)} wheels, {size / 1e6:.1f} MB")


def test_selftest_runs_the_wheels_own_test_backend_ops(installed: Installed) -> None:
    """`llcuda selftest` with the wheel's test-backend-ops: with no GPU here it says so and exits 0; told to test
    the CPU device (compared with itself, the harness's own check) it runs real op tests and passes."""
    llcuda = [str(installed.python), "-m", "llcuda"]
    target = installed.target.name
    plain = subprocess.run([*llcuda, "selftest", "--backend", target, "--ops", "ADD"], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    assert "selftest: no GPU backend to test (no NVIDIA GPU found)" in plain.stdout
    log = Path(plain.stdout.split("full log: ")[1].strip())
    assert "Skipping CPU backend" in log.read_text() and "1/1 backends passed" in log.read_text()
    cmd = [*llcuda, "selftest", "--backend", target, "--ops", "ADD,RMS_NORM", "--device", "CPU", "--json"]
    cpu = subprocess.run(cmd, capture_output=True, text=True)
    assert cpu.returncode == 0, cpu.stdout + cpu.stderr
    report = json.loads(cpu.stdout)
    assert report["verdict"] == "pass" and report["devices"][0].startswith("CPU (")
    assert report["tests_total"] > 10 and report["tests_passed"] == report["tests_total"]
