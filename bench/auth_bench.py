#!/usr/bin/env python3
"""What the ways of logging in cost (issue 25). Prints figures for BENCHMARKS.md; not a test.

1. Signaling connect rate: bench/signaling-load opens N WebSocket connections one after the other (rooms
   of 10) and logs each in, against one server per login kind, interleaved `--repeat` times:
   - password: a static user (auth.users);
   - hs256: a join token (auth.jwt_keys), one per room, minted here beforehand (the app backend's work);
   - sqlite-cold: N distinct users from a coturn SQLite database, each asked of the database once;
   - sqlite-cached: the same N users again on the same server, all answered from the lookup cache.
   Target: hs256 >= 90 % of the password rate.
2. TURN Allocate cost: M allocations (Allocate with its 401 challenge, then Refresh 0), one client after
   the other, server CPU (utime+stime from /proc) per allocation: a static user, then SQLite and
   PostgreSQL lookups cold (M distinct users, each looked up once) and cached (the same users again).
   Target: a cached database lookup adds < 5 % to the static user's CPU per allocation.

Needs Debian's coturn (turnadmin writes the SQLite schema and the PostgreSQL schema file) and postgresql.
Usage: python3 bench/auth_bench.py [--connections 10000] [--allocations 3000] [--repeat 3]
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "interop"))
from pgserver import Postgres  # noqa: E402
from stun import TurnClient  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
REALM, PASSWORD = "bench.realm", "bench-password"
HS256_KEY = "auth-bench-hs256-key-of-at-least-32-bytes"
SERVER = ROOT / ".build" / "release" / "webrtc-server"
LOAD = ROOT / ".build" / "release" / "signaling-load"


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict) -> str:
    """An HS256 JWT (RFC 7519) with the standard library: what an app backend would mint."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(HS256_KEY.encode(), head.encode(), hashlib.sha256).digest())


def long_term_key(user: str) -> str:
    return hashlib.md5(f"{user}:{REALM}:{PASSWORD}".encode()).hexdigest()


def sqlite_users(path: Path, prefix: str, count: int):
    """A coturn SQLite user database: the schema from turnadmin itself, then `count` users inserted
    directly (turnadmin takes ~10 ms a user) with the same hmackey turnadmin writes."""
    subprocess.run(["turnadmin", "-a", "-b", str(path), "-u", "seed", "-r", REALM, "-p", PASSWORD], check=True,
                   capture_output=True)
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO turnusers_lt (realm, name, hmackey) VALUES (?, ?, ?)",
                       [(REALM, f"{prefix}{i}", long_term_key(f"{prefix}{i}")) for i in range(count)])


def postgres_users(pg: Postgres, prefix: str, count: int):
    subprocess.run(["turnadmin", "-a", "-e", pg.conninfo, "-u", "seed", "-r", REALM, "-p", PASSWORD], check=True,
                   capture_output=True)
    pg.sql(f"INSERT INTO turnusers_lt (realm, name, hmackey) SELECT '{REALM}', '{prefix}' || i, "
           f"md5('{prefix}' || i || ':{REALM}:{PASSWORD}') FROM generate_series(0, {count - 1}) AS i")


