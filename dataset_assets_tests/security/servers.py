"""Servers for the security tests: a SeaweedFS with its local KMS, and an HTTP proxy that makes
ETags look like AWS SSE-KMS ETags (not the MD5 of the bytes).

- :class:`KmsSeaweedServer`: ``weed mini`` whose S3 config carries a ``kms`` block with the
  ``local`` provider (an in-memory master key, alias ``alias/seaweedfs-default``; objects
  encrypted with it are unreadable after a restart, which a throwaway test server never needs).
- :class:`OpaqueEtagProxy`: relays every request unchanged (SigV4 signatures stay valid) and
  replaces the ETag header of HEAD and GET answers by a hash of it, as AWS does for SSE-KMS
  objects. Uploads still see the server's real ETags (CompleteMultipartUpload needs them).
"""

import hashlib
import http.client
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

from dataset_assets.storage import SeaweedServer
from dataset_assets_tests.servers import free_port_base

KMS_KEY_ALIAS = "alias/seaweedfs-default"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "expect", "te"})


class KmsSeaweedServer(SeaweedServer):
    """``weed mini`` with the ``local`` KMS provider as its default (SSE-KMS works)."""

    def command(self) -> list[str]:
        config = self.data_dir / "s3-kms.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "ci",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ],
                    "kms": {"default_provider": "local", "providers": {"local": {"type": "local"}}},
                }
            )
        )
        config.chmod(0o600)
        return [
            f"-s3.config={config}" if arg.startswith("-s3.config=") else arg
            for arg in super().command()
        ]


def start_kms_seaweed(data_dir: Path) -> KmsSeaweedServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    server = KmsSeaweedServer(data_dir, port_base=free_port_base(), die_with_parent=True)
    server.start()
    return server


def opaque_etag(etag: str) -> str:
    """An ETag that is not an MD5 of anything we can compute (multipart ``-N`` kept)."""
    bare = etag.strip('"')
    body, dash, parts = bare.partition("-")
    return '"' + hashlib.sha1(b"kms:" + body.encode()).hexdigest()[:32] + dash + parts + '"'


class _Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    rewritten: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for name, value in resp.getheaders():
            low = name.lower()
            if low in _HOP_BY_HOP or (low == "content-length" and self.command != "HEAD"):
                continue
            if low == "etag" and self.command in ("HEAD", "GET"):
                value = opaque_etag(value)
                self.rewritten.append(self.path)
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815 - stdlib names


class OpaqueEtagProxy:
    """A proxy on a free loopback port in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.rewritten: list[str] = []
        handler = type(
            "Relay",
            (_Relay,),
            {
                "upstream": (parsed.hostname or "127.0.0.1", parsed.port or 80),
                "rewritten": self.rewritten,
            },
        )
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "OpaqueEtagProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
