"""``llcuda selftest``: llama.cpp's own op test, ``test-backend-ops``, on this machine's GPU.

Every backend wheel ships ``test-backend-ops`` from the same build as its ``llama-server``. It runs each ggml op a
llama-family model uses (:data:`LLAMA_OPS`: matrix products over the quantized types, attention, norms, row
gathers...) on the GPU and on the CPU, and compares the results. It is the one way to show that the CUDA build is
correct on this very card and driver (a 940M, a T4), not just that it starts.

With no GPU there is nothing to compare against the CPU: the verdict is ``no-gpu`` and nothing failed. The full
output is kept in llcuda's log folder; the result names the log.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cachedir import cache_dir
from .errors import LLCudaError
from .installed import Backend

TOOL = "test-backend-ops"
REPORT_URL = "https://github.com/waqasm86/llcuda/issues"

# The ggml ops (as ggml_op_desc names them) of a llama-family model's forward pass: weights as matrix products
# (MUL_MAT) over every quantized type, token embeddings (GET_ROWS), the KV cache (SET_ROWS, CPY, CONT), norms,
# rotary embeddings, the attention softmax, residuals and gated activations. Mixture-of-experts models add MUL_MAT_ID
# (`--ops MUL_MAT_ID`): its cases go up to 512 experts, and the CPU's reference results take long on 2 cores.
LLAMA_OPS = (
    "MUL_MAT",
    "GET_ROWS",
    "SET_ROWS",
    "CPY",
    "CONT",
    "RMS_NORM",
    "NORM",
    "ROPE",
    "SOFT_MAX",
    "ADD",
    "MUL",
    "SCALE",
    "SILU",
    "GELU",
    "SWIGLU",
    "GEGLU",
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TEST = re.compile(r"^  ([A-Z][A-Z0-9_]*)\((.*)\):\s*(.*)$")
_NO_RESULT = ("not supported", "skipping")
_BACKEND = re.compile(r"^Backend (\d+)/(\d+): (\S+)$")
_BACKENDS_PASSED = re.compile(r"^(\d+)/(\d+) backends passed$")
_TESTS_PASSED = re.compile(r"^  (\d+)/(\d+) tests passed$")
_TYPE_PARAM = re.compile(r"\b(type\w*)=(\w+)")


@dataclass(frozen=True)
class OpFailure:
    """One op test whose GPU result differs from the CPU's beyond its tolerance."""

    device: str
    op: str
    params: str
    detail: str

    @property
    def types(self) -> str:
        """The tensor types of the case (``type_a=q4_K type_b=f32``): what to name in a report."""
        return " ".join(f"{k}={v}" for k, v in _TYPE_PARAM.findall(self.params))

    def __str__(self) -> str:
        what = f"{self.op} {self.types}".strip()
        return f"{what} on {self.device}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class SelftestResult:
    """What ``test-backend-ops`` found: ``verdict`` is ``pass``, ``fail``, ``crash`` or ``no-gpu``."""

    verdict: str
    devices: tuple[str, ...]
    tests_passed: int
    tests_total: int
    failures: tuple[OpFailure, ...]
    returncode: int
    last_test: str = ""
    backend: str = ""
    log_path: Path | None = None
    gpu_present: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing went wrong: every op test passed, or there was no GPU to test."""
        return self.verdict in ("pass", "no-gpu")

    @property
    def exit_code(self) -> int:
        """The ``llcuda selftest`` exit status: 0 pass or no GPU, 1 a wrong result, 2 a crash."""
        return {"pass": 0, "no-gpu": 0, "fail": 1}.get(self.verdict, 2)

    @property
    def summary(self) -> str:
        """The verdict in a few lines: what was tested, what failed, and what to do about it."""
        log = f"full log: {self.log_path}" if self.log_path else ""
        where = f"llcuda-{self.backend}" if self.backend else TOOL
        if self.verdict == "no-gpu":
            if self.gpu_present:
                head = (
                    f"selftest: no GPU backend to test: {where} found no GPU it can use, though this machine has one "
                    "(`llcuda doctor` says which backend to install and whether the driver is new enough)"
                )
            else:
                head = "selftest: no GPU backend to test (no NVIDIA GPU found): nothing to compare against the CPU"
            return "\n".join(filter(None, [head, log]))
        devices = ", ".join(self.devices)
        if self.verdict == "pass":
            head = f"selftest: PASS: {self.tests_passed}/{self.tests_total} op tests agree with the CPU on {devices}"
            return "\n".join(filter(None, [head, log]))
        report = (
            f"report it at {REPORT_URL} with the full log and the output of `llcuda doctor --json`; meanwhile "
            "load_model(..., gpu_layers=0) runs on the CPU"
        )
        if self.verdict == "fail":
            shown = "; ".join(str(f) for f in self.failures[:5])
            more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
            head = (
                f"selftest: FAIL: {len(self.failures)} of {self.tests_total} op tests give wrong results on "
                f"{devices}: {shown}{more}"
            )
            return "\n".join(filter(None, [head, f"this GPU, driver and build compute wrong numbers; {report}", log]))
        how = _describe_exit(self.returncode)
        if self.last_test.endswith(" [unfinished]"):
            during = f" during {self.last_test.removesuffix(' [unfinished]')}"
        elif self.last_test:
            during = f" in the case after {self.last_test}"
        else:
            during = " before its first op test"
        head = f"selftest: CRASH: {TOOL} {how}{during}"
        return "\n".join(filter(None, [head, report, log]))

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (``llcuda selftest --json``)."""
        return {
            "verdict": self.verdict,
            "backend": self.backend,
            "devices": list(self.devices),
            "tests_passed": self.tests_passed,
            "tests_total": self.tests_total,
            "failures": [
                {"device": f.device, "op": f.op, "params": f.params, "detail": f.detail} for f in self.failures
            ],
            "returncode": self.returncode,
            "last_test": self.last_test,
            "log": str(self.log_path) if self.log_path else None,
        }


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited {returncode} without its summary"


