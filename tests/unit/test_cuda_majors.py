"""Two builds for one GPU: the T4 row with CUDA 12 (cc75) and with CUDA 13 (cc75-cu13). Which one `llcuda doctor`
recommends (from the driver and the NVIDIA wheels the environment holds), which one discovery runs when both are
installed, and the one error a CUDA 13 build gives under a driver too old for it.

The environments are the ones users have: torch 2.15 from PyPI (cuda-toolkit 13.2.2: cuBLAS 13.4.1.3), Colab's
image (torch 2.11+cu128: the -cu12 wheels), and a fresh venv.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llcuda import catalog, cli, cudawheels, discovery, fit, gpu
from llcuda.errors import DriverTooOldError
from llcuda.installed import Backend

TORCH_2_15 = {"nvidia-cublas": "13.4.1.3", "nvidia-cuda-runtime": "13.2.86", "nvidia-cuda-nvrtc": "13.2.86"}
TORCH_2_12 = {"nvidia-cublas": "13.1.0.3", "nvidia-cuda-runtime": "13.0.96"}
COLAB = {"nvidia-cublas-cu12": "12.8.4.1", "nvidia-cuda-runtime-cu12": "12.8.90", "nvidia-cuda-nvrtc-cu12": "12.8.93"}
FRESH: dict[str, str] = {}


def t4(driver: str) -> gpu.GPU:
    return gpu.GPU(0, "Tesla T4", (7, 5), 15360, 15000, driver)


def row(name: str) -> catalog.TargetInfo:
    return next(t for t in catalog.targets() if t.name == name)


def test_the_table_has_both_t4_rows_with_their_majors_and_floors() -> None:
    assert (row("cc75").cuda_major, row("cc75-cu13").cuda_major) == (12, 13)
    assert row("cc75-cu13").driver_floor == "580.65.06"
    assert row("cc75-cu13").runtime_requirements == ("nvidia-cuda-runtime>=13.0.96,<14", "nvidia-cublas>=13.1.0.3,<14")
    assert catalog.cuda_preference() == (12, 13)


@pytest.mark.parametrize(
    ("have", "mb", "wheels"),
    [
        (TORCH_2_15, 0.0, ()),
        (TORCH_2_12, 0.0, ()),
        # nothing of CUDA 13: cuBLAS 13 brings its NVRTC
        (COLAB, 505.0, ("nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cuda-nvrtc")),
        (FRESH, 505.0, ("nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cuda-nvrtc")),
        # an older cuBLAS 13 than the backend links: that one is downloaded, the runtime is not
        (
            {"nvidia-cublas": "13.0.0.19", "nvidia-cuda-runtime": "13.0.96"},
            502.5,
            ("nvidia-cublas", "nvidia-cuda-nvrtc"),
        ),
    ],
)
def test_what_the_cuda13_row_downloads_in_each_environment(
    have: dict[str, str], mb: float, wheels: tuple[str, ...]
) -> None:
    got = cudawheels.download(row("cc75-cu13"), have)
    assert (round(got.mb, 1), got.wheels) == (mb, wheels)


def test_the_cuda12_row_in_a_torch_2_15_venv_downloads_675_mb() -> None:
    got = cudawheels.download(row("cc75"), TORCH_2_15)
    assert round(got.mb) == 674 and got.wheels == (
        "nvidia-cuda-runtime-cu12",
        "nvidia-cublas-cu12",
        "nvidia-cuda-nvrtc-cu12",
    )
    assert cudawheels.download(row("cc75"), COLAB).wheels == ()


# GPU and driver, what the environment holds -> the row the doctor recommends
CASES = [
    (t4("580.82.07"), TORCH_2_15, "cc75-cu13"),  # torch's cuBLAS 13: nothing to download
    (t4("580.82.07"), TORCH_2_12, "cc75-cu13"),
    (t4("580.82.07"), COLAB, "cc75"),  # Colab's CUDA 12 wheels: nothing to download
    (t4("580.82.07"), FRESH, "cc75-cu13"),  # 505 MB against 675 MB
    (t4("535.104.05"), TORCH_2_15, "cc75"),  # CUDA 13 needs 580.65.06: never the cu13 row
    (t4("535.104.05"), COLAB, "cc75"),
    (t4("470.256.02"), COLAB, "cpu"),  # nothing CUDA 12 runs
    (gpu.GPU(0, "H100", (9, 0), 81000, 80000, "580.82.07"), TORCH_2_15, "cc75-cu13"),  # PTX of either: the same
    (gpu.GPU(0, "GeForce 940M", (5, 0), 2048, 1900, "580.82.07"), TORCH_2_15, "cc50"),  # no CUDA 13 for Maxwell
    (None, TORCH_2_15, "cpu"),
]


@pytest.mark.parametrize(("card", "have", "want"), CASES)
def test_the_doctor_recommends_from_the_driver_and_the_environment(
    card: gpu.GPU | None, have: dict[str, str], want: str
) -> None:
    assert fit.recommend(card, have=have).target == want


def test_without_the_environment_the_rule_is_the_wheel_variants_cuda_12_first() -> None:
    """What uv does (it sees the driver and the GPU only): on a 580 driver the CUDA 12 row, as targets.toml's
    [variant.providers.llcuda] orders the majors; a major turned first wins."""
    rec = fit.recommend(t4("580.82.07"))
    assert rec.target == "cc75" and rec.download is None
    assert rec.why == (
        "Tesla T4 (CC 7.5) runs llcuda-cc75's machine code with driver 580.82.07; llcuda-cc75-cu13 would too: "
        "CUDA majors in the wheel variants' order (12, 13)"
    )
    assert fit.target_for(t4("580.82.07"), prefer=(13, 12)) == "cc75-cu13"
    assert fit.target_for(t4("575.51.03"), prefer=(13, 12)) == "cc75"  # below 580 the order does not matter


def test_the_why_names_the_download_of_each_and_the_driver_a_row_needs() -> None:
    rec = fit.recommend(t4("580.82.07"), have=TORCH_2_15)
    assert rec.why == (
        "Tesla T4 (CC 7.5) runs llcuda-cc75-cu13's machine code with driver 580.82.07; here it downloads 0 MB of "
        "NVIDIA's CUDA wheels: nvidia-cuda-runtime 13.2.86, nvidia-cublas 13.4.1.3 already installed, llcuda-cc75 "
        "about 674 MB of NVIDIA's CUDA wheels (nvidia-cuda-runtime-cu12, nvidia-cublas-cu12, nvidia-cuda-nvrtc-cu12)"
    )
    old = fit.recommend(t4("535.104.05"), have=TORCH_2_15)
    assert old.why.endswith("; llcuda-cc75-cu13 would need driver >= 580.65.06")


def test_check_gpu_compatibility_gives_the_line_its_download_and_why() -> None:
    report = fit.check_gpu_compatibility(gpus=[t4("580.82.07")], installed=[], have=TORCH_2_15)
    assert report["install_pip"] == 'pip install "llcuda[cc75-cu13]"'
    assert (report["install_download_mb"], report["install_downloads"]) == (0.0, [])
    assert report["uv_target"] == "cc75"  # uv cannot see torch's wheels: the doctor names the backend for uv too
    assert report["install_uv"] == 'uv pip install "llcuda[cc75-cu13]"'
    colab = fit.check_gpu_compatibility(gpus=[t4("580.82.07")], installed=[], have=COLAB)
    assert colab["install_pip"] == 'pip install "llcuda[cc75]"' and colab["uv_target"] == "cc75"
    assert colab["install_uv"].startswith("uv pip install --preview-features wheel-variants --extra-index-url ")
    old = fit.check_gpu_compatibility(gpus=[t4("535.104.05")], installed=[], have=COLAB)
    assert old["install_pip"] == 'pip install "llcuda[cc75]"' and old["install_download_mb"] == 0.0


def test_doctor_prints_the_line_the_download_and_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(fit, "detect_gpus", lambda: [t4("580.82.07")])
    monkeypatch.setattr(fit, "backends", list)
    monkeypatch.setattr(cli, "backends", list)
    monkeypatch.setattr(cudawheels, "installed", lambda: dict(TORCH_2_15))
    monkeypatch.setattr(discovery, "find_llama_server", lambda: tmp_path / "llama-server")
    assert cli.main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    i = lines.index('install for this machine: pip install "llcuda[cc75-cu13]"')
    assert lines[i + 1] == "  downloads 0 MB here, besides the llcuda wheels"
    assert lines[i + 2].startswith("  why: Tesla T4 (CC 7.5) runs llcuda-cc75-cu13's machine code")
    assert lines[i + 3] == (
        "  uv's wheel variants would pick llcuda-cc75 here (uv sees the driver, not this environment's wheels); "
        'with uv: uv pip install "llcuda[cc75-cu13]"'
    )
    monkeypatch.setattr(cudawheels, "installed", dict)  # a fresh venv
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["recommended_target"], report["install_download_mb"]) == ("cc75-cu13", 505.0)


# ---------------------------------------------------------------- both T4 builds installed


def installed_backend(tmp_path: Path, target: str, cuda: str, libs: bool = True) -> Backend:
    """A backend as its build_info.json describes it, with NVIDIA's library folders beside it (or not)."""
    major = int(cuda.split(".", maxsplit=1)[0])
    lib_dirs = ["nvidia/cu13/lib"] if major == 13 else ["nvidia/cuda_runtime/lib", "nvidia/cublas/lib"]
    floor = "580.65.06" if major == 13 else "525.60.13"
    site = tmp_path / "site"
    package = site / f"llcuda_{target.replace('-', '_')}"
    package.mkdir(parents=True, exist_ok=True)
    if libs:
        for d in lib_dirs:
            (site / d).mkdir(parents=True, exist_ok=True)
    info = {
        "target": target,
        "cuda": {
            "toolkit_version": cuda,
            "architectures": ["75"],
            "archs": [{"cc": 75, "suffix": "", "sass": True, "ptx": True}],
            "runtime_lib_dirs": lib_dirs,
        },
        "driver": {"sass_driver": floor, "ptx_jit_driver": floor},
    }
    return Backend(target, package, info)


