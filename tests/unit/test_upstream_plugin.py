"""The upstream tier's pytest plugin (testkit/llcuda_testkit/upstream_plugin.py) on a miniature of upstream's test
folder: its presets point at the stand-ins, a listed failure is a strict expected failure, a listed flaky test is
rerun once, and the skips must be the stock run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llcuda_testkit.upstream import read_outcomes

TESTKIT = Path(__file__).resolve().parents[2] / "testkit"

UTILS = """
import os
TMP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tmp")

class ServerProcess:
    model_hf_repo = "ggml-org/models"
    model_hf_file = "tinyllamas/stories260K.gguf"
    model_file = None

class ServerPreset:
    @staticmethod
    def load_all():
        raise RuntimeError("would download from the hub")

    @staticmethod
    def tinyllama2():
        return ServerProcess()

def download_file(url, output_file_path=None):
    raise RuntimeError("would download " + url)
"""

TESTS = """
import os
import pytest
from utils import *

def test_preset_is_local():
    server = ServerPreset.tinyllama2()
    assert server.model_hf_repo is None and server.model_file.endswith("tinyllama2.gguf")
    assert download_file("https://huggingface.co/x/stories15M-q4_0.gguf").endswith("draft.gguf")

def test_random_weights():
    assert False, "the real model would say this"

def test_now_passes():
    pass

def test_flips(tmp_path_factory):
    marker = os.path.join(os.path.dirname(__file__), "flipped")
    if not os.path.exists(marker):
        open(marker, "w").close()
        assert False, "first try"

def test_skipped_here():
    pytest.skip("no container engine")
"""


def tier(tmp_path: Path, expected: str, stock: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    tests = tmp_path / "tests"
    (tests / "unit").mkdir(parents=True)
    (tests / "utils.py").write_text(UTILS)
    conftest = "from utils import *\n\n\ndef pytest_sessionstart(session):\n    ServerPreset.load_all()\n"
    (tests / "conftest.py").write_text(conftest)
    (tests / "unit" / "test_mini.py").write_text(TESTS)
    models = tmp_path / "models"
    models.mkdir()
    for name in ("tinyllama2", "draft"):
        (models / f"{name}.gguf").write_bytes(b"GGUF")
    (tmp_path / "expected.toml").write_text(expected)
    (tmp_path / "stock.txt").write_text(stock)
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTKIT),
        "LLCUDA_UPSTREAM_MODELS": str(models),
        "LLCUDA_UPSTREAM_EXPECTED": str(tmp_path / "expected.toml"),
        "LLCUDA_UPSTREAM_STOCK": str(tmp_path / "stock.txt"),
        "LLCUDA_UPSTREAM_RESULTS": str(tmp_path / "outcomes.txt"),
    }
    cmd = [sys.executable, "-m", "pytest", "-p", "llcuda_testkit.upstream_plugin", "-p", "no:cacheprovider", "-q"]
    proc = subprocess.run(cmd, cwd=tests, env=env, capture_output=True, text=True)
    return proc, read_outcomes(tmp_path / "outcomes.txt")


XFAIL = '[[xfail]]\nreason = "random weights"\ntests = ["unit/test_mini.py::test_random_weights"]\n'
FLAKY = '[[flaky]]\nreason = "flips on stock too"\ntests = ["unit/test_mini.py::test_flips"]\n'
STOCK = "skipped\tunit/test_mini.py::test_skipped_here\n"


def test_the_lists_hold_and_the_run_passes(tmp_path: Path) -> None:
    proc, outcomes = tier(tmp_path, XFAIL + FLAKY, STOCK)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert outcomes == {
        "unit/test_mini.py::test_preset_is_local": "passed",
        "unit/test_mini.py::test_random_weights": "xfailed",
        "unit/test_mini.py::test_now_passes": "passed",
        "unit/test_mini.py::test_flips": "passed",
        "unit/test_mini.py::test_skipped_here": "skipped",
    }
    assert "flaky listed 1, rerun 1: ['unit/test_mini.py::test_flips']" in proc.stdout
    assert (tmp_path / "tests" / "tmp").is_dir(), "load_all made the tests' tmp/ as upstream's does"


@pytest.mark.parametrize(
    ("expected", "stock", "message"),
    [
        (  # a listed failure that passes
            XFAIL + FLAKY + '[[xfail]]\nreason = "r"\ntests = ["unit/test_mini.py::test_now_passes"]\n',
            STOCK,
            "XPASS(strict)",
        ),
        (FLAKY, STOCK, "1 failed"),  # a failure nobody listed
        (XFAIL + FLAKY, "", "skipped here, not in the stock build: unit/test_mini.py::test_skipped_here"),
        (
            XFAIL + FLAKY + '[[xfail]]\nreason = "r"\ntests = ["unit/test_mini.py::test_gone"]\n',
            STOCK,
            "expected.toml lists unit/test_mini.py::test_gone, which upstream's tests no longer have",
        ),
    ],
)
def test_the_run_fails_when_the_lists_do_not_hold(tmp_path: Path, expected: str, stock: str, message: str) -> None:
    proc, _ = tier(tmp_path, expected, stock)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-2000:]


def test_a_test_that_varies_with_the_machine_may_pass_or_fail(tmp_path: Path) -> None:
    """[[varies]]: either outcome is taken (a failing one is an expected failure, a passing one no XPASS(strict)),
    never rerun; a listed failure elsewhere still must fail."""
    varies = "[[varies]]\nreason = 'the CPU variant'\ntests = {}\n"
    both = '["unit/test_mini.py::test_random_weights", "unit/test_mini.py::test_now_passes"]'
    proc, outcomes = tier(tmp_path, FLAKY + varies.format(both), STOCK)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert outcomes["unit/test_mini.py::test_random_weights"] == "xfailed"
    assert outcomes["unit/test_mini.py::test_now_passes"] == "xpassed"
    assert "flaky listed 3, rerun 1: ['unit/test_mini.py::test_flips']" in proc.stdout
