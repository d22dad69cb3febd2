"""Command line of the wheel factory: ``python -m llcuda_factory <command>`` (run with ``PYTHONPATH=factory``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import REPO_ROOT, configure, cudaruntime, results, source, toolchain, toolkit
from .errors import FactoryError
from .targets import Target, all_targets, cuda_toolkits, cuda_versions, get_target

if TYPE_CHECKING:  # the pipeline imports packaging and auditwheel, which cibuildwheel's before-all hook lacks
    from .pipeline import House


def _cmd_configure(args: argparse.Namespace) -> None:
    configure.write(
        args.target,
        Path(args.binary_dir),
        Path(args.out),
        args.source,
        args.cuda_architectures,
        args.cuda_version,
        args.host_cxx,
    )


def _cmd_toolchain(args: argparse.Namespace) -> None:
    """Check the old-glibc toolchain; print it, or write it as CMake settings (cmake/LLCUDAToolchain.cmake)."""
    tc = toolchain.check()
    values = {
        "LLCUDA_PLATFORM": tc.platform,
        "LLCUDA_GLIBC_FLOOR": tc.glibc_str,
        "LLCUDA_SYSROOT_DIR": str(tc.sysroot or ""),
        "LLCUDA_SYSROOT_CC": tc.cc or "",
        "LLCUDA_SYSROOT_CXX": tc.cxx or "",
        "LLCUDA_CXX_RUNTIME": str(tc.cxx_runtime or ""),
    }
    if args.cmake:
        configure.write_cmake(Path(args.cmake), values)
    else:
        print(json.dumps(values, indent=2))


def _cmd_source(args: argparse.Namespace) -> None:
    print(source.resolve(fetch=not args.no_fetch))


def _cmd_toolkit(args: argparse.Namespace) -> None:
    target = get_target(args.target)
    if not target.is_cuda:
        print(f"{target.name}: no CUDA")
        return
    tk = toolkit.select(target)
    print(
        json.dumps(
            {
                "target": target.name,
                "nvcc": str(tk.nvcc),
                "version": tk.version_str,
                "root": str(tk.root),
                "bin_dir": str(tk.bin_dir),
                "source": target.toolkit.source if target.toolkit else None,
                "host_compiler": toolkit.host_compiler(tk),
                "cublas": ".".join(map(str, tk.cublas_version or ())),
                "cudart_release": tk.cudart_release,
                "cublas_release": tk.cublas_release,
                "dependencies": target.runtime_requirements,
            },
            indent=2,
        )
    )


def _cmd_toolkits(args: argparse.Namespace) -> None:
    """What ci/install-cuda-toolkit.sh installs: "VERSION SOURCE PREFIX" per CUDA version of the table (or one row).
    A debian toolkit goes to /opt/llcuda/cuda-X.Y; a pypi one to the factory's own prefix."""
    from . import pypitoolkit

    if args.target:
        target = get_target(args.target)
        versions = [target.cuda] if target.cuda else []
    else:
        versions = cuda_versions()
    pins = cuda_toolkits()
    for version in versions:
        pin = pins[version]
        where = pypitoolkit.prefix(pin) if pin.source == "pypi" else toolkit.TOOLKITS_DIR / f"cuda-{version}"
        print(version, pin.source, where)


def _cmd_install_toolkit(args: argparse.Namespace) -> None:
    """Install a pypi toolkit of [cuda-toolkits] into the factory's prefix (nothing to do when it is there)."""
    from . import pypitoolkit

    pins = cuda_toolkits()
    if args.version not in pins:
        raise FactoryError(f'no [cuda-toolkits."{args.version}"] in targets.toml (known: {", ".join(sorted(pins))})')
    pin = pins[args.version]
    before = pypitoolkit.installed(pin)
    root = pypitoolkit.ensure(pin)
    print(f"CUDA {pin.version} {'already ' if before else ''}in {root} ({', '.join(sorted(pin.pinned))})")


