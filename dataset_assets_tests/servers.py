"""Real S3 servers for the test suite, started by the test run itself (docs/architecture.md).

- SeaweedFS ``weed mini`` on a free block of loopback ports (never the developer's 8333).
- Ceph RADOS Gateway 16 via ``scripts/ceph-up.sh`` in a throwaway directory, on 127.0.0.1:7480.
"""

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

from dataset_assets.storage import S3Settings, SeaweedServer
from dataset_assets.storage.local_server import PORTS_PER_SERVER

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
CEPH_PORT = 7480
CEPH_PORTS = (CEPH_PORT, 3300, 6789)
ACCESS_KEY = "CIACCESSKEY000000000"
SECRET_KEY = "CISECRETKEY00000000000000000000000000000"


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # TIME_WAIT leftovers of a previous run do not block a server from listening.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(count: int = PORTS_PER_SERVER, attempts: int = 200) -> int:
    """A base port such that ``base .. base+count-1`` are all free on 127.0.0.1."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20000, 30000 - count)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free loopback ports found")


def start_seaweed(data_dir: Path) -> SeaweedServer:
    """A fresh ``weed mini`` with every listener on its own free port."""
    server = SeaweedServer(data_dir, port_base=free_port_base(), die_with_parent=True)
    server.start()
    return server


class CephMissingError(RuntimeError):
    """radosgw (or a helper) is not installed."""


class CephServer:
    """Single-node Ceph + radosgw under ``directory`` (scripts/ceph-up.sh / ceph-down.sh)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{CEPH_PORT}"

    def settings(self) -> S3Settings:
        return S3Settings(
            endpoint_url=self.endpoint_url,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            addressing_style="path",
        )

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "D": str(self.directory),
            "S3_ACCESS_KEY": ACCESS_KEY,
            "S3_SECRET_KEY": SECRET_KEY,
        }

    def start(self, timeout: float = 180) -> None:
        missing = [
            b for b in ("radosgw", "ceph-mon", "ceph-osd", "uuidgen", "curl") if not shutil.which(b)
        ]
        if missing:
            raise CephMissingError(
                f"Ceph test server needs {', '.join(missing)}, not found on PATH: "
                "run scripts/install-test-deps.sh (apt-get install radosgw ceph-mon ceph-osd "
                "uuid-runtime curl)"
            )
        busy = [p for p in CEPH_PORTS if not port_is_free(p)]
        if busy:
            raise RuntimeError(
                f"ports {busy} on 127.0.0.1 are in use (a Ceph already running?); the test "
                "suite starts its own Ceph there: stop the other one (scripts/ceph-down.sh)"
            )
        result = subprocess.run(
            [str(SCRIPTS / "ceph-up.sh")],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"scripts/ceph-up.sh failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\nlogs in {self.directory / 'log'}"
            )

    def stop(self) -> None:
        subprocess.run([str(SCRIPTS / "ceph-down.sh")], env=self._env(), timeout=60, check=False)
