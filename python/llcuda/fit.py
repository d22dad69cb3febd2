"""Which backend suits which GPU: the one policy behind discovery, ``llcuda doctor`` and
``check_gpu_compatibility()``. GPUs come from :mod:`llcuda.gpu`, installed backends from :mod:`llcuda.installed`,
llcuda's targets from :mod:`llcuda.catalog`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from . import catalog
from .catalog import CudaArch, TargetInfo
from .gpu import GPU, detect_gpus, platform
from .installed import Backend, backends

if TYPE_CHECKING:  # cudawheels reads requirements with packaging: imported only when the environment is read
    from .cudawheels import Download

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
    here = target_for(gpu)
    instead = f' or install the build for this driver, pip install "llcuda[{here}]"' if here != backend.target else ""
    return (
        f"NVIDIA driver {gpu.driver_version} is too old for llcuda-{backend.target} (built with CUDA "
        f"{backend.cuda_version}): {how} needs driver >= {floor}. Update the NVIDIA driver to {floor} or newer"
        f"{instead}; until then llama-server runs on the CPU (CUDA driver version is insufficient)."
    )


def runs_cuda_runtime(target: TargetInfo, gpu: GPU) -> bool:
    """Whether ``gpu``'s driver runs ``target``'s CUDA runtime at all: at least the row's driver floor (CUDA 12's
    minor-version compatibility: 525.60.13, the CUDA 12.0 driver). A driver of unknown version is given the benefit
    of the doubt."""
    if not target.driver_floor or not gpu.driver_version:
        return True
    return _version_tuple(gpu.driver_version) >= _version_tuple(target.driver_floor)


def _newest_arch(archs: tuple[CudaArch, ...], gpu: GPU) -> int:
    return max((a.cc for a in archs if a.cc <= gpu.cc), default=0)


def _preference_rank(major: int | None, prefer: tuple[int, ...]) -> int:
    return prefer.index(major) if major in prefer else len(prefer)


@dataclass(frozen=True)
class Recommendation:
    """The backend for a GPU: the row's name, what installing it downloads of NVIDIA's wheels here (None when the
    environment was not looked at) and why, in one sentence."""

    target: str
    download: Download | None
    why: str


def recommend(
    gpu: GPU | None,
    table: tuple[TargetInfo, ...] | None = None,
    *,
    have: dict[str, str] | None = None,
    prefer: tuple[int, ...] | None = None,
) -> Recommendation:
    """The row of llcuda's table that suits ``gpu`` best, and why.

    1. Machine code for the GPU (the newest such arch), else PTX it can JIT (the newest), else the CPU build. A CUDA
       row whose runtime the GPU's driver is too old for does not count (a cu13 row under a driver below 580).
    2. Rows still equal (the same archs built with CUDA 12 and 13) are told apart by what the environment holds,
       ``have`` (:func:`llcuda.cudawheels.installed`): the one that downloads least of NVIDIA's wheels here.
    3. Then by ``prefer``, the CUDA majors in the order of llcuda's wheel variants (``catalog.cuda_preference``).
       Without ``have`` this is the whole choice, as it is uv's, which sees the driver and the GPU only: so the
       variants encode this very rule (``llcuda_factory.variants``).

    The PTX-JIT driver floor (a newer driver, for a GPU newer than the row's archs) is not part of the choice: the
    row still serves that GPU once the driver is updated, and :func:`driver_problem` names the driver needed."""
    table = catalog.targets() if table is None else table
    prefer = catalog.cuda_preference() if prefer is None else prefer
    cpu = next((t.name for t in table if not t.is_cuda), "cpu")
    if gpu is None:
        return Recommendation(cpu, None, "no NVIDIA GPU or driver: the CPU build")
    scored: list[tuple[tuple[int, int], TargetInfo]] = []
    too_old: list[TargetInfo] = []
    for t in table:
        if not t.is_cuda:
            continue
        fit = arch_fit(t.archs, gpu.cc)
        if fit not in ("native", "ptx"):
            continue
        if not runs_cuda_runtime(t, gpu):
            too_old.append(t)
            continue
        scored.append(((1 if fit == "native" else 0, _newest_arch(t.archs, gpu)), t))
    old = "".join(f"; llcuda-{t.name} would need driver >= {t.driver_floor}" for t in too_old)
    cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
    if not scored:
        why = f"no CUDA build runs on {gpu.name} (CC {cc}) with driver {gpu.driver_version or '?'}: the CPU build{old}"
        return Recommendation(cpu, None, why)
    top = max(key for key, _ in scored)
    tied = [t for key, t in scored if key == top]
    downloads = {}
    if have is not None:  # packaging, which reads the requirements, only when the environment is looked at
        from . import cudawheels

        downloads = {t.name: cudawheels.download(t, have) for t in tied}

    def order(t: TargetInfo) -> tuple[float, int]:
        mb = downloads[t.name].mb if have is not None else 0.0
        return (mb, _preference_rank(t.cuda_major, prefer))

    best = min(tied, key=order)
    how = "machine code" if top[0] else "PTX (JIT-compiled at first start)"
    why = f"{gpu.name} (CC {cc}) runs llcuda-{best.name}'s {how} with driver {gpu.driver_version or '?'}"
    if len(tied) > 1:
        others = [t for t in tied if t is not best]
        if have is not None:
            costs = ", ".join(f"llcuda-{t.name} {downloads[t.name].describe()}" for t in others)
            why += f"; here it downloads {downloads[best.name].describe()}, {costs}"
        else:
            majors = ", ".join(str(m) for m in prefer)
            why += (
                f"; {', '.join(f'llcuda-{t.name}' for t in others)} would too: CUDA majors in the wheel variants' "
                f"order ({majors})"
            )
    return Recommendation(best.name, downloads.get(best.name), why + old)


def target_for(
    gpu: GPU | None,
    table: tuple[TargetInfo, ...] | None = None,
    *,
    have: dict[str, str] | None = None,
    prefer: tuple[int, ...] | None = None,
) -> str:
    """The row's name :func:`recommend` gives. Without ``have`` it is the rule the llcuda wheel variants encode
    (``llcuda_factory.variants``), so that uv picks the backend ``llcuda doctor`` would with nothing installed."""
    return recommend(gpu, table, have=have, prefer=prefer).target


def loads(backend: Backend, gpu: GPU | None) -> str | None:
    """Why ``backend``'s CUDA libraries would not load and run on ``gpu`` (it would serve on the CPU), or None when
    they would: the driver below its CUDA runtime's floor, or NVIDIA's runtime wheels missing."""
    if gpu is None or not backend.archs or backend_fit(backend, gpu) not in ("native", "ptx"):
        return None
    floor = backend.driver_floor("sass")
    if floor and gpu.driver_version and _version_tuple(gpu.driver_version) < _version_tuple(floor):
        return f"its CUDA {backend.cuda_version} runtime needs driver >= {floor}, this one is {gpu.driver_version}"
    _, missing = backend.cuda_library_dirs()
    if missing:
        return f"NVIDIA's CUDA libraries are not installed ({', '.join(missing)})"
    return None


def rank_backends(installed: list[Backend], gpu: GPU | None) -> list[Backend]:
    """Usable backends for ``gpu``, best first: native SASS, then PTX JIT, then CPU-only builds; a CUDA backend
    whose libraries do not load here (:func:`loads`: the driver, the NVIDIA wheels) counts as CPU-only. Within
    each, the newest architecture the GPU can run first, then the CUDA majors in the wheel variants' order, as
    :func:`target_for` ranks the table. So when a wheel variant and an extra bring two backends, the one that runs
    is the one ``llcuda doctor`` recommends, and of the two cc75 builds the one whose CUDA runtime this driver
    runs."""
    prefer = catalog.cuda_preference()
    usable = []
    for b in installed:
        fit = backend_fit(b, gpu)
        if fit == "unsupported":
            continue
        usable.append((b, "cpu" if loads(b, gpu) else fit))

    def newest(b: Backend) -> int:
        return _newest_arch(b.archs, gpu) if gpu is not None else 0

    # With no GPU, a plain CPU build before a CUDA build running on the CPU.
    return [
        b
        for b, f in sorted(
            usable,
            key=lambda bf: (
                _FIT_RANK[bf[1]],
                bool(bf[0].archs),
                -newest(bf[0]),
                _preference_rank(bf[0].cuda_major, prefer),
                bf[0].target,
            ),
        )
    ]


def why_runs(installed: list[Backend], gpu: GPU | None) -> dict[str, str]:
    """For each installed backend, in one line, why it runs or why another does (``llcuda backends``)."""
    ranked = rank_backends(installed, gpu)
    first = ranked[0] if ranked else None
    out: dict[str, str] = {}
    for b in installed:
        fit = backend_fit(b, gpu)
        blocked = loads(b, gpu)
        if fit == "unsupported":
            out[b.target] = "has no code for this GPU"
        elif blocked:
            out[b.target] = f"cannot use the GPU: {blocked}"
        elif not b.archs:
            out[b.target] = "the CPU build"
        elif gpu is None:
            out[b.target] = "no GPU: this CUDA build serves on the CPU"
        else:
            out[b.target] = "machine code for this GPU" if fit == "native" else "PTX for this GPU (JIT at first start)"
        if b is first:
            out[b.target] = f"runs: {out[b.target]}"
        elif first is not None and fit != "unsupported" and not blocked:
            out[b.target] += f"; llcuda-{first.target} ranks first"
    return out


def blocking_driver_problem(backend: Backend, gpus: list[GPU]) -> str | None:
    """The one error for a GPU this backend has code for but cannot use, because the driver is older than its CUDA
    runtime (a CUDA 13 build under a driver below 580): the driver it needs and the install line that works with
    this driver instead. None when it can use the GPU, or when there is no GPU."""
    gpu = gpus[0] if gpus else None
    if gpu is None or backend_fit(backend, gpu) not in ("native", "ptx"):
        return None
    why = driver_problem(backend, gpu)
    if why is None:
        return None
    here = target_for(gpu)
    instead = (
        f'install the build for this driver: pip install "llcuda[{here}]", or update the driver'
        if here != backend.target
        else "update the driver"
    )
    floor = backend.driver_floor("sass" if backend_fit(backend, gpu) == "native" else "ptx")
    return (
        f"NVIDIA driver {gpu.driver_version} is too old for llcuda-{backend.target} (built with CUDA "
        f"{backend.cuda_version}), which needs >= {floor}: {instead}. load_model(..., gpu_layers=0) runs on the CPU "
        "as it is."
    )


def check_gpu_compatibility(
    gpus: list[GPU] | None = None, installed: list[Backend] | None = None, have: dict[str, str] | None = None
) -> dict[str, Any]:
    """What this machine has and which installed backend runs how; keeps the old llcuda keys.

    Keys: ``platform``, ``gpu_name``, ``compute_capability`` (e.g. ``"5.0"``), ``compatible``, ``reason``
    (as before, for the first GPU), plus ``gpus`` (every GPU), ``gpu_count``, ``memory_total_mb`` and
    ``memory_free_mb`` (all GPUs together), ``backends`` (target -> native/ptx/cpu/unsupported), ``driver_problems``
    (target -> why the driver is too old, naming the version needed), ``recommended_target``,
    ``recommendation``, and the install line for this machine with pip (``install_pip``): from the GPU, its driver
    and NVIDIA's wheels this environment holds (``have``, by default read with importlib.metadata), with why
    (``install_why``) and what it downloads of NVIDIA's wheels (``install_download_mb``, ``install_downloads``). The
    line with uv's wheel variants (``install_uv``) picks by GPU and driver alone (``uv_target``): where that differs,
    ``install_uv`` is the uv line that names the backend.
    """
    from . import cudawheels

    gpus = detect_gpus() if gpus is None else gpus
    installed = backends() if installed is None else installed
    have = cudawheels.installed() if have is None else have
    gpu = gpus[0] if gpus else None
    fits = {b.target: backend_fit(b, gpu) for b in installed}
    drivers = {b.target: why for b in installed if (why := driver_problem(b, gpu))}
    chosen = recommend(gpu, have=have)
    want = chosen.target
    download = chosen.download or cudawheels.download(next(t for t in catalog.targets() if t.name == want), have)
    install = f'pip install "llcuda[{want}]"'
    # uv picks by GPU and driver itself, from the llcuda wheel's variants (a preview of draft standards)
    uv_target = target_for(gpu)
    install_uv = f"uv pip install --preview-features wheel-variants --extra-index-url {catalog.variants_index()} llcuda"
    if uv_target != want:  # uv cannot see the environment: name the backend
        install_uv = f'uv pip install "llcuda[{want}]"'

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
        "install_why": chosen.why,
        "install_download_mb": round(download.mb, 1),
        "install_downloads": list(download.wheels),
        "uv_target": uv_target,
        "install_uv": install_uv,
    }
