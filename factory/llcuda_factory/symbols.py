"""The glibc gate: every ELF of a wheel needs no symbol version its manylinux tag does not allow.

auditwheel decides a wheel's tag from the symbol versions its ELF files need, and ``auditwheel repair --plat``
refuses one that needs more. This module checks the same rule again on the repaired wheel, file by file, from
auditwheel's own policy table (so both read one source), and adds the rule auditwheel lacks:

- a required version ``GLIBC_x.y``, ``GLIBCXX_x.y.z``, ``CXXABI_x.y.z`` or ``GCC_x.y.z`` outside the tag's policy
  fails the wheel, naming the file and the version;
- an undefined symbol with **no** version that glibc exports fails it too, when it is a strong reference, or a weak
  one to a function glibc did not have at the tag's floor (``_dl_find_object``, glibc 2.35). A static libgcc
  leaves such a weak reference: the linker found no versioned definition, auditwheel sees no version to judge,
  and an older glibc then kills the process at its first C++ exception. libstdc++'s weak references to the
  pthread functions it probes for (``__pthread_key_create``, glibc 2.2.5) bind wherever they run, and pass.
  Symbols that another ELF of the wheel defines (its own libraries, the libstdc++ they share) are not glibc's;
- a strong undefined reference to one of llama.cpp's own symbols (a name with ``ggml``, ``gguf``, ``llama`` or
  ``mtmd`` in it) that no ELF of the wheel defines fails it: a template instantiation or library left out of the
  build (``cmake/LLCUDACudaKernels.cmake`` replaces some) would otherwise show only when the library loads, which
  for libggml-cuda.so is on the user's GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import SymbolTableSection

from .errors import FactoryError

# The libraries of glibc itself, whose exported names the unversioned-symbol rule looks up.
GLIBC_SONAMES = (
    "libc.so.6",
    "libm.so.6",
    "ld-linux-x86-64.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
)
GLIBC_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")
# The version families the policy governs; others (libcublas.so.12's, say) belong to libraries outside it.
FAMILIES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")
# llama.cpp's own symbols, mangled or not: every one a wheel's ELF needs must be defined by one of its ELFs.
OWN_SYMBOL = re.compile(r"ggml|gguf|llama|mtmd")


@dataclass
class ElfSymbols:
    """What one ELF file needs from others and what it defines, as the dynamic linker sees it."""

    versions: dict[str, set[str]] = field(default_factory=dict)  # library soname -> required version names
    unversioned_undefined: dict[str, bool] = field(default_factory=dict)  # name -> weak reference
    defined: dict[str, set[str]] = field(default_factory=dict)  # exported name -> the versions it is defined at


def read(path: Path) -> ElfSymbols:
    """The required symbol versions, the undefined symbols that carry no version, and the exported names."""
    out = ElfSymbols()
    with path.open("rb") as f:
        elf = ELFFile(f)
        dynsym = versym = None
        version_names: dict[int, str] = {}
        for sec in elf.iter_sections():
            if isinstance(sec, GNUVerNeedSection):
                for verneed, auxs in sec.iter_versions():
                    out.versions.setdefault(verneed.name, set()).update(aux.name for aux in auxs)
            elif isinstance(sec, GNUVerDefSection):
                for verdef, auxs in sec.iter_versions():
                    version_names[verdef["vd_ndx"]] = next(iter(auxs)).name
            elif isinstance(sec, GNUVerSymSection):
                versym = sec
            elif isinstance(sec, SymbolTableSection) and sec.name == ".dynsym":
                dynsym = sec
        if dynsym is None:
            return out
        for i, sym in enumerate(dynsym.iter_symbols()):
            if not sym.name:
                continue
            ndx = versym.get_symbol(i)["ndx"] if versym is not None else "VER_NDX_GLOBAL"
            if sym["st_shndx"] != "SHN_UNDEF":
                # the high bit marks a hidden (non-default) version, such as pthread_create@GLIBC_2.2.5
                named = version_names.get(ndx & 0x7FFF) if isinstance(ndx, int) else None
                out.defined.setdefault(sym.name, set()).update([named] if named else [])
            elif ndx in ("VER_NDX_LOCAL", "VER_NDX_GLOBAL"):
                out.unversioned_undefined[sym.name] = sym["st_info"]["bind"] == "STB_WEAK"
    return out


@cache
def policy(platform: str) -> dict[str, frozenset[str]]:
    """auditwheel's allowed symbol versions for a tag (``manylinux_2_28_x86_64``): family -> versions."""
    m = re.fullmatch(r"(manylinux_\d+_\d+)_(\w+)", platform)
    if not m:
        raise FactoryError(f"not a manylinux platform tag: {platform!r}")
    import auditwheel  # the build environment has it (it repairs the wheels)

    table = json.loads((Path(auditwheel.__file__).parent / "policy" / "manylinux-policy.json").read_text())
    for entry in table:
        if entry["name"] == m.group(1):
            versions: dict[str, list[str]] = entry["symbol_versions"][m.group(2)]
            return {k: frozenset(v) for k, v in versions.items()}
    raise FactoryError(f"auditwheel {auditwheel.__version__} has no policy for {m.group(1)}")


