"""firewall.sh inside a network namespace this test creates (never the host's own rules)."""
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from conftest import BINARY, ROOT, make_certificate, require_tool
from test_turn_udp_interop import assert_no_loss, run_uclient

HERE = Path(__file__).resolve().parent

SCRIPT = ROOT / "firewall.sh"


def require_network_tools():
    for tool in ("ip", "iptables", "ip6tables"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian packages iproute2, iptables); scripts/test.sh installs them",
                        pytrace=False)


@pytest.fixture
def netns():
    require_network_tools()
    name = f"wrtc-fw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def inside(ns, *command, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, *command], capture_output=True, text=True, check=check)


def rules(ns):
    return {tool: inside(ns, tool, "-S").stdout for tool in ("iptables", "ip6tables")}


def firewall(ns, *args):
    done = inside(ns, "bash", str(SCRIPT), "--binary", str(BINARY), *args, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def opened_ports(chain):
    """(protocol, port or range) of each port rule in `iptables -S` lines."""
    return sorted((line.split("-p ")[1].split()[0], line.split("--dport ")[1].split()[0])
                  for line in chain if "--dport " in line)


def test_rules_follow_the_configuration_and_a_second_run_adds_nothing(netns, tmp_path):
    cert, key = make_certificate(tmp_path)
    config = ["--signaling.port", "8443", "--turn.port", "3479", "--turn.tls_port", "5350", "--turn.tls_cert", str(cert),
              "--turn.tls_key", str(key), "--turn.relay_port_min", "50000", "--turn.relay_port_max", "50999"]
    before = rules(netns)
    firewall(netns, *config)
    after = rules(netns)
    for tool in ("iptables", "ip6tables"):
        chain = [line for line in after[tool].splitlines() if line.startswith("-A WEBRTC-SERVER")]
        assert opened_ports(chain) == sorted([("tcp", "8443"), ("udp", "3479"), ("tcp", "3479"), ("tcp", "5350"),
                                              ("udp", "50000:50999"), ("tcp", "50000:50999")]), after[tool]
        assert "--ctstate RELATED,ESTABLISHED" in chain[0]
        neighbour_discovery = [line for line in chain if "--icmpv6-type" in line]
        assert len(neighbour_discovery) == (2 if tool == "ip6tables" else 0), chain
        assert all(line.endswith("-j ACCEPT") for line in chain)
        assert after[tool].count("-A INPUT -j WEBRTC-SERVER") == 1, after[tool]
        assert after[tool] != before[tool]

    firewall(netns, *config)
    assert rules(netns) == after  # idempotent

    firewall(netns, "--remove")
    assert rules(netns) == before
    firewall(netns, "--remove")  # removing again is fine too
    assert rules(netns) == before


def test_dry_run_prints_the_rules_and_changes_nothing(netns):
    before = rules(netns)
    out = firewall(netns, "--dry-run")
    assert rules(netns) == before
    assert "iptables -A WEBRTC-SERVER -p udp -m udp --dport 3478" in out, out
    assert "ip6tables -A WEBRTC-SERVER -p udp -m udp --dport 49152:65535" in out, out
    assert "ip6tables -A WEBRTC-SERVER -p tcp -m tcp --dport 49152:65535" in out, out  # RFC 6062 TCP relays
    assert "--dport 8080" in out and "5349" not in out, out  # no TLS listener without a certificate
    assert "ip6tables -I INPUT -j WEBRTC-SERVER" in out


def test_without_tcp_or_signaling_those_ports_stay_closed(netns):
    firewall(netns, "--turn.tcp", "false", "--signaling.enabled", "false")
    chain = [l for l in rules(netns)["iptables"].splitlines() if l.startswith("-A WEBRTC-SERVER")]
    assert opened_ports(chain) == [("udp", "3478"), ("udp", "49152:65535")], chain  # no TCP relays either


# A box behind iptables, end to end: the server runs in a namespace whose INPUT policy is DROP for both
# families (a locked-down host), its clients in a second namespace joined to it by a veth pair. The
# addresses exist only inside these two namespaces: IPv4's TEST-NET-1 (192.0.2.0/24) and the IPv6
# documentation prefix, neither of which the server's default peer policy refuses.
SERVER_V4, CLIENT_V4 = "192.0.2.1", "192.0.2.2"
SERVER_V6, CLIENT_V6 = "2001:db8:1::1", "2001:db8:1::2"
WEBHOOK_PORT = 9000
# What passes the firewall is the question here, not load (the loopback tests do that). Even: -T pairs
# its clients.
CLIENTS, MESSAGES = 4, 100


@pytest.fixture
def box():
    require_network_tools()
    tag = uuid.uuid4().hex[:6]
    server, client = f"wfs-{tag}", f"wfc-{tag}"
    for ns in (server, client):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", f"vs{tag}", "netns", server, "type", "veth", "peer", "name", f"vc{tag}",
                        "netns", client], check=True)
        for ns, dev, v4, v6 in ((server, f"vs{tag}", SERVER_V4, SERVER_V6), (client, f"vc{tag}", CLIENT_V4, CLIENT_V6)):
            inside(ns, "ip", "addr", "add", f"{v4}/24", "dev", dev)
            inside(ns, "ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            inside(ns, "ip", "link", "set", dev, "up")
            inside(ns, "ip", "link", "set", "lo", "up")
        for tool in ("iptables", "ip6tables"):
            inside(server, tool, "-P", "INPUT", "DROP")
        yield server, client
    finally:
        for ns in (server, client):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def from_client(ns, code, timeout=60):
    """Python run inside the client namespace (with this folder's helpers importable); its stdout."""
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                           f"import sys; sys.path.insert(0, {str(HERE)!r})\n{textwrap.dedent(code)}"],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def reachable(ns):
    """What the client namespace can reach: STUN over UDP on each family, and the signaling port."""
    return from_client(ns, f"""
        import socket, urllib.request, stun
        def binding(host):
            # Retransmitted as a STUN client does (RFC 8489 6.2.1): a first packet may wait on neighbour
            # discovery that the DROP policy made fail a moment ago.
            request = stun.request(0x0001)[0]
            for timeout in (0.5, 1, 2):
                try:
                    return stun.exchange(3478, request, host=host, timeout=timeout)["type"] == 0x0101
                except OSError:
                    pass
            return False
        def http():
            try:
                return urllib.request.urlopen("http://{SERVER_V4}:8080/healthz", timeout=1).read().strip() == b"ok"
            except OSError:
                return False
        print(binding("{SERVER_V4}"), binding("{SERVER_V6}"), http())
    """)


