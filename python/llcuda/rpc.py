"""Models bigger than one machine: llama.cpp's RPC backend.

- :class:`RPCServer` (``llcuda rpc-server``) runs the ``ggml-rpc-server`` shipped beside the chosen backend's
  llama-server (the same build, hence the same protocol) and serves this machine's devices to one client at a time;
- :func:`probe` checks an endpoint before llama-server is pointed at it (``load_model(rpc=[...])``): reachable,
  not busy, the same protocol version, and how much memory its devices have free.

``ggml-rpc-server`` has no authentication and no encryption: whoever reaches its port can make it allocate memory
and run computations. It listens on 127.0.0.1 unless told otherwise, and any other address needs an explicit opt-in.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cachedir import cache_dir
from .discovery import child_env, find_llama_server
from .errors import (
    InsecureBindError,
    PortInUseError,
    RPCBusyError,
    RPCProtocolError,
    RPCUnreachableError,
    ServerNotFoundError,
    ServerStartError,
)
from .process import ManagedProcess
from .rpcwire import Closed, DeviceMemory, Version, device_memory, hello
from .server import LOOPBACK, port_is_free

DEFAULT_PORT = 50052  # ggml-rpc-server's own default
PROBE_TIMEOUT_S = 3.0
TOOL = "ggml-rpc-server"
SECURITY_WARNING = (
    "WARNING: ggml-rpc-server has no authentication and no encryption. Anyone who can reach {endpoint} can use "
    "this machine's devices and memory through it. Bind it only to a private network you trust, or keep it on "
    "127.0.0.1 and reach it through SSH port forwarding (ssh -N -L {port}:127.0.0.1:{port} USER@THIS-HOST)."
)
_DEVICE_LINE = re.compile(r"^\s+(\S+): (.*) \((\d+) MiB, (\d+) MiB free\)$")
_STARTED = re.compile(r"Starting RPC server v(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``"host:port"`` -> :class:`Endpoint`; ValueError naming the bad part."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "," in text or " " in host:
        raise ValueError(f"invalid RPC endpoint {text!r}: expected HOST:PORT, e.g. 192.168.1.20:{DEFAULT_PORT}")
    return Endpoint(host, int(port))


def parse_endpoints(value: str | Sequence[str]) -> list[Endpoint]:
    """Endpoints from a list, or from one comma-separated string (llama-server's ``--rpc`` form)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    if not items or any(not isinstance(i, str) for i in items):
        raise ValueError(f"rpc= takes HOST:PORT strings (a list, or one comma-separated string), not {value!r}")
    endpoints = [parse_endpoint(i) for i in items]
    if len(set(endpoints)) != len(endpoints):
        raise ValueError(f"an RPC endpoint is listed twice: {', '.join(map(str, endpoints))}")
    return endpoints


@dataclass(frozen=True)
class RemoteHost:
    """What :func:`probe` learned of an RPC server."""

    endpoint: Endpoint
    version: Version
    devices: tuple[DeviceMemory, ...]

    @property
    def free_mb(self) -> int:
        return sum(d.free_bytes for d in self.devices) // (1 << 20)


def protocol_of(server: Path) -> Version | None:
    """The RPC protocol of the build that ``server`` (a llama-server) belongs to, from its backend's build info;
    None for a build that does not record it."""
    info = server.parent.parent / "build_info.json"
    try:
        text = json.loads(info.read_text(encoding="utf-8")).get("rpc", {}).get("protocol", "")
        return Version.parse(text)
    except (OSError, ValueError, AttributeError):
        return None


def probe(endpoint: Endpoint | str, expected: Version | None = None, timeout: float = PROBE_TIMEOUT_S) -> RemoteHost:
    """Ask the RPC server at ``endpoint`` its protocol version and free memory, then hang up at once (it serves
    one client at a time: a probe must not keep the slot).

    Raises :class:`RPCUnreachableError` (nothing answers within ``timeout``), :class:`RPCBusyError` (it serves
    another client) or :class:`RPCProtocolError` (a version other than ``expected``, or a server that hangs up on
    the handshake, as older versions do).
    """
    ep = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    except ConnectionRefusedError:
        raise RPCUnreachableError(
            f"RPC endpoint {ep}: connection refused, nothing listens there. Start `llcuda rpc-server --port "
            f"{ep.port}` on {ep.host} (with --host and --allow-remote for a non-loopback address) and check the port."
        ) from None
    except socket.gaierror as err:
        raise RPCUnreachableError(f"RPC endpoint {ep}: cannot resolve the host name {ep.host!r} ({err})") from None
    except (socket.timeout, TimeoutError):
        raise RPCUnreachableError(
            f"RPC endpoint {ep}: no answer within {timeout:g} s. The host is down or unreachable, or a firewall "
            "drops the connection."
        ) from None
    except OSError as err:
        raise RPCUnreachableError(f"RPC endpoint {ep}: cannot connect ({err.strerror or err})") from None
    with sock:
        try:
            version = hello(sock)
            if expected is not None and not version.serves(expected):
                raise RPCProtocolError(
                    f"RPC endpoint {ep} speaks RPC protocol {version}, this llcuda's llama-server speaks {expected}: "
                    "they refuse each other. Run the same llcuda version (its `llcuda rpc-server`) on both machines."
                )
            devices = tuple(device_memory(sock))
        except (socket.timeout, TimeoutError):
            # Hang up with a reset, not a FIN: the server, once free, must not answer the HELLO queued here (an
            # answer to a closed socket raises SIGPIPE, which kills a ggml-rpc-server not started by llcuda).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise RPCBusyError(
                f"RPC endpoint {ep} accepted the connection but did not answer within {timeout:g} s: it is serving "
                "another client (an RPC server serves one client at a time). Stop that client, or start another "
                "`llcuda rpc-server` on another port."
            ) from None
        except (Closed, ConnectionResetError, ValueError) as err:
            mine = f" ({expected})" if expected is not None else ""
            raise RPCProtocolError(
                f"RPC endpoint {ep} hung up on the handshake ({err}): it probably speaks another RPC protocol "
                f"version than this llcuda's llama-server{mine}. Run the same llcuda version (its `llcuda "
                "rpc-server`) on both machines."
            ) from None
    return RemoteHost(ep, version, devices)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int, allow_remote: bool) -> str | None:
    """The security warning for binding ``host`` (None for loopback); InsecureBindError without the opt-in."""
    if is_loopback(host):
        return None
    warning = SECURITY_WARNING.format(endpoint=f"{host}:{port}", port=port)
    if not allow_remote:
        raise InsecureBindError(
            f"refusing to serve RPC on {host}:{port} without the opt-in (allow_remote=True, or --allow-remote on "
            f"the command line), private addresses included. {warning}"
        )
    return warning