@cache
def glibc_exports(dirs: tuple[str, ...] = GLIBC_DIRS) -> dict[str, tuple[int, ...]]:
    """Every name glibc's libraries export on this machine (the newest glibc involved), with the oldest glibc
    version that has it: ``{"pthread_create": (2, 2, 5), "_dl_find_object": (2, 35), ...}``."""
    oldest: dict[str, tuple[int, ...]] = {}
    for soname in GLIBC_SONAMES:
        for d in dirs:
            path = Path(d) / soname
            if path.is_file():
                for name, versions in read(path).defined.items():
                    keys = [_key(v) for v in versions if v.startswith("GLIBC_")] or [(0,)]
                    oldest[name] = min([*keys, oldest.get(name, keys[0])])
                break
    if not oldest:
        raise FactoryError(f"cannot read glibc's exported symbols (no libc.so.6 in {', '.join(dirs)})")
    return oldest


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


def highest(versions: Iterable[str]) -> dict[str, str]:
    """The highest required version per family: {"GLIBC": "2.28", "GLIBCXX": "3.4.24", ...}."""
    best: dict[str, str] = {}
    for name in versions:
        family, _, number = name.partition("_")
        numbered = family in FAMILIES and re.fullmatch(r"\d+(\.\d+)*", number)
        if numbered and (family not in best or _key(number) > _key(best[family])):
            best[family] = number
    return best


def check(
    elfs: dict[str, Path], platform: str, exports: dict[str, tuple[int, ...]] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """Check every ELF (wheel-relative name -> file); return the problems and a report of the highest versions."""
    allowed = policy(platform)
    floor = tuple(int(x) for x in re.findall(r"\d+", platform)[:2])
    exports = glibc_exports() if exports is None else exports
    read_all = {rel: read(path) for rel, path in elfs.items()}
    in_wheel = {name for syms in read_all.values() for name in syms.defined}
    problems: list[str] = []
    per_file: dict[str, dict[str, str]] = {}
    every: set[str] = set()
    for rel, syms in sorted(read_all.items()):
        needed = set().union(*syms.versions.values()) if syms.versions else set()
        every |= needed
        per_file[rel] = highest(needed)
        for name in sorted(needed, key=lambda n: (n.partition("_")[0], _key(n))):
            family = name.partition("_")[0]
            if family in allowed and name.partition("_")[2] not in allowed[family]:
                problems.append(f"{rel} needs {name}, which {platform} does not allow")
        for sym, weak in sorted(syms.unversioned_undefined.items()):
            if sym not in exports or sym in in_wheel or (weak and exports[sym] <= floor):
                continue
            since = ".".join(map(str, exports[sym]))
            problems.append(
                f"{rel} has an undefined glibc symbol with no version: {sym} ({'weak' if weak else 'strong'}, glibc "
                f"{since}; a static libgcc or a link against the wrong glibc leaves it, and a glibc without it fails "
                "at run time)"
            )
        problems += [
            f"{rel} needs {sym}, which no library of the wheel defines (a template instantiation or library left "
            "out of the build?)"
            for sym, weak in sorted(syms.unversioned_undefined.items())
            if not weak and OWN_SYMBOL.search(sym) and sym not in in_wheel
        ]
    report = {"platform": platform, "highest": highest(every), "per_file": per_file}
    return problems, report
