#!/usr/bin/env python3
"""TURN relay benchmark: coturn's turnserver and webrtc-server under the same turnutils_uclient load,
one after the other in the same run, on loopback only.

For each server and load it prints: server CPU seconds per 1000 relayed packets (utime+stime from
/proc/PID/stat), lost packets % (as turnutils_uclient reports it), and peak RSS (VmHWM).
Relayed packets = messages the clients sent to the peer + messages they got back (each crosses the relay).

With --floor it also runs coturn behind bench/nio-udp-floor (clients -> forwarder -> coturn), a bare UDP
forwarder that carries per round trip what a TURN relay carries (two datagrams read, two written) and does
nothing else: on SwiftNIO channels, on NIO channels for reading with plain sendmmsg for writing
(--raw-writes), and on plain sockets (--raw). Their CPU per relayed packet, next
to coturn's in the same run, is the least a relay whose data path runs through NIO channels can cost, and
the least one beside them can (UDP loads only).

With --syscalls it also counts each server's syscalls during the load (perf tracepoints, `perf stat -p`)
and prints them per relayed packet: what each server asks of the kernel, next to what it costs.

Usage: bench/turn_bench.py [--repeat N] [--loads flood,paced,tcp,tls] [--binary PATH] [--ours-args "--turn.threads 1"]
                           [--messages N] [--syscalls] [--floor]
Needs: coturn (Debian package: turnserver and turnutils_*), a release build of webrtc-server (and of nio-udp-floor for --floor); perf (Debian
linux-perf) with tracepoints for --syscalls.
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
USER, PASSWORD, REALM = "bench", "bench-password", "bench.realm"
LOADS = {
    "flood": ["-m", "20", "-n", "20000", "-l", "120", "-z", "0", "-c"],
    "paced": ["-m", "20", "-n", "20000", "-l", "120", "-z", "2", "-c"],
    # The flood load over TCP and over TLS (client to server; the relay to the peer is UDP as always).
    "tcp": ["-t", "-m", "20", "-n", "20000", "-l", "120", "-z", "0", "-c"],
    "tls": ["-t", "-S", "-m", "20", "-n", "20000", "-l", "120", "-z", "0", "-c"],
}
# The syscalls a UDP relay spends its kernel time in (both servers' read and send families).
SYSCALLS = ["epoll_wait", "recvmmsg", "recvmsg", "recvfrom", "read", "sendmmsg", "sendmsg", "sendto", "write", "writev"]
CERT_DIR = Path(tempfile.mkdtemp(prefix="turn-bench-"))
CERT, KEY = CERT_DIR / "cert.pem", CERT_DIR / "key.pem"


_handed_out: set[int] = set()


def free_port() -> int:
    """A free UDP port on 127.0.0.1, never one handed out before in this run (the kernel may offer a
    just-closed port again, and a server's two listener ports must differ)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def peak_rss_kib(pid: int) -> int:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) if m else 0


def wait_for_stun(port: int, timeout: float = 20.0):
    """Ready when a Binding request is answered (no sleeping on a guess)."""
    deadline = time.monotonic() + timeout
    req = bytes.fromhex("000100002112a442") + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(req, ("127.0.0.1", port))
            try:
                s.recvfrom(1500)
                return
            except socket.timeout:
                pass
    raise RuntimeError(f"no STUN answer on port {port}")


def wait_for_tcp(port: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing accepts TCP on port {port}")


def start_coturn(port: int, tls_port: int) -> subprocess.Popen:
    return subprocess.Popen([
        "turnserver", "-n", "--listening-ip", "127.0.0.1", "--listening-port", str(port), "--relay-ip", "127.0.0.1",
        "--tls-listening-port", str(tls_port), "--cert", str(CERT), "--pkey", str(KEY),
        "--min-port", "50000", "--max-port", "59999", "--lt-cred-mech", "--user", f"{USER}:{PASSWORD}",
        "--realm", REALM, "--allow-loopback-peers", "--no-dtls", "--no-cli", "--no-stdout-log",
        "--log-file", "/dev/null", "--simple-log", "--no-software-attribute"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_ours(binary: str, port: int, tls_port: int, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([
        binary, "--turn.listen", "127.0.0.1", "--turn.port", str(port), "--turn.relay_port_min", "50000",
        "--turn.relay_port_max", "59999", "--auth.users", f"{USER}={PASSWORD}", "--realm", REALM,
        "--turn.tls_port", str(tls_port), "--turn.tls_cert", str(CERT), "--turn.tls_key", str(KEY),
        "--signaling.enabled", "false", "--turn.allow_peers", "127.0.0.1", "--log_level", "warning", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_load(server_port: int, peer_port: int, load: list[str]) -> dict:
    out = subprocess.run(["turnutils_uclient", *load, "-u", USER, "-w", PASSWORD, "-e", "127.0.0.1",
                          "-r", str(peer_port), "-p", str(server_port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=600).stdout
    return uclient_totals(out)


def uclient_totals(out: str) -> dict:
    """sent, received, lost and lost % from the end of turnutils_uclient's output."""
    totals = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", out, re.M)
    lost = re.findall(r"Total lost packets (\d+) \(([\d.]+)%\)", out)
    if not totals or not lost:
        raise RuntimeError("uclient did not finish:\n" + out[-2000:])
    sent, received = map(int, totals[-1])
    return {"sent": sent, "received": received, "lost": int(lost[-1][0]), "lost_pct": float(lost[-1][1])}


def start_syscall_count(pid: int, out: Path) -> subprocess.Popen:
    events = ",".join(["task-clock"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS])
    return subprocess.Popen(["perf", "stat", "-x", ",", "-e", events, "-p", str(pid), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_syscall_count(perf: subprocess.Popen, out: Path) -> dict:
    """{syscall: count} and task-clock in ms, from `perf stat -x ,` (value first, event name third)."""
    perf.send_signal(signal.SIGINT)
    perf.wait(10)
    counts = {}
    for line in out.read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 3 or line.startswith("#"):
            continue
        name = fields[2].removeprefix("syscalls:sys_enter_")
        try:
            counts[name] = float(fields[0])
        except ValueError:
            raise RuntimeError(f"perf could not count {fields[2]} (tracepoints available?): {line}")
    return counts


def measure(name: str, start, load: list[str], peer_port: int, syscalls: bool = False) -> dict:
    port, tls_port = free_port(), free_port()
    proc = start(port, tls_port)
    try:
        wait_for_stun(port)
        wait_for_tcp(port)
        wait_for_tcp(tls_port)
        perf_out = CERT_DIR / f"perf-{name}.txt"
        perf = start_syscall_count(proc.pid, perf_out) if syscalls else None
        before = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        result = run_load(tls_port if "-S" in load else port, peer_port, load)
        result["wall"] = time.monotonic() - t0
        after = cpu_seconds(proc.pid)
        result["user"], result["sys"] = after[0] - before[0], after[1] - before[1]
        result["cpu"] = result["user"] + result["sys"]
        if perf:
            result["syscalls"] = stop_syscall_count(perf, perf_out)
        result["rss_kib"] = peak_rss_kib(proc.pid)
    finally:
        stop(proc)
    result["cpu_per_1000"] = per_1000_relayed(result["cpu"], result)
    result["name"] = name
    return result


def stop(proc: subprocess.Popen):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def per_1000_relayed(cpu: float, load_result: dict) -> float:
    relayed = load_result["sent"] + load_result["received"]
    return cpu / relayed * 1000 if relayed else float("nan")


# The floor forwarder's modes: row name -> its flags (NIO channels; NIO reads with plain sendmmsg writes; plain sockets).
FLOORS = {"nio-udp-floor": [], "nio-raw-writes": ["--raw-writes"], "nio-drain": ["--drain"], "raw-udp-floor": ["--raw"]}


def measure_floor(floor_binary: str, name: str, load: list[str], peer_port: int) -> tuple[dict, dict]:
    """coturn behind a floor forwarder in one of its FLOORS modes: the load goes to the forwarder, which
    forwards to coturn. Returns the forwarder's figures and coturn's, over the same load."""
    port, tls_port, floor_port = free_port(), free_port(), free_port()
    coturn = start_coturn(port, tls_port)
    floor = subprocess.Popen([floor_binary, "--port", str(floor_port), "--upstream-port", str(port), *FLOORS[name]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_stun(port)
        wait_for_stun(floor_port)  # a Binding answered through the forwarder: both are up and connected
        before = {p.pid: cpu_seconds(p.pid) for p in (floor, coturn)}
        t0 = time.monotonic()
        load_result = run_load(floor_port, peer_port, load)
        wall = time.monotonic() - t0
        results = []
        for label, proc in ((name, floor), ("coturn-behind", coturn)):
            after = cpu_seconds(proc.pid)
            r = dict(load_result, name=label, wall=wall, user=after[0] - before[proc.pid][0],
                     sys=after[1] - before[proc.pid][1], rss_kib=peak_rss_kib(proc.pid))
            r["cpu"] = r["user"] + r["sys"]
            r["cpu_per_1000"] = per_1000_relayed(r["cpu"], r)
            results.append(r)
    finally:
        stop(floor)
        stop(coturn)
    return results[0], results[1]


def print_syscalls(load_name: str, name: str, r: dict):
    relayed = r["sent"] + r["received"]
    counts = {k: int(v) for k, v in r["syscalls"].items() if k != "task-clock" and v}
    total = sum(counts.values())
    listed = " ".join(f"{k}={v}" for k, v in counts.items())
    print(f"{load_name:6} {name:14} syscalls: {listed}; {total / relayed:.2f} per relayed packet; "
          f"task-clock {r['syscalls'].get('task-clock', 0):.0f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--loads", default="flood,paced")
    ap.add_argument("--binary", default=str(ROOT / ".build" / "release" / "webrtc-server"))
    ap.add_argument("--ours-args", default="", help="extra flags for webrtc-server, e.g. '--turn.threads 1'")
    ap.add_argument("--messages", type=int, help="messages per client (uclient -n) instead of each load's 20000")
    ap.add_argument("--syscalls", action="store_true", help="also count each server's syscalls (perf tracepoints)")
    ap.add_argument("--floor", action="store_true",
                    help="also run coturn behind bench/nio-udp-floor, a bare UDP forwarder on NIO channels and on plain sockets (UDP loads)")
    ap.add_argument("--floor-binary", default=str(ROOT / ".build" / "release" / "nio-udp-floor"))
    args = ap.parse_args()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(KEY), "-out", str(CERT)], check=True, capture_output=True)
    if args.messages:
        for load in LOADS.values():
            load[load.index("-n") + 1] = str(args.messages)
    peer_port = free_port()
    peer = subprocess.Popen(["turnutils_peer", "-L", "127.0.0.1", "-p", str(peer_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} nproc={os.cpu_count()} repeat={args.repeat}")
    print(f"{'load':6} {'server':14} {'cpu_s/1k_pkts':>13} {'lost%':>7} {'peakRSS_MiB':>11} {'cpu_s':>6} {'user_s':>6} {'sys_s':>6} {'wall_s':>6} {'relayed':>8}")
    try:
        for load_name in args.loads.split(","):
            floor = args.floor and "-t" not in LOADS[load_name]
            rows = {"coturn": [], "webrtc-server": []}
            if floor:
                rows |= {name: [] for name in FLOORS} | {"coturn-behind": []}
            for _ in range(args.repeat):
                rows["coturn"].append(measure("coturn", start_coturn, LOADS[load_name], peer_port, args.syscalls))
                rows["webrtc-server"].append(measure(
                    "webrtc-server", lambda p, t: start_ours(args.binary, p, t, args.ours_args.split()), LOADS[load_name], peer_port, args.syscalls))
                if floor:
                    for name in FLOORS:
                        forwarder, behind = measure_floor(args.floor_binary, name, LOADS[load_name], peer_port)
                        rows[name].append(forwarder)
                        rows["coturn-behind"].append(behind)
            summary = {}
            for name, results in rows.items():
                for r in results:
                    print(f"{load_name:6} {name:14} {r['cpu_per_1000']:13.4f} {r['lost_pct']:7.3f} "
                          f"{r['rss_kib'] / 1024:11.1f} {r['cpu']:6.2f} {r['user']:6.2f} {r['sys']:6.2f} {r['wall']:6.1f} {r['sent'] + r['received']:8}")
                    if "syscalls" in r:
                        print_syscalls(load_name, name, r)
                summary[name] = statistics.median(r["cpu_per_1000"] for r in results)
            ratio = summary["webrtc-server"] / summary["coturn"] if summary["coturn"] else float("nan")
            print(f"{load_name:6} ratio (ours/coturn, median CPU per relayed packet): {ratio:.2f}")
            if floor:
                for name in FLOORS:
                    print(f"{load_name:6} ratio ({name}/coturn, median CPU per relayed packet): "
                          f"{summary[name] / summary['coturn']:.2f}")
    finally:
        peer.terminate()
        peer.wait(5)


if __name__ == "__main__":
    sys.exit(main())