def test_both_t4_builds_installed_the_one_whose_cuda_loads_with_this_driver_runs(tmp_path: Path) -> None:
    cc75 = installed_backend(tmp_path, "cc75", "12.4.131")
    cu13 = installed_backend(tmp_path, "cc75-cu13", "13.0.88")
    # driver 535: CUDA 13's runtime does not load; the CUDA 12 build runs
    assert fit.rank_backends([cu13, cc75], t4("535.104.05"))[0] is cc75
    why = fit.why_runs([cu13, cc75], t4("535.104.05"))
    assert why == {
        "cc75": "runs: machine code for this GPU",
        "cc75-cu13": "cannot use the GPU: its CUDA 13.0.88 runtime needs driver >= 580.65.06, this one is 535.104.05",
    }
    # driver 580: both load; CUDA 12 first, the order of the wheel variants
    assert fit.rank_backends([cu13, cc75], t4("580.82.07")) == [cc75, cu13]
    assert (
        fit.why_runs([cu13, cc75], t4("580.82.07"))["cc75-cu13"] == "machine code for this GPU; llcuda-cc75 ranks first"
    )


def test_both_installed_without_the_cuda12_wheels_the_cuda13_build_runs(tmp_path: Path) -> None:
    """cc75 installed with --no-deps beside torch's CUDA 13 wheels: its libraries do not load, cc75-cu13's do."""
    cc75 = installed_backend(tmp_path / "a", "cc75", "12.4.131", libs=False)
    cu13 = installed_backend(tmp_path / "b", "cc75-cu13", "13.0.88")
    ranked = fit.rank_backends([cc75, cu13], t4("580.82.07"))
    assert ranked[0] is cu13
    assert fit.why_runs([cc75, cu13], t4("580.82.07"))["cc75"].startswith(
        "cannot use the GPU: NVIDIA's CUDA libraries are not installed (nvidia/cuda_runtime/lib, nvidia/cublas/lib)"
    )


