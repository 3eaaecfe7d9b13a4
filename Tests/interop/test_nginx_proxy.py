"""The nginx snippet we ship (dist/nginx-webrtc-server.conf), run by Debian's real nginx in front of the
real binary: the configuration loads, TLS and the WebSocket upgrade pass through, operator endpoints stay
private, and with signaling.trusted_proxies the failed-login throttle counts each browser, not nginx."""
import asyncio
import json
import socket
import ssl
import subprocess
import time

import pytest

from conftest import ROOT, free_port, make_certificate, require_tool, turn_server_args
from test_operations import http_request, metric, scrape

THROTTLE = ["--auth.throttle_free_failures", "5", "--auth.block_after", "3", "--auth.block_duration", "120"]


def site_config(listen_port, upstream_ports, cert, key):
    """The shipped snippet with only its site-specific values replaced (each must be found); several
    upstream ports make the upstream of a cluster (docs/clustering.md)."""
    text = (ROOT / "dist" / "nginx-webrtc-server.conf").read_text()
    servers = "\n    ".join(f"server 127.0.0.1:{p};" for p in upstream_ports)
    for old, new in [("server 127.0.0.1:8080;", servers),
                     ("listen 443 ", f"listen 127.0.0.1:{listen_port} "),
                     ("listen [::]:443 ", f"listen [::1]:{listen_port} "),
                     ("/etc/letsencrypt/live/webrtc.example.com/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/webrtc.example.com/privkey.pem", str(key))]:
        assert old in text, f"the snippet no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


@pytest.fixture
def nginx(tmp_path):
    """Starts nginx on a free port in front of `upstream_port`; yields a function that does so."""
    binary = require_tool("nginx", package="nginx")
    procs = []

    def start(*upstream_ports):
        cert, key = make_certificate(tmp_path)
        port = free_port(socket.SOCK_STREAM)
        (tmp_path / "site.conf").write_text(site_config(port, upstream_ports, cert, key))
        temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        (tmp_path / "nginx.conf").write_text(f"""
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    include {tmp_path}/site.conf;
}}
""")
        args = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx rejects the shipped snippet:\n{check.stderr}"
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, f"nginx exited: {proc.stderr.read()}"
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)
        return port, cert

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_shipped_nginx_snippet_in_front_of_the_server(start_server, nginx):
    server = start_server(*turn_server_args(free_port(), "--auth.users", "alice=pw,bob=pw", *THROTTLE,
                                            "--signaling.trusted_proxies", "127.0.0.1"))
    port, cert = nginx(server.signaling_port)
    context = ssl.create_default_context(cafile=str(cert))

    assert http_request(port, "GET", "/healthz", tls=context) == (200, "ok\n")
    for private in ("/metrics", "/api/stats", "/dashboard"):
        assert http_request(port, "GET", private, tls=context)[0] == 404, private

    async def login(username, password, source):
        import websockets
        ws = await websockets.connect(f"wss://127.0.0.1:{port}/websocket/proxied", ssl=context,
                                      local_addr=(source, 0))
        await ws.send(json.dumps({"event": "authenticate", "data": {"username": username, "password": password}}))
        return ws, json.loads(await asyncio.wait_for(ws.recv(), 15))

    async def scenario():
        alice, welcome = await login("alice", "pw", "127.0.0.2")
        assert welcome["event"] == "authenticated", welcome
        assert any(url.startswith("turn:127.0.0.1:") for s in welcome["data"]["ice_servers"] for url in s["urls"]), \
            welcome["data"]["ice_servers"]  # the host the browser used, passed on by nginx
        # A directed message through the proxy, both ways of the upgrade.
        bob, hello = await login("bob", "pw", "127.0.0.3")
        joined = json.loads(await asyncio.wait_for(alice.recv(), 10))
        assert joined["event"] == "joined" and joined["data"]["username"] == "bob"
        await alice.send(json.dumps({"event": "offer", "to": hello["data"]["peer_id"], "data": {"sdp": "x"}}))
        offer = json.loads(await asyncio.wait_for(bob.recv(), 10))
        assert offer == {"event": "offer", "to": hello["data"]["peer_id"], "data": {"sdp": "x"},
                         "from": welcome["data"]["peer_id"]}
        # A guesser behind the same nginx is blocked; the others are not.
        for _ in range(3):
            ws, answer = await login("alice", "guess", "127.0.0.4")
            assert answer["event"] == "unauthorized"
            await ws.close()
        ws, answer = await login("alice", "pw", "127.0.0.4")
        assert answer["event"] == "unauthorized" and answer["data"]["reason"] == "blocked", answer
        ws, answer = await login("alice", "pw", "127.0.0.5")
        assert answer["event"] == "authenticated", answer
        for w in (alice, bob, ws):
            await w.close()

    asyncio.run(scenario())
    # nginx sent the first upgrade on the connection it had kept from /healthz; the server closed that
    # connection unanswered and nginx retried on a new one (the logins above succeeded).
    assert metric(scrape(server.signaling_port), "webrtc_signaling_late_upgrades_closed_total") >= 1
