"""A few lines of STUN (RFC 8489) for the interop tests' own probes. The TURN traffic itself
comes from coturn's client tools; this only asks the questions they cannot (e.g. which realm)."""
import os
import socket
import struct

MAGIC = 0x2112A442


def request(method: int, attributes: bytes = b"") -> tuple[bytes, bytes]:
    tid = os.urandom(12)
    return struct.pack("!HHI", method, len(attributes), MAGIC) + tid + attributes, tid


def attribute(kind: int, value: bytes) -> bytes:
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def parse(data: bytes) -> dict:
    kind, length, magic = struct.unpack("!HHI", data[:8])
    assert magic == MAGIC, "not a STUN message"
    attrs, i = {}, 20
    while i < 20 + length:
        t, l = struct.unpack("!HH", data[i:i + 4])
        attrs.setdefault(t, data[i + 4:i + 4 + l])
        i += 4 + l + (4 - l % 4) % 4
    out = {"type": kind, "tid": data[8:20], "attrs": attrs}
    if 0x0009 in attrs:
        v = attrs[0x0009]
        out["error"] = (v[2] & 7) * 100 + v[3]
    if 0x0014 in attrs:
        out["realm"] = attrs[0x0014].decode()
    return out


def exchange(port: int, message: bytes, host: str = "127.0.0.1", timeout: float = 3.0) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(message, (host, port))
        data, _ = s.recvfrom(65535)
        return parse(data)


def unauthenticated_allocate(port: int) -> dict:
    msg, _ = request(0x0003, attribute(0x0019, bytes([17, 0, 0, 0])))
    return exchange(port, msg)