def uclient(ns, *args):
    return run_uclient(*args, timeout=90, prefix=["ip", "netns", "exec", ns])


def test_behind_a_drop_policy_the_rules_let_in_everything_the_server_needs(box, start_server, tmp_path):
    """With INPUT dropping everything, firewall.sh (given the server's own configuration) is all it takes for
    clients elsewhere to reach STUN over IPv4 and IPv6, signaling, TURN over UDP, TCP and TLS with relaying
    to a peer, RFC 6062 TCP relays, and for the server's webhook to get its answers; --remove closes it again."""
    server_ns, client_ns = box
    cert, key = make_certificate(tmp_path)
    config = ["--turn.listen", f"{SERVER_V4},{SERVER_V6}", "--turn.relay_address", SERVER_V4,
              "--turn.relay_port_min", "20000", "--turn.relay_port_max", "20999",
              "--turn.tls_cert", str(cert), "--turn.tls_key", str(key),
              "--signaling.listen", "0.0.0.0", "--signaling.port", "8080",
              "--webhook.url", f"http://{CLIENT_V4}:{WEBHOOK_PORT}/hook"]
    start_server(*config, "--auth.users", "alice=wonderland", prefix=["ip", "netns", "exec", server_ns])
    assert reachable(client_ns) == "False False False"  # the DROP policy is in force

    firewall(server_ns, *config)
    assert reachable(client_ns) == "True True True"

    # TURN over each transport, relaying to turnutils_peer in the client namespace, and RFC 6062 TCP relays
    # (whose peers connect to the relayed TCP ports).
    peer = subprocess.Popen(["ip", "netns", "exec", client_ns, require_tool("turnutils_peer"), "-L", CLIENT_V4,
                             "-p", "3480"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from_client(client_ns, f"""
            import conftest
            if not conftest.echoes("{CLIENT_V4}", 3480): raise SystemExit("turnutils_peer does not echo")
        """)
        for transport, port in (([], "3478"), (["-t"], "3478"), (["-t", "-S"], "5349")):
            out = uclient(client_ns, *transport, "-u", "alice", "-w", "wonderland", "-e", CLIENT_V4, "-r", "3480",
                          "-p", port, "-m", str(CLIENTS), "-n", str(MESSAGES), SERVER_V4)
            assert_no_loss(out, CLIENTS, MESSAGES)
    finally:
        peer.terminate()
        peer.wait(5)
    out = uclient(client_ns, "-T", "-u", "alice", "-w", "wonderland", "-e", SERVER_V4, "-p", "3478",
                  "-m", str(CLIENTS), "-n", str(MESSAGES), SERVER_V4)
    assert_no_loss(out, CLIENTS, MESSAGES)

    # A signaling login makes the server POST its webhook to the client namespace: the POST arrives only if
    # the receiver's side of the TCP handshake got back in.
    assert from_client(client_ns, f"""
        import asyncio, http.server, json, threading
        import websockets
        delivered = threading.Event()
        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()
                if body["event"] == "joined":
                    delivered.set()
            def log_message(self, *args): pass
        hooks = http.server.HTTPServer(("{CLIENT_V4}", {WEBHOOK_PORT}), Hook)
        threading.Thread(target=hooks.serve_forever, daemon=True).start()
        async def login():
            async with websockets.connect("ws://{SERVER_V4}:8080/websocket/fw") as ws:
                await ws.send(json.dumps({{"event": "authenticate", "data": {{"username": "alice", "password": "wonderland"}}}}))
                event = json.loads(await ws.recv())["event"]
                return event, await asyncio.get_running_loop().run_in_executor(None, delivered.wait, 10)
        print(*asyncio.run(login()))
    """) == "authenticated True"

    firewall(server_ns, "--remove")
    assert reachable(client_ns) == "False False False"