def _cmd_driver_floor(args: argparse.Namespace) -> None:
    """Read a built libggml-cuda.so's fatbin; print its driver floors."""
    from . import fatbin

    floor = cudaruntime.runtime_wheels(args.cuda_major).driver_floor
    cuobjdump = Path(args.cuobjdump) if args.cuobjdump else None
    print(json.dumps(fatbin.driver_floors(Path(args.library), floor, cuobjdump), indent=2))


def _cmd_build_info(args: argparse.Namespace) -> None:
    """Write build_info.json from the build's facts (CMake's install step runs it: the file's one writer)."""
    from . import buildinfo

    buildinfo.write(
        Path(args.facts),
        Path(args.out),
        library=Path(args.library) if args.library else None,
        cuda_major=args.cuda_major,
        cuobjdump=Path(args.cuobjdump) if args.cuobjdump else None,
    )


def _cmd_backend_project(args: argparse.Namespace) -> None:
    from . import backends

    for name in args.targets:
        print(backends.write(get_target(name)))


def _cmd_matrix(args: argparse.Namespace) -> None:
    rows = [{"target": t.name, "cuda": t.cuda or ""} for t in all_targets().values()]
    print(json.dumps({"include": rows}))


def _cmd_repair(args: argparse.Namespace) -> None:
    from . import repair

    print(repair.repair(Path(args.wheel), get_target(args.target), Path(args.out)))


def _cmd_cuda(args: argparse.Namespace) -> None:
    if not get_target(args.target).is_cuda:
        raise SystemExit(1)


def _cmd_deps(args: argparse.Namespace) -> None:
    from . import wheelfile, wheelhouse

    for path in wheelhouse.download_dependencies(wheelfile.requires(Path(args.wheel)), Path(args.dest)):
        print(path)


def _cmd_offline(args: argparse.Namespace) -> None:
    from . import wheelhouse

    if not args.targets:
        names = ", ".join(all_targets())
        raise FactoryError(f"name the targets to bundle: `nox -s offline -- cc50` (the targets: {names})")
    targets = [get_target(t) for t in args.targets]
    out = wheelhouse.offline_bundle(
        targets,
        Path(args.wheelhouse),
        python_version=args.python_version,
        platform=args.platform,
        without_cuda_wheels=args.without_cuda_wheels,
    )
    files = sorted(out.iterdir())
    total = sum(f.stat().st_size for f in files)
    for f in files:
        print(f"{f.stat().st_size:>12,}  {f.name}")
    print(f"{total:>12,}  {out} ({len(files)} files)")


def _cmd_compare(args: argparse.Namespace) -> None:
    from .reproducible import compare_wheels

    print(json.dumps(compare_wheels(Path(args.first), Path(args.second)), indent=2))


def _cmd_compare_wheels(args: argparse.Namespace) -> None:
    from . import crosscheck

    problems = crosscheck.compare(Path(args.recipe), Path(args.other))
    if problems:
        raise FactoryError(
            f"{Path(args.other).name} differs from the recipe's {Path(args.recipe).name}:\n  - "
            + "\n  - ".join(problems)
        )
    print(f"{Path(args.other).name} agrees with the recipe's {Path(args.recipe).name}")


def _cmd_check_release(args: argparse.Namespace) -> None:
    from . import release

    problems = release.check(dist=Path(args.dist) if args.dist else None, draft=args.draft)
    rel = release.read_release()
    if problems:
        raise FactoryError("not releasable:\n  " + "\n  ".join(problems))
    print(f"llcuda {rel.version} (llama.cpp {rel.llama_cpp_tag}, {rel.llama_cpp_commit[:12]}): ready to release")