class Server:
    def __init__(self, *args: str):
        self.turn_port, self.signaling_port = free_port(), free_port(socket.SOCK_STREAM)
        self.proc = subprocess.Popen([str(SERVER), "--turn.listen", "127.0.0.1", "--turn.port", str(self.turn_port),
                                      "--signaling.listen", "127.0.0.1", "--signaling.port", str(self.signaling_port),
                                      "--realm", REALM, "--log_level", "warning", "--auth.lookup_cache_ttl", "3600",
                                      "--auth.throttle_free_failures", "0", "--auth.block_after", "0", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.signaling_port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {self.proc.stderr.read() if self.proc.poll() is not None else ''}")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def connect_rate(server: Server, connections: int, *login: str) -> float:
    out = subprocess.run([str(LOAD), "--port", str(server.signaling_port), "--connections", str(connections),
                          "--room-size", "10", "--rate", "0", *login], capture_output=True, text=True, timeout=600)
    m = re.search(r"connected and authenticated: (\d+) of (\d+) in ([\d.]+) s", out.stdout)
    rate = re.search(r"connect rate: (\d+) logins/s", out.stdout)
    if not m or not rate or m.group(1) != m.group(2):
        raise RuntimeError(f"signaling-load failed:\n{out.stdout}\n{out.stderr}")
    return float(rate.group(1))


def allocations(server: Server, users: list[str], password: str) -> float:
    """Server CPU microseconds per allocation (Allocate with its challenge, then Refresh 0)."""
    before = cpu_seconds(server.proc.pid)
    for user in users:
        c = TurnClient(server.turn_port, user, password)
        try:
            answer = c.allocate()
            if answer["type"] != 0x0103:
                raise RuntimeError(f"allocation for {user} failed: {answer}")
            c.refresh(0)
        finally:
            c.close()
    return 1e6 * (cpu_seconds(server.proc.pid) - before) / len(users)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--allocations", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    if not args.skip_build:
        for product in ("webrtc-server", "signaling-load"):
            subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT, check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    n, m = args.connections, args.allocations

    # 1. Signaling connect rate.
    tokens = work / "tokens.txt"
    tokens.write_text("\n".join(hs256({"sub": f"bench{r}", "room": f"load-{r}", "exp": int(time.time()) + 86400})
                                for r in range((n + 9) // 10)) + "\n")
    rates: dict[str, list[float]] = {k: [] for k in ("password", "hs256", "sqlite-cold", "sqlite-cached")}
    for run in range(args.repeat):
        s = Server("--auth.users", f"bench={PASSWORD}")
        rates["password"].append(connect_rate(s, n, "--user", "bench", "--password", PASSWORD))
        s.stop()
        s = Server("--auth.jwt_keys", f"k1={HS256_KEY}")
        rates["hs256"].append(connect_rate(s, n, "--tokens", str(tokens)))
        s.stop()
        db = work / f"users-{run}.sqlite"
        sqlite_users(db, "user", n)
        s = Server("--auth.sqlite", str(db))
        rates["sqlite-cold"].append(connect_rate(s, n, "--user", "user", "--distinct-users", "--password", PASSWORD))
        rates["sqlite-cached"].append(connect_rate(s, n, "--user", "user", "--distinct-users", "--password", PASSWORD))
        s.stop()
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"== signaling connect rate, {n} connections one after the other, median of {args.repeat}:")
    for k, v in med.items():
        print(f"  {k:14s} {v:8.0f} logins/s  ({v / med['password']:.2f}x password)  runs: {', '.join(f'{x:.0f}' for x in rates[k])}")

    # 2. TURN Allocate cost.
    pg = Postgres()
    try:
        postgres_users(pg, "user", m)
        costs: dict[str, list[float]] = {k: [] for k in ("static", "sqlite-cold", "sqlite-cached", "postgresql-cold",
                                                         "postgresql-cached")}
        users = [f"user{i}" for i in range(m)]
        for run in range(args.repeat):
            s = Server("--auth.users", ",".join(f"{u}={PASSWORD}" for u in users[:200]))
            costs["static"].append(allocations(s, [users[i % 200] for i in range(m)], PASSWORD))
            s.stop()
            db = work / f"turn-{run}.sqlite"
            sqlite_users(db, "user", m)
            s = Server("--auth.sqlite", str(db))
            costs["sqlite-cold"].append(allocations(s, users, PASSWORD))
            costs["sqlite-cached"].append(allocations(s, users, PASSWORD))
            s.stop()
            s = Server("--auth.postgresql", pg.url)
            costs["postgresql-cold"].append(allocations(s, users, PASSWORD))
            costs["postgresql-cached"].append(allocations(s, users, PASSWORD))
            s.stop()
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.0f} µs" for k, v in costs.items()), flush=True)
    finally:
        pg.stop()
    med = {k: statistics.median(v) for k, v in costs.items()}
    print(f"== TURN Allocate, server CPU per allocation (Allocate + challenge + Refresh 0), {m} a run, median of {args.repeat}:")
    for k, v in med.items():
        print(f"  {k:18s} {v:7.1f} µs  ({v / med['static']:.3f}x static)  runs: {', '.join(f'{x:.1f}' for x in costs[k])}")


if __name__ == "__main__":
    main()
