"""The old-glibc toolchain every backend wheel is built with, and the platform tag it earns.

``targets.toml``'s ``[toolchain]`` names the wheels' manylinux tag and the sysroot that ``ci/install-sysroot.sh``
assembles (bullseye's glibc 2.31 and gcc-10's libstdc++, driven by g++-12). ``LLCUDA_SYSROOT`` overrides the
folder; ``LLCUDA_SYSROOT=none`` builds with the native compilers, which only an old-glibc build image (PyPA's
manylinux_2_28, where cibuildwheel runs) may do: the audit still holds every ELF to the tag's symbol versions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import FactoryError
from .project import table

INSTALL_HINT = "bash ci/install-sysroot.sh"
ENV = "LLCUDA_SYSROOT"
NATIVE = "none"
# What a finished sysroot holds (the stamp is written last, so a half-made one has none).
PARTS = (
    "llcuda-sysroot.stamp",
    "bin/gcc",
    "bin/g++",
    "lib/libllcuda-stdcxx.so",
    "include/llcuda-glibc-floor.h",
    "openmp/libgomp.so.1",
)
# The shared library that carries gcc-10's libstdc++ (linked whole from libstdc++.a) for every ELF of a wheel.
CXX_RUNTIME = "libllcuda-stdcxx.so"


@dataclass(frozen=True)
class Toolchain:
    platform: str  # the wheels' tag, e.g. manylinux_2_28_x86_64
    sysroot: Path | None  # None: native compilers (an old-glibc image)

    @property
    def glibc(self) -> tuple[int, int]:
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", self.platform)
        if not m:
            raise FactoryError(f"targets.toml: [toolchain] platform {self.platform!r} is not manylinux_X_Y_ARCH")
        return int(m.group(1)), int(m.group(2))

    @property
    def glibc_str(self) -> str:
        return "{}.{}".format(*self.glibc)

    @property
    def cc(self) -> str | None:
        return str(self.sysroot / "bin" / "gcc") if self.sysroot else None

    @property
    def cxx(self) -> str | None:
        return str(self.sysroot / "bin" / "g++") if self.sysroot else None

    @property
    def cxx_runtime(self) -> Path | None:
        return self.sysroot / "lib" / CXX_RUNTIME if self.sysroot else None

    @property
    def openmp_dir(self) -> Path | None:
        """A folder holding only the sysroot's libgomp.so.1: where auditwheel finds the OpenMP runtime it grafts.
        None with native compilers (an old-glibc image's own libgomp is the one to graft)."""
        return self.sysroot / "openmp" if self.sysroot else None


def get() -> Toolchain:
    """The table's toolchain, with ``$LLCUDA_SYSROOT`` applied (not checked: see :func:`check`)."""
    raw = table().get("toolchain", {})
    platform = str(raw.get("platform", ""))
    default = str(raw.get("sysroot", ""))
    if not platform or not default:
        raise FactoryError("targets.toml: [toolchain] needs platform and sysroot")
    chosen = os.environ.get(ENV) or default
    tc = Toolchain(platform, None if chosen == NATIVE else Path(chosen))
    tc.glibc  # noqa: B018 - validates the tag
    return tc


def check(tc: Toolchain | None = None) -> Toolchain:
    """The toolchain, complete, or one line that says how to install it."""
    tc = tc or get()
    if tc.sysroot is None:
        return tc
    if not tc.sysroot.is_dir():
        raise FactoryError(
            f"the old-glibc toolchain is not installed ({tc.sysroot} does not exist); install it: {INSTALL_HINT}"
        )
    missing = [p for p in PARTS if not (tc.sysroot / p).exists()]
    if missing:
        raise FactoryError(
            f"the old-glibc toolchain in {tc.sysroot} is half-made (no {', '.join(missing)}); "
            f"install it again: {INSTALL_HINT}"
        )
    return tc
