"""A CUDA toolkit made of NVIDIA's PyPI wheels, installed by the factory into a prefix of its own (no root).

A ``source = "pypi"`` entry of ``[cuda-toolkits]`` lists NVIDIA's wheels, each pinned by version and sha256.
:func:`ensure` installs them, once, with pip (``--require-hashes --no-deps``) into
``<llcuda cache>/toolkits/cuda-X.Y`` ($LLCUDA_TOOLKITS_DIR overrides the folder); the files land where the wheels
put them, ``nvidia/cuXX/{bin,include,lib,nvvm}``, which is the toolkit's root. The downloaded wheels stay in
``<llcuda cache>/wheels``, so that a second machine state (CI with its cache) fetches nothing.

The wheels are a toolkit for running programs, not quite for building them; three things are added, all inside the
prefix:

- ``lib64 -> lib``: nvcc's own profile links from ``lib64`` (and ``lib64/stubs``);
- ``libcudart.so``, ``libcublas.so``, ``libcublasLt.so``: the unversioned names CMake's FindCUDAToolkit links, as
  links to the wheels' ``.so.13`` files;
- ``lib/stubs/libcuda.so``: a link-time stand-in for the driver (soname ``libcuda.so.1``), which no wheel carries.
  ggml-cuda links the driver for its virtual-memory pool. The stub defines every function the toolkit's own
  ``cuda.h`` declares, each returning ``CUDA_ERROR_STUB_LIBRARY``, as NVIDIA's stub does; it is never shipped (the
  repair excludes ``libcuda.so.1``, the audit refuses it), and at run time the machine's driver answers.

A prefix is reused only when its stamp matches the pins and the recipe; anything else installs it again, into a
new folder that replaces the old one in one rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import FactoryError
from .source import cache_dir
from .targets import ToolkitPin

ENV_DIR = "LLCUDA_TOOLKITS_DIR"
STAMP = ".llcuda-pins"
RECORD = "llcuda-toolkit.json"  # in the root: the pinned wheels and the runtime versions, for the toolkit probe
RECIPE = "3"  # bump when the layout below changes: every prefix is made again
CUDA_ERROR_STUB_LIBRARY = 34
UNVERSIONED = ("libcudart", "libcublas", "libcublasLt")
_DECLARED = re.compile(r"\bCUresult\s+(?:__attribute__\s*\(\(.*?\)\)\s*)?(cu[A-Za-z0-9_]+)\s*\(")


def toolkits_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser().resolve() if env else cache_dir() / "toolkits"


def wheels_cache() -> Path:
    """Where NVIDIA's wheels are kept once downloaded (the toolkit's, and those the tests install)."""
    return cache_dir() / "wheels"


def prefix(pin: ToolkitPin) -> Path:
    return toolkits_dir() / f"cuda-{pin.version}"


def root(pin: ToolkitPin) -> Path:
    """The toolkit's root inside the prefix: ``nvidia/cu13`` (bin/nvcc, include/, lib/)."""
    return prefix(pin) / "nvidia" / f"cu{pin.major}"


def _stamp(pin: ToolkitPin) -> str:
    return hashlib.sha256("\n".join([RECIPE, pin.version, *pin.wheels]).encode()).hexdigest()


def installed(pin: ToolkitPin) -> bool:
    """The prefix holds exactly these pins, made by this recipe, and its nvcc runs."""
    stamp = prefix(pin) / STAMP
    if not stamp.is_file() or stamp.read_text().strip() != _stamp(pin):
        return False
    nvcc = root(pin) / "bin" / "nvcc"
    try:
        return subprocess.run([str(nvcc), "--version"], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


def ensure(pin: ToolkitPin) -> Path:
    """The root of ``pin``'s toolkit, installed first if needed; a FactoryError that says why when it cannot be."""
    if pin.source != "pypi":
        raise FactoryError(f"CUDA {pin.version} comes from {pin.source}, not from PyPI")
    if not installed(pin):
        install(pin)
    return root(pin)


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True)


def fetch(pin: ToolkitPin, requirements: Path) -> None:
    """Every pinned wheel into the wheels cache, checked against its sha256 (pip's --require-hashes)."""
    cache = wheels_cache()
    cache.mkdir(parents=True, exist_ok=True)
    want = {f"{name}=={version}" for name, version in pin.pinned.items()}
    args = ["download", "--no-deps", "--only-binary", ":all:", "--require-hashes", "-r", str(requirements)]
    proc = _pip(*args, "-d", str(cache))
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise FactoryError(
            f"cannot download CUDA {pin.version}'s wheels ({', '.join(sorted(want))}) into {cache}:\n{tail}\n"
            "With no network, copy those wheels into that folder (another machine's ~/.cache/llcuda/wheels)."
        )


