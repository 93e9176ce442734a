"""Servers for the security tests: a SeaweedFS with its local KMS, and an HTTP proxy that makes
ETags look like AWS SSE-KMS ETags (not the MD5 of the bytes).

- :class:`KmsSeaweedServer`: ``weed mini`` whose S3 config carries a ``kms`` block with the
  ``local`` provider (an in-memory master key, alias ``alias/seaweedfs-default``; objects
  encrypted with it are unreadable after a restart, which a throwaway test server never needs).
- :class:`RelayProxy`: relays every request unchanged (SigV4 signatures stay valid) and
  records it as ``(method, path?query, copy)``; :func:`s3_operation` names the S3 API operation
  of a recorded request, so every client of a process (worker stores, the loader's readers)
  is seen, not only the one a botocore hook is registered on.
- :class:`OpaqueEtagProxy`: a RelayProxy that also replaces the ETag header of HEAD and GET
  answers by a hash of it, as AWS does for SSE-KMS objects. Uploads still see the server's
  real ETags (CompleteMultipartUpload needs them).
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


Request = tuple[str, str, bool]  # method, path with query, has x-amz-copy-source


def s3_operation(request: Request) -> str:
    """The S3 REST API operation of a path-style request (the subset S3 clients send)."""
    method, target, copy = request
    parsed = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    bucket, _, key = parsed.path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets"
    if not key:
        bucket_ops = {
            "HEAD": "HeadBucket",
            "PUT": "CreateBucket",
            "DELETE": "DeleteBucket",
            "POST": "DeleteObjects" if "delete" in query else "PostBucket",
        }
        if method == "GET":
            if "uploads" in query:
                return "ListMultipartUploads"
            if "versions" in query:
                return "ListObjectVersions"
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        return bucket_ops[method]
    if method == "HEAD":
        return "HeadObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return f"{method} object"


class _Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    rewritten: list[str]
    requests: list[Request]
    opaque_etags: bool = False

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def _relay(self) -> None:
        self.requests.append(
            (self.command, self.path, self.headers.get("x-amz-copy-source") is not None)
        )
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
            if self.opaque_etags and low == "etag" and self.command in ("HEAD", "GET"):
                value = opaque_etag(value)
                self.rewritten.append(self.path)
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815 - stdlib names


class RelayProxy:
    """A recording proxy on a free loopback port in front of ``upstream`` (``http://host:port``)."""

    opaque_etags = False

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.rewritten: list[str] = []
        self.requests: list[Request] = []
        handler = type(
            "Relay",
            (_Relay,),
            {
                "upstream": (parsed.hostname or "127.0.0.1", parsed.port or 80),
                "rewritten": self.rewritten,
                "requests": self.requests,
                "opaque_etags": self.opaque_etags,
            },
        )
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def operations(self) -> set[str]:
        return {s3_operation(r) for r in list(self.requests)}

    def __enter__(self) -> "RelayProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class OpaqueEtagProxy(RelayProxy):
    """A RelayProxy whose HEAD/GET answers carry ETags that are not MD5s."""

    opaque_etags = True

    def __enter__(self) -> "OpaqueEtagProxy":
        super().__enter__()
        return self