@dataclass(frozen=True)
class RPCDevice:
    """A device an RPC server serves, as it reported it at start."""

    name: str
    description: str
    memory_total_mb: int
    memory_free_mb: int


def find_rpc_server(server_path: str | os.PathLike[str] | None = None) -> Path:
    """The ``ggml-rpc-server`` beside the llama-server llcuda would run (the same build, the same protocol)."""
    llama_server = Path(server_path) if server_path else find_llama_server()
    tool = llama_server.parent / TOOL
    if not tool.is_file() or not os.access(tool, os.X_OK):
        raise ServerNotFoundError(
            f"no {TOOL} beside {llama_server}: that build has no RPC server (llama.cpp built without GGML_RPC=ON?). "
            'Install an llcuda backend, which ships one: pip install "llcuda[<target>]" (see `llcuda doctor`).'
        )
    return tool


class RPCServer(ManagedProcess):
    """``ggml-rpc-server`` of the best-fitting installed backend, serving this machine's devices.

    ``with RPCServer() as rpc: ...`` starts it (and stops it after). ``host`` other than loopback needs
    ``allow_remote=True`` and prints a security warning. ``devices`` (``["CUDA0"]``) limits what it serves,
    ``cache=True`` keeps received tensors in llcuda's cache dir so that a reload is faster.
    """

    def __init__(
        self,
        host: str = LOOPBACK,
        port: int = DEFAULT_PORT,
        *,
        allow_remote: bool = False,
        devices: Sequence[str] | None = None,
        threads: int | None = None,
        cache: bool = False,
        server_path: str | os.PathLike[str] | None = None,
        log_dir: Path | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(log_dir or cache_dir() / "logs")
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port}: expected 1-65535")
        self.warning = check_bind(host, port, allow_remote)
        self.host, self.port = host, port
        self._options = (list(devices or []), threads, cache)
        self._server_path = server_path
        self._verbose = verbose
        self.version: Version | None = None
        self.devices: list[RPCDevice] = []

    @property
    def endpoint(self) -> str:
        """``HOST:PORT``, what a client passes in ``rpc=[...]`` or ``--rpc``."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> RPCServer:
        """Start the server and return once it answers the protocol handshake; ServerStartError (with its last
        output) if it exits or does not answer within ``timeout``, PortInUseError if the port is taken."""
        if self.is_running():
            return self
        tool = find_rpc_server(self._server_path)
        if not port_is_free(self.port, self.host):
            raise PortInUseError(f"port {self.port} on {self.host} is already in use: pass another port")
        devices, threads, cache = self._options
        args = [str(tool), "--host", self.host, "--port", str(self.port)]
        if devices:
            args += ["--device", ",".join(devices)]
        if threads:
            args += ["--threads", str(threads)]
        if cache:
            args.append("--cache")
        env = child_env(tool)
        if cache:  # ggml-rpc-server keeps its tensor cache under $LLAMA_CACHE/rpc
            env["LLAMA_CACHE"] = str(cache_dir() / "rpc-cache")
        if self.warning:
            print(self.warning, file=sys.stderr)
        # SIGPIPE ignored: ggml-rpc-server does not ignore it itself, so a client that hangs up while it answers
        # (a crashed llama-server, a probe giving up) would kill it.
        log_name = f"ggml-rpc-server-{self.port}-{int(time.time())}.log"
        self._spawn(args, env, log_name, echo=self._verbose, ignore_sigpipe=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.terminate()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        here = Endpoint(LOOPBACK if self.host in ("0.0.0.0", "localhost") else self.host, self.port)
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = self.wait_exit(2)
                tail = self.log_tail()
                said = [ln.strip() for ln in tail.splitlines() if re.search(r"error|fail|no devices", ln, re.I)]
                raise ServerStartError(
                    f"{TOOL} exited with code {code} while starting (log: {self.log_path})",
                    log_tail=tail,
                    diagnosis="; ".join(said) or (tail.strip().splitlines() or [""])[-1],
                )
            try:
                probe(here, timeout=1.0)  # the handshake also makes it flush its start-up banner
                break
            except (RPCUnreachableError, RPCBusyError, RPCProtocolError):
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"{TOOL} did not answer on {self.endpoint} within {timeout:g} s (log: {self.log_path})",
                        log_tail=self.log_tail(),
                    ) from None
                time.sleep(0.1)
        # The banner (version, devices, free memory) is printed before the first client and flushed after it.
        for _ in range(40):
            if any(line.startswith("Client connection closed") for line in self._tail):
                break
            time.sleep(0.05)
        self._read_banner()

    def _read_banner(self) -> None:
        self.devices = []
        for line in self._tail:
            if m := _STARTED.search(line):
                self.version = Version.parse(m.group(1))
            elif m := _DEVICE_LINE.match(line):
                self.devices.append(RPCDevice(m.group(1), m.group(2), int(m.group(3)), int(m.group(4))))

    def describe(self) -> str:
        """What it serves, for the user: version, endpoint, each device with its free memory."""
        lines = [f"RPC server v{self.version or '?'} on {self.endpoint}, serving one client at a time:"]
        lines += [
            f"  {d.name}: {d.description} ({d.memory_free_mb} MiB free of {d.memory_total_mb} MiB)"
            for d in self.devices
        ]
        return "\n".join(lines)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Safe to call twice."""
        self.terminate(timeout)

    def __enter__(self) -> RPCServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
