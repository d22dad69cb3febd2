"""cmake/LLCUDACudaKernels.cmake on a stand-in ggml-cuda target: which template instances a row's options replace,
what the generated file declares, and the stop when llama.cpp's instance files change shape.

CMake runs for real (script-level, no compiler: ``project(... LANGUAGES NONE)``); the compiled result is the real
build's business, where the audit's symbol rule fails a wheel whose libraries miss an instantiation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from llcuda_factory import REPO_ROOT

INSTANCES = {
    "mmq-instance-q4_0.cu": '#include "../mmq.cuh"\n\nDECL_MMQ_CASE(GGML_TYPE_Q4_0);\n',
    "mmq-instance-mxfp4.cu": '#include "../mmq.cuh"\n\nDECL_MMQ_CASE_W4A4(GGML_TYPE_MXFP4);\n',
    "fattn-tile-instance-dkq64-dv64.cu": '#include "../fattn-tile.cuh"\n\nDECL_FATTN_TILE_CASE(64, 64);\n',
    "fattn-mma-f16-instance-ncols1_1-ncols2_8.cu": (
        '#include "../fattn-mma-f16.cuh"\n\n'
        "DECL_FATTN_MMA_F16_CASE(64, 64, 1, 8);\nDECL_FATTN_MMA_F16_CASE(80, 80, 1, 8);\n"
    ),
    "fattn-vec-instance-f16-f16.cu": (
        '#include "../fattn-vec.cuh"\n\nDECL_FATTN_VEC_CASE( 64, GGML_TYPE_F16, GGML_TYPE_F16);\n'
    ),
    "mmf-instance-ncols_1.cu": '#include "../mmf.cuh"\n\nDECL_MMF_CASE(1);\n',
}


def _configure(tmp_path: Path, options: dict[str, str], instances: dict[str, str] = INSTANCES) -> tuple[int, str, Path]:
    cuda = tmp_path / "ggml-cuda"
    (cuda / "template-instances").mkdir(parents=True)
    (cuda / "fattn.cu").write_text("// kept\n")
    sources = [cuda / "fattn.cu"]
    for name, text in instances.items():
        (cuda / "template-instances" / name).write_text(text)
        sources.append(cuda / "template-instances" / name)
    settings = "\n".join(f"set({k} {v})" for k, v in options.items())
    listed = " ".join(f'"{s}"' for s in sources)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\nproject(probe LANGUAGES NONE)\n"
        f'list(APPEND CMAKE_MODULE_PATH "{REPO_ROOT / "cmake"}")\n{settings}\n'
        f"add_custom_target(ggml-cuda SOURCES {listed})\n"
        "include(LLCUDACudaKernels)\n"
        'get_target_property(_srcs ggml-cuda SOURCES)\nfile(WRITE "${CMAKE_BINARY_DIR}/sources.txt" "${_srcs}")\n'
    )
    build = tmp_path / "build"
    proc = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(build)], capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr, build


def _names(build: Path) -> list[str]:
    return sorted(Path(s).name for s in (build / "sources.txt").read_text().split(";"))


def test_a_cublas_row_without_fa_compiles_neither_family_and_declares_every_instantiation(tmp_path: Path) -> None:
    rc, out, build = _configure(tmp_path, {"GGML_CUDA_FORCE_CUBLAS": "ON", "GGML_CUDA_FA": "OFF"})
    assert rc == 0, out
    assert _names(build) == ["fattn.cu", "llcuda-no-fattn.cu", "llcuda-no-mmq.cu", "mmf-instance-ncols_1.cu"]
    assert "GGML_CUDA_FA=OFF, without FlashAttention kernels: 3 files, 4 instantiations without device code" in out
    assert "GGML_CUDA_FORCE_CUBLAS=ON, without MMQ kernels: 2 files, 2 instantiations without device code" in out

    fattn = (build / "llcuda-no-fattn.cu").read_text()
    decls = [line for line in fattn.splitlines() if line.startswith("DECL_")]
    assert decls == [  # llama.cpp's own lines, each with one ';', in source order
        "DECL_FATTN_TILE_CASE(64, 64);",
        "DECL_FATTN_MMA_F16_CASE(64, 64, 1, 8);",
        "DECL_FATTN_MMA_F16_CASE(80, 80, 1, 8);",
        "DECL_FATTN_VEC_CASE( 64, GGML_TYPE_F16, GGML_TYPE_F16);",
    ]
    for macro in ("DECL_FATTN_TILE_CASE", "DECL_FATTN_MMA_F16_CASE", "DECL_FATTN_VEC_CASE"):
        assert f"#define {macro}(" in fattn
    assert fattn.count('GGML_ABORT("llcuda: built with GGML_CUDA_FA=OFF, without FlashAttention kernels");') == 3
    assert "#include" in fattn and "fattn-tile.cuh" not in fattn  # only common.cuh: no kernel templates

    mmq = (build / "llcuda-no-mmq.cu").read_text()
    assert "DECL_MMQ_CASE(GGML_TYPE_Q4_0);" in mmq and "DECL_MMQ_CASE_W4A4(GGML_TYPE_MXFP4);" in mmq
    assert "template void mul_mat_q_case<type, GGML_PREC_Q4>" in mmq


@pytest.mark.parametrize(
    ("options", "gone", "kept"),
    [
        ({"GGML_CUDA_FORCE_CUBLAS": "ON", "GGML_CUDA_FA": "ON"}, "fattn", "llcuda-no-mmq.cu"),
        ({"GGML_CUDA_FORCE_CUBLAS": "OFF", "GGML_CUDA_FA": "OFF"}, "mmq", "llcuda-no-fattn.cu"),
    ],
)
def test_a_family_the_row_can_reach_is_compiled_as_llama_cpp_has_it(
    tmp_path: Path, options: dict[str, str], gone: str, kept: str
) -> None:
    rc, out, build = _configure(tmp_path, options)
    assert rc == 0, out
    names = _names(build)
    assert kept in names
    assert f"llcuda-no-{gone}.cu" not in names
    assert any(n.startswith(f"{gone}-") for n in names), names  # llama.cpp's own instance files stay


def test_a_declaration_of_a_new_shape_stops_the_build_naming_the_file(tmp_path: Path) -> None:
    changed = dict(INSTANCES, **{"fattn-tile-instance-dkq64-dv64.cu": "DECL_FATTN_TILE_CASE_V2(64, 64, 1);\n"})
    rc, out, _ = _configure(tmp_path, {"GGML_CUDA_FORCE_CUBLAS": "ON", "GGML_CUDA_FA": "OFF"}, changed)
    assert rc != 0
    assert "unexpected declaration 'DECL_FATTN_TILE_CASE_V2(64, 64, 1)'" in out
    assert "fattn-tile-instance-dkq64-dv64.cu" in out


def test_no_instance_files_at_all_stops_the_build(tmp_path: Path) -> None:
    only_mmf = {"mmf-instance-ncols_1.cu": INSTANCES["mmf-instance-ncols_1.cu"]}
    rc, out, _ = _configure(tmp_path, {"GGML_CUDA_FORCE_CUBLAS": "ON", "GGML_CUDA_FA": "OFF"}, only_mmf)
    assert rc != 0
    assert "no template-instances/" in out and "llama.cpp's layout changed" in out
