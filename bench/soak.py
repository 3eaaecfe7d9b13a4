#!/usr/bin/env python3
"""Soak benchmark: TURN allocations relaying at a paced rate (turnutils_uclient) and signaling connections
exchanging directed messages (bench/signaling-load) against one webrtc-server for a long time; then the
same TURN load against coturn's turnserver for the relay-loss comparison. Loopback only; every load is
bounded in count and time.

Prints: the server's RSS over time (start = once everything is connected, end = before the loads stop),
lost signaling messages, TURN relay loss for both servers, and the server's CPU.

Usage: bench/soak.py [--minutes 30] [--allocations 500] [--interval-ms 100] [--connections 2000] [--rate 1000]
Needs: coturn (Debian), release builds of webrtc-server and signaling-load (bash: swift build -c release).
"""
import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from turn_bench import (CERT, KEY, PASSWORD, REALM, ROOT, USER, cpu_seconds, free_port, start_coturn,  # noqa: E402
                        uclient_totals, wait_for_stun, wait_for_tcp)


def rss_kib(pid):
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) if m else 0


def uclient(port, peer_port, allocations, interval_ms, messages):
    """500 clients (allocations) sending `messages` each, one every `interval_ms`, to an echo peer.
    Its output (a progress line per second) goes to a file: a pipe nobody reads until the end fills
    after ~9 minutes and then blocks uclient in write(2) — it stops sending and receiving."""
    out = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(["turnutils_uclient", "-m", str(allocations), "-n", str(messages), "-l", "120",
                             "-z", str(interval_ms), "-c", "-u", USER, "-w", PASSWORD, "-e", "127.0.0.1",
                             "-r", str(peer_port), "-p", str(port), "127.0.0.1"],
                            stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.output_file = out
    return proc


def uclient_result(proc, timeout):
    proc.wait(timeout=timeout)
    proc.output_file.seek(0)
    out = proc.output_file.read()
    proc.output_file.close()
    return uclient_totals(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--allocations", type=int, default=500)
    ap.add_argument("--interval-ms", type=int, default=100, help="per allocation, between two relayed messages")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=1000, help="signaling messages per second, in total")
    ap.add_argument("--binary", default=str(ROOT / ".build" / "release" / "webrtc-server"))
    ap.add_argument("--skip-coturn", action="store_true")
    ap.add_argument("--server-log", help="write the server's log (at --log-level) to this file")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args()
    seconds = int(args.minutes * 60)
    messages = max(1, seconds * 1000 // args.interval_ms)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(KEY), "-out", str(CERT)], check=True, capture_output=True)
    peer_port = free_port()
    peer = subprocess.Popen(["turnutils_peer", "-L", "127.0.0.1", "-p", str(peer_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} soak: {args.minutes} min, {args.allocations} allocations x 1 message/"
          f"{args.interval_ms} ms (echoed), {args.connections} signaling connections, {args.rate} messages/s", flush=True)
    try:
        port, signaling_port = free_port(), free_port()
        log = open(args.server_log, "w") if args.server_log else subprocess.DEVNULL
        # All uclient clients come from 127.0.0.1: the per-source limit on unauthenticated requests is for
        # many sources, so it is off here (500 first Allocates in one burst from one address).
        server = subprocess.Popen([
            args.binary, "--turn.listen", "127.0.0.1", "--turn.port", str(port), "--turn.relay_port_min", "50000",
            "--turn.relay_port_max", "59999", "--auth.users", f"{USER}={PASSWORD},soak=soak", "--realm", REALM,
            "--signaling.listen", "127.0.0.1", "--signaling.port", str(signaling_port), "--turn.allow_peers", "127.0.0.1",
            "--turn.unauthenticated_rate", "0", "--log_level", args.log_level, "--shutdown.grace_period", "0"],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for_stun(port)
        wait_for_tcp(signaling_port)
        rss_idle = rss_kib(server.pid)
        cpu0 = sum(cpu_seconds(server.pid))  # user + system
        turn = uclient(port, peer_port, args.allocations, args.interval_ms, messages)
        signaling = subprocess.Popen([
            str(ROOT / ".build" / "release" / "signaling-load"), "--port", str(signaling_port), "--connections",
            str(args.connections), "--room-size", "10", "--rate", str(args.rate), "--duration", str(seconds),
            "--user", "soak", "--password", "soak", "--server-pid", str(server.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        samples = []
        started = time.monotonic()

        def turn_counters():
            """The TURN counters from /api/stats (loopback is an admin address by default)."""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{signaling_port}/api/stats", timeout=5) as r:
                    c = json.load(r)["turn"]["counters"]
                return (c["packets_to_peer"], c["packets_to_client"], c["unroutable_dropped"], c["malformed_dropped"])
            except OSError:
                return None

        def sample():
            while signaling.poll() is None and turn.poll() is None:
                samples.append((time.monotonic() - started, rss_kib(server.pid), turn_counters()))
                time.sleep(min(60, max(5, seconds / 30)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sig_out, _ = signaling.communicate(timeout=seconds + 600)
        turn_result = uclient_result(turn, timeout=seconds + 600)
        cpu = sum(cpu_seconds(server.pid)) - cpu0
        rss_end = rss_kib(server.pid)
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        print(f"webrtc-server RSS: idle {rss_idle} KiB; over time (s, KiB): "
              + ", ".join(f"{t:.0f}:{r}" for t, r, _ in samples) + f"; after the loads {rss_end} KiB")
        print("webrtc-server TURN counters over time (s: to peer, to client, unroutable, malformed): "
              + ", ".join(f"{t:.0f}: {c}" for t, _, c in samples))
        warm = [r for t, r, _ in samples if t >= min(120, seconds / 4)]
        if len(warm) >= 2:
            print(f"webrtc-server RSS from {min(120, seconds / 4):.0f} s to the end: {warm[0]} -> {warm[-1]} KiB "
                  f"({(warm[-1] - warm[0]) / 1024:+.1f} MiB)")
        for line in sig_out.splitlines():
            if re.match(r"(connected|sent|latency|delivered/s|server RSS)", line):
                print("signaling-load:", line)
        print(f"webrtc-server TURN: sent {turn_result['sent']}, received {turn_result['received']}, "
              f"lost {turn_result['lost']} ({turn_result['lost_pct']:.3f}%); server CPU {cpu:.0f} s over {seconds} s")
        if not args.skip_coturn:
            cport, ctls = free_port(), free_port()
            coturn = start_coturn(cport, ctls)
            try:
                wait_for_stun(cport)
                c0 = sum(cpu_seconds(coturn.pid))
                result = uclient_result(uclient(cport, peer_port, args.allocations, args.interval_ms, messages),
                                        timeout=seconds + 600)
                ccpu = sum(cpu_seconds(coturn.pid)) - c0
                print(f"coturn TURN (same load, no signaling): sent {result['sent']}, received {result['received']}, "
                      f"lost {result['lost']} ({result['lost_pct']:.3f}%); CPU {ccpu:.0f} s; "
                      f"RSS at end {rss_kib(coturn.pid)} KiB")
            finally:
                coturn.send_signal(signal.SIGTERM)
                coturn.wait(10)
    finally:
        peer.terminate()
        peer.wait(5)


if __name__ == "__main__":
    sys.exit(main())
