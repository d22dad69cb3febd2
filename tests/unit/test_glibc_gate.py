"""The glibc gate (factory/llcuda_factory/symbols.py) on ELF files made here to break each rule, and the
toolchain check (toolchain.py) on missing and half-made sysroots.

The ELF files are compiled by this machine's gcc (Debian 12, glibc 2.36), which is what makes them too new."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llcuda_factory import symbols, toolchain
from llcuda_factory.errors import FactoryError

PLATFORM = "manylinux_2_28_x86_64"
CC = shutil.which("gcc") or "gcc"


def _cc(tmp_path: Path, name: str, code: str, *flags: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(code)
    out = tmp_path / f"lib{name}.so"
    subprocess.run([CC, "-O1", "-fPIC", "-shared", "-o", str(out), str(src), *flags], check=True)
    return out


def _gate(*elfs: Path) -> tuple[list[str], dict[str, Any]]:
    return symbols.check({p.name: p for p in elfs}, PLATFORM)


def test_a_library_within_glibc_2_28_passes(tmp_path: Path) -> None:
    lib = _cc(tmp_path, "old", "#include <string.h>\nint f(const char *s) { return (int)strlen(s); }\n")
    problems, report = _gate(lib)
    assert problems == []
    assert report["highest"] == {"GLIBC": "2.2.5"}


def test_glibc_2_29_exp_fails_and_is_named(tmp_path: Path) -> None:
    # glibc 2.29 made a new default version of exp: linked on a newer glibc, it needs GLIBC_2.29.
    lib = _cc(tmp_path, "newexp", "#include <math.h>\ndouble f(double x) { return exp(x); }\n", "-lm")
    problems, report = _gate(lib)
    assert problems == [f"libnewexp.so needs GLIBC_2.29, which {PLATFORM} does not allow"]
    assert report["per_file"]["libnewexp.so"]["GLIBC"] == "2.29"


def test_the_symver_binding_of_the_sysroot_header_brings_exp_back_to_2_2_5(tmp_path: Path) -> None:
    code = '__asm__(".symver exp,exp@GLIBC_2.2.5");\n#include <math.h>\ndouble f(double x) { return exp(x); }\n'
    problems, report = _gate(_cc(tmp_path, "oldexp", code, "-lm"))
    assert problems == []
    assert report["highest"]["GLIBC"] == "2.2.5"


def test_a_newer_glibcxx_and_cxxabi_fail(tmp_path: Path) -> None:
    # GLIBCXX_3.4.29 (gcc 11) and CXXABI_1.3.13 (gcc 12): both beyond manylinux_2_28's 3.4.24 and 1.3.11.
    code = (
        "extern void _ZSt28__throw_bad_array_new_lengthv(void);\n"
        "extern void *_ZTIDu;\n"  # typeinfo for char8_t, CXXABI_1.3.13
        "void *g(void) { _ZSt28__throw_bad_array_new_lengthv(); return &_ZTIDu; }\n"
    )
    lib = _cc(tmp_path, "newcxx", code, "-lstdc++")
    problems, _ = _gate(lib)
    assert f"libnewcxx.so needs GLIBCXX_3.4.29, which {PLATFORM} does not allow" in problems
    assert any(p.startswith("libnewcxx.so needs CXXABI_1.3.1") and "does not allow" in p for p in problems)


def test_an_unversioned_glibc_symbol_fails(tmp_path: Path) -> None:
    # What -static-libgcc leaves on a glibc 2.35+ build machine: a _dl_find_object bound to no version.
    code = "extern int _dl_find_object(void *, void *);\nint f(void) { return _dl_find_object(0, 0); }\n"
    lib = _cc(tmp_path, "trap", code, "-nostdlib")
    problems, _ = _gate(lib)
    assert len(problems) == 1
    assert problems[0].startswith("libtrap.so has an undefined glibc symbol with no version: _dl_find_object (strong,")


def test_a_llama_cpp_symbol_no_library_of_the_wheel_defines_fails(tmp_path: Path) -> None:
    # What a template instantiation left out of libggml-cuda.so leaves: an undefined ggml_* reference. Here the
    # mangled name of one FlashAttention case; the wheel passes once another of its libraries defines it.
    name = "_Z34ggml_cuda_flash_attn_ext_tile_caseILi40ELi40EEvR25ggml_backend_cuda_contextP11ggml_tensor"
    user = _cc(tmp_path, "user", f"extern void {name}(void);\nvoid f(void) {{ {name}(); }}\n")
    problems, _ = _gate(user)
    assert problems == [
        f"libuser.so needs {name}, which no library of the wheel defines (a template instantiation or library left "
        "out of the build?)"
    ]
    definer = _cc(tmp_path, "definer", f"void {name}(void) {{}}\n")
    assert _gate(user, definer)[0] == []


def test_a_weak_unversioned_reference_fails_only_for_a_function_newer_than_the_floor(tmp_path: Path) -> None:
    # libgcc's unwinder (gcc >= 12) probes _dl_find_object (glibc 2.35) weakly; libstdc++ probes
    # __pthread_key_create (glibc 2.2.5) the same way. Only the first is missing on a glibc 2.28 system.
    code = (
        "extern int _dl_find_object(void *, void *) __attribute__((weak));\n"
        "extern int __pthread_key_create(void *, void *) __attribute__((weak));\n"
        "int f(void) { return (_dl_find_object ? 1 : 0) + (__pthread_key_create ? 2 : 0); }\n"
    )
    problems, _ = _gate(_cc(tmp_path, "weak", code, "-nostdlib"))
    assert len(problems) == 1
    assert problems[0].startswith(
        "libweak.so has an undefined glibc symbol with no version: _dl_find_object (weak, glibc 2.35;"
    )


def test_an_unversioned_symbol_another_wheel_library_defines_passes(tmp_path: Path) -> None:
    provider = _cc(tmp_path, "provider", "int shared_helper(void) { return 1; }\n")
    user = _cc(
        tmp_path,
        "user",
        "extern int shared_helper(void);\nint f(void) { return shared_helper(); }\n",
        f"-L{tmp_path}",
        "-lprovider",
    )
    problems, _ = symbols.check({p.name: p for p in (provider, user)}, PLATFORM, {"shared_helper": (2, 2, 5)})
    assert problems == []
    alone, _ = symbols.check({user.name: user}, PLATFORM, {"shared_helper": (2, 2, 5)})
    assert len(alone) == 1
    assert alone[0].startswith("libuser.so has an undefined glibc symbol with no version: shared_helper ")


def test_the_policy_is_auditwheels() -> None:
    allowed = symbols.policy(PLATFORM)
    assert "2.28" in allowed["GLIBC"]
    assert "2.29" not in allowed["GLIBC"]
    assert max(allowed["GLIBCXX"], key=lambda v: tuple(map(int, v.split(".")))) == "3.4.24"
    with pytest.raises(FactoryError, match="not a manylinux platform tag"):
        symbols.policy("linux_x86_64")


# ---------------------------------------------------------------- the toolchain check


def test_a_missing_sysroot_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(toolchain.ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FactoryError, match=r"is not installed .* install it: bash ci/install-sysroot.sh"):
        toolchain.check()


def test_a_half_made_sysroot_names_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for part in toolchain.PARTS[1:]:  # everything but the stamp, written last
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / part).write_text("")
    monkeypatch.setenv(toolchain.ENV, str(tmp_path))
    with pytest.raises(FactoryError, match=r"half-made \(no llcuda-sysroot.stamp\); install it again"):
        toolchain.check()
    (tmp_path / "llcuda-sysroot.stamp").write_text("x")
    assert toolchain.check().cxx == str(tmp_path / "bin" / "g++")


def test_native_compilers_need_no_sysroot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(toolchain.ENV, toolchain.NATIVE)
    tc = toolchain.check()
    assert tc.sysroot is None
    assert tc.cxx is None
    assert tc.glibc == (2, 28)
