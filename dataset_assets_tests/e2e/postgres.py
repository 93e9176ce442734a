"""A private PostgreSQL server for the end-to-end test, started from the Debian packages.

``initdb`` + ``pg_ctl`` in a fresh temp dir, listening on 127.0.0.1 on a free port (no other
interface, trust auth for local connections only), stopped and removed at the end. PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres`` user the package
creates (via ``runuser``). Install with ``scripts/install-test-deps.sh``.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class PostgresMissingError(RuntimeError):
    """initdb/pg_ctl are not installed."""


def _bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise PostgresMissingError(
            f"{name} not found (PATH or /usr/lib/postgresql/*/bin): install the Debian package "
            "postgresql with scripts/install-test-deps.sh"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    db: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.postgres.yaml reads."""
        return {
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": "unused-trust-auth",
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db,
        }


@contextlib.contextmanager
def running_postgres(db: str = "dagster") -> Iterator[Postgres]:
    """Start a throwaway cluster; yield how to reach it; stop it and delete its files."""
    initdb, pg_ctl, createdb = _bin("initdb"), _bin("pg_ctl"), _bin("createdb")
    base = Path(tempfile.mkdtemp(prefix="e2e-postgres-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(base, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    user, port = "dagster", _free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = False
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "-N"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options,
             "start"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        started = True
        subprocess.run(
            [*prefix, createdb, "-h", "127.0.0.1", "-p", str(port), "-U", user, db],
            check=True,
            capture_output=True,
        )
        yield Postgres("127.0.0.1", port, user, db)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(
            f"{exc.cmd[len(prefix)]} failed ({exc.returncode}): {exc.stderr!r}\n{tail}"
        ) from exc
    finally:
        if started:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(base, ignore_errors=True)
