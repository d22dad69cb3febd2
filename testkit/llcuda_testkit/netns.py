"""Hosts as Linux network namespaces, for the RPC tests and benchmark: each host is a namespace joined to the root
namespace by a veth pair on a /24 of its own, in a 10.x.0.0/16 that no address or route of this machine uses. Needs
root, iproute2 and nsenter. Everything made is removed on exit, failures included; every wait is bounded.

Commands run in a namespace through ``nsenter --net``, which enters the network namespace only. ``ip netns exec``
and ``ip -n`` also make a mount namespace (``mount --make-rslave /``), which fails in a chroot, where / is not a
mount point: a fresh root made by ci/fresh-root.sh is such a chroot."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATE_SUBNETS = [ipaddress.IPv4Network(f"10.{b}.0.0/16") for b in range(231, 251)]


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"network namespaces need `{tool}` ({package})"
    probe = f"llcuda-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    try:
        inside = subprocess.run([*enter(probe), "ip", "link"], capture_output=True, text=True, check=False)
        if inside.returncode != 0:
            return f"cannot enter a network namespace here: {inside.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def enter(ns: str) -> list[str]:
    """The command prefix that runs a command in the network namespace ``ns`` (and nothing else of it)."""
    return ["nsenter", f"--net=/run/netns/{ns}"]


def _ip(*args: str, ns: str | None = None) -> str:
    cmd = [*(enter(ns) if ns else []), "ip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def free_subnet() -> ipaddress.IPv4Network:
    """The first candidate 10.x.0.0/16 that overlaps no address and no route of this machine."""
    used = []
    for text in re.findall(r"inet (\S+)", _ip("-o", "-4", "addr")) + _ip("-4", "route").split():
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(text, strict=False))
    for net in CANDIDATE_SUBNETS:
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError(f"no free subnet among {CANDIDATE_SUBNETS[0]}-{CANDIDATE_SUBNETS[-1]}")


@dataclass
class Host:
    """One namespace: ``ip`` is its address, ``link`` the root side of its veth pair (down = a cut cable)."""

    ns: str
    ip: str
    gateway: str
    link: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(
        self, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:  # started in the namespace, output to ``log``
        with log.open("wb") as out:
            proc = subprocess.Popen([*enter(self.ns), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def cut(self) -> None:
        """Take the link down: packets vanish, no reset is sent."""
        _ip("link", "set", self.link, "down")


@contextlib.contextmanager
def hosts(count: int, tag: str = "t") -> Iterator[list[Host]]:
    """``count`` hosts in namespaces, removed (with every process in them) on exit."""
    net = free_subnet()
    base = int(net.network_address)
    uid = f"{os.getpid() % 100000}{tag}"
    made: list[Host] = []
    try:
        for i in range(count):
            sub = ipaddress.ip_address(base + (i << 8))
            host = Host(
                ns=f"llcuda-{uid}-{i}",
                ip=str(sub + 2),
                gateway=str(sub + 1),
                link=f"lc{uid}r{i}"[:15],
            )
            _ip("netns", "add", host.ns)
            made.append(host)
            peer = f"lc{uid}n{i}"[:15]
            _ip("link", "add", host.link, "type", "veth", "peer", "name", peer, "netns", host.ns)
            _ip("addr", "add", f"{host.gateway}/24", "dev", host.link)
            _ip("link", "set", host.link, "up")
            _ip("addr", "add", f"{host.ip}/24", "dev", peer, ns=host.ns)
            _ip("link", "set", peer, "up", ns=host.ns)
            _ip("link", "set", "lo", "up", ns=host.ns)
        yield made
    finally:
        for host in made:
            _stop_all(host)
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True, check=False)


def _stop_all(host: Host) -> None:
    for proc in host.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    for proc in host.procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    # Anything else still in the namespace (a server whose parent was killed) goes too.
    pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True, check=False).stdout
    for pid in pids.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class RemoteRPC:
    """``llcuda rpc-server`` running in a host's namespace."""

    host: Host
    port: int
    cli: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"{self.host.ip}:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def server_pid(self) -> int | None:
        """The ggml-rpc-server the CLI started (its child)."""
        for children in Path(f"/proc/{self.cli.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/exe").resolve().name == "ggml-rpc-server":
                        return int(pid)
        return None


def start_rpc_server(
    host: Host, log: Path, *, port: int = 50052, debug: bool = True, threads: int | None = None, timeout: float = 60
) -> RemoteRPC:
    """Start ``llcuda rpc-server`` bound to the host's address (with the opt-in) and wait until it serves."""
    env = dict(os.environ)
    if debug:
        env["GGML_RPC_DEBUG"] = "1"  # the server then logs every tensor it receives
    args = [sys.executable, "-m", "llcuda", "rpc-server", "--host", host.ip, "--port", str(port)]
    if threads:
        args += ["--threads", str(threads)]
    cli = host.run([*args, "--allow-remote", "--verbose"], log, env)
    remote = RemoteRPC(host, port, cli, log)
    deadline = time.monotonic() + timeout
    while "Ctrl-C stops it" not in remote.text():  # the CLI's last line once the server answers
        if cli.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"llcuda rpc-server did not start in {host.ns}:\n{remote.text()[-2000:]}")
        time.sleep(0.1)
    return remote