def test_a_cuda13_build_under_an_old_driver_is_one_error_naming_the_driver_and_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cu13 = installed_backend(tmp_path, "cc75-cu13", "13.0.88")
    text = fit.blocking_driver_problem(cu13, [t4("535.104.05")])
    assert text == (
        "NVIDIA driver 535.104.05 is too old for llcuda-cc75-cu13 (built with CUDA 13.0.88), which needs >= "
        '580.65.06: install the build for this driver: pip install "llcuda[cc75]", or update the driver. '
        "load_model(..., gpu_layers=0) runs on the CPU as it is."
    )
    assert fit.blocking_driver_problem(cu13, [t4("580.82.07")]) is None
    assert fit.blocking_driver_problem(cu13, []) is None
    # through the CLI: one line, no traceback; gpu_layers=0 is not refused
    (cu13.bin_dir).mkdir()
    (cu13.llama_server).write_bytes(b"")
    monkeypatch.setattr(discovery, "backends", lambda: [cu13])
    monkeypatch.setattr(discovery, "detect_gpus", lambda: [t4("535.104.05")])
    found = discovery.found_at(cu13.llama_server)  # discovery hands back the owner and the GPUs with the path
    assert (found.backend, found.gpus, found.driver_problem()) == (cu13, (t4("535.104.05"),), text)
    assert discovery.found_at(tmp_path / "elsewhere" / "llama-server").driver_problem() is None
    from llcuda import server

    with pytest.raises(DriverTooOldError, match=r"needs >= 580\.65\.06: install the build for this driver"):
        server.ServerManager(cu13.llama_server, log_dir=tmp_path / "logs").start_server(tmp_path / "m.gguf")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    # discovery's own pick: the backend with code for the T4 (its empty stand-in binary passes for one that runs)
    monkeypatch.setattr(discovery, "problem_with", lambda path, env=None: None)
    from llcuda import endpoints

    monkeypatch.setattr(endpoints, "detect_gpus", lambda: [t4("535.104.05")])  # the one probe of a load
    assert cli.main(["run", str(model), "hi"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"llcuda: error: {text}"]
