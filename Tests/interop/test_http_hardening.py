"""What the adversarial review of the signaling port found (issue 24), against the real binary with raw
sockets: malformed HTTP is answered at once, a dripped body does not hold a connection, WebSocket
handshakes that break RFC 6455 are refused with an answer, the bearer scheme is case-insensitive, a token
in the URL opens only the dashboard, the dashboard's feed is capped, and a binary first frame is a failed
login."""
import asyncio
import json
import socket
import time

import pytest
import websockets

from conftest import free_port, turn_server_args
from test_operations import http_request

TOKEN = "s3cret-token"


@pytest.fixture
def server(start_server):
    port = free_port()
    return start_server(*turn_server_args(port, "--auth.users", "alice=pw", "--api.token", TOKEN,
                                          "--signaling.http_timeout", "2", "--admin.max_event_streams", "2"))


def exchange(port, raw: bytes, timeout=5.0):
    """Sends `raw`, reads until the server closes (or `timeout`); returns (status, headers, seconds)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    elapsed = time.monotonic() - start
    if not data:
        return None, {}, elapsed
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if ":" in line)}
    return int(head[0].split()[1]), headers, elapsed


MALFORMED = [
    ("duplicate Content-Length", b"POST /api/rooms/r/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    ("Content-Length with Transfer-Encoding",
     b"POST /api/rooms/r/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obsolete line folding", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n", 400),
    ("a 100 KB header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    ("a 200 KB URI", b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    ("a garbage request line", b"\x16\x03\x01 hello there\r\n\r\n", 400),
    ("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
]


# Ids name the case: the raw bytes (up to 200 KB) would end up in PYTEST_CURRENT_TEST and the environment.
@pytest.mark.parametrize("name,raw,status", [pytest.param(*case, id=case[0]) for case in MALFORMED])
def test_malformed_http_is_answered_at_once_and_closed(server, name, raw, status):
    got, headers, elapsed = exchange(server.signaling_port, raw)
    assert got == status, f"{name}: got {got}"
    assert headers.get("connection") == "close", name
    assert elapsed < 2, f"{name}: the answer took {elapsed:.1f} s (the connection must not wait for a timeout)"
    # The server is still serving.
    assert http_request(server.signaling_port, "GET", "/healthz")[0] == 200


UPGRADE = ("{method} /websocket/room1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "{extra}\r\n")
KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


HANDSHAKES = [
    ("sent as POST", UPGRADE.format(method="POST", extra=KEY + "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"), 400),
    ("version 8", UPGRADE.format(method="GET", extra=KEY + "Sec-WebSocket-Version: 8\r\n"), 426),
    ("without a version", UPGRADE.format(method="GET", extra=KEY), 426),
    ("without a key", UPGRADE.format(method="GET", extra="Sec-WebSocket-Version: 13\r\n"), 400),
    ("with a key that is not 16 bytes", UPGRADE.format(method="GET", extra="Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n"), 400),
]


@pytest.mark.parametrize("name,request_text,status", [pytest.param(*case, id=case[0]) for case in HANDSHAKES])
def test_websocket_handshakes_that_break_rfc6455_are_refused_with_an_answer(server, name, request_text, status):
    got, headers, elapsed = exchange(server.signaling_port, request_text.encode())
    assert got == status, f"{name}: got {got}"
    assert elapsed < 2, name
    if status == 426:
        assert headers.get("sec-websocket-version") == "13"
    # A valid handshake on the same server still upgrades.
    got, headers, _ = exchange(server.signaling_port,
                               UPGRADE.format(method="GET", extra=KEY + "Sec-WebSocket-Version: 13\r\n").encode(), timeout=1)
    assert got == 101


def drip_until_closed(s, byte, seconds=10):
    """Sends `byte` about once a second until the server closes `s` (True) or `seconds` pass (False)."""
    for _ in range(seconds):  # bounded
        try:
            s.sendall(byte)
            s.settimeout(1.0)
            if s.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def test_a_slowly_dripped_body_is_cut_at_the_http_timeout(server):
    """Content-Length 100000, then a byte a second: closed at signaling.http_timeout (2 s here) after the head."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.signaling_port), timeout=10) as s:
        s.sendall(b"POST /api/rooms/r/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                  + b"\r\nContent-Length: 100000\r\n\r\n")
        closed = drip_until_closed(s, b"a")
    elapsed = time.monotonic() - start
    assert closed, "the connection outlived ten seconds of dripping"
    assert 1.5 < elapsed < 5, f"closed after {elapsed:.1f} s"
    stats = json.loads(http_request(server.signaling_port, "GET", "/api/stats")[1])
    assert stats["signaling"]["http_timeouts"] >= 1


def test_a_slowly_dripped_second_request_head_is_cut_too(server):
    with socket.create_connection(("127.0.0.1", server.signaling_port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in s.recv(4096).split(b"\r\n")[0]
        start = time.monotonic()
        assert drip_until_closed(s, b"G") and time.monotonic() - start < 5


def test_the_bearer_scheme_is_case_insensitive(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port, "--api.token", TOKEN, "--admin.allow", "192.0.2.1"))
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {TOKEN}"}
        assert http_request(s.signaling_port, "GET", "/api/rooms/r/peers", headers=headers)[0] == 200, scheme
        assert http_request(s.signaling_port, "GET", "/api/stats", headers=headers)[0] == 200, scheme
    assert http_request(s.signaling_port, "GET", "/api/stats", headers={"Authorization": f"Basic {TOKEN}"})[0] == 403


def test_a_token_in_the_url_opens_only_the_dashboard(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port, "--api.token", TOKEN, "--admin.allow", "192.0.2.1"))
    assert http_request(s.signaling_port, "GET", f"/dashboard?token={TOKEN}")[0] == 200
    for path in ("/api/stats", "/metrics", "/api/v1/log_level"):
        assert http_request(s.signaling_port, "GET", f"{path}?token={TOKEN}")[0] == 403, path


def open_feed(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /dashboard/events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    return s, int(head.split(b"\r\n")[0].split()[1])


def test_the_dashboard_feed_is_capped_and_a_place_comes_back_when_a_feed_closes(server):
    first, a = open_feed(server.signaling_port)
    second, b = open_feed(server.signaling_port)
    third, c = open_feed(server.signaling_port)
    assert (a, b, c) == (200, 200, 503)
    third.close()
    first.close()
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        again, status = open_feed(server.signaling_port)  # the server notices the close within a tick
        again.close()
        if status == 200:
            break
        time.sleep(0.2)
    second.close()
    assert status == 200


def test_a_binary_first_frame_is_a_failed_login(server):
    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{server.signaling_port}/websocket/room1") as ws:
            await ws.send(b"\x01\x02")
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["event"] == "unauthorized"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code is not None
    asyncio.run(run())