def parse(output: str, returncode: int, *, gpu_present: bool = False) -> SelftestResult:
    """The verdict of one ``test-backend-ops test`` run from its console output and exit status."""
    devices: list[str] = []
    failures: list[OpFailure] = []
    current = ""
    passed = total = 0
    summary_seen = False
    last_started = ""
    for raw in output.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if m := _BACKEND.match(line):
            current = m.group(3)
            continue
        if line.startswith("  Device description: ") and current:
            devices.append(f"{current} ({line.split(': ', 1)[1]})")
            continue
        if m := _TESTS_PASSED.match(line):
            passed, total = passed + int(m.group(1)), total + int(m.group(2))
            continue
        if _BACKENDS_PASSED.match(line):
            summary_seen = True
            continue
        if m := _TEST.match(line):
            op, params, rest = m.groups()
            # A case's line comes once it has run (test mode), so a crash names the last case that finished; a line
            # cut short (a name with no result) is the case that was running.
            finished = rest.endswith(("OK", "FAIL")) or rest.startswith(_NO_RESULT)
            last_started = f"{op}({params})" if finished else f"{op}({params}) [unfinished]"
            if rest.endswith("FAIL"):
                detail = re.sub(r"^\[\w+\]\s*", "", rest.removesuffix("FAIL").strip())
                failures.append(OpFailure(current, op, params, detail))
    if returncode not in (0, 1) or not summary_seen:
        return SelftestResult("crash", tuple(devices), passed, total, tuple(failures), returncode, last_started)
    if not devices:
        verdict = "no-gpu"
    elif failures or returncode == 1:
        verdict = "fail"
    else:
        verdict = "pass"
    return SelftestResult(
        verdict, tuple(devices), passed, total, tuple(failures), returncode, "", gpu_present=gpu_present
    )


def _pick_backend(target: str | None) -> Backend:
    from .fit import rank_backends, target_for
    from .gpu import detect_gpus
    from .installed import backends

    installed = backends()
    if target is not None:
        for b in installed:
            if b.target == target:
                return b
        have = ", ".join(f"llcuda-{b.target}" for b in installed) or "none"
        raise LLCudaError(
            f'backend llcuda-{target} is not installed (installed: {have}): pip install "llcuda[{target}]"'
        )
    gpus = detect_gpus()
    gpu = gpus[0] if gpus else None
    ranked = rank_backends(installed, gpu)
    if not ranked:
        raise LLCudaError(f'no llcuda backend is installed for this machine: pip install "llcuda[{target_for(gpu)}]"')
    return ranked[0]


def selftest(
    backend: str | None = None,
    *,
    ops: tuple[str, ...] | list[str] = LLAMA_OPS,
    device: str | None = None,
    timeout: float = 3600,
    log_dir: Path | None = None,
) -> SelftestResult:
    """Run ``test-backend-ops`` of the backend that serves this machine (or ``backend``, a target name such as
    ``"cc75"``) for ``ops``, comparing every GPU (or only ``device``, e.g. ``"CUDA1"``) with the CPU.

    Returns the :class:`SelftestResult`; its ``summary`` is the verdict to print. Raises :class:`LLCudaError` when
    the backend or its tool is missing; a wrong result or a crash is a verdict, not an exception.
    """
    from .discovery import child_env
    from .gpu import detect_gpus

    chosen = _pick_backend(backend)
    tool = chosen.bin_dir / TOOL
    if not tool.is_file():
        raise LLCudaError(
            f"llcuda-{chosen.target} has no {TOOL} (wheels before llcuda 0.2 did not ship it): "
            f'pip install --upgrade "llcuda[{chosen.target}]"'
        )
    if not ops:
        raise LLCudaError("name at least one ggml op, e.g. --ops MUL_MAT,ROPE (or leave --ops out)")
    args = [str(tool), "test", "-o", ",".join(ops), *(["-b", device] if device else [])]
    folder = log_dir or cache_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"selftest-{chosen.target}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    with log_path.open("w") as log:
        log.write(f"$ {' '.join(args)}\n")
        log.flush()
        try:
            proc = subprocess.run(
                args, stdout=log, stderr=subprocess.STDOUT, env=child_env(tool), timeout=timeout, check=False
            )
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = -int(signal.SIGKILL)
            log.write(f"\nllcuda: stopped after {timeout:.0f} s\n")
    output = log_path.read_text(errors="replace")
    if device:
        names = re.findall(r"^Backend \d+/\d+: (\S+)$", output, re.MULTILINE)
        if names and device not in names:
            raise LLCudaError(f"no device {device} here; the devices are: {', '.join(names)} (log: {log_path})")
    result = parse(output, returncode, gpu_present=bool(detect_gpus()))
    if result.verdict == "pass" and result.tests_total == 0:
        raise LLCudaError(f"no op test matched --ops {','.join(ops)}; `test-backend-ops --list-ops` lists the ops")
    return SelftestResult(
        result.verdict,
        result.devices,
        result.tests_passed,
        result.tests_total,
        result.failures,
        result.returncode,
        result.last_test,
        chosen.target,
        log_path,
        result.gpu_present,
    )
