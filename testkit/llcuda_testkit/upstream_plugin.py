"""A pytest plugin for llama.cpp's own server tests (``tools/server/tests``), run from a copy of the pinned tree's
folder against one ``llama-server`` (``$LLAMA_SERVER_BIN_PATH``, upstream's own variable).

Loaded with ``-p llcuda_testkit.upstream_plugin``; upstream's files are not edited. It:

- points every preset of upstream's ``utils.ServerPreset`` at a local stand-in model (``$LLCUDA_UPSTREAM_MODELS``,
  written by :mod:`llcuda_testkit.standins`) and serves upstream's two file downloads (the draft model, the LoRA
  adapter) from there: nothing touches the network, and any other download fails its test as hub-only;
- with ``$LLCUDA_UPSTREAM_EXPECTED`` (``tests/upstream/expected.toml``), marks each listed failure ``xfail(strict)``
  (an unexpected pass fails the run), reruns each listed flaky test once, takes either outcome of a test listed
  as varying with the machine (``xfail``, not strict), and fails the run unless the skipped
  tests are exactly the stock build's (``$LLCUDA_UPSTREAM_STOCK``, ``tests/upstream/stock-outcomes.txt``);
- writes every test's outcome to ``$LLCUDA_UPSTREAM_RESULTS`` (``OUTCOME<TAB>NODEID`` lines, sorted), the format of
  the stock summary, and beside it (``.failures.txt``) the first line of each failure.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .upstream import read_expected, read_outcomes, read_varies

# Upstream's downloads (by file name) served from the stand-ins.
DOWNLOADS = {"stories15M-q4_0.gguf": "draft", "moe_shakespeare15M.gguf": "lora"}
# Presets that load another preset's model (with other server options).
SAME_MODEL = {"bert_bge_small_with_fa": "bert_bge_small"}


def _point_presets_at_standins(models: Path) -> None:
    # upstream's tools/server/tests/utils.py: its conftest imports it, and pytest has put the conftest's folder (the
    # rootdir) on sys.path before any plugin's pytest_configure runs
    utils = importlib.import_module("utils")

    def local(name: str, make: Callable[[], Any]) -> Callable[[], Any]:
        def preset() -> Any:
            server = make()
            server.model_hf_repo = None
            server.model_hf_file = None
            server.model_file = str(models / f"{name}.gguf")
            return server

        return preset

    presets = utils.ServerPreset
    for name, value in list(vars(presets).items()):
        model = SAME_MODEL.get(name, name)
        if isinstance(value, staticmethod) and name != "load_all" and (models / f"{model}.gguf").is_file():
            setattr(presets, name, staticmethod(local(model, value.__func__)))
    # Nothing to fetch; upstream's load_all also leaves the tests' tmp/ folder behind (LLAMA_CACHE=tmp), which
    # some tests write their files into.
    presets.load_all = staticmethod(lambda: Path(utils.TMP_DIR).mkdir(parents=True, exist_ok=True))

    def download_file(url: str, output_file_path: str | None = None) -> str:
        name = url.rsplit("/", 1)[-1]
        if name in DOWNLOADS:
            return str(models / f"{DOWNLOADS[name]}.gguf")
        raise RuntimeError(f"llcuda's upstream tier has no network and no stand-in for {url}")

    setattr(utils, "download_file", download_file)  # noqa: B010 - a module mypy cannot see


class Tier:
    def __init__(self, config: pytest.Config) -> None:
        self.results: dict[str, str] = {}
        expected = os.environ.get("LLCUDA_UPSTREAM_EXPECTED")
        self.xfail, self.flaky = read_expected(Path(expected)) if expected else ({}, {})
        self.varies = read_varies(Path(expected)) if expected else set()
        stock = os.environ.get("LLCUDA_UPSTREAM_STOCK")
        self.stock = read_outcomes(Path(stock)) if stock else None
        self.reruns: dict[str, int] = {}
        self.messages: dict[str, str] = {}  # the first line of each failure, for whoever curates expected.toml
        self.problems: list[str] = []

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        for item in items:
            if item.nodeid in self.xfail:
                item.add_marker(pytest.mark.xfail(strict=True, reason=self.xfail[item.nodeid]))
            elif item.nodeid in self.varies:
                item.add_marker(pytest.mark.xfail(strict=False, reason=self.flaky[item.nodeid]))
            elif item.nodeid in self.flaky:
                item.add_marker(pytest.mark.flaky(reruns=1))
        if self.xfail or self.flaky:
            collected = {item.nodeid for item in items}
            # A list for a selection of the files (the CUDA wheels' subset) names tests of the other files too.
            files = {nodeid.split("::", 1)[0] for nodeid in collected}
            stale = [n for n in [*self.xfail, *self.flaky] if n.split("::", 1)[0] in files and n not in collected]
            self.problems += [f"expected.toml lists {n}, which upstream's tests no longer have" for n in stale]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if str(report.outcome) == "rerun":  # pytest-rerunfailures' own outcome
            self.reruns[report.nodeid] = self.reruns.get(report.nodeid, 0) + 1
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            xfail = hasattr(report, "wasxfail")
            self.results[report.nodeid] = ("xfailed" if report.skipped else "xpassed") if xfail else report.outcome
            crash = getattr(report.longrepr, "reprcrash", None)
            if report.failed and crash is not None:
                self.messages[report.nodeid] = str(crash.message).splitlines()[0][:300]
        elif report.when == "teardown" and report.failed:
            self.results[report.nodeid] = "failed"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        out = os.environ.get("LLCUDA_UPSTREAM_RESULTS")
        if out:
            lines = [f"{o}\t{n}" for n, o in sorted(self.results.items())]
            Path(out).write_text("\n".join(lines) + "\n")
            why = [f"{n}\t{m}" for n, m in sorted(self.messages.items())]
            Path(out).with_suffix(".failures.txt").write_text("\n".join(why) + "\n")
        if self.stock is not None:
            ran = set(self.results)
            ours = {n for n, o in self.results.items() if o == "skipped"}
            theirs = {n for n, o in self.stock.items() if o == "skipped" and n in ran}
            self.problems += [f"skipped here, not in the stock build: {n}" for n in sorted(ours - theirs)]
            self.problems += [f"skipped in the stock build, not here: {n}" for n in sorted(theirs - ours)]
        if self.problems:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        counts: dict[str, int] = {}
        for outcome in self.results.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        flaky_rerun = sorted(n for n in self.reruns if n in self.flaky)
        terminalreporter.write_line(
            "llcuda upstream tier: "
            + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "xfailed", "skipped", "failed", "xpassed"))
            + f"; flaky listed {len(self.flaky)}, rerun {len(flaky_rerun)}: {flaky_rerun}"
        )
        for problem in self.problems:
            terminalreporter.write_line(f"llcuda upstream tier: {problem}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    models = os.environ.get("LLCUDA_UPSTREAM_MODELS")
    if not models:
        raise pytest.UsageError("llcuda_testkit.upstream_plugin needs $LLCUDA_UPSTREAM_MODELS (the stand-ins)")
    _point_presets_at_standins(Path(models))
    config.pluginmanager.register(Tier(config), "llcuda-upstream-tier")
