"""Run the benchmark parts in order, then gather them (``nox -s bench``):

    python benchmarks/run.py [PART...] [--out DIR]

No part named runs every part but ``compress`` and ``build`` (half an hour and hours on 2 cores: name them) and
``rpc`` unless root (its two hosts are network namespaces). The wheelhouse's llcuda-cpu wheel is installed first: the
parts drive its real llama-server. The GPU part runs on a GPU machine (benchmarks/gpu/).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from llcuda_testkit.tiers import install_cpu_backend, tool_env

HERE = Path(__file__).parent
PARTS = {  # part -> script, in the order they run
    "runtime": "runtime_overhead.py",
    "load": "load.py",
    "throughput": "throughput.py",
    "rpc": "rpc_split.py",  # root: its two hosts are network namespaces
    "size": "sizes.py",
    "cuda_size": "cuda_size_options.py",  # reads build/<target>: after `nox -s wheels`
    "compress": "cuda_compress_modes.py",  # reads build/cc75-cu13 and build/cc75; half an hour on 2 cores
    "build": "build_times.py",  # hours on 2 cores: run it in the background
}
SLOW = ("compress", "build")  # run only when named


def default_parts() -> list[str]:
    return [p for p in PARTS if p not in SLOW and (p != "rpc" or os.geteuid() == 0)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", help=f"of: {', '.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=None, help="write the results here, not benchmarks/results/")
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; the parts are: {', '.join(PARTS)}")
    wheelhouse = Path(os.environ.get("LLCUDA_WHEELHOUSE", HERE.parent / "wheelhouse"))
    if not install_cpu_backend(wheelhouse):
        parser.error(f"no llcuda-cpu wheel in {wheelhouse}: run `nox -s wheels -- cpu` first")
    out = ["--out", str(args.out)] if args.out else []
    for script in [*(PARTS[part] for part in args.parts or default_parts()), "report.py"]:
        code = subprocess.run([sys.executable, str(HERE / script), *out], env=tool_env(), check=False).returncode
        if code != 0:
            print(f"benchmarks/run.py: {script} failed (exit {code}); its output is above", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
