"""A throwaway PostgreSQL on 127.0.0.1 for DuckLake catalogs in tests and benchmarks (Debian's
``postgresql`` package; nothing is downloaded): initdb in a temp folder, trust auth for one
role, stopped and removed at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A real PostgreSQL started in ``root`` on 127.0.0.1. As root, the server runs as ``nobody``
    (PostgreSQL refuses to run as root), so ``root`` must be reachable by it."""

    def __init__(self, root: Path | str, user: str = "prmf"):
        self.root, self.user, self.port = Path(root), user, _free_port()
        self.data = self.root / "data"
        self.as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
        self.bin_dir = self.binaries()

    @staticmethod
    def binaries() -> Path | None:
        """The folder with initdb and pg_ctl (on PATH, else Debian's /usr/lib/postgresql/N/bin)."""
        if shutil.which("initdb") and shutil.which("pg_ctl"):
            return Path(shutil.which("initdb")).resolve().parent
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        return found[-1].parent if found else None

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bin_dir / program), *args], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> "PostgresServer":
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            os.chown(self.root, 65534, 65534)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root}", "start")
        return self

    def create_database(self, name: str) -> str:
        """A new database; returns the DuckLake location of a lake catalogued in it."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return f"ducklake:postgres:dbname={name} host=127.0.0.1 port={self.port} user={self.user}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextmanager
def temporary_postgres() -> Iterator[PostgresServer]:
    """A server in a new folder under the system temp dir (not under a private one: the server
    may run as nobody), stopped and removed on exit."""
    root = tempfile.mkdtemp(prefix="prmf-postgres-")
    os.chmod(root, 0o755)
    server = PostgresServer(root)
    try:
        yield server.start()
    finally:
        try:
            if (server.data / "postmaster.pid").exists():
                server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
