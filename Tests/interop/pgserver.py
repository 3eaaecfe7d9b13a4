"""Debian's PostgreSQL server for tests and benchmarks: started on a unix socket in a folder of its own
(nothing listens on TCP), with an empty `coturn` database made from coturn's own schema.sql. Used by the
interop tests' `postgres` fixture and by bench/auth_bench.py."""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresMissing(Exception):
    pass


class Postgres:
    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not bins:
            raise PostgresMissing("PostgreSQL is not installed (Debian package 'postgresql')")
        schema = next((p for p in ("/usr/share/coturn/schema.sql", "/usr/share/doc/coturn/schema.sql") if os.path.exists(p)), None)
        if schema is None:
            raise PostgresMissing("coturn's schema.sql is missing (Debian package 'coturn')")
        psql = shutil.which("psql")
        if psql is None:
            raise PostgresMissing("psql is missing (Debian package 'postgresql-client')")
        bindir = Path(bins[-1]).parent
        # Not under a private temporary folder: as root the server runs as `postgres`, which must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="webrtc-pg-"))
        self.proc = None
        with socket.socket() as s:  # only names the socket file (.s.PGSQL.PORT)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        # PostgreSQL refuses to run as root: as root, it runs as Debian's `postgres` user.
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_user:
            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)
        self.dir.chmod(0o755)
        try:
            subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "turn"],
                           check=True, capture_output=True)
            self.proc = subprocess.Popen([*as_user, str(bindir / "postgres"), "-D", str(self.dir / "data"), "-k", str(self.dir),
                                          "-c", "listen_addresses=", "-p", str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            ready = str(bindir / "pg_isready") if (bindir / "pg_isready").exists() else "pg_isready"
            deadline = time.monotonic() + 30
            # pg_isready is the event: it succeeds once the server accepts connections.
            while subprocess.run([ready, "-q", "-h", str(self.dir), "-p", str(self.port)]).returncode != 0:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.proc.stderr.read() if self.proc.poll() is not None else 'timeout'}")
                time.sleep(0.1)
            self.psql = [psql, "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.dir), "-p", str(self.port), "-U", "turn"]
            subprocess.run([*self.psql, "-d", "postgres", "-c", "CREATE DATABASE coturn"], check=True, capture_output=True)
            subprocess.run([*self.psql, "-d", "coturn", "-f", schema], check=True, capture_output=True)
        except BaseException:
            self.stop()
            raise
        # For turnadmin -e, and for the server's auth.postgresql.
        self.conninfo = f"host={self.dir} port={self.port} dbname=coturn user=turn"
        self.url = f"postgresql://turn@localhost:{self.port}/coturn?host={self.dir}"

    def sql(self, text: str):
        subprocess.run([*self.psql, "-d", "coturn", "-c", text], check=True, capture_output=True)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
