"""The glibc gate: every ELF of a wheel needs no symbol version its manylinux tag does not allow.

auditwheel decides a wheel's tag from the symbol versions its ELF files need, and ``auditwheel repair --plat``
refuses one that needs more. This module checks the same rule again on the repaired wheel, file by file, from
auditwheel's own policy table (so both read one source), and adds the rule auditwheel lacks:

- a required version ``GLIBC_x.y``, ``GLIBCXX_x.y.z``, ``CXXABI_x.y.z`` or ``GCC_x.y.z`` outside the tag's policy
  fails the wheel, naming the file and the version;
- an undefined symbol with **no** version that glibc exports (``_dl_find_object``, say) fails it too. A static
  libgcc leaves such a reference: the linker found no versioned definition, auditwheel sees no version to judge,
  and an older glibc then kills the process at its first C++ exception. Symbols that another ELF of the wheel
  defines (its own libraries, the libstdc++ they share) are not glibc's and pass.
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
from elftools.elf.gnuversions import GNUVerNeedSection, GNUVerSymSection
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
# Weak references gcc's start-up files make to optional glibc functions: left unversioned when libc is not
# linked directly, and harmless (the dynamic linker binds them when present, else they stay null).
CRT_WEAK = frozenset({"__cxa_finalize", "__gmon_start__", "_ITM_registerTMCloneTable", "_ITM_deregisterTMCloneTable"})
# The version families the policy governs; others (libcublas.so.12's, say) belong to libraries outside it.
FAMILIES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")


@dataclass
class ElfSymbols:
    """What one ELF file needs from others and what it defines, as the dynamic linker sees it."""

    versions: dict[str, set[str]] = field(default_factory=dict)  # library soname -> required version names
    unversioned_undefined: set[str] = field(default_factory=set)
    defined: set[str] = field(default_factory=set)


def read(path: Path) -> ElfSymbols:
    """The required symbol versions, the undefined symbols that carry no version, and the exported names."""
    out = ElfSymbols()
    with path.open("rb") as f:
        elf = ELFFile(f)
        dynsym = versym = None
        for sec in elf.iter_sections():
            if isinstance(sec, GNUVerNeedSection):
                for verneed, auxs in sec.iter_versions():
                    out.versions.setdefault(verneed.name, set()).update(aux.name for aux in auxs)
            elif isinstance(sec, GNUVerSymSection):
                versym = sec
            elif isinstance(sec, SymbolTableSection) and sec.name == ".dynsym":
                dynsym = sec
        if dynsym is None:
            return out
        for i, sym in enumerate(dynsym.iter_symbols()):
            if not sym.name:
                continue
            if sym["st_shndx"] != "SHN_UNDEF":
                out.defined.add(sym.name)
                continue
            ndx = versym.get_symbol(i)["ndx"] if versym is not None else "VER_NDX_GLOBAL"
            weak_crt = sym["st_info"]["bind"] == "STB_WEAK" and sym.name in CRT_WEAK
            if ndx in ("VER_NDX_LOCAL", "VER_NDX_GLOBAL") and not weak_crt:
                out.unversioned_undefined.add(sym.name)
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
def glibc_exports(dirs: tuple[str, ...] = GLIBC_DIRS) -> frozenset[str]:
    """Every name glibc's libraries export on this machine (the build machine's glibc is the newest involved)."""
    names: set[str] = set()
    for soname in GLIBC_SONAMES:
        for d in dirs:
            path = Path(d) / soname
            if path.is_file():
                names |= read(path).defined
                break
    if not names:
        raise FactoryError(f"cannot read glibc's exported symbols (no libc.so.6 in {', '.join(dirs)})")
    return frozenset(names)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


def highest(versions: Iterable[str]) -> dict[str, str]:
    """The highest required version per family: {"GLIBC": "2.28", "GLIBCXX": "3.4.24", ...}."""
    best: dict[str, str] = {}
    for name in versions:
        family, _, number = name.partition("_")
        if family in FAMILIES and re.fullmatch(r"\d+(\.\d+)*", number):
            if family not in best or _key(number) > _key(best[family]):
                best[family] = number
    return best


def check(
    elfs: dict[str, Path], platform: str, exports: frozenset[str] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """Check every ELF (wheel-relative name -> file); return the problems and a report of the highest versions."""
    allowed = policy(platform)
    exports = glibc_exports() if exports is None else exports
    read_all = {rel: read(path) for rel, path in elfs.items()}
    in_wheel = set().union(*(s.defined for s in read_all.values())) if read_all else set()
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
        trap = sorted(s for s in syms.unversioned_undefined if s in exports and s not in in_wheel)
        problems += [
            f"{rel} has an undefined glibc symbol with no version: {s} (a static libgcc or a too-new glibc at link "
            "time; it fails at run time on an older glibc)"
            for s in trap
        ]
    report = {"platform": platform, "highest": highest(every), "per_file": per_file}
    return problems, report