def _cmd_bump_llama(args: argparse.Namespace) -> None:
    from . import release

    sdist = Path(args.sdist) if args.sdist else None
    new = release.bump_llama(args.commit, args.version, tag=args.tag, sdist=sdist, dry_run=args.dry_run)
    for key, value in new.items():
        print(f"{key} = {value}")
    if args.dry_run:
        print("--dry-run: checked, nothing written")
        return
    print("Now: fetch the new source (`nox -s prepare`), build (`nox -s wheels`), add a CHANGELOG entry.")


def _cmd_variants(args: argparse.Namespace) -> None:
    from . import variants

    if args.plan:
        for v in variants.plan(args.plan):
            print(
                json.dumps({"target": v.target, "label": v.label, "properties": v.properties, "requires": v.requires})
            )
        return
    if not args.wheel:
        raise FactoryError("name the plain llcuda wheel (or --plan VERSION)")
    for path in variants.write_variants(Path(args.wheel), Path(args.dest)):
        print(path)


def _cmd_variants_index(args: argparse.Namespace) -> None:
    from . import variants

    print(variants.write_index(Path(args.dist), Path(args.out)))


def _cmd_publish_split(args: argparse.Namespace) -> None:
    from . import release

    files, index = release.split_for_publishing(Path(args.dist), Path(args.pypi), Path(args.pages))
    for f in files:
        print(f)
    print(index)


def _cmd_record(args: argparse.Namespace) -> None:
    for path in results.record(Path(args.source), Path(args.dest)):
        print(f"recorded {path}")


def _cmd_audit(args: argparse.Namespace) -> None:
    from . import audit

    report = audit.audit(Path(args.wheel), get_target(args.target), [Path(p) for p in args.find_links])
    print(json.dumps(report, indent=2))


def _house(args: argparse.Namespace) -> House:
    from .pipeline import House

    return House(Path(args.wheelhouse).resolve(), Path(args.build_dir).resolve())


def _rows(names: list[str]) -> list[Target]:
    return [get_target(n) for n in names] if names else list(all_targets().values())


def _cmd_wheels(args: argparse.Namespace) -> None:
    targets = _rows(args.targets)  # an unknown name is one clear line, before anything is built
    from . import pipeline

    for wheel in pipeline.build(targets, _house(args)):
        print(wheel)


def _cmd_reproduce(args: argparse.Namespace) -> None:
    targets = _rows(args.targets or ["cpu"])
    from . import pipeline

    failed = pipeline.reproduce(targets, _house(args), ccache=not args.no_ccache)
    if failed:
        raise FactoryError(
            f"not reproducible: {', '.join(failed)} "
            "(see wheelhouse/<target>.reproduce.json; the second wheels are in wheelhouse/reproduce/)"
        )


def _cmd_finish(args: argparse.Namespace) -> None:
    from . import pipeline

    done = pipeline.finish(Path(args.wheel), get_target(args.target), Path(args.out))
    if args.report:
        Path(args.report).write_text(json.dumps(done.report, indent=2) + "\n")
    print(done.wheel)


