"""A throwaway PostgreSQL cluster for the tests: initdb into a temp dir, start on loopback, stop at the end.

Run as root (as in CI containers), initdb and the server run as the ``postgres`` system user.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

USER = "nbflow"


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the cluster could not start."""


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl: $PG_BINDIR, PATH, then Debian's /usr/lib/postgresql/N/bin."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    as_user: list[str] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if res.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}"
            )
        return res

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "stop", "-m", "fast", "-w", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    """initdb + pg_ctl start -w on 127.0.0.1:<free port>; raises PostgresUnavailable when it cannot."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; run scripts/install-system-deps"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailable("psycopg is not installed: pip install 'nbflow[postgres]'") from exc
    root = Path(tempfile.mkdtemp(prefix="nbflow-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres user, when we run as root, must reach its data
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser"):
            as_user = ["runuser", "-u", "postgres", "--"]
        else:
            as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        shutil.chown(root, "postgres", "postgres")
    cluster = Cluster(bindir, root, _free_port(), as_user)
    try:
        cluster._run(
            str(bindir / "initdb"), "-D", str(cluster.datadir), "-U", USER, "--auth=trust",
            "--encoding=UTF8", "--no-sync",
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={cluster.port} -c unix_socket_directories={root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        cluster._run(
            str(bindir / "pg_ctl"), "-D", str(cluster.datadir), "-l", str(root / "server.log"),
            "-o", opts, "-w", "-t", "60", "start",
        )
    except (PostgresUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        log = root / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"{exc}\n{tail}") from exc
    return cluster
