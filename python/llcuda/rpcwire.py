"""The few messages of ggml's RPC protocol that llcuda speaks itself: the HELLO handshake (which version a server
speaks), the device count and each device's memory. Standard library only: the wheel factory's audit loads this file
from the source tree, so that the audit and the runtime ask an RPC server the same way.

Framing (``ggml/src/ggml-rpc/ggml-rpc.cpp`` at b11312): a request is ``cmd`` (1 byte), ``size`` (u64 little-endian)
and ``size`` bytes; a response is ``size`` (u64) and ``size`` bytes. A server serves one client at a time, so a
caller opens a connection, asks, and closes it at once.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

CMD_GET_DEVICE_MEMORY = 11
CMD_HELLO = 14  # fixed across protocol versions (a static_assert in ggml-rpc.cpp)
CMD_DEVICE_COUNT = 15
CONN_CAPS_SIZE = 24  # rpc_msg_hello_req: conn_caps[RPC_CONN_CAPS_SIZE]; zeros ask for plain TCP
_U64 = struct.Struct("<Q")


class Closed(ConnectionError):
    """The server closed the connection instead of answering."""


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        parts = text.strip().split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"not an RPC protocol version: {text!r} (expected MAJOR.MINOR.PATCH)")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def serves(self, client: Version) -> bool:
        """Whether a client of version ``client`` accepts this server (the client's rule in ``negotiate_hello``:
        the same major, and a minor no newer than the client's)."""
        return self.major == client.major and self.minor <= client.minor


@dataclass(frozen=True)
class DeviceMemory:
    free_bytes: int
    total_bytes: int


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Closed(f"the server closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return data


def _call(sock: socket.socket, cmd: int, payload: bytes, reply_size: int) -> bytes:
    sock.sendall(bytes([cmd]) + _U64.pack(len(payload)) + payload)
    (size,) = _U64.unpack(_recv_exact(sock, _U64.size))
    if size != reply_size:
        raise ValueError(f"RPC command {cmd}: a reply of {size} bytes, expected {reply_size}")
    return _recv_exact(sock, size)


def hello(sock: socket.socket) -> Version:
    """The first message of every connection: the server answers with its protocol version."""
    reply = _call(sock, CMD_HELLO, bytes(CONN_CAPS_SIZE), 4 + CONN_CAPS_SIZE)
    return Version(reply[0], reply[1], reply[2])


def device_memory(sock: socket.socket) -> list[DeviceMemory]:
    """Free and total memory of each device the server serves (after :func:`hello` on the same connection)."""
    (count,) = struct.unpack("<I", _call(sock, CMD_DEVICE_COUNT, b"", 4))
    out = []
    for device in range(count):
        free, total = struct.unpack("<QQ", _call(sock, CMD_GET_DEVICE_MEMORY, struct.pack("<I", device), 16))
        out.append(DeviceMemory(free, total))
    return out
