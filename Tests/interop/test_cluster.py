"""Several real webrtc-server processes as one cluster over a real nats-server (Debian's package): browsers
and aiortc peers on different instances, an instance killed with -9, NATS restarted, a duplicate id."""
import asyncio
import json
import os
import signal
import ssl
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port, require_tool
from stun import TurnClient
from test_browser_example import chrome, dump, wait_for_calls
from test_nginx_proxy import nginx  # noqa: F401 (a fixture)
from test_signaling_interop import SignalingPeer, exchange, relay_candidates

SECRET = "interop-cluster-secret-0123456789"


class NATS:
    """nats-server on a free loopback port; stop() and start() keep the port (a restart)."""

    def __init__(self):
        self.binary = require_tool("nats-server", "nats-server")
        self.port = free_port(socket.SOCK_STREAM)
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen([self.binary, "-a", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        pytest.fail("nats-server did not start listening", pytrace=False)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def nats():
    n = NATS()
    yield n
    n.stop()


# Relay ranges per instance, inside the tests' range and apart, so a relay port tells which TURN it is.
RANGES = {"a": (20000, 20499), "b": (20500, 20999), "c": (21000, 21499)}


@pytest.fixture
def instance(start_server, nats):
    def start(name, *extra, wait_for=("TURN relay", "signaling listening", "NATS connected"), **kw):
        port = free_port()
        low, high = RANGES[name]
        s = start_server("--turn.listen", "127.0.0.1", "--turn.port", str(port), "--turn.relay_port_min", str(low),
                         "--turn.relay_port_max", str(high), "--auth.users", "alice=pw,bob=pw", "--api.token", "tok",
                         "--turn.allow_peers", "127.0.0.1", "--cluster.nats", nats.url, "--cluster.instance_id", name,
                         "--cluster.secret", SECRET, "--cluster.instance_timeout", "2",
                         "--cluster.heartbeat_interval", "0.2", *extra, wait_for=wait_for, **kw)
        s.turn_port, s.name = port, name
        return s
    return start


def stats(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.signaling_port}/api/stats", timeout=5) as r:
        return json.load(r)


def wait_for_instances(servers, count, timeout=10):
    """Polls each instance's own view of the cluster (/api/stats) until it lists `count` instances."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(stats(s)["cluster"]["instances"]) == count for s in servers):
            return
        time.sleep(0.1)
    pytest.fail(f"instances did not see each other: {[stats(s)['cluster'] for s in servers]}", pytrace=False)


def test_browsers_on_two_instances_call_each_other_through_a_third_instances_turn(instance):
    a = instance("a", "--cluster.ice_servers", "turn_only")
    b = instance("b", "--cluster.ice_servers", "turn_only")
    c = instance("c", "--signaling.enabled", "false", wait_for=("TURN relay", "admin listening", "NATS connected"))
    wait_for_instances([a, b, c], 3)
    browsers = []
    state = []
    try:
        for server, user in ((a, "alice"), (b, "bob")):
            browser = chrome()
            browsers.append(browser)
            browser.get(f"http://127.0.0.1:{server.signaling_port}/room/cluster?user={user}&password=pw&relay=1"
                        f"&ice=udp&autojoin=1")
        state = wait_for_calls(browsers, 1)
        low, high = RANGES["c"]
        for s in state:
            assert s["relayOnly"] is True
            assert len(s["peers"]) == 1, state
            peer = s["peers"][0]
            assert peer["connectionState"] == "connected" and peer["framesDecoded"] > 10, state
            assert peer["localCandidateType"] == "relay", state
            host, port = peer["localAddress"].rsplit(":", 1)
            assert host == "127.0.0.1" and low <= int(port) <= high, f"not instance c's relay: {state}"
            urls = [u for entry in s["iceServers"] for u in entry["urls"]]
            assert urls == [f"turn:127.0.0.1:{c.turn_port}?transport=udp"], s["iceServers"]
    except Exception:
        dump(browsers, state, a.output)
        raise
    finally:
        for b in browsers:
            b.quit()


def test_aiortc_peers_on_different_instances_exchange_data_relay_only(instance):
    a, b = two_instances(instance)
    reply, sdps = asyncio.run(exchange(f"ws://127.0.0.1:{a.signaling_port}/websocket/aiortc", ("turn", "udp"),
                                       bob_url=f"ws://127.0.0.1:{b.signaling_port}/websocket/aiortc"))
    assert reply == "echo:hello through our TURN"
    # Bob (on b) offers, alice (on a) answers: each relays through its own instance's TURN.
    for sdp, name in zip(sdps, ("b", "a")):
        low, high = RANGES[name]
        for host, port, kind in relay_candidates(sdp):
            assert kind == "relay" and low <= int(port) <= high, sdp


async def join(server, user, room="room1"):
    return await SignalingPeer.join(f"ws://127.0.0.1:{server.signaling_port}/websocket/{room}", user)


def two_instances(instance):
    a, b = instance("a"), instance("b")
    wait_for_instances([a, b], 2)
    return a, b


async def alice_and_bob(a, b):
    """Alice on instance a, bob on instance b, in one room; alice has heard bob join."""
    alice = await join(a, "alice")
    bob = await join(b, "bob")
    await alice.receive("joined")
    return alice, bob


def test_a_killed_instance_is_left_for_the_others_and_its_credentials_refused(instance):
    a, b = two_instances(instance)

    async def run():
        alice, bob = await alice_and_bob(a, b)
        turn = next(s for s in bob.ice_servers if "username" in s)
        # Bob's credential (minted on b) holds an allocation on a's TURN.
        client = TurnClient(a.turn_port, turn["username"], turn["credential"])
        assert "error" not in client.allocate()
        killed = time.monotonic()
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(5)
        left = await alice.receive("left")
        assert left["data"]["peer_id"] == bob.peer_id
        assert time.monotonic() - killed < 4, "left within cluster.instance_timeout (2 s) and a sweep"
        again = TurnClient(a.turn_port, turn["username"], turn["credential"])
        assert again.allocate().get("error") == 401
        client.close()
        again.close()
        await alice.ws.close()
    asyncio.run(run())
    assert stats(a)["cluster"]["messages"]["dead_instances"] == 1
    b.expected_exit = -signal.SIGKILL  # killed on purpose


def test_a_gracefully_stopped_instance_hands_its_peers_departure_over_at_once(instance):
    a, b = two_instances(instance)

    async def run():
        alice, bob = await alice_and_bob(a, b)
        stopping = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        left = await alice.receive("left")
        assert left["data"]["peer_id"] == bob.peer_id
        assert time.monotonic() - stopping < 2, "at once, not after cluster.instance_timeout"
        await alice.ws.close()
    asyncio.run(run())
    assert b.proc.wait(15) == 0
    deadline = time.monotonic() + 5
    while len(stats(a)["cluster"]["instances"]) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(stats(a)["cluster"]["instances"]) == 1, "its goodbye: the others forget it"
    assert stats(a)["cluster"]["messages"]["dead_instances"] == 0


def test_directed_messages_flow_again_after_nats_restarts(instance, nats):
    a, b = two_instances(instance)

    async def run():
        alice, bob = await alice_and_bob(a, b)
        nats.stop()
        deadline = time.monotonic() + 10
        while not stats(a)["cluster"]["linked"] is False and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # During the outage: the sender is told, nothing is silently lost; and a is not ready.
        await alice.send("x", bob.peer_id, 1)
        error = await alice.receive("error")
        assert error["data"]["code"] == "peer_unreachable"
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"http://127.0.0.1:{a.signaling_port}/readyz", timeout=5)
        assert not_ready.value.code == 503
        nats.start()
        while not all(stats(s)["cluster"]["linked"] for s in (a, b)) and time.monotonic() < deadline + 10:
            await asyncio.sleep(0.05)
        wait_for_instances([a, b], 2)
        await alice.send("x", bob.peer_id, 2)
        message = await bob.receive("x")
        assert message["data"] == 2 and message["from"] == alice.peer_id
        await alice.ws.close()
        await bob.ws.close()
    asyncio.run(run())
    assert urllib.request.urlopen(f"http://127.0.0.1:{a.signaling_port}/readyz", timeout=5).status == 200


def test_an_instance_started_while_nats_is_down_serves_its_peers_and_joins_later(instance, nats):
    nats.stop()
    a = instance("a", wait_for=("TURN relay", "signaling listening"))

    async def run():
        alice = await join(a, "alice")
        bob = await join(a, "bob")
        assert [p["peer_id"] for p in bob.peers] == [alice.peer_id]
        nats.start()
        deadline = time.monotonic() + 10
        while not stats(a)["cluster"]["linked"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert stats(a)["cluster"]["linked"]
        await alice.ws.close()
        await bob.ws.close()
    asyncio.run(run())
    assert "NATS connected" in a.output


def test_a_second_instance_with_the_same_id_is_refused(instance, nats):
    from conftest import BINARY
    a = instance("a")
    wait_for_instances([a], 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_SERVER_")}
    second = subprocess.run([str(BINARY), "--turn.listen", "127.0.0.1", "--turn.port", str(free_port()),
                             "--signaling.listen", "127.0.0.1", "--signaling.port", str(free_port(socket.SOCK_STREAM)),
                             "--turn.relay_port_min", "21500", "--turn.relay_port_max", "21999",
                             "--cluster.nats", nats.url, "--cluster.instance_id", "a", "--cluster.secret", SECRET],
                            capture_output=True, text=True, timeout=30, env=env)
    assert second.returncode == 2, second.stderr
    assert "cluster.instance_id 'a' is already in use by another instance" in second.stderr
    assert "another instance started with this cluster.instance_id 'a'" in a.output


def test_cluster_settings_are_checked_and_secrets_masked():
    from test_operations import run_binary
    missing = run_binary("check-config", "--cluster.nats", "nats://127.0.0.1:4222")
    assert missing.returncode == 2 and "cluster.secret" in missing.stderr
    bad = run_binary("check-config", "--cluster.nats", "http://x", "--cluster.secret", SECRET)
    assert bad.returncode == 2 and "cluster.nats" in bad.stderr
    ok = run_binary("check-config", "--cluster.nats", "nats://user:hunter2@127.0.0.1:4222", "--cluster.secret", SECRET,
                    "--cluster.instance_id", "one")
    assert ok.returncode == 0, ok.stderr
    assert "hunter2" not in ok.stdout and SECRET not in ok.stdout
    assert "nats://****@127.0.0.1:4222" in ok.stdout


def test_the_shipped_nginx_snippet_spreads_one_room_over_the_instances_of_its_upstream(instance, nginx):  # noqa: F811
    a = instance("a", "--signaling.trusted_proxies", "127.0.0.1")
    b = instance("b", "--signaling.trusted_proxies", "127.0.0.1")
    wait_for_instances([a, b], 2)
    port, cert = nginx(a.signaling_port, b.signaling_port)
    context = ssl.create_default_context(cafile=str(cert))

    async def run():
        import websockets
        peers = []
        for n in range(4):  # nginx round-robins new connections over the upstream
            ws = await websockets.connect(f"wss://127.0.0.1:{port}/websocket/spread", ssl=context)
            await ws.send(json.dumps({"event": "authenticate", "data": {"username": "alice", "password": "pw"}}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert welcome["event"] == "authenticated", welcome
            assert len(welcome["data"]["peers"]) == n, welcome  # everyone before, wherever they landed
            peers.append((ws, welcome["data"]["peer_id"]))
        local = [stats(s)["signaling"]["peers"] for s in (a, b)]
        assert sorted(local) == [2, 2], f"nginx did not spread the peers: {local}"
        first, first_id = peers[0]
        for ws, peer_id in peers[1:]:
            await first.send(json.dumps({"event": "hello", "to": peer_id, "data": peer_id}))
        for ws, peer_id in peers[1:]:
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if m["event"] == "hello":
                    assert m["data"] == peer_id and m["from"] == first_id
                    break
        for ws, _ in peers:
            await ws.close()
    asyncio.run(run())
