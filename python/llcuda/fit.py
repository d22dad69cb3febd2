"""Which backend suits which GPU: the one policy behind discovery, ``llcuda doctor`` and
``check_gpu_compatibility()``. GPUs come from :mod:`llcuda.gpu`, installed backends from :mod:`llcuda.installed`,
llcuda's targets from :mod:`llcuda.catalog`."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from typing import Any, Literal

from . import catalog
from .catalog import CudaArch, TargetInfo
from .gpu import GPU, detect_gpus, platform
from .installed import Backend, backends

Fit = Literal["native", "ptx", "cpu", "unsupported"]
_FIT_RANK = {"native": 0, "ptx": 1, "cpu": 2}


def arch_fit(archs: tuple[CudaArch, ...], cc: int) -> Fit:
    """How code built for ``archs`` runs on a GPU of compute capability ``cc`` (75 for 7.5).

    A cubin for sm_XY runs on GPUs of the same major version with minor >= Y (``a`` code: on XY only). PTX for
    compute_XY is JIT-compiled by the driver for any GPU of capability >= XY (``a`` PTX: XY only; ``f`` PTX:
    the same major).
    """
    if not archs:
        return "cpu"
    if any(a.sass and (a.cc == cc if a.suffix == "a" else a.cc // 10 == cc // 10 and a.cc <= cc) for a in archs):
        return "native"
    if any(a.ptx and _ptx_runs(a, cc) for a in archs):
        return "ptx"
    return "unsupported"


def _ptx_runs(arch: CudaArch, cc: int) -> bool:
    if arch.suffix == "a":
        return arch.cc == cc
    if arch.suffix == "f":
        return arch.cc // 10 == cc // 10 and arch.cc <= cc
    return arch.cc <= cc


def backend_fit(backend: Backend, gpu: GPU | None) -> Fit:
    """How ``backend`` would run on ``gpu``: native SASS, PTX JIT, on the CPU only, or not at all."""
    if gpu is None or not backend.archs:
        return "cpu"  # a CUDA build with no GPU serves on the CPU
    return arch_fit(backend.archs, gpu.cc)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


def driver_problem(backend: Backend, gpu: GPU | None) -> str | None:
    """Why the GPU's driver cannot run ``backend``'s GPU code, naming the driver needed; None when it can.

    The floor comes from the backend's build_info.json, measured from its fatbin at build time: one for the SASS
    path (machine code for this GPU) and one for the PTX JIT path (a newer GPU compiles the PTX).
    """
    fit = backend_fit(backend, gpu)
    if gpu is None or fit not in ("native", "ptx"):
        return None
    floor = backend.driver_floor("sass" if fit == "native" else "ptx")
    if floor is None or not gpu.driver_version or _version_tuple(gpu.driver_version) >= _version_tuple(floor):
        return None
    how = "its machine code for this GPU" if fit == "native" else "JIT-compiling its PTX for this GPU"
    return (
        f"NVIDIA driver {gpu.driver_version} is too old for llcuda-{backend.target} (built with CUDA "
        f"{backend.cuda_version}): {how} needs driver >= {floor}. Update the NVIDIA driver to {floor} or newer; "
        f"until then llama-server runs on the CPU (CUDA driver version is insufficient)."
    )


def runs_cuda_runtime(target: TargetInfo, gpu: GPU) -> bool:
    """Whether ``gpu``'s driver runs ``target``'s CUDA runtime at all: at least the row's driver floor (CUDA 12's
    minor-version compatibility: 525.60.13, the CUDA 12.0 driver). A driver of unknown version is given the benefit
    of the doubt."""
    if not target.driver_floor or not gpu.driver_version:
        return True
    return _version_tuple(gpu.driver_version) >= _version_tuple(target.driver_floor)


def target_for(gpu: GPU | None, table: tuple[TargetInfo, ...] | None = None) -> str:
    """The target of llcuda's table that suits ``gpu`` best: machine code for it (the newest such arch), else
    PTX it can JIT (the newest), else the CPU build. A CUDA row whose runtime the GPU's driver is too old for
    does not count. This is the rule the llcuda wheel variants encode (``llcuda_factory.variants``), so that uv
    picks the backend ``llcuda doctor`` recommends.

    The PTX-JIT driver floor (a newer driver, for a GPU newer than the row's archs) is not part of the choice: the
    row still serves that GPU once the driver is updated, and :func:`driver_problem` names the driver needed."""
    table = catalog.targets() if table is None else table
    cpu = next((t.name for t in table if not t.is_cuda), "cpu")
    if gpu is None:
        return cpu
    best: tuple[int, int, str] | None = None
    for t in table:
        fit = arch_fit(t.archs, gpu.cc) if t.is_cuda and runs_cuda_runtime(t, gpu) else "unsupported"
        if fit in ("native", "ptx"):
            newest = max(a.cc for a in t.archs if a.cc <= gpu.cc)
            key = (1 if fit == "native" else 0, newest, t.name)
            best = key if best is None or key[:2] > best[:2] else best
    return best[2] if best else cpu


def rank_backends(installed: list[Backend], gpu: GPU | None) -> list[Backend]:
    """Usable backends for ``gpu``, best first: native SASS, then PTX JIT, then CPU-only builds; within each, the
    newest architecture the GPU can run first, as :func:`target_for` ranks the table. So when a wheel variant and
    an extra bring two backends, the one that runs is the one ``llcuda doctor`` recommends."""
    usable = [(b, backend_fit(b, gpu)) for b in installed]
    usable = [(b, f) for b, f in usable if f != "unsupported"]

    def newest(b: Backend) -> int:
        return max((a.cc for a in b.archs if gpu is not None and a.cc <= gpu.cc), default=0)

    # With no GPU, a plain CPU build before a CUDA build running on the CPU.
    return [
        b for b, f in sorted(usable, key=lambda bf: (_FIT_RANK[bf[1]], bool(bf[0].archs), -newest(bf[0]), bf[0].target))
    ]


def check_gpu_compatibility(gpus: list[GPU] | None = None, installed: list[Backend] | None = None) -> dict[str, Any]:
    """What this machine has and which installed backend runs how; keeps the old llcuda keys.

    Keys: ``platform``, ``gpu_name``, ``compute_capability`` (e.g. ``"5.0"``), ``compatible``, ``reason``
    (as before, for the first GPU), plus ``gpus`` (every GPU), ``gpu_count``, ``memory_total_mb`` and
    ``memory_free_mb`` (all GPUs together), ``backends`` (target -> native/ptx/cpu/unsupported), ``driver_problems``
    (target -> why the driver is too old, naming the version needed), ``recommended_target``,
    ``recommendation``, and the install line for this machine with pip (``install_pip``) and with uv's wheel
    variants (``install_uv``, which picks the same backend).
    """
    gpus = detect_gpus() if gpus is None else gpus
    installed = backends() if installed is None else installed
    gpu = gpus[0] if gpus else None
    fits = {b.target: backend_fit(b, gpu) for b in installed}
    drivers = {b.target: why for b in installed if (why := driver_problem(b, gpu))}
    want = target_for(gpu)
    install = f'pip install "llcuda[{want}]"'
    # uv picks the same backend itself, from the llcuda wheel's variants (a preview of draft standards)
    install_uv = f"uv pip install --preview-features wheel-variants --extra-index-url {catalog.variants_index()} llcuda"
    if gpu is None:
        compatible = bool(installed)
        reason = "No NVIDIA GPU or driver found; llama-server runs on the CPU."
        recommendation = (
            f"Running on the CPU. {'' if 'cpu' in fits else install + ' gives the smallest CPU build.'}".strip()
        )
    else:
        cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
        good = [t for t, f in fits.items() if f in ("native", "ptx") and t not in drivers]
        compatible = bool(good)
        if not good and drivers:
            reason = next(iter(drivers.values()))
            recommendation = reason.split(": ", 1)[1]
        elif any(f == "native" for t, f in fits.items() if t in good):
            reason = f"{gpu.name} (CC {cc}) runs an installed backend natively."
            recommendation = "Ready: the installed backend has machine code for this GPU."
        elif good:
            reason = f"{gpu.name} (CC {cc}) runs an installed backend through PTX JIT (slow first start)."
            recommendation = f"Works; for native code and a faster start: {install}"
        else:
            reason = f"No installed backend has code for {gpu.name} (CC {cc})."
            recommendation = f"Install the backend for this GPU: {install}"
            for_gpu = target_for(replace(gpu, driver_version=""))  # what a new enough driver would run
            if for_gpu != want:
                floor = next(t.driver_floor for t in catalog.targets() if t.name == for_gpu)
                recommendation = (
                    f"NVIDIA driver {gpu.driver_version} is too old for llcuda-{for_gpu} (it needs >= {floor}): "
                    f'update the driver, then pip install "llcuda[{for_gpu}]"; until then {install} runs on the CPU.'
                )
    if len(gpus) > 1:
        reason += (
            f" {len(gpus)} GPUs, {sum(g.memory_total_mb for g in gpus)} MiB in all: llama-server splits a model "
            "across them by layers."
        )
        # Every GPU must run the backend's code: a second GPU of another generation may not.
        for other in gpus[1:]:
            for target in [t for t, f in fits.items() if f in ("native", "ptx")]:
                b = next(b for b in installed if b.target == target)
                if backend_fit(b, other) not in ("native", "ptx"):
                    cc_other = f"{other.compute_capability[0]}.{other.compute_capability[1]}"
                    reason += (
                        f" llcuda-{target} has no code for GPU {other.index} {other.name} (CC {cc_other}): keep "
                        f"it out with CUDA_VISIBLE_DEVICES or load_model(split_mode='none', main_gpu=0)."
                    )
    return {
        "platform": platform(),
        "gpu_name": gpu.name if gpu else None,
        "compute_capability": f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}" if gpu else None,
        "compatible": compatible,
        "reason": reason,
        "gpus": [asdict(g) for g in gpus],
        "gpu_count": len(gpus),
        "memory_total_mb": sum(g.memory_total_mb for g in gpus),
        "memory_free_mb": sum(g.memory_free_mb for g in gpus),
        "backends": fits,
        "driver_problems": drivers,
        "recommended_target": want,
        "recommendation": recommendation,
        "install_pip": install,
        "install_uv": install_uv,
    }
