"""TURN over UDP driven by coturn's client tools (turnutils_uclient, turnutils_stunclient)."""
import re
import socket
import subprocess
import time

import pytest

from conftest import free_port, require_tool, turn_server_args
import stun

CLIENTS, MESSAGES = 10, 1000


def run_uclient(*args: str, timeout: int = 180, prefix=()) -> str:
    """turnutils_uclient's output; `prefix` runs it through another command (`ip netns exec NS`)."""
    tool = require_tool("turnutils_uclient")
    try:
        done = subprocess.run([*prefix, tool, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as stuck:  # a lost answer shows as a client that waits for ever
        pytest.fail(f"turnutils_uclient {' '.join(args)} did not finish:\n{(stuck.stdout or b'').decode()[-2000:]}")
    return done.stdout + done.stderr


def assert_no_loss(output: str, clients: int = CLIENTS, messages: int = MESSAGES):
    lost = re.findall(r"Total lost packets (\d+)", output)
    assert lost, f"uclient did not finish:\n{output[-3000:]}"
    assert int(lost[-1]) == 0, f"lost packets:\n{output[-3000:]}"
    totals = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", output, re.M)
    assert totals, output[-3000:]
    sent, received = map(int, totals[-1])
    assert sent == clients * messages and received == sent, f"sent {sent}, received {received}"


@pytest.fixture
def server(start_server):
    port = free_port()
    # The auth throttle is off here: uclient with a wrong secret retries without end once its answers are
    # delayed or dropped; the refusal itself is what these tests look at (test_operations covers the throttle).
    s = start_server(*turn_server_args(port, "--auth.users", "alice=wonderland", "--auth.secrets", "north,old-secret",
                                       "--turn.allow_peers", "127.0.0.1", "--auth.throttle_free_failures", "0",
                                       "--auth.block_after", "0"))
    s.port = port
    return s


@pytest.mark.parametrize("mode", [[], ["-s"]], ids=["channel", "send-indication"])
def test_uclient_with_static_credentials_loses_nothing(server, turn_peer, mode):
    out = run_uclient(*mode, "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-r", str(turn_peer),
                      "-p", str(server.port), "-m", str(CLIENTS), "-n", str(MESSAGES), "127.0.0.1")
    assert_no_loss(out)


@pytest.mark.parametrize("mode", [[], ["-s"]], ids=["channel", "send-indication"])
def test_uclient_with_shared_secret_loses_nothing(server, turn_peer, mode):
    out = run_uclient(*mode, "-W", "north", "-u", "carol", "-e", "127.0.0.1", "-r", str(turn_peer),
                      "-p", str(server.port), "-m", str(CLIENTS), "-n", str(MESSAGES), "127.0.0.1")
    assert_no_loss(out)


def test_uclient_with_wrong_shared_secret_is_refused(server, turn_peer):
    out = run_uclient("-W", "not-the-secret", "-u", "carol", "-e", "127.0.0.1", "-r", str(turn_peer),
                      "-p", str(server.port), "-m", "1", "-n", "5", "127.0.0.1", timeout=60)
    assert "Cannot complete Allocation" in out and "Total lost packets" not in out, out[-2000:]


def test_stunclient_gets_its_mapped_address(server):
    tool = require_tool("turnutils_stunclient")
    done = subprocess.run([tool, "-p", str(server.port), "127.0.0.1"], capture_output=True, text=True, timeout=30)
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", done.stdout + done.stderr), done.stdout + done.stderr


def test_default_policy_answers_create_permission_to_loopback_with_403(start_server, turn_peer):
    port = free_port()
    start_server(*turn_server_args(port, "--auth.users", "alice=wonderland"))
    out = run_uclient("-s", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-r", str(turn_peer),
                      "-p", str(port), "-m", "1", "-n", "5", "127.0.0.1", timeout=60)
    assert re.search(r"create permission error 403", out), out[-2000:]


def test_garbage_datagrams_leave_the_server_answering(server):
    rnd = __import__("random").Random(7)
    valid, _ = stun.request(0x0003, stun.attribute(0x0019, bytes([17, 0, 0, 0])))
    junk = [b"", b"\x00", b"\x40\x00\xff\xff", valid[:10], valid[:-2] + b"\xff\xff", b"\xff" * 1400,
            valid[:2] + b"\xff\xf0" + valid[4:], valid + stun.attribute(0x0006, b"a" * 60000)[:60000]]
    junk += [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 200))) for _ in range(300)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for j in junk:
            s.sendto(j, ("127.0.0.1", server.port))
    reply = stun.unauthenticated_allocate(server.port)
    assert reply["error"] == 401
    assert server.proc.poll() is None


def _demo_login(server):
    """The user and password of the demo login line, and its URL."""
    found = re.search(r"log in as '(\w+)' with password '([A-Za-z0-9_-]+)'.*Open (http://\S+) in two browser tabs", server.output)
    assert found, server.output
    return found.group(1), found.group(2), found.group(3)


def _signaling_login(port: int, username: str, password: str) -> dict:
    """The server's answer to one `authenticate` on a fresh WebSocket."""
    import asyncio
    import json

    import websockets

    async def login():
        async with websockets.connect(f"ws://127.0.0.1:{port}/websocket/demo") as ws:
            await ws.send(json.dumps({"event": "authenticate", "data": {"username": username, "password": password}}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    return asyncio.run(login())


def test_first_run_makes_a_demo_login_that_both_halves_accept(start_server, turn_peer):
    """Nothing configured to log in with: one `demo` login with a random password, logged once with a ready
    URL; TURN relays with it, signaling accepts it, and a wrong password is refused by both."""
    import urllib.request

    port = free_port()
    server = start_server(*turn_server_args(port, "--turn.allow_peers", "127.0.0.1", "--auth.throttle_free_failures", "0",
                                            "--auth.block_after", "0"))
    user, password, url = _demo_login(server)
    assert user == "demo" and len(password) >= 20
    assert server.output.count("log in as 'demo'") == 1
    page = url.replace("localhost:", "127.0.0.1:")
    assert f":{server.signaling_port}/room/demo?user=demo&password={password}" in url
    with urllib.request.urlopen(page, timeout=10) as answer:
        assert answer.status == 200 and b"<html" in answer.read().lower()
    assert _signaling_login(server.signaling_port, "demo", password)["event"] == "authenticated"
    assert _signaling_login(server.signaling_port, "demo", password + "x")["event"] != "authenticated"
    assert_no_loss(run_uclient("-u", "demo", "-w", password, "-e", "127.0.0.1", "-r", str(turn_peer), "-p", str(port),
                               "-m", str(CLIENTS), "-n", str(MESSAGES), "127.0.0.1"))
    refused = run_uclient("-u", "demo", "-w", password + "x", "-e", "127.0.0.1", "-r", str(turn_peer), "-p", str(port),
                          "-m", "1", "-n", "5", "127.0.0.1", timeout=60)
    assert "Cannot complete Allocation" in refused and "Total lost packets" not in refused, refused[-2000:]


def test_a_configured_user_or_the_setting_turns_the_demo_login_off(start_server):
    for extra in (["--auth.users", "alice=wonderland"], ["--auth.demo_login", "false"]):
        server = start_server(*turn_server_args(free_port(), *extra))
        assert "log in as 'demo'" not in server.output
        answer = _signaling_login(server.signaling_port, "demo", "anything")
        assert answer["event"] != "authenticated", answer
