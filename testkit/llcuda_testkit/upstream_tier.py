"""The upstream tier (``python -m llcuda_testkit upstream``, ``nox -s upstream``): llama.cpp's own server tests, the
pinned tree's tools/server/tests, against the installed llama-server of every backend wheel in the wheelhouse.

All of them run on cpu, :data:`CUDA_SUBSET` on the CUDA rows (their CPU fallback on a machine with no GPU). Models
are local stand-ins (:mod:`.standins`); every test passes or is listed in tests/upstream/expected.toml, and the skips
equal the stock build's (:mod:`.upstream_plugin` applies the lists). With ``against_stock``, stock llama.cpp's
llama-server is built from the same tree, runs the whole suite, and every wheel's outcomes are compared with it test
by test; tests/upstream/stock-outcomes.txt is rewritten for review.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llcuda_factory import REPO_ROOT, results, source
from llcuda_factory.errors import FactoryError
from llcuda_factory.targets import all_targets

from .standins import write_all
from .tiers import pip, tool_env
from .upstream import differences, read_expected, read_outcomes, summary_markdown

UPSTREAM = REPO_ROOT / "tests" / "upstream"
# The CUDA wheels run the files whose tests evaluate a model (every graph path: llama, MoE with a draft model and
# a LoRA, BERT embeddings and reranking, infill); the files that test the HTTP surface (OpenAI/Anthropic/GCP
# compatibility, the router, MCP, tools, metrics, security) exercise code no backend option changes, and run on cpu.
CUDA_SUBSET = (
    "unit/test_basic.py",
    "unit/test_completion.py",
    "unit/test_ctx_shift.py",
    "unit/test_embedding.py",
    "unit/test_infill.py",
    "unit/test_lora.py",
    "unit/test_rerank.py",
    "unit/test_speculative.py",
    "unit/test_tokenize.py",
)


def log(message: str) -> None:
    print(f"llcuda-testkit: {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git_head() -> str:
    proc = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "?"


class Tier:
    """One run of the tier in ``work`` (outside the repository: upstream's grep tool test searches the tree's root
    and skips folders named build/)."""

    def __init__(self, work: Path, src: Path) -> None:
        self.work = work
        self.src = src
        self.seconds: dict[str, float] = {}

    def prepare(self) -> None:
        """A copy of the tests where upstream's relative paths resolve (../../../models/templates,
        ../../../tools/mtmd): the tests write into their folder and the pinned tree stays untouched; what they only
        read is linked. Then upstream's requirements and the stand-in models."""
        shutil.rmtree(self.work, ignore_errors=True)
        tests = self.work / "tree" / "tools" / "server" / "tests"
        shutil.copytree(self.src / "tools" / "server" / "tests", tests)
        (self.work / "tree" / "models").symlink_to(self.src / "models")
        (self.work / "tree" / "tools" / "mtmd").symlink_to(self.src / "tools" / "mtmd")
        pip("-r", str(tests / "requirements.txt"))
        write_all(self.work / "models", self.src / "models")
        if not (self.work / "models" / "tinyllama2.gguf").is_file():
            raise FactoryError(f"the stand-in models were not written into {self.work / 'models'}")

    def run(self, server: Path, label: str, files: tuple[str, ...] = (), *, expected: bool = True) -> Path:
        """One run of upstream's server tests against ``server``; its outcomes file. With ``expected`` the lists
        apply and a failure stops the tier; without, the failures are what the run records (stock)."""
        outcomes = self.work / f"outcomes-{label}.txt"
        env = {
            "LLAMA_SERVER_BIN_PATH": str(server),
            "LLCUDA_UPSTREAM_MODELS": str(self.work / "models"),
            "LLCUDA_UPSTREAM_RESULTS": str(outcomes),
            "PORT": str(_free_port()),
            "LLAMA_CACHE": str(self.work / "cache"),  # what a test may look for there stays empty: no hub
        }
        if expected:
            env["LLCUDA_UPSTREAM_EXPECTED"] = str(UPSTREAM / "expected.toml")
            env["LLCUDA_UPSTREAM_STOCK"] = str(UPSTREAM / "stock-outcomes.txt")
        cmd = [sys.executable, "-m", "pytest", "-p", "llcuda_testkit.upstream_plugin", "-p", "no:cacheprovider"]
        cmd += ["-m", "not slow", "-q", "-rfE", "--durations=5", *files]
        start = time.monotonic()
        where = self.work / "tree" / "tools" / "server" / "tests"
        code = subprocess.run(cmd, env=tool_env(env), cwd=where, check=False).returncode
        self.seconds[label] = time.monotonic() - start
        log(f"upstream on {label}: {self.seconds[label]:.0f} s")
        if code not in ((0,) if expected else (0, 1)):
            raise FactoryError(f"llama.cpp's server tests on {label}: pytest exit {code} (its report is above)")
        return outcomes

    def stock_server(self, build_root: Path) -> Path:
        """llama.cpp's llama-server as its own CMake builds it by default (native CPU, OpenMP), from the pinned
        tree."""
        build = build_root / "stock-llama.cpp"
        launcher = [f"-DCMAKE_{lang}_COMPILER_LAUNCHER=ccache" for lang in ("C", "CXX") if shutil.which("ccache")]
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        for cmd in (
            ["cmake", "-S", str(self.src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *launcher],
            ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs],
        ):
            if subprocess.run(cmd, check=False).returncode != 0:
                raise FactoryError(f"the stock build failed: {' '.join(cmd)}")
        return build / "bin" / "llama-server"


