"""llcuda's wheel factory: the build-time logic shared by CMake, nox, CI and the wheel metadata.

Nothing here is shipped in a wheel. Each module is one concern:

- :mod:`.project` reads the project's records (``targets.toml``, the version) in one place;
  :mod:`.targets` holds the table's rows and ``[cuda-toolkits]``;
- :mod:`.cudaruntime` says how one CUDA major's runtime reaches a wheel (NVIDIA's wheels, sonames, driver floor);
- :mod:`.source` resolves (offline-first) the pinned llama.cpp tree;
- :mod:`.toolkit` finds and checks the CUDA toolkit a row builds with; :mod:`.pypitoolkit` makes one of NVIDIA's
  PyPI wheels;
- :mod:`.toolchain` checks the old-glibc sysroot every wheel is compiled against, and names the wheels' tag;
- :mod:`.configure` writes the CMake settings for one target; :mod:`.backends` renders the backend projects;
  :mod:`.metadata` is the scikit-build-core dynamic-metadata provider of the backend wheels;
- :mod:`.pipeline` builds each row's wheel, finishes it (repair → deps → audit) and publishes it by rename;
  :mod:`.repair` and :mod:`.audit` turn a raw wheel into a checked manylinux wheel; :mod:`.symbols` is the
  audit's glibc gate, :mod:`.fatbin` reads the CUDA device code and its driver floor, :mod:`.buildinfo` writes a
  backend's ``build_info.json`` (its one writer), :mod:`.wheelfile` a built wheel's metadata;
- :mod:`.wheelhouse` holds the wheels' dependencies and offline bundles; :mod:`.variants` the llcuda wheel's
  variants; :mod:`.release` the checks before a release and its publishing;
- :mod:`.reproducible` compares two builds of a wheel, :mod:`.crosscheck` the recipe's wheel with another build;
- :mod:`.results` says where measurements go; :mod:`.errors` holds the one error type; :mod:`.__main__` is the
  command line (``python -m llcuda_factory``).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
