"""The signaling half against the real binary: aiortc peers relaying through our TURN, shutdown, wss."""
import asyncio
import json
import re

import pytest

import os
import socket

from conftest import RELAY_MAX, RELAY_MIN, free_port, make_certificate, turn_server_args



@pytest.fixture
def server(start_server, tmp_path, monkeypatch):
    port, tls_port = free_port(), free_port(socket.SOCK_STREAM)
    cert, key = make_certificate(tmp_path)
    # aiortc verifies turns: against the default trust store; this test trusts its own certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw,bob=pw", "--turn.allow_peers", "127.0.0.1",
                                       "--turn.tls_port", str(tls_port), "--turn.tls_cert", str(cert),
                                       "--turn.tls_key", str(key)))
    s.turn_port, s.tls_port = port, tls_port
    return s


class SignalingPeer:
    def __init__(self, ws, authenticated):
        self.ws = ws
        self.peer_id = authenticated["peer_id"]
        self.peers = authenticated["peers"]
        self.ice_servers = authenticated["ice_servers"]
        self.resume_token = authenticated.get("resume_token")

    @classmethod
    async def join(cls, url, username):
        import websockets

        ws = await websockets.connect(url)
        await ws.send(json.dumps({"event": "authenticate", "data": {"username": username, "password": "pw"}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["event"] == "authenticated", message
        return cls(ws, message["data"])

    async def send(self, event, to, data):
        await self.ws.send(json.dumps({"event": event, "to": to, "data": data}))

    async def receive(self, event):
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if message["event"] == event:
                return message

    def configuration(self, scheme_transport):
        """Relay-only through the one TURN URL of `ice_servers` that matches, e.g. ("turn", "tcp")."""
        from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

        scheme, transport = scheme_transport
        servers = []
        for s in self.ice_servers:
            urls = [u for u in s["urls"] if u.startswith(scheme + ":") and u.endswith("transport=" + transport)]
            if urls:
                servers.append(RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential")))
        assert len(servers) == 1, self.ice_servers
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)


def relay_candidates(sdp):
    found = re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\w+)", sdp)
    assert found, sdp
    return found


def echo_on_data_channels(pc):
    """Every message on a data channel the remote end opens is answered "echo:" + message."""
    @pc.on("datachannel")
    def on_channel(channel):
        @channel.on("message")
        def on_message(message):
            channel.send("echo:" + message)


async def negotiate(offerer, bob, answerer, alice):
    """Bob's offer to alice and her answer, through the signaling server."""
    from aiortc import RTCSessionDescription

    await offerer.setLocalDescription(await offerer.createOffer())
    await bob.send("offer", alice.peer_id, {"description": {"type": "offer", "sdp": offerer.localDescription.sdp}})
    offer = await alice.receive("offer")
    assert offer["from"] == bob.peer_id
    await answerer.setRemoteDescription(RTCSessionDescription(**offer["data"]["description"]))
    await answerer.setLocalDescription(await answerer.createAnswer())
    await alice.send("answer", bob.peer_id, {"description": {"type": "answer", "sdp": answerer.localDescription.sdp}})
    answer = await bob.receive("answer")
    await offerer.setRemoteDescription(RTCSessionDescription(**answer["data"]["description"]))


async def exchange(url, scheme_transport, bob_url=None):
    """Alice joins at `url`, bob at `bob_url` (another instance of a cluster) or the same URL."""
    from aiortc import RTCPeerConnection

    alice = await SignalingPeer.join(url, "alice")
    bob = await SignalingPeer.join(bob_url or url, "bob")
    assert [p["peer_id"] for p in bob.peers] == [alice.peer_id]
    joined = await alice.receive("joined")
    assert joined["data"]["peer_id"] == bob.peer_id

    answerer = RTCPeerConnection(alice.configuration(scheme_transport))
    offerer = RTCPeerConnection(bob.configuration(scheme_transport))
    got = asyncio.get_running_loop().create_future()
    try:
        echo_on_data_channels(answerer)

        channel = offerer.createDataChannel("chat")

        @channel.on("open")
        def on_open():
            channel.send("hello through our TURN")

        @channel.on("message")
        def on_reply(message):
            if not got.done():
                got.set_result(message)

        await negotiate(offerer, bob, answerer, alice)

        reply = await asyncio.wait_for(got, 30)
        sdps = (offerer.localDescription.sdp, answerer.localDescription.sdp)
        return reply, sdps
    finally:
        await offerer.close()
        await answerer.close()
        await alice.ws.close()
        await bob.ws.close()


@pytest.mark.parametrize("scheme_transport", [("turn", "udp"), ("turn", "tcp"), ("turns", "tcp")],
                         ids=["turn-udp", "turn-tcp", "turns"])
def test_aiortc_data_channel_round_trip_relayed_through_our_turn(server, scheme_transport):
    url = f"ws://127.0.0.1:{server.signaling_port}/websocket/aiortc"
    reply, sdps = asyncio.run(exchange(url, scheme_transport))
    assert reply == "echo:hello through our TURN"
    for sdp in sdps:
        for host, port, kind in relay_candidates(sdp):
            assert kind == "relay", sdp
            assert host == "127.0.0.1" and RELAY_MIN <= int(port) <= RELAY_MAX, sdp


def test_sigterm_tells_signaling_peers_shutdown(start_server):
    """Stopping the server sends `shutdown` to every connected peer before their sockets close."""
    import websockets

    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw"))

    async def scenario():
        alice = await SignalingPeer.join(f"ws://127.0.0.1:{s.signaling_port}/websocket/bye", "alice")
        s.proc.send_signal(15)
        message = await alice.receive("shutdown")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(alice.ws.recv(), 10)
        return message

    assert asyncio.run(scenario()) == {"event": "shutdown"}
    assert s.proc.wait(15) == 0


def test_signaling_over_wss_with_configured_certificate(start_server, tmp_path):
    """signaling.tls_cert/tls_key: the same protocol over wss:// (the test trusts its own certificate)."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw", "--signaling.tls_cert", str(cert),
                                       "--signaling.tls_key", str(key)))
    assert "tls=true" in s.output

    async def scenario():
        import websockets

        context = ssl.create_default_context(cafile=str(cert))
        ws = await websockets.connect(f"wss://127.0.0.1:{s.signaling_port}/websocket/secure", ssl=context)
        await ws.send(json.dumps({"event": "authenticate", "data": {"username": "alice", "password": "pw"}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send("ping")
        pong = await asyncio.wait_for(ws.recv(), 10)
        await ws.close()
        return message, pong

    message, pong = asyncio.run(scenario())
    assert message["event"] == "authenticated" and message["data"]["peer_id"], message
    assert pong == "pong"


KILLED_CLIENT = """
import asyncio, json, sys, websockets
async def main():
    ws = await websockets.connect(sys.argv[1])
    await ws.send(json.dumps({"event": "authenticate", "data": {"username": "bob", "password": "pw"}}))
    assert json.loads(await ws.recv())["event"] == "authenticated"
    print("ready", flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""


@pytest.mark.parametrize("window", ["0", "2"], ids=["no-resume-window", "resume-window"])
def test_a_killed_client_is_announced_at_once(start_server, window):
    """A client process killed mid-session closes with a bare FIN from its kernel, no close frame. The
    room hears of it at once, not at the next keepalive ping (30 s): `left` without a resume window;
    with one, `peer_away` at once and `left` when the window ends without a resume."""
    import subprocess
    import sys

    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw,bob=pw", "--signaling.resume_window", window))
    url = f"ws://127.0.0.1:{s.signaling_port}/websocket/killed"

    async def scenario():
        alice = await SignalingPeer.join(url, "alice")
        bob = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, url], stdout=subprocess.PIPE, text=True)
        try:
            assert bob.stdout.readline().strip() == "ready"
            joined = await alice.receive("joined")
            bob.kill()
            bob.wait(10)
            if window != "0":
                away = await asyncio.wait_for(alice.receive("peer_away"), 5)
                assert away["data"] == joined["data"]
            left = await asyncio.wait_for(alice.receive("left"), 5)
        finally:
            bob.kill()
            bob.wait(10)
        await alice.ws.close()
        return joined["data"], left["data"]

    joined, left = asyncio.run(scenario())
    assert joined["username"] == "bob"
    assert left == joined


def test_aiortc_data_channel_keeps_flowing_across_a_signaling_drop(server):
    """Bob's signaling goes through a proxy the test resets (no close frame) in the middle of a relayed
    data-channel exchange: the channel keeps carrying messages through the gap, and bob resumes his session
    (same peer id) and can signal again."""
    from test_browser_example import CuttingProxy
    from aiortc import RTCPeerConnection

    proxy = CuttingProxy(server.signaling_port)

    async def run():
        alice = await SignalingPeer.join(f"ws://127.0.0.1:{server.signaling_port}/websocket/drop", "alice")
        bob = await SignalingPeer.join(f"ws://127.0.0.1:{proxy.port}/websocket/drop", "bob")
        await alice.receive("joined")
        answerer = RTCPeerConnection(alice.configuration(("turn", "udp")))
        offerer = RTCPeerConnection(bob.configuration(("turn", "udp")))
        echoes = asyncio.Queue()
        opened = asyncio.get_running_loop().create_future()
        try:
            echo_on_data_channels(answerer)

            channel = offerer.createDataChannel("chat")
            channel.on("open", lambda: opened.done() or opened.set_result(True))
            channel.on("message", lambda m: echoes.put_nowait(m))
            await negotiate(offerer, bob, answerer, alice)
            await asyncio.wait_for(opened, 30)

            channel.send("before")
            assert await asyncio.wait_for(echoes.get(), 10) == "echo:before"
            proxy.cut()
            away = await alice.receive("peer_away")
            assert away["data"]["peer_id"] == bob.peer_id
            for n in range(5):  # signaling is gone; the relayed channel is not
                channel.send(f"during-{n}")
                assert await asyncio.wait_for(echoes.get(), 10) == f"echo:during-{n}"
            await alice.send("note", bob.peer_id, {"queued": True})  # waits for bob's resume

            import websockets
            ws = await websockets.connect(f"ws://127.0.0.1:{server.signaling_port}/websocket/drop")
            await ws.send(json.dumps({"event": "resume", "data": {"token": bob.resume_token}}))
            resumed = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert resumed["event"] == "resumed" and resumed["data"]["peer_id"] == bob.peer_id, resumed
            assert resumed["data"]["replayed"] == 1
            note = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert note["event"] == "note" and note["from"] == alice.peer_id
            back = await alice.receive("peer_back")
            assert back["data"]["peer_id"] == bob.peer_id
            await ws.send(json.dumps({"event": "hello", "to": alice.peer_id, "data": 1}))
            assert (await alice.receive("hello"))["from"] == bob.peer_id
            channel.send("after")
            assert await asyncio.wait_for(echoes.get(), 10) == "echo:after"
            await ws.close()
        finally:
            await offerer.close()
            await answerer.close()
            await alice.ws.close()

    try:
        asyncio.run(run())
    finally:
        proxy.close()
