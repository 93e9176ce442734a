"""A real fault-injecting HTTP/1.1 TCP proxy on 127.0.0.1, stdlib only.

Put it between a boto3 client and a real S3 server and arm faults at runtime::

    with FaultProxy(upstream="http://127.0.0.1:8333") as proxy:
        settings = dataclasses.replace(s3_settings, endpoint_url=proxy.endpoint_url)
        proxy.cut_response_after(1000, times=1)     # next GET body is cut after 1000 bytes
        ...
        assert proxy.fired["cut_response_after"] == 1

The proxy parses HTTP/1.1 framing (request and response heads, ``Content-Length`` and chunked
bodies, HEAD / 1xx / 204 / 304 without body) so keep-alive connections carrying several requests
are relayed request by request. It answers ``Expect: 100-continue`` itself and strips that header
upstream (it is not part of the SigV4 signature). The ``Host`` header is forwarded unchanged so
signatures stay valid.

Modes (each armed for ``times`` occurrences, ``times=None`` = until ``clear()``; ``fired[mode]``
counts how often it fired):

- ``corrupt_request_body(times)``: flip one byte in the body of the next PUT with a body
  (PutObject / UploadPart) — bytes corrupted on the way in.
- ``corrupt_response_body(times)``: flip one byte of the next GET response body.
- ``cut_response_after(n_bytes, times)``: forward the response head and the first ``n_bytes``
  of the next GET response body that is longer than ``n_bytes``, then close both connections:
  the client sees a short read mid-body (for resume-with-Range tests of the loader).
- ``http_500(times)``: answer the next request(s) with ``500 InternalError`` without forwarding.
- ``reset(times)``: close the next client connection(s) as soon as a request head arrives.

``only_path(substring)`` restricts every mode to requests whose path contains ``substring``.
"""

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from types import TracebackType

MODES = ("corrupt_request_body", "corrupt_response_body", "cut_response_after", "http_500", "reset")
_MAX_HEAD = 64 * 1024
_BUF = 256 * 1024


class _Closed(Exception):
    """The peer closed the connection."""


class _Reader:
    """Buffered reads on a socket (head lines, exact lengths)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(_BUF)
        if not data:
            raise _Closed
        self.buf += data

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > _MAX_HEAD:
                raise _Closed
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def until_close(self) -> bytes:
        chunks = [self.buf]
        self.buf = b""
        while True:
            data = self.sock.recv(_BUF)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _build_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _flip(body: bytes) -> bytes:
    i = len(body) // 2
    return body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]


def _read_chunked(reader: _Reader) -> bytes:
    """Read a chunked body and return it raw (framing included)."""
    out = []
    while True:
        size_line = reader.line()
        out.append(size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:
                trailer = reader.line()
                out.append(trailer)
                if trailer == b"\r\n":
                    return b"".join(out)
        out.append(reader.exactly(size + 2))


class FaultProxy:
    """Fault-injecting proxy in front of ``upstream`` (an ``http://host:port`` URL)."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = (parsed.hostname, parsed.port)
        self.fired: dict[str, int] = dict.fromkeys(MODES, 0)
        self.requests = 0
        self._armed: dict[str, int | None] = {}
        self._cut_bytes = 0
        self._path_filter: str | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._stopping = False

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- arming ---------------------------------------------------------------------------------

    def _arm(self, mode: str, times: int | None) -> None:
        with self._lock:
            self._armed[mode] = times

    def corrupt_request_body(self, times: int | None = 1) -> None:
        self._arm("corrupt_request_body", times)

    def corrupt_response_body(self, times: int | None = 1) -> None:
        self._arm("corrupt_response_body", times)

    def cut_response_after(self, n_bytes: int, times: int | None = 1) -> None:
        self._cut_bytes = n_bytes
        self._arm("cut_response_after", times)

    def http_500(self, times: int | None = 1) -> None:
        self._arm("http_500", times)

    def reset(self, times: int | None = 1) -> None:
        self._arm("reset", times)

    def only_path(self, substring: str | None) -> None:
        self._path_filter = substring

    def clear(self) -> None:
        """Disarm every mode (counters are kept)."""
        with self._lock:
            self._armed.clear()
        self._path_filter = None

    def _take(self, mode: str, path: str, when: bool = True) -> bool:
        """Consume one shot of ``mode`` if armed and applicable; counts it as fired."""
        if not when or (self._path_filter is not None and self._path_filter not in path):
            return False
        with self._lock:
            if mode not in self._armed:
                return False
            left = self._armed[mode]
            if left is not None:
                if left <= 0:
                    return False
                self._armed[mode] = left - 1
            self.fired[mode] += 1
            return True

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        t = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            self._close(c)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            t.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    # -- relaying -------------------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        upstream: socket.socket | None = None
        try:
            creader = _Reader(client)
            ureader: _Reader | None = None
            while True:
                head = creader.head()
                first, headers = _parse_head(head)
                method, _, rest = first.partition(" ")
                path = rest.rsplit(" ", 1)[0]
                with self._lock:
                    self.requests += 1
                if self._take("reset", path):
                    return
                length = int(_get(headers, "content-length") or 0)
                expect = (_get(headers, "expect") or "").lower() == "100-continue"
                if self._take("http_500", path):
                    self._answer_500(client, creader, length, expect)
                    return
                if expect:
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                chunked = "chunked" in (_get(headers, "transfer-encoding") or "").lower()
                body = _read_chunked(creader) if chunked else creader.exactly(length)
                if (
                    method == "PUT"
                    and length > 0
                    and not chunked
                    and self._take("corrupt_request_body", path)
                ):
                    body = _flip(body)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    self._track(upstream)
                    ureader = _Reader(upstream)
                assert ureader is not None
                upstream.sendall(_build_head(first, headers) + body)
                if not self._relay_response(client, ureader, method, path):
                    return
        except (_Closed, OSError, ValueError):
            return
        finally:
            self._close(client)
            if upstream is not None:
                self._close(upstream)

    def _answer_500(
        self, client: socket.socket, creader: _Reader, length: int, expect: bool
    ) -> None:
        if not expect and length:
            creader.exactly(length)
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b"<Message>injected by FaultProxy</Message></Error>"
        )
        client.sendall(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    def _relay_response(
        self, client: socket.socket, ureader: _Reader, method: str, path: str
    ) -> bool:
        """Relay one response; False when the connection must be closed afterwards."""
        while True:
            head = ureader.head()
            status_line, headers = _parse_head(head)
            status = int(status_line.split(" ")[1])
            if 100 <= status < 200:
                continue  # interim responses were already answered by the proxy itself
            break
        keep_alive = (_get(headers, "connection") or "").lower() != "close"
        no_body = method == "HEAD" or status in (204, 304)
        if no_body:
            client.sendall(head)
            return keep_alive
        te = (_get(headers, "transfer-encoding") or "").lower()
        if "chunked" in te:
            client.sendall(head + _read_chunked(ureader))
            return keep_alive
        cl = _get(headers, "content-length")
        if cl is None:
            client.sendall(head + ureader.until_close())
            return False
        length = int(cl)
        is_get_body = method == "GET" and length > 0
        if self._take("cut_response_after", path, is_get_body and length > self._cut_bytes):
            client.sendall(head + ureader.exactly(self._cut_bytes))
            return False
        body = ureader.exactly(length)
        if self._take("corrupt_response_body", path, is_get_body):
            body = _flip(body)
        client.sendall(head + body)
        return keep_alive


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
