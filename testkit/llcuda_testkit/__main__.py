"""Command line of the test kit: ``python -m llcuda_testkit <command>`` (run with ``PYTHONPATH=factory:testkit``, as
the nox sessions do). Each command is one tier: the suite, a platform root, llama.cpp's server tests, the release
rehearsal."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llcuda_factory import REPO_ROOT
from llcuda_factory.errors import FactoryError

from . import tiers


def _wheelhouse(args: argparse.Namespace) -> Path:
    return Path(args.wheelhouse).resolve()


def _cmd_suite(args: argparse.Namespace) -> int:
    return tiers.run_suite(_wheelhouse(args), args.pytest_args)


def _cmd_platform(args: argparse.Namespace) -> int:
    return tiers.run_platform(args.suite, _wheelhouse(args), args.pytest_args)


def _cmd_upstream(args: argparse.Namespace) -> int:
    from . import upstream_tier

    summary = upstream_tier.run(_wheelhouse(args), Path(args.build_dir).resolve(), against_stock=args.against_stock)
    print(summary.read_text())
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from llcuda_factory.pipeline import House

    from . import rehearsal

    house = House(_wheelhouse(args), Path(args.build_dir).resolve())
    dist = Path(args.dist).resolve()
    rehearsal.rehearse(dist, house, build_only=args.build_only, from_dist=args.from_dist, draft=args.draft)
    return 0


def _add_house(p: argparse.ArgumentParser, *, build: bool = False) -> None:
    p.add_argument("--wheelhouse", default=os.environ.get("LLCUDA_WHEELHOUSE", str(REPO_ROOT / "wheelhouse")))
    if build:
        p.add_argument("--build-dir", default=os.environ.get("LLCUDA_BUILD_DIR", str(REPO_ROOT / "build")))


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per ``_cmd_*`` function above."""
    parser = argparse.ArgumentParser(prog="llcuda_testkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("suite", help="pytest against the wheelhouse's wheels: `suite -- [PYTEST ARGS]`")
    _add_house(p)
    p.add_argument("pytest_args", nargs="*", help="default: every test the wheelhouse allows")
    p.set_defaults(func=_cmd_suite)
    p = sub.add_parser("platform", help="the wheels in a Debian root (as root): `platform bullseye|trixie`")
    p.add_argument("suite", choices=sorted(tiers.PLATFORM_ROOTS))
    _add_house(p)
    p.add_argument("pytest_args", nargs="*")
    p.set_defaults(func=_cmd_platform)
    p = sub.add_parser("upstream", help="llama.cpp's own server tests on every backend wheel's llama-server")
    p.add_argument("--against-stock", action="store_true", help="build stock llama.cpp, compare every outcome")
    _add_house(p, build=True)
    p.set_defaults(func=_cmd_upstream)
    p = sub.add_parser("release", help="the release's dress rehearsal, everything but the upload")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--build-only", action="store_true", help="build dist/ and stop (the workflow's build job)")
    mode.add_argument("--from-dist", action="store_true", help="test dist/ as it is (the workflow's test job)")
    p.add_argument("--draft", action="store_true", help="accept a CHANGELOG entry still marked unreleased")
    p.add_argument("--dist", default=str(REPO_ROOT / "dist"))
    _add_house(p, build=True)
    p.set_defaults(func=_cmd_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FactoryError as err:
        print(f"llcuda-testkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
