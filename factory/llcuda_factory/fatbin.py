"""Read what a CUDA library's fatbin holds, and the oldest NVIDIA driver that runs it.

The ``.nv_fatbin`` section of an ELF is a run of containers (magic ``0xBA55ED50``), each a header followed by
entries: one cubin (SASS for one ``sm_XX``) or one PTX text (``compute_XX``) each. An entry's header carries its
kind, its architecture and flags; two flags mark a compressed payload:

- ``0x2000``: the compression nvcc has applied since CUDA 11 (``--no-compress`` turns it off), which every
  driver of the CUDA 11/12 era reads;
- ``0x8000``: the newer compression of ``nvcc -compress-mode`` (CUDA 12.8+), which needs a driver of CUDA 12.4
  or newer (NVIDIA's nvcc documentation: "not compatible with drivers released before CUDA Toolkit's 12.4").

The floors computed here follow NVIDIA's documents:

- SASS path (the GPU runs the cubin built for it): the CUDA runtime's minor-version-compatibility floor
  (:data:`toolkit.RUNTIME_WHEELS`), raised to 550.54.14 if any entry uses the newer compression;
- PTX JIT path (a newer GPU compiles the PTX at load time): the driver must know the PTX ISA version, i.e. be at
  least the driver of the toolkit that introduced it (:data:`PTX_ISA_DRIVER`). Minor-version compatibility does
  not cover PTX JIT.
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import FactoryError

FATBIN_MAGIC = 0xBA55ED50
KIND_PTX = 1
KIND_ELF = 2
FLAG_COMPRESSED = 0x2000
FLAG_COMPRESSED_NEW = 0x8000

# The driver released with each CUDA toolkit that introduced a PTX ISA version (Linux x86_64; NVIDIA's CUDA
# toolkit release notes, table 3, and the PTX ISA release history).
PTX_ISA_DRIVER = {
    (7, 8): ("11.8", "520.61.05"),
    (8, 0): ("12.0", "525.60.13"),
    (8, 1): ("12.1", "530.30.02"),
    (8, 2): ("12.2", "535.54.03"),
    (8, 3): ("12.3", "545.23.06"),
    (8, 4): ("12.4", "550.54.14"),
    (8, 5): ("12.5", "555.42.02"),
    (8, 6): ("12.7", "565.57.01"),
    (8, 7): ("12.8", "570.26"),
    (8, 8): ("12.9", "575.51.03"),
    (9, 0): ("13.0", "580.65.06"),
}
# nvcc -compress-mode (the 0x8000 flag) needs a CUDA 12.4 driver.
NEW_COMPRESSION_DRIVER = "550.54.14"


@dataclass(frozen=True)
class Entry:
    kind: int
    arch: int
    flags: int
    stored_bytes: int
    payload: bytes  # the stored bytes, compressed or not

    @property
    def compressed(self) -> bool:
        return bool(self.flags & (FLAG_COMPRESSED | FLAG_COMPRESSED_NEW))


def _section(path: Path, name: str) -> bytes:
    """The contents of one section of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise FactoryError(f"{path.name} is not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        (sh_name,) = struct.unpack_from("<I", data, base)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, base + 0x18)
        return sh_name, sh_offset, sh_size

    _, str_off, str_size = header(shstrndx)
    names = data[str_off : str_off + str_size]
    for i in range(shnum):
        sh_name, off, size = header(i)
        end = names.index(b"\0", sh_name)
        if names[sh_name:end].decode() == name:
            return data[off : off + size]
    raise FactoryError(f"{path.name} has no {name} section (no CUDA device code)")


def entries(path: Path) -> list[Entry]:
    """Every cubin and PTX entry in the library's fatbin."""
    blob = _section(path, ".nv_fatbin")
    out: list[Entry] = []
    pos = 0
    while pos + 16 <= len(blob):
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", blob, pos)
        if magic != FATBIN_MAGIC:  # containers are padded to an alignment: skip to the next magic
            nxt = blob.find(struct.pack("<I", FATBIN_MAGIC), pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        cur, end = pos + header_size, pos + header_size + fat_size
        while cur + 64 <= end:
            kind, _, ehdr, size = struct.unpack_from("<HHIQ", blob, cur)
            if ehdr == 0:
                break
            (arch,) = struct.unpack_from("<I", blob, cur + 28)
            (flags,) = struct.unpack_from("<Q", blob, cur + 40)
            payload = blob[cur + ehdr : cur + ehdr + size]
            out.append(Entry(kind, arch, flags, size, payload))
            cur += ehdr + size
        pos = end
    if not out:
        raise FactoryError(f"{path.name}: .nv_fatbin holds no entry")
    return out


def ptx_isa(path: Path, entries_: list[Entry], cuobjdump: Path | None) -> tuple[int, int] | None:
    """The PTX ISA version of the library's PTX (read from the fatbin, or from cuobjdump when compressed)."""
    versions: set[tuple[int, int]] = set()
    for entry in entries_:
        if entry.kind == KIND_PTX and not entry.compressed:
            m = re.search(rb"^\.version (\d+)\.(\d+)", entry.payload, re.MULTILINE)
            if m:
                versions.add((int(m.group(1)), int(m.group(2))))
    if not versions and any(e.kind == KIND_PTX for e in entries_):
        if cuobjdump is None:
            raise FactoryError(f"{path.name}: its PTX is compressed and no cuobjdump was given to read it")
        proc = subprocess.run([str(cuobjdump), "-ptx", str(path)], check=True, capture_output=True, text=True)
        versions = {(int(a), int(b)) for a, b in re.findall(r"^\.version (\d+)\.(\d+)", proc.stdout, re.MULTILINE)}
    return max(versions) if versions else None


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def driver_floors(path: Path, runtime_floor: str, cuobjdump: Path | None = None) -> dict[str, object]:
    """What the fatbin of ``path`` holds and the oldest driver for each way a GPU can run it."""
    found = entries(path)
    sass = sorted({e.arch for e in found if e.kind == KIND_ELF})
    ptx = sorted({e.arch for e in found if e.kind == KIND_PTX})
    legacy = sum(1 for e in found if e.flags & FLAG_COMPRESSED)
    new = sum(1 for e in found if e.flags & FLAG_COMPRESSED_NEW)
    sass_floor = runtime_floor
    sass_reason = "CUDA minor-version compatibility of the runtime it links"
    if new:
        sass_floor = max(sass_floor, NEW_COMPRESSION_DRIVER, key=_version_key)
        sass_reason += f"; {new} entries use nvcc -compress-mode, which needs a CUDA 12.4 driver"
    isa = ptx_isa(path, found, cuobjdump)
    report: dict[str, object] = {
        "sass": [f"sm_{a}" for a in sass],
        "ptx": [f"compute_{a}" for a in ptx],
        "entries": len(found),
        "compressed_entries": {"nvcc default (0x2000)": legacy, "compress-mode (0x8000)": new},
        "sass_driver": sass_floor,
        "sass_driver_reason": sass_reason,
    }
    if isa is not None:
        if isa not in PTX_ISA_DRIVER:
            raise FactoryError(f"{path.name}: PTX ISA {isa[0]}.{isa[1]} is not in fatbin.PTX_ISA_DRIVER; add it")
        cuda, driver = PTX_ISA_DRIVER[isa]
        report["ptx_isa"] = f"{isa[0]}.{isa[1]}"
        report["ptx_jit_driver"] = max(driver, sass_floor, key=_version_key)
        report["ptx_jit_driver_reason"] = f"PTX ISA {isa[0]}.{isa[1]} was introduced by CUDA {cuda}"
    return report
