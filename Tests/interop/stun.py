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
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(message, (host, port))
        data, _ = s.recvfrom(65535)
        return parse(data)


def unauthenticated_allocate(port: int) -> dict:
    msg, _ = request(0x0003, attribute(0x0019, bytes([17, 0, 0, 0])))
    return exchange(port, msg)


class TurnClient:
    """A small TURN-over-UDP client (RFC 8656 long-term credentials, MD5 key) for the operations tests,
    which need an allocation that stays open while the server is reconfigured or drained, and a chosen
    source address (127.0.0.x) to prove that throttles are per source. Relaying to real peers is still
    done with coturn's turnutils_peer."""

    def __init__(self, port, username, password, host="127.0.0.1", source="127.0.0.1", timeout=2.0):
        self.server = (host, port)
        self.username, self.password = username, password
        self.realm = self.nonce = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)

    def close(self):
        self.sock.close()

    def _signed(self, method, attrs):
        import hashlib
        import hmac
        attrs = (attribute(0x0006, self.username.encode()) + attribute(0x0014, self.realm.encode())
                 + attribute(0x0015, self.nonce.encode()) + attrs)
        tid = os.urandom(12)
        header = struct.pack("!HHI", method, len(attrs) + 24, MAGIC) + tid
        key = hashlib.md5(f"{self.username}:{self.realm}:{self.password}".encode()).digest()
        mac = hmac.new(key, header + attrs, hashlib.sha1).digest()
        return header + attrs + attribute(0x0008, mac), tid

    def _transact(self, message, tid):
        self.sock.sendto(message, self.server)
        while True:
            data, _ = self.sock.recvfrom(65535)
            if len(data) >= 20 and data[8:20] == tid:
                return parse(data)

    def request(self, method, attrs=b""):
        """A signed request (after a challenge for realm and nonce); retried once on 438 (stale nonce)
        with the fresh one. Raises socket.timeout when the server does not answer."""
        if self.nonce is None:
            msg, tid = request(method, attrs)
            self._learn(self._transact(msg, tid))
        for _ in range(2):
            answer = self._transact(*self._signed(method, attrs))
            if answer.get("error") == 438 and 0x0015 in answer["attrs"] and self._learn(answer):
                continue
            return answer
        return answer

    def _learn(self, answer):
        """Takes REALM and NONCE from a challenge; True when the nonce changed."""
        fresh = answer["attrs"].get(0x0015, b"").decode()
        changed = fresh != self.nonce
        self.realm, self.nonce = answer.get("realm", self.realm), fresh
        return changed

    def allocate(self, lifetime=None):
        attrs = attribute(0x0019, bytes([17, 0, 0, 0]))
        if lifetime is not None:
            attrs += attribute(0x000D, struct.pack("!I", lifetime))
        return self.request(0x0003, attrs)

    def refresh(self, lifetime):
        return self.request(0x0004, attribute(0x000D, struct.pack("!I", lifetime)))

    @staticmethod
    def xor_address(ip, port):
        ip_bytes = socket.inet_aton(ip)
        xip = bytes(a ^ b for a, b in zip(ip_bytes, struct.pack("!I", MAGIC)))
        return struct.pack("!BBH", 0, 1, port ^ (MAGIC >> 16)) + xip

    def create_permission(self, ip):
        return self.request(0x0008, attribute(0x0012, self.xor_address(ip, 0)))

    def send(self, ip, port, data):
        """A Send indication (unanswered by design)."""
        attrs = attribute(0x0012, self.xor_address(ip, port)) + attribute(0x0013, data)
        self.sock.sendto(struct.pack("!HHI", 0x0016, len(attrs), MAGIC) + os.urandom(12) + attrs, self.server)

    def receive_data(self):
        """The DATA of the next Data indication; raises socket.timeout."""
        while True:
            data, _ = self.sock.recvfrom(65535)
            if len(data) >= 20 and struct.unpack("!H", data[:2])[0] == 0x0017:
                return parse(data)["attrs"][0x0013]