def _add_house(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wheelhouse", default=os.environ.get("LLCUDA_WHEELHOUSE", str(REPO_ROOT / "wheelhouse")))
    p.add_argument("--build-dir", default=os.environ.get("LLCUDA_BUILD_DIR", str(REPO_ROOT / "build")))


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per ``_cmd_*`` function above, each with its arguments."""
    parser = argparse.ArgumentParser(prog="llcuda_factory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("configure", help="write the CMake settings of a target")
    p.add_argument("--target", required=True)
    p.add_argument("--binary-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--source", default=None, help="llama.cpp tree (LLCUDA_LLAMA_CPP_SOURCE)")
    p.add_argument(
        "--cuda-architectures",
        default=None,
        help="benchmark builds only: these archs instead of the row's, or 'llama.cpp-default'",
    )
    p.add_argument("--cuda-version", default=None, help="benchmark builds only: this toolkit instead of the row's")
    p.add_argument("--host-cxx", default=None, help="the C++ compiler of the build, which nvcc must accept as host")
    p.set_defaults(func=_cmd_configure)
    p = sub.add_parser("toolchain", help="check the old-glibc toolchain ([toolchain] of targets.toml, $LLCUDA_SYSROOT)")
    p.add_argument("--cmake", default=None, help="write it as CMake settings into this file")
    p.set_defaults(func=_cmd_toolchain)
    p = sub.add_parser("source", help="print (fetching if needed) the llama.cpp tree to build")
    p.add_argument("--no-fetch", action="store_true")
    p.set_defaults(func=_cmd_source)
    p = sub.add_parser("toolkit", help="show the CUDA toolkit a target would build with")
    p.add_argument("--target", required=True)
    p.set_defaults(func=_cmd_toolkit)
    p = sub.add_parser("toolkits", help="print the CUDA versions the table builds with and their install prefixes")
    p.add_argument("--target", default=None, help="only this row's version")
    p.set_defaults(func=_cmd_toolkits)
    p = sub.add_parser("install-toolkit", help="install a pypi toolkit of [cuda-toolkits] (NVIDIA's wheels, no root)")
    p.add_argument("version", help="a key of [cuda-toolkits], e.g. 13.0")
    p.set_defaults(func=_cmd_install_toolkit)
    p = sub.add_parser("driver-floor", help="the oldest NVIDIA driver that runs a built CUDA library")
    p.add_argument("library")
    p.add_argument("--cuda-major", type=int, required=True, help="the CUDA major the library was built with")
    p.add_argument("--cuobjdump", default=None, help="the toolkit's cuobjdump (to read compressed PTX)")
    p.set_defaults(func=_cmd_driver_floor)
    p = sub.add_parser("build-info", help="write a backend's build_info.json from its build's facts (CMake install)")
    p.add_argument("facts", help="build_facts.json, configured by CMake (cmake/build_facts.json.in)")
    p.add_argument("--out", required=True)
    p.add_argument("--library", default=None, help="a CUDA build's libggml-cuda.so: record its driver floors")
    p.add_argument("--cuda-major", type=int, default=None, help="the CUDA major the library was built with")
    p.add_argument("--cuobjdump", default=None, help="the toolkit's cuobjdump (to read compressed PTX)")
    p.set_defaults(func=_cmd_build_info)
    p = sub.add_parser("backend-project", help="write python/backends/<target>/pyproject.toml from the template")
    p.add_argument("targets", nargs="+")
    p.set_defaults(func=_cmd_backend_project)
    p = sub.add_parser("matrix", help="print the CI build matrix from targets.toml")
    p.set_defaults(func=_cmd_matrix)
    p = sub.add_parser("repair", help="auditwheel-repair a raw wheel with the CUDA excludes")
    p.add_argument("wheel")
    p.add_argument("--target", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_repair)
    p = sub.add_parser("cuda", help="exit 0 if the target needs a CUDA toolkit, 1 if not")
    p.add_argument("--target", required=True)
    p.set_defaults(func=_cmd_cuda)
    p = sub.add_parser("deps", help="download a wheel's dependencies (and theirs) into a directory")
    p.add_argument("wheel")
    p.add_argument("--dest", required=True)
    p.set_defaults(func=_cmd_deps)
    p = sub.add_parser("offline", help="write wheelhouse/offline-<targets>/ for installs with no network")
    p.add_argument("targets", nargs="*")
    p.add_argument("--wheelhouse", default="wheelhouse")
    p.add_argument("--python-version", default=None, help="another interpreter's, e.g. 3.12 (pip download)")
    p.add_argument("--platform", default=None, help="another platform tag (pip download --platform)")
    p.add_argument(
        "--without-cuda-wheels",
        action="store_true",
        help="leave out NVIDIA's CUDA runtime wheels (for Colab, Kaggle: they have their own)",
    )
    p.set_defaults(func=_cmd_offline)
    p = sub.add_parser("compare", help="compare two builds of a wheel (reproducibility)")
    p.add_argument("first")
    p.add_argument("second")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser(
        "compare-wheels", help="compare a recipe wheel with another build of it (files, CUDA, floors, requirements)"
    )
    p.add_argument("recipe")
    p.add_argument("other")
    p.set_defaults(func=_cmd_compare_wheels)
    p = sub.add_parser("check-release", help="fail unless versions, pins and changelog agree")
    p.add_argument("dist", nargs="?", default=None, help="also check the built files in this directory")
    p.add_argument("--draft", action="store_true", help="CI before a release: accept an unreleased CHANGELOG entry")
    p.set_defaults(func=_cmd_check_release)
    p = sub.add_parser("bump-llama", help="move the llama.cpp pin: targets.toml [llama-cpp] and the submodule")
    p.add_argument("commit")
    p.add_argument("version", help="the llama-cpp-python version whose sdist vendors that commit")
    p.add_argument("--tag", default=None, help="llama.cpp's release tag of the commit (bNNNN)")
    p.add_argument("--sdist", default=None, help="a downloaded llama_cpp_python-VERSION.tar.gz (offline)")
    p.add_argument("--dry-run", action="store_true", help="check the sdist vendors the commit; write nothing")
    p.set_defaults(func=_cmd_bump_llama)
    p = sub.add_parser("variants", help="write the llcuda wheel's variants and their variants.json (uv picks one)")
    p.add_argument("wheel", nargs="?", default=None, help="the plain llcuda wheel")
    p.add_argument("--dest", default="wheelhouse")
    p.add_argument("--plan", default=None, metavar="VERSION", help="print each variant's properties, write nothing")
    p.set_defaults(func=_cmd_variants)
    p = sub.add_parser("variants-index", help="write a PEP 503 index (OUT/simple/) of the llcuda wheel's variants")
    p.add_argument("dist", help="where the plain wheel, the variants and variants.json are")
    p.add_argument("out")
    p.set_defaults(func=_cmd_variants_index)
    p = sub.add_parser("publish-split", help="a tested dist/ as published: PyPI's files, and the Pages index")
    p.add_argument("dist")
    p.add_argument("--pypi", required=True, help="gets copies of the sdist and the wheels PyPI takes")
    p.add_argument("--pages", required=True, help="gets simple/, the index of the llcuda wheel's variants")
    p.set_defaults(func=_cmd_publish_split)
    p = sub.add_parser("record", help="copy the latest measurements (benchmarks/latest/) into benchmarks/results/")
    p.add_argument("--source", default=str(results.LATEST))
    p.add_argument("--dest", default=str(results.RESULTS))
    p.set_defaults(func=_cmd_record)
    p = sub.add_parser("wheels", help="build, repair and audit wheels into the wheelhouse (default: every row)")
    p.add_argument("targets", nargs="*")
    _add_house(p)
    p.set_defaults(func=_cmd_wheels)
    p = sub.add_parser("reproduce", help="build targets again in a new build dir, compare with the wheelhouse's")
    p.add_argument("targets", nargs="*", help="default: cpu")
    p.add_argument("--no-ccache", action="store_true", help="compile everything again (checks the compilers too)")
    _add_house(p)
    p.set_defaults(func=_cmd_reproduce)
    p = sub.add_parser("finish", help="repair → dependencies → audit gate: a raw wheel into a checked one in OUT")
    p.add_argument("wheel")
    p.add_argument("--target", required=True)
    p.add_argument("--out", required=True, help="gets the repaired wheel, and deps/ its dependencies")
    p.add_argument("--report", default=None, help="write the audit report (JSON) here")
    p.set_defaults(func=_cmd_finish)
    p = sub.add_parser("audit", help="run the audit gate on a repaired wheel")
    p.add_argument("wheel")
    p.add_argument("--target", required=True)
    p.add_argument("--find-links", action="append", default=[], help="where dependencies' wheels are")
    p.set_defaults(func=_cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FactoryError as err:
        print(f"llcuda-factory: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
