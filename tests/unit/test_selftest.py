"""`llcuda selftest`: the verdicts on recorded test-backend-ops outputs (tests/unit/data/test-backend-ops/), and the
command around a fake test-backend-ops (a script that replays a recording with its exit status)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from llcuda import backendops, cli
from llcuda.errors import LLCudaError
from llcuda.installed import Backend

DATA = Path(__file__).parent / "data" / "test-backend-ops"


def recording(name: str) -> tuple[str, int]:
    """A recorded run: its console output and exit status (the first line of the file, ``# exit N``)."""
    first, _, rest = (DATA / f"{name}.txt").read_text().partition("\n")
    assert first.startswith("# exit "), first
    return rest, int(first.removeprefix("# exit "))


def test_a_passing_run_is_pass() -> None:
    result = backendops.parse(*recording("pass"))
    assert result.verdict == "pass" and result.ok and result.exit_code == 0
    assert result.devices and result.devices[0].startswith("CPU (")
    assert result.tests_total > 0 and result.tests_passed == result.tests_total
    assert result.failures == ()
    assert "PASS" in result.summary and f"{result.tests_passed}/{result.tests_total}" in result.summary


def test_a_failing_run_names_the_op_and_types_and_what_to_report() -> None:
    result = backendops.parse(*recording("fail"))
    assert result.verdict == "fail" and not result.ok and result.exit_code == 1
    (failure,) = result.failures
    assert failure.op == "MUL_MAT" and failure.types == "type_a=q4_K type_b=f32"
    assert failure.device == "CUDA0" and failure.detail.startswith("NMSE = ")
    summary = result.summary
    assert "FAIL: 1 of" in summary and "MUL_MAT type_a=q4_K type_b=f32 on CUDA0" in summary
    assert backendops.REPORT_URL in summary and "llcuda doctor --json" in summary


def test_a_crash_names_the_signal_and_the_last_case_that_finished() -> None:
    output, code = recording("crash")
    result = backendops.parse(output, code)
    assert result.verdict == "crash" and result.exit_code == 2 and code == -signal.SIGSEGV
    last = [line for line in output.splitlines() if line.startswith("  MUL_MAT(")][-1]
    assert result.last_test == last.split(": ")[0].strip()
    assert f"CRASH: test-backend-ops was killed by SIGSEGV in the case after {result.last_test}" in result.summary
    assert backendops.REPORT_URL in result.summary


def test_a_line_cut_short_is_the_case_that_was_running() -> None:
    output, _ = recording("crash")
    cut = output + "  ROPE(type=f32,ne_a=[128,32,2,1],n_dims=128): "
    result = backendops.parse(cut, -signal.SIGABRT)
    assert "killed by SIGABRT during ROPE(type=f32,ne_a=[128,32,2,1],n_dims=128)" in result.summary


def test_no_gpu_is_its_own_verdict_and_not_a_failure() -> None:
    result = backendops.parse(*recording("no-gpu"))
    assert result.verdict == "no-gpu" and result.ok and result.exit_code == 0
    assert result.devices == ()
    assert "no GPU backend to test" in result.summary
    present = backendops.parse(*recording("no-gpu"), gpu_present=True)
    assert "though this machine has one" in present.summary


@pytest.mark.parametrize("cut", ["summary", "everything"])
def test_output_without_the_summary_is_a_crash(cut: str) -> None:
    output, _ = recording("pass")
    output = output[: output.index("backends passed")].rsplit("\n", 1)[0] if cut == "summary" else ""
    assert backendops.parse(output, 0).verdict == "crash"


# ------------------------------------------------------------------ the command, with a fake tool


@pytest.fixture
def fake_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    pkg = tmp_path / "site" / "llcuda_cc75"
    (pkg / "bin").mkdir(parents=True)
    backend = Backend("cc75", pkg, {"cuda": {"architectures": ["75"], "archs": []}})
    monkeypatch.setattr("llcuda.installed.backends", lambda: [backend])
    monkeypatch.setattr("llcuda.gpu.detect_gpus", lambda: [])
    monkeypatch.setenv("LLCUDA_CACHE_DIR", str(tmp_path / "cache"))
    return backend


def install_fake_tool(backend: Backend, name: str, *, kill: bool = False) -> Path:
    output, code = recording(name)
    saved = backend.bin_dir / "recorded.txt"
    saved.write_text(output)
    tool = backend.bin_dir / backendops.TOOL
    ending = "os.kill(os.getpid(), signal.SIGSEGV)" if kill else f"sys.exit({code})"
    tool.write_text(
        f"#!{sys.executable}\nimport json, os, signal, sys\n"
        f"json.dump(sys.argv[1:], open({str(backend.bin_dir / 'argv.json')!r}, 'w'))\n"
        f"sys.stdout.write(open({str(saved)!r}).read()); sys.stdout.flush()\n{ending}\n"
    )
    tool.chmod(0o755)
    return tool


@pytest.mark.parametrize(
    ("name", "verdict", "code"), [("pass", "pass", 0), ("fail", "fail", 1), ("no-gpu", "no-gpu", 0)]
)
def test_selftest_runs_the_backends_tool_and_keeps_the_log(
    fake_backend: Backend, name: str, verdict: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fake_tool(fake_backend, name)
    assert cli.main(["selftest", "--backend", "cc75"]) == code
    out = capsys.readouterr().out
    argv = json.loads((fake_backend.bin_dir / "argv.json").read_text())
    assert argv[:3] == ["test", "-o", ",".join(backendops.LLAMA_OPS)]
    result = backendops.selftest("cc75")
    assert result.verdict == verdict and result.backend == "cc75"
    assert (
        result.log_path is not None and result.log_path.parent == fake_backend.package_dir.parents[1] / "cache" / "logs"
    )
    assert recording(name)[0].splitlines()[-1] in result.log_path.read_text()
    assert f"full log: {result.log_path.parent}" in out


def test_selftest_reports_a_crash_with_exit_2(fake_backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    install_fake_tool(fake_backend, "crash", kill=True)
    assert cli.main(["selftest", "--backend", "cc75", "--ops", "MUL_MAT", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "crash" and report["returncode"] == -signal.SIGSEGV
    assert report["last_test"].startswith("MUL_MAT(type_a=q4_K")
    assert json.loads((fake_backend.bin_dir / "argv.json").read_text()) == ["test", "-o", "MUL_MAT"]


def test_selftest_passes_the_device(fake_backend: Backend) -> None:
    install_fake_tool(fake_backend, "pass")
    backendops.selftest("cc75", ops=("ADD",), device="CPU")
    assert json.loads((fake_backend.bin_dir / "argv.json").read_text()) == ["test", "-o", "ADD", "-b", "CPU"]


def test_a_backend_without_the_tool_or_not_installed_is_one_clear_error(
    fake_backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LLCudaError, match=r"llcuda-cc75 has no test-backend-ops .*pip install --upgrade"):
        backendops.selftest()
    assert cli.main(["selftest", "--backend", "cc50"]) == 1
    assert capsys.readouterr().err.strip() == (
        'llcuda: error: backend llcuda-cc50 is not installed (installed: llcuda-cc75): pip install "llcuda[cc50]"'
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ops", ","], "llcuda: error: name at least one ggml op, e.g. --ops MUL_MAT,ROPE (or leave --ops out)"),
        (["--device", "CUDA7"], "llcuda: error: no device CUDA7 here; the devices are: CPU (log: "),
    ],
)
def test_careless_options_are_one_clear_line(
    fake_backend: Backend, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fake_tool(fake_backend, "pass")
    assert cli.main(["selftest", "--backend", "cc75", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_ops_that_match_no_test_are_an_error_not_a_pass(fake_backend: Backend) -> None:
    install_fake_tool(fake_backend, "pass")
    output, _ = recording("pass")
    kept = [line for line in output.splitlines() if not line.startswith("  MUL_MAT(")]
    (fake_backend.bin_dir / "recorded.txt").write_text(
        "\n".join(kept).replace("64/64 tests passed", "0/0 tests passed") + "\n"
    )
    with pytest.raises(LLCudaError, match=r"no op test matched --ops NOSUCHOP"):
        backendops.selftest("cc75", ops=("NOSUCHOP",))
