#!/usr/bin/env python3
"""What the ways of logging in cost (issue 25). Prints figures for BENCHMARKS.md; not a test.

1. Signaling connect rate: bench/signaling-load opens N WebSocket connections one after the other (rooms
   of 10) and logs each in; one server accepts every kind, which take turns in each of `--rounds` rounds:
   - password: static users (auth.users), one per connection;
   - hs256: a join token (auth.jwt_keys) per connection, minted here beforehand (the app backend's work);
   - sqlite-cold: N users from a coturn SQLite database not asked before (new ones each round);
   - sqlite-cached: the same N users again on the same server, all answered from the lookup cache.
   Target: hs256 >= 90 % of the password rate.
2. TURN Allocate cost: M allocations (Allocate with its 401 challenge, then Refresh 0), one client after
   the other, server CPU (utime+stime from /proc) per allocation, on a server with static users and a
   database (SQLite, then PostgreSQL); each round: new database users (cold: each looked up once), then
   static users and the same database users again (cached) in alternating blocks.
   Target: a cached database lookup adds < 5 % to the static users' CPU per allocation.
Each server first takes one unmeasured pass of each kind: a fresh process is slower at first. Ratios
are taken within a round and their median printed: the machine's speed drifts between rounds.

Needs Debian's coturn (turnadmin writes the SQLite schema and the PostgreSQL schema file) and postgresql.
Usage: python3 bench/auth_bench.py [--connections 10000] [--allocations 5000] [--rounds 3]
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


def sqlite_users(path: Path, prefix: str, count: int, schema: bool = True):
    """A coturn SQLite user database: the schema from turnadmin itself, then `count` users inserted
    directly (turnadmin takes ~10 ms a user) with the same hmackey turnadmin writes."""
    if schema:
        subprocess.run(["turnadmin", "-a", "-b", str(path), "-u", "seed", "-r", REALM, "-p", PASSWORD], check=True,
                       capture_output=True)
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO turnusers_lt (realm, name, hmackey) VALUES (?, ?, ?)",
                       [(REALM, f"{prefix}{i}", long_term_key(f"{prefix}{i}")) for i in range(count)])


def postgres_users(pg: Postgres, prefix: str, count: int, schema: bool = True):
    """The same in PostgreSQL (turnadmin -e writes the first user, SQL the others)."""
    if schema:
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
                                      "--auth.throttle_free_failures", "0", "--auth.block_after", "0",
                                      "--turn.unauthenticated_rate", "0", *args],
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


def ratio_table(title: str, unit: str, figures: dict[str, list[float]], base: str):
    """Per round, each kind against the base kind of the same round; the median of those ratios."""
    print(title)
    for kind, values in figures.items():
        ratios = [v / b for v, b in zip(values, figures[base])]
        print(f"  {kind:18s} median {statistics.median(values):8.1f} {unit}  {statistics.median(ratios):.3f}x {base}"
              f"  (rounds: {', '.join(f'{v:.0f}' for v in values)}; ratios {', '.join(f'{r:.2f}' for r in ratios)})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--allocations", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["signaling", "turn"], help="run one of the two parts")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    if not args.skip_build:
        for product in ("webrtc-server", "signaling-load"):
            subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT, check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    n, m, rounds = args.connections, args.allocations, args.rounds

    if args.only != "turn":
        signaling_part(work, n, rounds)
    if args.only != "signaling":
        turn_part(work, m, rounds)


def signaling_part(work: Path, n: int, rounds: int):
    # 1. Signaling connect rate: one server knows every kind of login (static users user*, join tokens, and
    # database users db<round>-*); the kinds take turns in each round, so drift and noise hit them alike.
    tokens = work / "tokens.txt"
    tokens.write_text("\n".join(hs256({"sub": f"token{i}", "room": f"load-{i // 10}", "exp": int(time.time()) + 86400})
                                for i in range(n)) + "\n")
    config = work / "users.yaml"
    config.write_text("auth:\n  users:\n" + "".join(f'    user{i}: "{PASSWORD}"\n' for i in range(n)))
    db = work / "signaling.sqlite"
    sqlite_users(db, "db0-", n)
    for r in range(1, rounds + 1):
        sqlite_users(db, f"db{r}-", n, schema=False)
    s = Server("--config", str(config), "--auth.jwt_keys", f"k1={HS256_KEY}", "--auth.sqlite", str(db))
    try:
        def users(prefix):
            return ["--user", prefix, "--distinct-users", "--password", PASSWORD]
        # One unmeasured pass of each kind first: a fresh process is slower at first.
        for login in (users("user"), ["--tokens", str(tokens)], users("db0-")):
            connect_rate(s, n, *login)
        rates: dict[str, list[float]] = {k: [] for k in ("password", "hs256", "sqlite-cold", "sqlite-cached")}
        for r in range(1, rounds + 1):
            rates["password"].append(connect_rate(s, n, *users("user")))
            rates["hs256"].append(connect_rate(s, n, "--tokens", str(tokens)))
            rates["sqlite-cold"].append(connect_rate(s, n, *users(f"db{r}-")))
            rates["sqlite-cached"].append(connect_rate(s, n, *users(f"db{r}-")))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()), flush=True)
    finally:
        s.stop()
    ratio_table(f"== signaling connect rate, logins/s, {n} connections one after the other a pass, {rounds} rounds:",
                "/s", rates, "password")



def turn_part(work: Path, m: int, rounds: int):
    # 2. TURN Allocate cost: a server with static users and a database (SQLite, then PostgreSQL); each
    # round allocates for new database users (cold), then for static users and those database users again
    # (cached), in alternating blocks.
    pg = Postgres()
    try:
        turn_config = work / "turn-users.yaml"
        turn_config.write_text("auth:\n  users:\n" + "".join(f'    user{i}: "{PASSWORD}"\n' for i in range(m)))
        static = [f"user{i}" for i in range(m)]
        turn_db = work / "turn.sqlite"
        sqlite_users(turn_db, "db0-", m)
        postgres_users(pg, "db0-", m)
        for r in range(1, rounds + 1):
            sqlite_users(turn_db, f"db{r}-", m, schema=False)
            postgres_users(pg, f"db{r}-", m, schema=False)
        for kind, setting in (("sqlite", ("--auth.sqlite", str(turn_db))), ("postgresql", ("--auth.postgresql", pg.url))):
            costs: dict[str, list[float]] = {f"{kind}-static": [], f"{kind}-cold": [], f"{kind}-cached": []}
            s = Server("--config", str(turn_config), *setting)
            try:
                allocations(s, static, PASSWORD)
                allocations(s, [f"db0-{i}" for i in range(m)], PASSWORD)
                for r in range(1, rounds + 1):
                    fresh = [f"db{r}-{i}" for i in range(m)]
                    costs[f"{kind}-cold"].append(allocations(s, fresh, PASSWORD))
                    # Static and cached in alternating blocks of a tenth, summed: CPU time is read in 10 ms
                    # ticks, and the machine's speed drifts within a round too.
                    totals = {"static": 0.0, "cached": 0.0}
                    per = max(1, m // 10)
                    for b in range(0, m, per):
                        totals["static"] += allocations(s, static[b:b + per], PASSWORD) * len(static[b:b + per])
                        totals["cached"] += allocations(s, fresh[b:b + per], PASSWORD) * len(fresh[b:b + per])
                    costs[f"{kind}-static"].append(totals["static"] / m)
                    costs[f"{kind}-cached"].append(totals["cached"] / m)
                    print(f"{kind} round {r}: " + ", ".join(f"{k} {v[-1]:.0f} µs" for k, v in costs.items()), flush=True)
            finally:
                s.stop()
            ratio_table(f"== TURN Allocate with {kind}, server CPU µs per allocation (Allocate, its challenge, Refresh 0), "
                        f"{m} a pass, {rounds} rounds:", "µs", costs, f"{kind}-static")
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