def install_wheels(wheelhouse: Path) -> Path:
    """Install every row's newest wheel from ``wheelhouse`` (no index); the site-packages they went to."""
    wheels = {t.name: sorted(wheelhouse.glob(f"{t.package}-*.whl")) for t in all_targets().values()}
    missing = [name for name, found in wheels.items() if not found]
    if missing:
        raise FactoryError(f"no wheel for {', '.join(missing)} in {wheelhouse}: run `nox -s wheels` first")
    pip("--no-index", "--find-links", str(wheelhouse / "deps"), *(str(w[-1]) for w in wheels.values()))
    import sysconfig

    return Path(sysconfig.get_paths()["platlib"])


def compare_with_stock(runs: dict[str, Path]) -> None:
    """No test may have another outcome on a wheel than on the stock build (but the flaky ones)."""
    stock = read_outcomes(UPSTREAM / "stock-outcomes.txt")
    _, flaky = read_expected(UPSTREAM / "expected.toml")
    differ = [
        f"{label}: {d}" for label, path in runs.items() for d in differences(stock, read_outcomes(path), set(flaky))
    ]
    if differ:
        raise FactoryError("outcomes that differ from the stock build:\n  " + "\n  ".join(differ))
    log(f"every outcome of {', '.join(runs)} equals the stock build's")


def write_summary(runs: dict[str, Path], seconds: dict[str, float]) -> Path:
    """benchmarks/latest/upstream.md: the counts per build and the expected failures (``nox -s record`` makes it
    the docs' figure)."""
    xfail, flaky = read_expected(UPSTREAM / "expected.toml")
    note = f"{time.strftime('%Y-%m-%d')}, commit {_git_head()}, {os.cpu_count()} cores"
    outcomes = {label: read_outcomes(path) for label, path in runs.items()}
    out = results.latest("upstream.md")
    out.write_text(summary_markdown(outcomes, seconds, xfail, flaky, note))
    return out


def run(wheelhouse: Path, build_root: Path, *, against_stock: bool = False) -> Path:
    """The whole tier; the summary it wrote."""
    tier = Tier(Path(tempfile.gettempdir()) / f"llcuda-upstream-{os.getuid()}", source.resolve())
    tier.prepare()
    site = install_wheels(wheelhouse)
    runs: dict[str, Path] = {}
    if against_stock:
        stock = tier.run(tier.stock_server(build_root), "stock", expected=False)
        header = (
            f"# llama.cpp's server tests on a stock build of the pinned tree (nox -s upstream -- --against-stock, "
            f"llcuda {_git_head()}, {time.strftime('%Y-%m-%d')}): OUTCOME<TAB>NODEID\n"
        )
        (UPSTREAM / "stock-outcomes.txt").write_text(header + stock.read_text())
    for target in all_targets().values():
        server = site / target.package / "bin" / "llama-server"
        files = CUDA_SUBSET if target.is_cuda else ()
        # Against stock, every outcome is compared with the stock run's: the lists are not applied (a bump's new
        # failures would stop the run before the comparison that names them).
        runs[target.name] = tier.run(server, target.name, files, expected=not against_stock)
    if against_stock:
        compare_with_stock(runs)
        runs = {"stock": tier.work / "outcomes-stock.txt", **runs}
    return write_summary(runs, tier.seconds)
