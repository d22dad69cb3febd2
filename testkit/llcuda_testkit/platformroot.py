"""A Debian root (``ci/platform-root.sh``: bullseye, glibc 2.31 and Python 3.9; trixie, glibc 2.41 and Python
3.13) to run the built wheels in, through chroot.

:class:`PlatformRoot` mounts what a process needs there (``/proc``, ``/dev``, ``/sys``) and one work folder shared
with the host (``/llcuda-test``: the wheelhouse, models, scripts, venvs), and takes everything down again on exit.
Commands run as root in the chroot with a clean environment; a venv made there is the system's Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

WORK = "/llcuda-test"  # inside the root
# Passed through to pip in the root (the index, timeouts, the certificate authorities: the root's own bundle, which
# ci/platform-root.sh made with the machine's local CAs), never anything else.
_PASS_ENV = ("PIP_DEFAULT_TIMEOUT", "PIP_INDEX_URL")
_ROOT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class PlatformRoot:
    """``with PlatformRoot(root, host_work) as r: r.run([...])``; ``host_work`` appears as ``/llcuda-test``
    inside."""

    def __init__(self, root: Path, host_work: Path) -> None:
        self.root = root
        self.host_work = host_work
        self._mounted: list[Path] = []

    @property
    def suite(self) -> str:
        """The Debian suite the root was made of (the first word of ci/platform-root.sh's stamp)."""
        stamp = self.root / ".llcuda-root"
        if not stamp.is_file():
            raise RuntimeError(f"{self.root} is not a root made by ci/platform-root.sh")
        return stamp.read_text().split()[0]

    def __enter__(self) -> PlatformRoot:
        if not self.suite:  # reads the stamp: a folder that is no such root raises
            raise RuntimeError(f"{self.root}: an empty .llcuda-root stamp")
        try:
            self._mount(["-t", "proc", "proc"], "proc")
            self._mount(["--rbind", "/dev"], "dev")
            self._mount(["--rbind", "/sys"], "sys")
            self._mount(["--bind", str(self.host_work)], WORK.lstrip("/"))
        except BaseException:
            self._unmount()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._unmount()

    def bind(self, host: Path, inside: str) -> None:
        """``host`` read-only at ``inside`` (a path below ``/llcuda-test``) until the root is left."""
        self._mount(["--bind", str(host)], inside.lstrip("/"))
        subprocess.run(["mount", "-o", "remount,ro,bind", str(self.root / inside.lstrip("/"))], check=True)

    def _mount(self, how: list[str], inside: str) -> None:
        where = self.root / inside
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *how, str(where)], check=True)
        self._mounted.append(where)
        if "--rbind" in how:  # the host's own mounts below /dev and /sys must not go when this one does
            subprocess.run(["mount", "--make-rslave", str(where)], check=True)

    def _unmount(self) -> None:
        for where in reversed(self._mounted):
            subprocess.run(["umount", "-R", "-l", str(where)], check=False)
        self._mounted.clear()

    def host_path(self, inside: str) -> Path:
        """The host's path of ``/llcuda-test/...``."""
        return self.host_work / Path(inside).relative_to(WORK)

    def command(self, cmd: list[str], *, venv: str | None = None, network: bool = True) -> list[str]:
        """``cmd`` as it runs in the root: clean environment, the venv's bin first; ``network=False`` in a new
        network namespace with nothing but a loopback that is down (``unshare -n``)."""
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        if venv:
            path = f"{venv}/bin:{path}"
        env = [f"{k}={os.environ[k]}" for k in _PASS_ENV if k in os.environ]
        env += [f"{k}={_ROOT_CA_BUNDLE}" for k in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
        inner = ["chroot", str(self.root), "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8", f"PATH={path}", *env]
        prefix = [] if network else [shutil.which("unshare") or "unshare", "-n"]
        return [*prefix, *inner, *cmd]

    def run(
        self, cmd: list[str], *, venv: str | None = None, network: bool = True, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.command(cmd, venv=venv, network=network), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"in the {self.suite} root, {' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                f"{proc.stderr[-3000:]}"
            )
        return proc
