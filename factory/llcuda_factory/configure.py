"""Write the CMake settings for one target (included by cmake/LLCUDAConfig.cmake)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from . import REPO_ROOT, cudaruntime, source, toolkit
from .errors import FactoryError
from .project import llama_cpp_pin
from .targets import CudaArch, Target, get_target

# ``--cuda-architectures llama.cpp-default``: leave CMAKE_CUDA_ARCHITECTURES unset so that ggml picks its own
# default list (what a hand build of llama.cpp compiles); only for the build-time benchmark.
LLAMA_CPP_DEFAULT = "llama.cpp-default"


def _cmake_str(value: object) -> str:
    text = str(value).replace("\\", "/").replace('"', '\\"')
    return f'"{text}"'


# The tools every backend wheel ships in bin/, built from llama.cpp's tree (llama-embedding is one of its
# examples, which the old llcuda guide lists; ggml-rpc-server is installed by llama.cpp only with
# LLAMA_TOOLS_INSTALL, so it is named here; test-backend-ops is llama.cpp's own op test, which `llcuda selftest`
# runs on the user's GPU); CMake builds exactly these, the audit checks each is there.
TOOLS = (
    "llama-server",
    "llama-cli",
    "llama-quantize",
    "llama-bench",
    "llama-embedding",
    "ggml-rpc-server",
    "test-backend-ops",
)


def with_architectures(target: Target, override: str | None) -> Target:
    """``target`` built for other CUDA architectures (a benchmark build, never a shipped wheel)."""
    if not override or override == LLAMA_CPP_DEFAULT:
        return target
    if not target.is_cuda:
        raise FactoryError(f"target {target.name} has no CUDA; --cuda-architectures {override} does not apply")
    archs = tuple(a for a in override.replace(",", ";").split(";") if a)
    if not archs:
        raise FactoryError(f"invalid CUDA architectures {override!r}: expected e.g. '90' or '75;90-real'")
    parsed = tuple(CudaArch.parse(a, "--cuda-architectures") for a in archs)
    return dataclasses.replace(target, cuda_architectures=archs, archs=parsed)


def settings(
    target_name: str,
    binary_dir: Path,
    explicit_source: str | None = None,
    cuda_architectures: str | None = None,
    cuda_version: str | None = None,
    host_cxx: str | None = None,
) -> dict[str, object]:
    target = with_architectures(get_target(target_name), cuda_architectures)
    if cuda_version:  # benchmark builds only (a GPU machine with another toolkit); never a shipped wheel
        if not re.fullmatch(r"\d+\.\d+", cuda_version):
            raise FactoryError(f"invalid CUDA version {cuda_version!r}: expected MAJOR.MINOR, e.g. '13.0'")
        target = dataclasses.replace(target, cuda=cuda_version, toolkit=None)  # whatever that machine has
    pin = llama_cpp_pin()
    src = source.resolve(explicit_source)
    out: dict[str, object] = {
        "LLCUDA_TARGET_DESCRIPTION": target.description,
        "LLCUDA_PACKAGE": target.package,
        "LLCUDA_TOOLS": ";".join(TOOLS),
        "LLCUDA_TARGET_CMAKE_OPTIONS": ";".join(f"{k}={v}" for k, v in target.cmake.items()),
        "LLCUDA_CUDA_ARCHITECTURES": ";".join(target.cuda_architectures),
        "LLCUDA_CUDA_ARCHITECTURES_FROM_GGML": "ON" if cuda_architectures == LLAMA_CPP_DEFAULT else "OFF",
        "LLCUDA_LLAMA_CPP_DIR": src,
        "LLCUDA_LLAMA_CPP_COMMIT": pin.commit,
        "LLCUDA_LLAMA_CPP_TAG": pin.tag,
        # One base dir above both the source and every build dir, so that ccache sees the same
        # (relative) paths in every target's build and shares the CPU objects between them.
        "LLCUDA_CCACHE_BASEDIR": os.path.commonpath([src.resolve(), binary_dir.resolve(), REPO_ROOT]),
    }
    if target.is_cuda:
        tk = toolkit.chosen(target)  # the pipeline's pick when it started this build
        out.update(
            {
                "LLCUDA_CUDA_COMPILER": tk.nvcc,
                "LLCUDA_CUDA_HOST_COMPILER": toolkit.host_compiler(tk, host_cxx, exact=host_cxx is not None),
                "LLCUDA_CUDA_BIN_DIR": tk.bin_dir,
                "LLCUDA_CUDA_ROOT": tk.root,
                "LLCUDA_CUDA_VERSION": tk.version_str,
                "LLCUDA_CUDA_RPATH_DIRS": ";".join(cudaruntime.runtime_wheels(tk.major).lib_dirs),
                "LLCUDA_CUDA_RUNTIME_WHEELS": ";".join(toolkit.wheel_dependencies(tk)),  # == the row's, checked
                "LLCUDA_CUDA_CUDART_RELEASE": tk.cudart_release or "",
                "LLCUDA_CUDA_CUBLAS_RELEASE": tk.cublas_release or "",
            }
        )
    return out


def write(
    target_name: str,
    binary_dir: Path,
    out_file: Path,
    explicit_source: str | None = None,
    cuda_architectures: str | None = None,
    cuda_version: str | None = None,
    host_cxx: str | None = None,
) -> None:
    write_cmake(
        out_file, settings(target_name, binary_dir, explicit_source, cuda_architectures, cuda_version, host_cxx)
    )


def write_cmake(out_file: Path, values: Mapping[str, object]) -> None:
    """``set(NAME "value")`` lines for CMake to include."""
    lines = ["# Generated by factory/llcuda_factory from targets.toml; do not edit."]
    lines += [f"set({k} {_cmake_str(v)})" for k, v in values.items()]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("\n".join(lines) + "\n")
