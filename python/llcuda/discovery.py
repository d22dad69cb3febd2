"""Find a usable ``llama-server``, in the old llcuda's order but with no hard-coded personal paths.

1. ``LLAMA_SERVER_PATH``;
2. the installed backend wheel that best fits the present GPU (native SASS, then PTX, then CPU);
3. ``LLAMA_CPP_DIR`` (its ``bin/`` and ``build/bin/``);
4. llcuda's cache dir (``$LLCUDA_CACHE_DIR`` or ``platformdirs.user_cache_dir("llcuda")``), its ``bin/``;
5. ``PATH`` and the system locations.

Each candidate must exist, be an executable ELF file and start (``--version`` exits 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .cachedir import cache_dir
from .elf import is_elf
from .errors import ServerNotFoundError
from .fit import blocking_driver_problem, rank_backends, target_for
from .gpu import GPU, detect_gpus
from .installed import Backend, backends

SYSTEM_PATHS = (Path("/usr/local/bin/llama-server"), Path("/usr/bin/llama-server"))


_STARTED: set[tuple[str, int, int]] = set()  # (path, size, mtime) of binaries that answered --version


def problem_with(path: Path, env: dict[str, str] | None = None) -> str | None:
    """Why ``path`` cannot be used as llama-server, or None when it can (a run check is done once per file, in
    ``env``: by default :func:`child_env`'s)."""
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    if not os.access(path, os.X_OK):
        return f"is not executable (chmod +x {path})"
    if not is_elf(path):
        return "is not an ELF executable"
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _STARTED:
        try:
            proc = subprocess.run(
                [str(path), "--version"], capture_output=True, text=True, timeout=60, env=env or child_env(path)
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"does not start: {err}"
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            return f"does not start (exit {proc.returncode}): {last[0]}"
        _STARTED.add(key)
    return None


def child_env(server: Path, backend: Backend | None = None) -> dict[str, str]:
    """Environment for the server process only.

    A backend wheel finds its libraries through relative RUNPATHs; only NVIDIA runtime wheels installed in
    another site-packages are added (from ``backend``'s build info, read from beside ``server`` when not given). A
    loose build gets its own lib dirs.
    """
    env = dict(os.environ)
    package_dir = server.parent.parent
    if backend is None and package_dir.name.startswith("llcuda_") and (package_dir / "build_info.json").is_file():
        data = json.loads((package_dir / "build_info.json").read_text())
        backend = Backend(str(data.get("target", package_dir.name.removeprefix("llcuda_"))), package_dir, data)
    if package_dir.name.startswith("llcuda_"):
        if backend is not None:
            extra_dirs, _ = backend.cuda_library_dirs()
            if extra_dirs:
                env["LD_LIBRARY_PATH"] = ":".join([*map(str, extra_dirs), *filter(None, [env.get("LD_LIBRARY_PATH")])])
        return env
    extra = [str(d) for d in (server.parent, server.parent.parent / "lib") if d.is_dir()]
    if extra:
        env["LD_LIBRARY_PATH"] = ":".join([*extra, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    return env


@dataclass(frozen=True)
class Found:
    """What discovery hands back: the llama-server to run, the installed backend that owns it (its build info
    parsed once; None for a loose build) and the GPUs it was picked for (probed once)."""

    server: Path
    backend: Backend | None
    gpus: tuple[GPU, ...]

    def env(self) -> dict[str, str]:
        """The environment to run ``server`` in (:func:`child_env`, with the backend's build info)."""
        return child_env(self.server, self.backend)

    def driver_problem(self) -> str | None:
        """Why the backend cannot use this machine's GPU although it has code for it (the driver is older than its
        CUDA runtime), naming the driver and the install line that works; None otherwise."""
        if self.backend is None or not self.backend.archs:
            return None
        return blocking_driver_problem(self.backend, list(self.gpus))


@dataclass
class Search:
    """Every place looked at, with why it was refused."""

    tried: list[tuple[str, str]] = field(default_factory=list)

    def check(self, label: str, path: Path, backend: Backend | None = None) -> Path | None:
        why = problem_with(path, child_env(path, backend))
        if why is None:
            return path
        self.tried.append((f"{label}: {path}", why))
        return None


def _owner(server: Path, installed: list[Backend]) -> Backend | None:
    return next((b for b in installed if b.llama_server == server), None)


def found_at(server: Path, gpus: list[GPU] | None = None) -> Found:
    """A llama-server named by the caller (``ServerManager(server_path)``), with the backend that owns it, if any."""
    gpus = detect_gpus() if gpus is None else gpus
    return Found(server, _owner(server, backends()), tuple(gpus))


def discover(gpus: list[GPU] | None = None) -> Found:
    """The llama-server to run, or ServerNotFoundError listing every place searched and the fix."""
    search = Search()
    gpus = detect_gpus() if gpus is None else gpus
    installed = backends()
    env_path = os.environ.get("LLAMA_SERVER_PATH")
    if env_path:
        path = Path(env_path).expanduser()
        owner = _owner(path, installed)
        why = problem_with(path, child_env(path, owner))
        if why is None:
            return Found(path, owner, tuple(gpus))
        raise ServerNotFoundError(f"LLAMA_SERVER_PATH={env_path} {why}. Fix or unset LLAMA_SERVER_PATH.")

    gpu = gpus[0] if gpus else None
    ranked = rank_backends(installed, gpu)
    for backend in ranked:
        if found := search.check(f"backend llcuda-{backend.target}", backend.llama_server, backend):
            return Found(found, backend, tuple(gpus))
    search.tried += [(f"backend llcuda-{b.target}", "has no code for this GPU") for b in installed if b not in ranked]

    places: list[tuple[str, Path]] = []
    if cpp_dir := os.environ.get("LLAMA_CPP_DIR"):
        places += [("LLAMA_CPP_DIR", Path(cpp_dir).expanduser() / sub / "llama-server") for sub in ("bin", "build/bin")]
    places.append(("llcuda cache", cache_dir() / "bin" / "llama-server"))
    if on_path := shutil.which("llama-server"):
        places.append(("PATH", Path(on_path)))
    places += [("system", p) for p in SYSTEM_PATHS]
    for label, path in places:
        if found := search.check(label, path):
            return Found(found, None, tuple(gpus))

    tried = "\n".join(f"  - {where}: {why}" for where, why in search.tried) or "  (nothing)"
    fix = f'pip install "llcuda[{target_for(gpu)}]"'
    gpu_text = f"{gpu.name} (CC {gpu.compute_capability[0]}.{gpu.compute_capability[1]})" if gpu else "no GPU"
    raise ServerNotFoundError(
        f"llama-server not found; for this machine ({gpu_text}) install the backend: {fix}\n"
        f"(or set LLAMA_SERVER_PATH). Searched:\n{tried}"
    )


def find_llama_server(gpus: list[GPU] | None = None) -> Path:
    """The llama-server to run (``discover()``'s pick), or ServerNotFoundError listing every place searched and
    the fix."""
    return discover(gpus).server
