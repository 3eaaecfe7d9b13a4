"""Operating the real binary: /metrics after a known workload, SIGHUP reload, SIGTERM drain, throttles,
the bandwidth cap, admin access, the log level, check-config and the example configuration."""
import asyncio
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BINARY, ROOT, free_port, make_certificate, turn_server_args
from stun import TurnClient, attribute, parse, request


# ---------------------------------------------------------------------------------------------- helpers

def run_binary(*args):
    """The binary run once (check-config, --print-example-config) without the test runner's own
    WEBRTC_SERVER_* variables (an unknown one is a configuration error)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_SERVER_")}
    return subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=30, env=env)


def http_request(port, method, path, body=None, headers=None, source="127.0.0.1", read_body=True, tls=None):
    """One request; `tls` (an ssl.SSLContext) makes it https."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=10, source_address=(source, 0), context=tls) if tls
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0)))
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read().decode() if read_body else response.readline().decode()
    conn.close()
    return response.status, data


def scrape(port, tls=None):
    """/metrics as {(name, ((label, value), ...)): value}."""
    status, text = http_request(port, "GET", "/metrics", tls=tls)
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, f"not Prometheus text: {line!r}"
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(values, name, **labels):
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_log(server, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in server.output:
        assert time.monotonic() < deadline, f"no {text!r} in:\n{server.output}"
        time.sleep(0.05)


def ws_url(server, room="ops"):
    return f"ws://127.0.0.1:{server.signaling_port}/websocket/{room}"


async def login(server, username, password, source="127.0.0.1", room="ops"):
    """Connects and authenticates; returns (socket, first answer)."""
    import websockets
    ws = await websockets.connect(ws_url(server, room), local_addr=(source, 0))
    await ws.send(json.dumps({"event": "authenticate", "data": {"username": username, "password": password}}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 15))


async def next_event(ws, event, timeout=10):
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["event"] == event:
            return message


def ephemeral(secret, user="app", lifetime=3600):
    import base64
    import hashlib
    import hmac
    name = f"{int(time.time()) + lifetime}:{user}"
    return name, base64.b64encode(hmac.new(secret.encode(), name.encode(), hashlib.sha1).digest()).decode()


def relay_round_trip(client, peer_port, payload=b"hello"):
    client.send("127.0.0.1", peer_port, payload)
    assert client.receive_data() == payload


def allocated(answer):
    assert answer["type"] == 0x0103, f"Allocate failed: {answer.get('error')}"
    return answer


# ---------------------------------------------------------------------------------------------- metrics

def test_metrics_count_a_known_workload(start_server, turn_peer):
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw,bob=pw", "--turn.allow_peers", "127.0.0.1"))
    before = scrape(s.signaling_port)

    client = TurnClient(port, "alice", "pw")
    allocated(client.allocate())
    assert client.create_permission("127.0.0.1")["type"] == 0x0108
    payload = b"x" * 100
    for _ in range(20):
        relay_round_trip(client, turn_peer, payload)
    wrong = TurnClient(port, "alice", "not-the-password")
    assert wrong.allocate()["error"] == 401

    async def scenario():
        a, welcome_a = await login(s, "alice", "pw")
        b, welcome_b = await login(s, "bob", "pw")
        await next_event(a, "joined")
        for i in range(3):
            await a.send(json.dumps({"event": "note", "to": welcome_b["data"]["peer_id"], "data": i}))
            await next_event(b, "note")
        await a.send(json.dumps({"event": "all", "to": "*", "data": {}}))
        await next_event(b, "all")
        await a.send("ping")
        assert await asyncio.wait_for(a.recv(), 10) == "pong"
        await a.send(json.dumps({"event": "no-recipient"}))
        await next_event(a, "invalid_message")
        bad, answer = await login(s, "mallory", "guess")
        assert answer["event"] == "unauthorized"
        return a, b

    a, b = asyncio.run(scenario())
    after = scrape(s.signaling_port)

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("webrtc_turn_relayed_packets_total", direction="to_peer", transport="udp") == 20
    assert delta("webrtc_turn_relayed_packets_total", direction="to_client", transport="udp") == 20
    assert delta("webrtc_turn_relayed_bytes_total", direction="to_peer", transport="udp") == 2000
    assert delta("webrtc_turn_relayed_bytes_total", direction="to_client", transport="udp") == 2000
    assert delta("webrtc_turn_relayed_packets_total", direction="to_peer", transport="tcp") == 0
    assert metric(after, "webrtc_turn_allocations") == 1
    assert delta("webrtc_turn_allocations_total") == 1
    assert metric(after, "webrtc_turn_permissions") == 1
    assert metric(after, "webrtc_turn_channel_bindings") == 0
    assert delta("webrtc_auth_failures_total", half="turn") == 1
    assert delta("webrtc_auth_failures_total", half="signaling") == 1
    # Two challenges (alice's and the wrong password's first request) and one wrong password.
    assert delta("webrtc_turn_error_responses_total", code="401") == 3
    assert delta("webrtc_signaling_messages_in_total", kind="directed") == 3
    assert delta("webrtc_signaling_messages_in_total", kind="broadcast") == 1
    assert delta("webrtc_signaling_messages_in_total", kind="ping") == 1
    assert delta("webrtc_signaling_messages_in_total", kind="invalid") == 1
    assert delta("webrtc_signaling_messages_in_total", kind="authenticate") == 3
    assert delta("webrtc_signaling_messages_out_total", kind="forwarded") == 4
    assert delta("webrtc_signaling_messages_out_total", kind="authenticated") == 2
    assert delta("webrtc_signaling_messages_out_total", kind="joined") == 1
    assert delta("webrtc_signaling_messages_out_total", kind="pong") == 1
    assert delta("webrtc_signaling_messages_out_total", kind="unauthorized") == 1
    assert metric(after, "webrtc_signaling_peers") == 2
    assert metric(after, "webrtc_signaling_rooms") == 1
    assert metric(after, "process_resident_memory_bytes") > 1_000_000

    # /api/stats tells the same story as JSON, with the allocation listed.
    status, body = http_request(s.signaling_port, "GET", "/api/stats")
    stats = json.loads(body)
    assert status == 200 and stats["signaling"]["peers"] == 2
    assert [a["username"] for a in stats["turn"]["allocations"]] == ["alice"]
    assert stats["turn"]["allocations"][0]["bytesToPeer"] == 2000
    client.close()
    wrong.close()


# ---------------------------------------------------------------------------------------------- reload

def test_sighup_rotates_secrets_and_an_existing_allocation_keeps_relaying(start_server, turn_peer, tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text('auth:\n  secrets: ["old-secret"]\n')
    port = free_port()
    s = start_server("--config", str(config), *turn_server_args(port, "--turn.allow_peers", "127.0.0.1"))

    old_user, old_password = ephemeral("old-secret")
    running = TurnClient(port, old_user, old_password)
    allocated(running.allocate())
    assert running.create_permission("127.0.0.1")["type"] == 0x0108
    relay_round_trip(running, turn_peer)

    # An invalid file changes nothing.
    config.write_text("auth:\n  secrets: [unclosed\n")
    s.proc.send_signal(signal.SIGHUP)
    wait_for_log(s, "reload: invalid configuration, the running one stays in force")
    allocated(TurnClient(port, *ephemeral("old-secret")).allocate())

    config.write_text('auth:\n  secrets: ["new-secret"]\nturn:\n  max_allocations_per_user: 5\n')
    s.proc.send_signal(signal.SIGHUP)
    wait_for_log(s, "reload: configuration applied")
    assert allocated(TurnClient(port, *ephemeral("new-secret")).allocate())
    assert TurnClient(port, *ephemeral("old-secret")).allocate()["error"] == 401
    # The allocation made with the old secret keeps relaying, and can still be refreshed.
    relay_round_trip(running, turn_peer, b"after the rotation")
    assert running.refresh(600)["type"] == 0x0104
    running.close()


def test_log_level_changes_through_the_admin_api_and_sighup(start_server, tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text("log_level: info\n")
    port = free_port()
    s = start_server("--config", str(config), *turn_server_args(port))
    probe, _ = request(0x0003, attribute(0x0019, bytes([17, 0, 0, 0])))

    def challenge_logged(expected):
        """Sends a request answered with a 401 challenge (logged at debug level) and tells whether the
        debug line appeared. Waiting for a line that must not appear has no event: a short bounded wait."""
        before = s.output.count("error response")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(probe, ("127.0.0.1", port))
            assert parse(sock.recvfrom(2048)[0])["error"] == 401
        deadline = time.monotonic() + (5 if expected else 0.5)
        while s.output.count("error response") == before and time.monotonic() < deadline:
            time.sleep(0.05)
        return s.output.count("error response") > before

    assert not challenge_logged(False)
    status, body = http_request(s.signaling_port, "PUT", "/api/v1/log_level", body='{"level":"debug"}')
    assert status == 200 and json.loads(body) == {"level": "debug"}
    assert challenge_logged(True)
    assert http_request(s.signaling_port, "PUT", "/api/v1/log_level", body="loud")[0] == 400

    config.write_text("log_level: warning\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while json.loads(http_request(s.signaling_port, "GET", "/api/v1/log_level")[1])["level"] != "warning":
        assert time.monotonic() < deadline, s.output
        time.sleep(0.05)
    assert not challenge_logged(False)


# ---------------------------------------------------------------------------------------------- drain

def test_sigterm_drains_signaling_first_then_allocations_then_exits_0(start_server, turn_peer):
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw", "--turn.allow_peers", "127.0.0.1",
                                       "--shutdown.grace_period", "60"))
    client = TurnClient(port, "alice", "pw")
    allocated(client.allocate())
    assert client.create_permission("127.0.0.1")["type"] == 0x0108

    async def scenario():
        ws, welcome = await login(s, "alice", "pw")
        assert welcome["event"] == "authenticated"
        s.proc.send_signal(signal.SIGTERM)
        return await next_event(ws, "shutdown")

    assert asyncio.run(scenario()) == {"event": "shutdown"}
    wait_for_log(s, "draining: 1 allocation(s)")
    # Still relaying during the grace period; no new allocations.
    relay_round_trip(client, turn_peer, b"during the drain")
    assert TurnClient(port, "alice", "pw").allocate()["error"] == 508
    assert s.proc.poll() is None
    # The last allocation ends: the process exits at once (well before the 60 s grace period), with 0.
    assert client.refresh(0)["type"] == 0x0104
    assert s.proc.wait(20) == 0
    assert "drained" in s.output
    client.close()


# ---------------------------------------------------------------------------------------------- throttles

THROTTLE = ["--auth.throttle_free_failures", "2", "--auth.throttle_base_delay", "0.5", "--auth.throttle_max_delay", "0.5",
            "--auth.block_after", "5", "--auth.block_duration", "120"]


def test_failed_logins_are_delayed_then_blocked_per_source_across_both_halves(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw", *THROTTLE))

    async def scenario():
        times = []
        for _ in range(5):
            started = time.monotonic()
            ws, answer = await login(s, "alice", "wrong", source="127.0.0.2")
            times.append(time.monotonic() - started)
            assert answer["event"] == "unauthorized"
            await ws.close()
        # The right password from the blocked source is refused too, and says why.
        ws, answer = await login(s, "alice", "pw", source="127.0.0.2")
        assert answer["event"] == "unauthorized" and answer["data"]["reason"] == "blocked", answer
        assert answer["data"]["retry_after"] > 60
        # Someone else, on another address, logs in as usual.
        ws, answer = await login(s, "alice", "pw", source="127.0.0.1")
        assert answer["event"] == "authenticated", answer
        return times

    times = asyncio.run(scenario())
    # Failures 1-2 are free; 3-5 are answered after the configured 0.5 s delay.
    assert all(t >= 0.45 for t in times[2:]), times
    # The block covers TURN as well: the same source gets no answer even with the right password.
    blocked = TurnClient(port, "alice", "pw", source="127.0.0.2", timeout=1.5)
    with pytest.raises(socket.timeout):
        blocked.allocate()
    allocated(TurnClient(port, "alice", "pw", source="127.0.0.3").allocate())
    values = scrape(s.signaling_port)
    assert metric(values, "webrtc_auth_failures_total", half="signaling") == 5
    assert metric(values, "webrtc_auth_blocked_total", half="signaling") == 1
    assert metric(values, "webrtc_auth_blocked_total", half="turn") >= 1


def test_behind_a_trusted_proxy_the_throttle_counts_each_client_not_the_proxy(start_server):
    """signaling.trusted_proxies: behind nginx (dist/) every client arrives from 127.0.0.1. With the proxy
    trusted, X-Forwarded-For names the source, so one client's failed logins block that client only; without
    it, the header is ignored (a client cannot choose its own source to dodge the throttle)."""
    import websockets

    async def login_via_proxy(server, password, forwarded_for):
        ws = await websockets.connect(ws_url(server, "ops"), additional_headers={"X-Forwarded-For": forwarded_for})
        await ws.send(json.dumps({"event": "authenticate", "data": {"username": "alice", "password": password}}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 15))
        await ws.close()
        return answer

    async def scenario(server):
        for _ in range(5):
            assert (await login_via_proxy(server, "wrong", "203.0.113.7"))["event"] == "unauthorized"
        blocked = await login_via_proxy(server, "pw", "203.0.113.7")
        assert blocked["event"] == "unauthorized" and blocked["data"]["reason"] == "blocked", blocked
        return await login_via_proxy(server, "pw", "6.6.6.6, 198.51.100.9")  # another client; a forged first hop

    trusting = start_server(*turn_server_args(free_port(), "--auth.users", "alice=pw", *THROTTLE,
                                              "--signaling.trusted_proxies", "127.0.0.1"))
    assert asyncio.run(scenario(trusting))["event"] == "authenticated"
    trusting.stop()
    ignoring = start_server(*turn_server_args(free_port(), "--auth.users", "alice=pw", *THROTTLE))
    other = asyncio.run(scenario(ignoring))
    assert other["event"] == "unauthorized" and other["data"]["reason"] == "blocked", other


def test_wrong_turn_passwords_block_their_source_only(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw", *THROTTLE))
    guesser = TurnClient(port, "alice", "guess", source="127.0.0.4", timeout=3)
    assert guesser.allocate()["error"] == 401
    for _ in range(4):
        started = time.monotonic()
        answer = guesser.request(0x0003, attribute(0x0019, bytes([17, 0, 0, 0])))
        assert answer["error"] == 401
    assert time.monotonic() - started >= 0.45  # the 5th failure was answered late
    right = TurnClient(port, "alice", "pw", source="127.0.0.4", timeout=1.5)
    with pytest.raises(socket.timeout):
        right.allocate()
    allocated(TurnClient(port, "alice", "pw", source="127.0.0.1").allocate())
    values = scrape(s.signaling_port)
    assert metric(values, "webrtc_auth_failures_total", half="turn") == 5
    assert metric(values, "webrtc_auth_blocked_total", half="turn") >= 1


def test_unauthenticated_requests_are_rate_limited_per_source(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port, "--turn.unauthenticated_rate", "5", "--turn.unauthenticated_burst", "5"))
    binding, _ = request(0x0001)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.bind(("127.0.0.5", 0))
        flood.settimeout(1.0)
        for _ in range(40):
            flood.sendto(binding, ("127.0.0.1", port))
        answers = 0
        try:
            while True:
                flood.recvfrom(2048)
                answers += 1
        except socket.timeout:
            pass
    # The burst of 5, and at most a few more refilled at 5/s while the loop ran.
    assert 5 <= answers <= 12, answers
    # Another source is unaffected.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.6", 0))
        other.settimeout(3)
        other.sendto(binding, ("127.0.0.1", port))
        assert parse(other.recvfrom(2048)[0])["type"] == 0x0101
    assert metric(scrape(s.signaling_port), "webrtc_turn_rate_limited_total") == 40 - answers


def test_bandwidth_cap_drops_the_excess_of_one_allocation_only(start_server, turn_peer):
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw,bob=pw", "--turn.allow_peers", "127.0.0.1",
                                       "--turn.bandwidth_limit", "5000"))
    heavy = TurnClient(port, "alice", "pw", timeout=1.0)
    allocated(heavy.allocate())
    heavy.create_permission("127.0.0.1")
    for _ in range(50):
        heavy.send("127.0.0.1", turn_peer, b"x" * 1000)
    time.sleep(0.5)  # let the echoes that got through arrive; nothing signals "all relayed"
    values = scrape(s.signaling_port)
    sent = metric(values, "webrtc_turn_relayed_packets_total", direction="to_peer", transport="udp")
    dropped = metric(values, "webrtc_turn_bandwidth_dropped_packets_total")
    # One second's worth (5 000 bytes, shared by both directions) went through; the rest was dropped and counted.
    assert 1 <= sent <= 6, values
    assert dropped >= 44 and metric(values, "webrtc_turn_bandwidth_dropped_bytes_total") == dropped * 1000
    # Another allocation has its own budget.
    light = TurnClient(port, "bob", "pw")
    allocated(light.allocate())
    light.create_permission("127.0.0.1")
    relay_round_trip(light, turn_peer, b"y" * 1000)


# ---------------------------------------------------------------------------------------------- admin access

ADMIN = [("GET", "/metrics"), ("GET", "/api/stats"), ("GET", "/api/v1/log_level"), ("PUT", "/api/v1/log_level"),
         ("GET", "/dashboard"), ("GET", "/dashboard/events")]


def test_every_admin_endpoint_refuses_a_request_without_access(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port, "--admin.allow", "127.0.0.2", "--api.token", "operator-token"))

    def status(method, path, **kw):
        body = "info" if method == "PUT" else None
        return http_request(s.signaling_port, method, path, body=body, read_body=path != "/dashboard/events", **kw)[0]

    for method, path in ADMIN:
        assert status(method, path) == 403, path  # 127.0.0.1 is not in admin.allow here
        assert status(method, path, headers={"Authorization": "Bearer wrong"}) == 403, path
        assert status(method, path + "?token=wrong") == 403, path
        assert status(method, path, headers={"Authorization": "Bearer operator-token"}) == 200, path
        assert status(method, path, source="127.0.0.2") == 200, path
        # Through a proxy the address proves nothing.
        assert status(method, path, source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.2"}) == 403, path
    assert status("GET", "/dashboard?token=operator-token") == 200
    # Probes and the welcome document are open.
    for path in ("/healthz", "/readyz", "/api/v1/welcome"):
        assert status("GET", path) == 200, path
    welcome = json.loads(http_request(s.signaling_port, "GET", "/api/v1/welcome")[1])
    assert welcome["name"] == "webrtc-server" and "turn-udp" in welcome["features"] and welcome["version"]


def test_on_a_dual_stack_listener_ipv4_clients_match_ipv4_admin_addresses(start_server):
    """With signaling.listen "::" an IPv4 client arrives as ::ffff:a.b.c.d; admin.allow's IPv4 entries
    (the default 127.0.0.0/8) must still match it, and other IPv4 addresses must not."""
    s = start_server(*turn_server_args(free_port(), "--signaling.listen", "::", "--admin.allow", "127.0.0.2"))
    assert http_request(s.signaling_port, "GET", "/metrics", source="127.0.0.2")[0] == 200
    assert http_request(s.signaling_port, "GET", "/metrics", source="127.0.0.1")[0] == 403
    s.stop()
    s = start_server(*turn_server_args(free_port(), "--signaling.listen", "::"))
    assert http_request(s.signaling_port, "GET", "/metrics")[0] == 200  # 127.0.0.1 by the default admin.allow


# ---------------------------------------------------------------------------------------------- packaging

def test_check_config_prints_effective_settings_with_secrets_masked(tmp_path):
    config = tmp_path / "server.yaml"
    config.write_text('auth:\n  users: {alice: "s3cret-pw"}\n  secrets: ["rest-secret"]\napi:\n  token: "tok-123"\n'
                      'turn:\n  port: 3479\n')
    run = run_binary("check-config", "--config", str(config), "--signaling.port", "9000")
    assert run.returncode == 0, run.stderr
    assert "turn.port: 3479" in run.stdout and "signaling.port: 9000" in run.stdout
    for secret in ("s3cret-pw", "rest-secret", "tok-123"):
        assert secret not in run.stdout
    assert '"alice": "****"' in run.stdout
    config.write_text("turn:\n  port: seventy\n")
    bad = run_binary("check-config", "--config", str(config))
    assert bad.returncode == 2 and "turn.port" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    config.write_text("turn:\n  prot: 3478\n")
    typo = run_binary("check-config", "--config", str(config))
    assert typo.returncode == 2 and "turn.prot" in typo.stderr


def test_example_configuration_lists_every_key_and_is_valid():
    example = ROOT / "dist" / "webrtc-server.yaml"
    generated = run_binary("--print-example-config")
    assert generated.returncode == 0, generated.stderr
    assert example.read_text() == generated.stdout, "dist/webrtc-server.yaml is stale: regenerate with --print-example-config"
    run = run_binary("check-config", "--config", str(example))
    assert run.returncode == 0, run.stderr
    documented = (ROOT / "docs" / "configuration.md").read_text()
    keys = [line.split(":")[0] for line in run.stdout.splitlines() if not line.startswith("#")]
    assert len(keys) > 60
    for key in keys:
        assert f"`{key}`" in documented, f"{key} is not in docs/configuration.md"


def test_the_documented_reload_list_is_the_declared_one():
    """docs/configuration.md's reload section names exactly the keys the code marks reloadable (the
    example file's "(reload)"); `auth.*` there stands for every auth key."""
    import re
    generated = run_binary("--print-example-config")
    assert generated.returncode == 0, generated.stderr
    declared, section, last_comment = set(), "", ""
    for line in generated.stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            last_comment = stripped
            continue
        match = re.match(r"^(\s*)([a-z0-9_]+):", line)
        if not match:
            continue
        if not match.group(1) and line.rstrip().endswith(":") and not last_comment:
            section = match.group(2)
            continue
        name = f"{section}.{match.group(2)}" if match.group(1) else match.group(2)
        if not match.group(1):
            section = ""
        if last_comment.endswith("(reload)"):
            declared.add(name)
        last_comment = ""
    all_keys = {line.split(":")[0] for line in run_binary("check-config").stdout.splitlines() if not line.startswith("#")}
    documented = (ROOT / "docs" / "configuration.md").read_text()
    reload_section = documented.split("## Reload (SIGHUP)")[1].split("An invalid configuration")[0]
    named = set()
    for key in re.findall(r"`([a-z0-9_.*]+)`", reload_section):
        named |= {k for k in all_keys if k.startswith(key[:-1])} if key.endswith("*") else {key}
    assert len(declared) > 30
    assert named & all_keys == declared, (sorted(declared - named), sorted((named & all_keys) - declared))


def test_systemd_unit_and_nginx_snippet_are_well_formed():
    unit = (ROOT / "dist" / "webrtc-server.service").read_text()
    for line in ("ExecStart=/usr/local/bin/webrtc-server --config /etc/webrtc-server/webrtc-server.yaml",
                 "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM"):
        assert line in unit
    if subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode == 0:
        verify = subprocess.run(["systemd-analyze", "verify", str(ROOT / "dist" / "webrtc-server.service")],
                                capture_output=True, text=True)
        assert "Unknown key" not in verify.stderr and "Invalid" not in verify.stderr, verify.stderr
    nginx = (ROOT / "dist" / "nginx-webrtc-server.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx and "location /websocket/" in nginx
    assert re.search(r"location ~ \^/\(metrics\|dashboard\|api/stats\|api/v1/log_level\)", nginx)


def test_the_units_service_user_can_read_the_configuration_installed_as_documented():
    """dist/webrtc-server.service's install lines put the configuration (it holds secrets) at mode 0640
    with the service's group; a process with the unit's user rights must be able to read it. Reproduced
    with a real unprivileged process (uid nobody, a scratch gid standing for the group)."""
    import shutil
    import tempfile

    unit = (ROOT / "dist" / "webrtc-server.service").read_text()
    group = re.search(r"^Group=(\S+)$", unit, re.M).group(1)
    assert re.search(r"^User=\S+$", unit, re.M) and "DynamicUser=yes" not in unit
    assert f"install -m 640 -g {group} dist/webrtc-server.yaml /etc/webrtc-server/" in unit
    assert f"useradd --system --no-create-home --shell /usr/sbin/nologin {group}" in unit
    assert os.geteuid() == 0, "this test switches to an unprivileged user: run it as root (scripts/test.sh does)"
    nobody, gid = 65534, 4242
    directory = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        directory.chmod(0o755)
        binary = directory / "webrtc-server"
        shutil.copy(BINARY, binary)
        config = directory / "webrtc-server.yaml"
        shutil.copy(ROOT / "dist" / "webrtc-server.yaml", config)
        config.chmod(0o640)

        def check_config_as_service_user():
            def drop():
                os.setgroups([])
                os.setgid(gid)
                os.setuid(nobody)
            return subprocess.run([str(binary), "check-config", "--config", str(config)], capture_output=True,
                                  text=True, timeout=30, preexec_fn=drop,
                                  env={k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_SERVER_")})

        os.chown(config, 0, gid)  # install -g GROUP
        run = check_config_as_service_user()
        assert run.returncode == 0, run.stderr
        os.chown(config, 0, 0)  # what the old instructions did (root's group), for a user outside it
        refused = check_config_as_service_user()
        assert refused.returncode != 0 and "webrtc-server.yaml" in refused.stderr, refused
    finally:
        shutil.rmtree(directory)


def test_sighup_rereads_the_signaling_certificate(start_server, tmp_path):
    """wss: after SIGHUP new connections get the renewed certificate; an open WebSocket keeps working."""
    import ssl

    from test_turn_stream_interop import der, install, rotating_certificates, served_certificate, tls_connect

    (first_cert, _), second, cert, key = rotating_certificates(tmp_path)
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw", "--signaling.tls_cert", str(cert),
                                       "--signaling.tls_key", str(key)))
    assert served_certificate(tls_connect(s.signaling_port)) == der(first_cert)

    async def scenario():
        import websockets
        context = ssl.create_default_context(cafile=str(first_cert))
        context.check_hostname = False
        ws = await websockets.connect(f"wss://127.0.0.1:{s.signaling_port}/websocket/secure", ssl=context)
        await ws.send(json.dumps({"event": "authenticate", "data": {"username": "alice", "password": "pw"}}))
        assert json.loads(await ws.recv())["event"] == "authenticated"
        install(second, cert, key)
        s.proc.send_signal(signal.SIGHUP)
        wait_for_log(s, "reload: configuration applied")
        assert served_certificate(tls_connect(s.signaling_port)) == der(second[0])
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 10) == "pong"  # the connection from before the reload
        await ws.close()

    asyncio.run(scenario())


def test_turn_only_server_keeps_health_and_admin_endpoints(start_server, turn_peer):
    port = free_port()
    s = start_server(*turn_server_args(port, "--signaling.enabled", "false", "--auth.users", "alice=pw",
                                       "--turn.allow_peers", "127.0.0.1"), wait_for=("TURN relay", "admin listening"))
    client = TurnClient(port, "alice", "pw")
    try:
        allocated(client.allocate())
        assert client.create_permission("127.0.0.1")["type"] == 0x0108
        relay_round_trip(client, turn_peer)
    finally:
        client.close()
    values = scrape(s.signaling_port)
    assert metric(values, "webrtc_turn_relayed_packets_total", direction="to_peer", transport="udp") == 1
    assert metric(values, "webrtc_signaling_connections") == 0
    for path in ("/healthz", "/readyz", "/api/stats", "/dashboard"):
        assert http_request(s.signaling_port, "GET", path)[0] == 200, path
    welcome = json.loads(http_request(s.signaling_port, "GET", "/api/v1/welcome")[1])
    assert "signaling" not in welcome["features"] and "turn-udp" in welcome["features"]
    # No signaling: neither the WebSocket upgrade nor the server API nor the example page.
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    status, body = http_request(s.signaling_port, "GET", "/websocket/room1", headers=upgrade)
    assert status == 404 and "signaling.enabled" in body, (status, body)
    assert http_request(s.signaling_port, "GET", "/api/rooms/room1/peers",
                        headers={"Authorization": "Bearer x"})[0] == 404
    assert http_request(s.signaling_port, "GET", "/")[0] == 404


# ----------------------------------------------------------------------------- silent clients on TCP ports

def test_silent_connections_are_closed_on_every_tcp_port(start_server, tmp_path):
    """signaling.http_timeout and turn.stream_idle_timeout: a client that connects and then sends nothing,
    or stalls in the TLS handshake, is closed on every TCP port (by default after 30 s) instead of holding
    a descriptor of the server for ever."""
    cert, key = make_certificate(tmp_path)
    port, tls_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    s = start_server(*turn_server_args(port, "--turn.tls_port", str(tls_port), "--turn.tls_cert", str(cert),
                                       "--turn.tls_key", str(key), "--signaling.tls_cert", str(cert),
                                       "--signaling.tls_key", str(key), "--signaling.http_timeout", "1",
                                       "--turn.stream_idle_timeout", "1"))
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # whose certificate it is does not matter here
    clients = {name: socket.create_connection(("127.0.0.1", p), timeout=10) for name, p in
               [("wss port, no TLS handshake", s.signaling_port), ("TURN over TCP", port),
                ("TURN over TLS, no TLS handshake", tls_port)]}
    clients["wss port, handshake done, no request"] = unverified.wrap_socket(
        socket.create_connection(("127.0.0.1", s.signaling_port), timeout=10), server_hostname="127.0.0.1")
    clients["TURN over TLS, handshake done, no message"] = unverified.wrap_socket(
        socket.create_connection(("127.0.0.1", tls_port), timeout=10), server_hostname="127.0.0.1")

    for name, client in clients.items():
        try:
            data = client.recv(1)  # blocks until the server closes, or times out (10 s) and fails
        except (ssl.SSLEOFError, ConnectionResetError):
            data = b""
        assert data == b"", f"{name}: got {data!r}"
        client.close()
    values = scrape(s.signaling_port, tls=unverified)
    assert metric(values, "webrtc_signaling_http_timeouts_total") == 2
    assert metric(values, "webrtc_turn_idle_streams_closed_total") == 3
