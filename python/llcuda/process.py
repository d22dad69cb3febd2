"""A child process llcuda starts and owns (llama-server, ggml-rpc-server): started from one long-lived thread so that
it dies with this process, its output drained by a thread into a log file and an in-memory tail (never an undrained
pipe), stopped with SIGTERM then SIGKILL, and stopped at exit."""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, cast

_Job = tuple["Future[subprocess.Popen[bytes]]", list[str], dict[str, Any]]
_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


class _Launcher:
    """One long-lived thread starts every child (llama-server, ggml-rpc-server), so that each dies with this
    process and only then.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the process: a server started
    from a short-lived thread (a worker pool, a web framework's startup hook) would be killed with that thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0  # the process the thread runs in: a fork()ed child has no thread and starts its own
        self._libc: Any = None

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                if sys.platform.startswith("linux") and self._libc is None:
                    with contextlib.suppress(OSError):
                        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._jobs,), name="llcuda-launcher", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()
        job: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((job, args, kwargs))
        try:
            return job.result()
        except BaseException:  # Ctrl-C while the launcher forks: stop whatever it started
            if not job.cancel():
                with contextlib.suppress(Exception):
                    proc = job.result()
                    proc.kill()
                    proc.wait()
            raise

    def _run(self, jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            job, args, kwargs = jobs.get()
            if not job.set_running_or_notify_cancel():
                continue
            try:
                popen = subprocess.Popen(args, preexec_fn=self._die_with_parent, **kwargs)  # noqa: PLW1509
                job.set_result(cast("subprocess.Popen[bytes]", popen))  # no text=True: the pipes carry bytes
            except BaseException as err:  # reported to the caller
                job.set_exception(err)

    def _die_with_parent(self) -> None:  # runs in the child between fork and exec
        if self._libc is not None:
            self._libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_LAUNCHER = _Launcher()


class ManagedProcess:
    """One child process with drained output; :meth:`terminate` is safe to call twice. Subclasses add starting
    it and the context manager."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=200)
        self._last_output = 0.0
        self._drain: threading.Thread | None = None
        self._echo = False

    def _spawn(
        self, args: list[str], env: dict[str, str], log_name: str, *, echo: bool = False, ignore_sigpipe: bool = False
    ) -> None:
        """Start ``args`` with stdout and stderr drained into ``log_dir/log_name`` and the tail. ``ignore_sigpipe``
        keeps Python's SIG_IGN for SIGPIPE in the child: writing to a client that hung up then fails with EPIPE
        instead of killing it."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / log_name
        self._tail.clear()
        self._echo = echo
        self._last_output = time.monotonic()
        self.process = _LAUNCHER.popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            restore_signals=not ignore_sigpipe,
        )
        _LIVE.add(self)
        assert self.process.stdout is not None
        log = self.log_path.open("wb")
        self._drain = threading.Thread(target=self._drain_output, args=(self.process.stdout, log), daemon=True)
        self._drain.start()

    def _on_line(self, line: str) -> None:
        """Called by the drain thread for each output line (after it is logged)."""

    def _drain_output(self, pipe: IO[bytes], log: IO[bytes]) -> None:
        with log, pipe:
            for raw in iter(pipe.readline, b""):
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                self._tail.append(line)
                self._last_output = time.monotonic()
                self._on_line(line)
                if self._echo:
                    print(line, file=sys.stderr)
            log.flush()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code once the process has exited and its output is drained, or None if it still runs."""
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._drain is not None:
            self._drain.join(timeout=timeout)
        return code

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self._tail)[-lines:])

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Safe to call twice."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._drain is not None:
            self._drain.join(timeout=5)
        if proc is not None and proc.stdout is not None and (self._drain is None or not self._drain.is_alive()):
            proc.stdout.close()  # the drain closes it at EOF; this covers a process whose drain never started
        self.process = None
        self._drain = None
        _LIVE.discard(self)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.terminate(timeout=2)


@atexit.register
def _stop_all() -> None:
    for child in list(_LIVE):
        with contextlib.suppress(Exception):
            child.terminate(timeout=3)
