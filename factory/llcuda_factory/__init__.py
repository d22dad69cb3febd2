"""llcuda's wheel factory: the build-time logic shared by CMake, nox, CI and the wheel metadata.

Nothing here is shipped in a wheel. Each module is one concern:

- :mod:`.targets`  reads ``targets.toml``, the single table of backend targets;
- :mod:`.source`   resolves (and, offline-first, fetches) the pinned llama.cpp tree;
- :mod:`.toolkit`  picks a CUDA toolkit able to compile a target's architectures;
- :mod:`.toolchain` checks the old-glibc sysroot every wheel is compiled against, and names the wheels' tag;
- :mod:`.configure` writes the CMake settings for one target;
- :mod:`.metadata` is the scikit-build-core dynamic-metadata provider of the backend wheels;
- :mod:`.repair` and :mod:`.audit` turn a raw wheel into a checked manylinux wheel; :mod:`.symbols` is the
  audit's glibc gate, and :mod:`.crosscheck` compares the recipe's wheel with another build of it.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
