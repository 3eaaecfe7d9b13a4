"""Fixtures for interop tests: the real webrtc-server binary and coturn's client tools."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("WEBRTC_SERVER_BINARY", ROOT / ".build" / "debug" / "webrtc-server"))


def require_tool(name: str, package: str = "coturn") -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package '{package}'); scripts/test.sh installs it", pytrace=False)
    return path


# Every port free_port has handed out in this run: the kernel may offer a just-closed port again, and
# a test that asks for two or three ports before starting a server must never get one of them twice.
_handed_out: set[int] = set()


def free_port(kind=socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP right now on 127.0.0.1, and not handed out before in this run."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _handed_out:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port


class Server:
    """A running webrtc-server; waits for its listener log lines instead of sleeping."""

    def __init__(self, args, env=None, wait_for=("TURN relay", "signaling listening"), timeout=30,
                 embedded_defaults=False, preexec_fn=None, prefix=(), binary=BINARY):
        if not Path(binary).exists():
            pytest.fail(f"{binary} is missing: build it first (scripts/test.sh does)", pytrace=False)
        self.lines: list[str] = []
        self.ready = threading.Event()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_SERVER_")}
        self.signaling_port = 8080
        if not embedded_defaults:
            # Several servers run side by side in one test: each gets its own signaling port on loopback
            # (as environment, so flags and files in a test still override it).
            self.signaling_port = free_port(socket.SOCK_STREAM)
            full_env.update({"WEBRTC_SERVER_SIGNALING_LISTEN": "127.0.0.1",
                             "WEBRTC_SERVER_SIGNALING_PORT": str(self.signaling_port),
                             # Tests stop servers with allocations still open; the drain test sets its own.
                             "WEBRTC_SERVER_SHUTDOWN_GRACE_PERIOD": "0"})
        full_env.update(env or {})
        # `prefix` runs the binary through another command, e.g. `ip netns exec NS` (which execs it: the
        # process is still the server's, so SIGTERM reaches it).
        self.proc = subprocess.Popen([*prefix, str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=full_env, preexec_fn=preexec_fn)
        self.waiting = set([wait_for] if isinstance(wait_for, str) else wait_for)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(timeout):
            self.stop()
            pytest.fail("server did not become ready:\n" + "\n".join(self.lines), pytrace=False)
        if self.waiting:  # the output ended before every listener line: the server exited
            self.proc.wait(5)
            pytest.fail(f"server exited with {self.proc.returncode} before it was ready:\n" + self.output, pytrace=False)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.waiting = {w for w in self.waiting if w not in line}
            if not self.waiting:
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode


@pytest.fixture
def start_server():
    servers = []

    def start(*args, env=None, **kw):
        s = Server(list(args), env=env, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        code = s.stop()
        expected = getattr(s, "expected_exit", 0)  # a test that kills a server on purpose says so
        assert code == expected, f"server exited with {code} on SIGTERM:\n{s.output}"


def echoes(host: str, port: int, family=socket.AF_INET, timeout=10.0, alive=lambda: True) -> bool:
    """Whether a UDP echo peer at host:port sends a probe back within `timeout` (while `alive()`)."""
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline and alive():
            s.sendto(b"probe", (host, port))
            try:
                if s.recvfrom(100)[0] == b"probe":
                    return True
            except socket.timeout:
                pass
    return False


def echo_peer(host: str, family=socket.AF_INET):
    """coturn's turnutils_peer (a UDP echo peer) on `host`; yields its port once it echoes a probe."""
    tool = require_tool("turnutils_peer")
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([tool, "-L", host, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not echoes(host, port, family, alive=lambda: proc.poll() is None):
        proc.kill()
        pytest.fail(f"turnutils_peer did not start on {host}", pytrace=False)
    yield port
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def turn_peer():
    yield from echo_peer("127.0.0.1")


@pytest.fixture
def ipv6_peer():
    yield from echo_peer("::1", socket.AF_INET6)


# Relay ports for the tests, outside Linux's ephemeral range (32768-60999): the tests' own client sockets
# (uclient, browsers, Python) then never hold a port the server wants to relay on (the server would skip
# it, but a test that expects a given port or pair would see another).
RELAY_MIN, RELAY_MAX = 20000, 21999


def turn_server_args(port: int, *extra: str) -> list[str]:
    return ["--turn.listen", "127.0.0.1", "--turn.port", str(port), "--turn.relay_port_min", str(RELAY_MIN),
            "--turn.relay_port_max", str(RELAY_MAX), *extra]


def make_certificate(directory, name="127.0.0.1"):
    """A self-signed certificate for 127.0.0.1 (the test trusts it, or does not verify, explicitly)."""
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key



@pytest.fixture
def postgres():
    """Debian's PostgreSQL on a unix socket, with an empty coturn database (`pgserver.Postgres`)."""
    from pgserver import Postgres, PostgresMissing
    try:
        pg = Postgres()
    except PostgresMissing as missing:
        pytest.fail(f"{missing}; scripts/test.sh installs it", pytrace=False)
    yield pg
    pg.stop()
