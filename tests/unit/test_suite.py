"""The unit tests stay fast: collecting them imports neither gguf nor numpy (the wheel tests' model writers)."""

from __future__ import annotations

import subprocess
import sys

from llcuda_factory import REPO_ROOT


def test_collecting_the_unit_tests_imports_no_gguf_or_numpy() -> None:
    code = (
        "import sys, pytest\n"
        "rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'tests/unit'])\n"
        "print('LOADED', sorted(m for m in ('gguf', 'numpy') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "LOADED []" in out.stdout, out.stdout[-2000:]