def install(pin: ToolkitPin) -> Path:
    """Install ``pin``'s wheels into a new prefix, complete it for building, check it, and put it in place."""
    dest = prefix(pin)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        requirements = work / "requirements.txt"
        requirements.write_text("\n".join(pin.wheels) + "\n")
        target = work / "prefix"
        args = ["install", "--no-deps", "--no-index", "--only-binary", ":all:", "--require-hashes"]
        args += ["--find-links", str(wheels_cache()), "--target", str(target), "-r", str(requirements)]
        if _pip(*args).returncode != 0:  # not all in the cache yet
            fetch(pin, requirements)
            proc = _pip(*args)
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
                raise FactoryError(f"cannot install CUDA {pin.version}'s wheels into {target}:\n{tail}")
        tk_root = target / "nvidia" / f"cu{pin.major}"
        complete(tk_root, pin)
        shutil.rmtree(target / "bin", ignore_errors=True)  # pip's console scripts, if a wheel had any
        (target / STAMP).write_text(_stamp(pin) + "\n")
        old = dest.parent / f".{dest.name}-old"
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.replace(old)
        target.replace(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root(pin)


def complete(tk_root: Path, pin: ToolkitPin) -> None:
    """What building needs beyond the wheels' files (see the module's docstring), then the version check."""
    nvcc = tk_root / "bin" / "nvcc"
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"release (\d+\.\d+), V(\S+)", out)
    if not m or m.group(1) != pin.version:
        found = f"CUDA {m.group(1)} (nvcc V{m.group(2)})" if m else f"no working nvcc ({out.strip()[:200]!r})"
        raise FactoryError(
            f"the wheels pinned for CUDA {pin.version} hold {found}: fix [cuda-toolkits] in targets.toml"
        )
    lib = tk_root / "lib"
    (tk_root / "lib64").symlink_to("lib")
    for name in UNVERSIONED:
        versioned = sorted(lib.glob(f"{name}.so.*"))
        if not versioned:
            raise FactoryError(f"CUDA {pin.version}'s wheels have no {name}.so.*: the pins lack a wheel")
        (lib / f"{name}.so").symlink_to(versioned[0].name)
    stubs = lib / "stubs"
    stubs.mkdir()
    write_driver_stub(tk_root / "include" / "cuda.h", stubs / "libcuda.so")
    record = {
        "version": pin.version,
        "nvcc": m.group(2),
        "wheels": pin.pinned,
        "cudart": pin.cudart,
        "cublas": pin.cublas,
    }
    (tk_root / RECORD).write_text(json.dumps(record, indent=2) + "\n")


def driver_functions(cuda_h: Path, cc: str = "cc") -> list[str]:
    """Every driver API function ``cuda.h`` declares, by the name it links under (``cuMemAlloc_v2``: the header's
    macros applied by the C preprocessor)."""
    proc = subprocess.run(
        [cc, "-E", "-P", "-x", "c", "-I", str(cuda_h.parent), "-"],
        input=f"#include <{cuda_h.name}>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FactoryError(f"cannot preprocess {cuda_h} with {cc}: {proc.stderr.strip()[-400:]}")
    names = sorted(set(_DECLARED.findall(proc.stdout)))
    if len(names) < 100:  # a header of another shape: stop before linking against a stub that lacks half of it
        raise FactoryError(f"{cuda_h} declares {len(names)} driver functions; expected hundreds")
    return names


def write_driver_stub(cuda_h: Path, out: Path, cc: str = "cc") -> list[str]:
    """A ``libcuda.so`` to link against (soname ``libcuda.so.1``) defining every function of ``cuda_h``; each returns
    CUDA_ERROR_STUB_LIBRARY. Return the names."""
    names = driver_functions(cuda_h, cc)
    source = out.with_suffix(".c")
    body = "".join(f"int {n}(void) {{ return {CUDA_ERROR_STUB_LIBRARY}; }}\n" for n in names)
    source.write_text(f"/* llcuda: a link-time stub of the CUDA driver, from {cuda_h.name} */\n{body}")
    proc = subprocess.run(
        [cc, "-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libcuda.so.1", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    source.unlink()
    if proc.returncode != 0:
        raise FactoryError(f"cannot build the driver stub {out}: {proc.stderr.strip()[-400:]}")
    return names
