"""Command line of the wheel factory: ``python -m llcuda_factory <command>`` (run with ``PYTHONPATH=ci``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import configure, source, toolkit
from .errors import FactoryError
from .targets import all_targets, get_target


def _cmd_configure(args: argparse.Namespace) -> None:
    configure.write(args.target, Path(args.binary_dir), Path(args.out), args.source)


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
                "host_compiler": toolkit.host_compiler(tk),
                "cublas": ".".join(map(str, tk.cublas_version or ())),
                "dependencies": toolkit.wheel_dependencies(tk),
            },
            indent=2,
        )
    )


def _cmd_matrix(args: argparse.Namespace) -> None:
    rows = [{"target": t.name, "cuda": t.is_cuda} for t in all_targets().values()]
    print(json.dumps({"include": rows}))


def _cmd_repair(args: argparse.Namespace) -> None:
    from . import repair

    print(repair.repair(Path(args.wheel), get_target(args.target), Path(args.out)))


def _cmd_audit(args: argparse.Namespace) -> None:
    from . import audit

    report = audit.audit(Path(args.wheel), get_target(args.target), [Path(p) for p in args.find_links])
    print(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llcuda_factory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("configure", help="write the CMake settings of a target")
    p.add_argument("--target", required=True)
    p.add_argument("--binary-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--source", default=None, help="llama.cpp tree (LLCUDA_LLAMA_CPP_SOURCE)")
    p.set_defaults(func=_cmd_configure)
    p = sub.add_parser("source", help="print (fetching if needed) the llama.cpp tree to build")
    p.add_argument("--no-fetch", action="store_true")
    p.set_defaults(func=_cmd_source)
    p = sub.add_parser("toolkit", help="show the CUDA toolkit a target would build with")
    p.add_argument("--target", required=True)
    p.set_defaults(func=_cmd_toolkit)
    p = sub.add_parser("matrix", help="print the CI build matrix from targets.toml")
    p.set_defaults(func=_cmd_matrix)
    p = sub.add_parser("repair", help="auditwheel-repair a raw wheel with the CUDA excludes")
    p.add_argument("wheel")
    p.add_argument("--target", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_repair)
    p = sub.add_parser("audit", help="run the audit gate on a repaired wheel")
    p.add_argument("wheel")
    p.add_argument("--target", required=True)
    p.add_argument("--find-links", action="append", default=[], help="where dependencies' wheels are")
    p.set_defaults(func=_cmd_audit)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except FactoryError as err:
        print(f"llcuda-factory: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
