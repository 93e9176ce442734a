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
- ``slowdown_503(times)``: answer with ``503 SlowDown`` without forwarding (a throttling storm
  when ``times`` is large or None): botocore retries it within its ``max_attempts`` budget.
- ``trickle(bytes_per_s, times)``: relay the next GET response head at once, then its body at
  ``bytes_per_s`` (1 = one byte per second) until the client gives up and closes. A per-read
  socket timeout never fires on it: only a deadline on the whole transfer does.

``hold(method, path_substring, skip=0, after_forward=False)`` pauses one request (the
``skip + 1``-th match) and returns a :class:`Hold`: ``hold.reached`` is set when the request is
paused, so a test can SIGKILL the client at exactly that point; ``hold.release()`` lets it go on.
With ``after_forward=True`` the request reaches the server and the *response* is held (the write
happened, the client never learns it). ``stop()`` releases nothing: held connections are closed.

``only_path(substring)`` restricts every mode to requests whose path contains ``substring``;
``only_method(method)`` to requests of that HTTP method (e.g. ``PUT``: uploads, not HEADs).
"""

import contextlib
import dataclasses
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from types import TracebackType
from typing import Any

from dataset_assets.storage import S3ObjectStore

MODES = (
    "corrupt_request_body",
    "corrupt_response_body",
    "cut_response_after",
    "http_500",
    "reset",
    "slowdown_503",
    "trickle",
)
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


class Hold:
    """One paused request (see :meth:`FaultProxy.hold`)."""

    def __init__(self, method: str, path_substring: str, skip: int, after_forward: bool) -> None:
        self.method = method.upper()
        self.path_substring = path_substring
        self.skip = skip
        self.after_forward = after_forward
        self.reached = threading.Event()
        self._released = threading.Event()
        self.path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path_substring in path

    def release(self) -> None:
        self._released.set()

    def wait_released(self, stopping: Callable[[], bool]) -> bool:
        """Block until released (True) or the proxy stops (False)."""
        while not self._released.wait(0.05):
            if stopping():
                return False
        return True


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
        self._trickle_rate = 1.0
        self._holds: list[Hold] = []
        self.log: list[tuple[str, str]] = []
        self._path_filter: str | None = None
        self._method_filter: str | None = None
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

    def slowdown_503(self, times: int | None = 1) -> None:
        self._arm("slowdown_503", times)

    def trickle(self, bytes_per_s: float = 1.0, times: int | None = 1) -> None:
        self._trickle_rate = bytes_per_s
        self._arm("trickle", times)

    def hold(
        self, method: str, path_substring: str, *, skip: int = 0, after_forward: bool = False
    ) -> Hold:
        """Pause the ``skip + 1``-th request of ``method`` whose path contains
        ``path_substring`` (before forwarding it, or after, holding its response)."""
        h = Hold(method, path_substring, skip, after_forward)
        with self._lock:
            self._holds.append(h)
        return h

    def _take_hold(self, method: str, path: str) -> Hold | None:
        with self._lock:
            for h in self._holds:
                if h.matches(method, path):
                    if h.skip > 0:
                        h.skip -= 1
                        continue
                    self._holds.remove(h)
                    h.path = path
                    return h
        return None

    def only_path(self, substring: str | None) -> None:
        self._path_filter = substring

    def only_method(self, method: str | None) -> None:
        self._method_filter = method.upper() if method else None

    def clear(self) -> None:
        """Disarm every mode (counters are kept)."""
        with self._lock:
            self._armed.clear()
            self._holds.clear()
        self._path_filter = None
        self._method_filter = None

    def _take(self, mode: str, path: str, when: bool = True, method: str = "") -> bool:
        """Consume one shot of ``mode`` if armed and applicable; counts it as fired."""
        if not when or (self._path_filter is not None and self._path_filter not in path):
            return False
        if self._method_filter is not None and method and method != self._method_filter:
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
                    self.log.append((method, path))
                hold = self._take_hold(method, path)
                if hold is not None and not hold.after_forward:
                    hold.reached.set()
                    if not hold.wait_released(lambda: self._stopping):
                        return
                if self._take("reset", path, method=method):
                    return
                length = int(_get(headers, "content-length") or 0)
                expect = (_get(headers, "expect") or "").lower() == "100-continue"
                if self._take("http_500", path, method=method):
                    self._answer_error(client, creader, length, expect, 500, "InternalError")
                    return
                if self._take("slowdown_503", path, method=method):
                    self._answer_error(client, creader, length, expect, 503, "SlowDown")
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
                if hold is not None and hold.after_forward:
                    head, raw = self._read_response(ureader, method)
                    hold.reached.set()
                    if not hold.wait_released(lambda: self._stopping):
                        return
                    client.sendall(head + raw)
                    continue
                if not self._relay_response(client, ureader, method, path):
                    return
        except (_Closed, OSError, ValueError):
            return
        finally:
            self._close(client)
            if upstream is not None:
                self._close(upstream)

    def _answer_error(
        self,
        client: socket.socket,
        creader: _Reader,
        length: int,
        expect: bool,
        status: int,
        code: str,
    ) -> None:
        if not expect and length:
            creader.exactly(length)
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            "<Message>injected by FaultProxy</Message></Error>"
        ).encode()
        reason = {500: "Internal Server Error", 503: "Slow Down"}.get(status, "Error")
        client.sendall(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n".encode()
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    def _read_response(self, ureader: _Reader, method: str) -> tuple[bytes, bytes]:
        """One whole upstream response (head, raw body) without relaying it."""
        while True:
            head = ureader.head()
            status_line, headers = _parse_head(head)
            status = int(status_line.split(" ")[1])
            if not 100 <= status < 200:
                break
        if method == "HEAD" or status in (204, 304):
            return head, b""
        if "chunked" in (_get(headers, "transfer-encoding") or "").lower():
            return head, _read_chunked(ureader)
        return head, ureader.exactly(int(_get(headers, "content-length") or 0))

    def _dribble(self, client: socket.socket, head: bytes, body: bytes) -> None:
        """Send ``head`` then ``body`` at the trickle rate until done, closed or stopped."""
        client.sendall(head)
        step = max(1, int(self._trickle_rate)) if self._trickle_rate >= 1 else 1
        pause = step / self._trickle_rate
        for i in range(0, len(body), step):
            if self._stopping:
                return
            client.sendall(body[i : i + step])
            time.sleep(pause)

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
        if self._take("trickle", path, is_get_body):
            self._dribble(client, head, body)
            return False
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


def proxied(proxy: FaultProxy, store: S3ObjectStore, **changes: Any) -> S3ObjectStore:
    """The same bucket as ``store``, reached through ``proxy`` (``changes``: other settings)."""
    settings = dataclasses.replace(store.settings, endpoint_url=proxy.endpoint_url, **changes)
    return S3ObjectStore(store.bucket, settings, part_size=store.part_size)
