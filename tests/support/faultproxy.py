"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of a registry.

The client talks to the proxy as if it were the registry (``proxy.host`` in
image references); the proxy forwards the bytes unchanged -- the ``Host``
header too, so the registry's ``Location`` URLs point back at the proxy -- and
parses just enough HTTP/1.1 (request/response heads, Content-Length and
chunked bodies, keep-alive, ``Expect: 100-continue``) to pair each response
with its request path, record it, and apply faults:

* ``cut_after(n, "/blobs/")``: the next matching response (status < 300 with
  more than ``n`` body bytes) is sent with its full head and only ``n`` body
  bytes, then both connections are closed -- a client must resume with
  ``Range: bytes=n-``.
* ``flip_byte("/blobs/", offset=None)``: the next matching response has one body
  byte XOR 0xFF (default: the middle one); the length is unchanged.
* ``fail_with(503, "/manifests/")``: answer the next matching request with
  that status (never forwarded).

Each fault fires ``times`` times (default 1; ``None``: forever) and only on
requests whose target contains the substring (and whose method is ``method``,
default GET).  ``requests`` lists every request with its headers, status,
body bytes sent and the fault applied.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Iterable

_MAX_HEAD = 64 * 1024


class _Closed(Exception):
    pass


@dataclass
class RecordedRequest:
    method: str
    target: str  # path + query, as sent
    headers: list[tuple[str, str]]
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body_bytes_sent: int = 0
    fault: str | None = None  # "cut", "flip", "status" or None
    connection: int = 0  # serial number of the client connection

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def response_header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.response_headers:
            if k.lower() == name:
                return v
        return default


@dataclass
class Fault:
    kind: str  # cut / flip / status
    path_substring: str
    times: int | None = 1
    method: str | None = "GET"
    n_bytes: int = 0  # cut
    offset: int | None = None  # flip
    status: int = 503  # status
    fired: int = 0

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method and method.upper() != self.method.upper():
            return False
        return self.path_substring in target


class _Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self) -> bytes | None:
        """Bytes up to and including the blank line; None on clean EOF."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[: i + 4])
                del self.buf[: i + 4]
                return head
            if len(self.buf) > _MAX_HEAD:
                raise _Closed("head too large")
            if not self._fill():
                if self.buf:
                    raise _Closed("eof inside head")
                return None

    def read_line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[: i + 2])
                del self.buf[: i + 2]
                return line
            if not self._fill():
                raise _Closed("eof inside line")

    def read_some(self, limit: int) -> bytes:
        if not self.buf and not self._fill():
            raise _Closed("eof inside body")
        n = min(limit, len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += self.read_some(n - len(out))
        return bytes(out)

    def read_to_eof(self) -> Iterable[bytes]:
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            yield data
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            yield data


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return first, headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _build_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    return ("\r\n".join([first] + [f"{k}: {v}" for k, v in headers]) + "\r\n\r\n").encode("latin-1")


class FaultProxy:
    """Threaded TCP proxy 127.0.0.1:free port -> ``upstream`` ("host:port",
    (host, port) or an object with ``.host``, e.g. a Registry)."""

    def __init__(self, upstream, *, timeout: float = 30) -> None:
        if hasattr(upstream, "host"):
            upstream = upstream.host
        if isinstance(upstream, str):
            h, _, p = upstream.removeprefix("http://").rstrip("/").rpartition(":")
            upstream = (h, int(p))
        self.upstream: tuple[str, int] = upstream
        self.timeout = timeout
        self._lock = threading.Lock()
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.non_http_connections = 0  # e.g. TLS handshakes answered with 400
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._socks: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False

    # -- lifecycle
    def start(self) -> "FaultProxy":
        if self._listener is not None:
            return self
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        self._listener = s
        self._stopping = False
        self._accept_thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        lst, self._listener = self._listener, None
        if lst is not None:
            try:
                lst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            lst.close()
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        for t in threads:
            t.join(5)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._listener is not None, "not started"
        return self._listener.getsockname()[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # -- faults
    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def cut_after(self, n_bytes: int, path_substring: str, *, times: int | None = 1,
                  method: str | None = "GET") -> Fault:
        return self._add(Fault("cut", path_substring, times, method, n_bytes=n_bytes))

    def flip_byte(self, path_substring: str, *, offset: int | None = None, times: int | None = 1,
                  method: str | None = "GET") -> Fault:
        return self._add(Fault("flip", path_substring, times, method, offset=offset))

    def fail_with(self, status: int, path_substring: str, *, times: int | None = 1,
                  method: str | None = None) -> Fault:
        return self._add(Fault("status", path_substring, times, method, status=status))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset(self) -> None:
        """Forget faults and recorded requests."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()
            self.connections = 0

    # -- records
    def matching(self, path_substring: str = "", method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            reqs = list(self.requests)
        return [r for r in reqs if path_substring in r.target and (method is None or r.method == method.upper())]

    def request_count(self, path_substring: str = "", method: str | None = None) -> int:
        return len(self.matching(path_substring, method))

    # -- machinery
    def _accept_loop(self) -> None:
        lst = self._listener
        while not self._stopping and lst is not None:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                serial = self.connections
                self._socks.add(client)
            t = threading.Thread(target=self._serve, args=(client, serial), name=f"faultproxy-{serial}", daemon=True)
            with self._lock:
                self._threads.add(t)
            t.start()

    def _pick_fault(self, method: str, target: str) -> Fault | None:
        """The first matching fault, reserved (fired += 1) so concurrent
        requests cannot both take a ``times=1`` fault; see _release."""
        with self._lock:
            for f in self.faults:
                if f.matches(method, target):
                    f.fired += 1
                    return f
        return None

    def _release(self, fault: Fault | None) -> None:
        """Un-reserve a fault that turned out not to apply to a response."""
        if fault is not None:
            with self._lock:
                fault.fired -= 1

    def _serve(self, client: socket.socket, serial: int) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(self.timeout)
            creader = _Reader(client)
            ureader: _Reader | None = None
            # a TLS ClientHello (clients that try https first, like skopeo with
            # tls-verify=false) gets the plain-HTTP 400 Go's server would send,
            # so the client falls back to http at once instead of timing out
            if not creader._fill():
                return
            if not (65 <= creader.buf[0] <= 90):
                with self._lock:
                    self.non_http_connections += 1
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            while not self._stopping:
                head = creader.read_head()
                if head is None:
                    return
                first, headers = _parse_head(head)
                parts = first.split(" ")
                if len(parts) < 3:
                    return
                method, target = parts[0].upper(), parts[1]
                rec = RecordedRequest(method, target, list(headers), connection=serial)
                with self._lock:
                    self.requests.append(rec)
                fault = self._pick_fault(method, target)

                expect = _get(headers, "Expect")
                if expect and expect.lower() == "100-continue":
                    headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

                # request body (read fully; registry request bodies are small or streamed in order)
                body_chunks = self._read_body(creader, headers, is_request=True)
                if fault is not None and fault.kind == "status":
                    rec.fault = "status"
                    rec.status = fault.status
                    for _ in body_chunks:
                        pass
                    msg = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by faultproxy"}]}'
                    resp_headers = [("Content-Type", "application/json"), ("Content-Length", str(len(msg)))]
                    rec.response_headers = resp_headers
                    client.sendall(_build_head(f"HTTP/1.1 {fault.status} Injected", resp_headers) + msg)
                    if _get(headers, "Connection") and _get(headers, "Connection").lower() == "close":
                        return
                    continue

                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=self.timeout)
                    with self._lock:
                        self._socks.add(upstream)
                    ureader = _Reader(upstream)
                assert ureader is not None
                upstream.sendall(_build_head(first, headers))
                for chunk in body_chunks:
                    upstream.sendall(chunk)

                # response(s): skip 1xx interim responses
                while True:
                    rhead = ureader.read_head()
                    if rhead is None:
                        self._release(fault)
                        return
                    rfirst, rheaders = _parse_head(rhead)
                    status = int(rfirst.split(" ")[1])
                    if 100 <= status < 200 and status != 101:
                        client.sendall(rhead)
                        continue
                    break
                rec.status = status
                rec.response_headers = rheaders
                keep = self._relay_response(client, ureader, method, status, rhead, rheaders, rec, fault)
                req_close = (_get(headers, "Connection") or "").lower() == "close"
                if not keep or req_close:
                    return
        except (_Closed, OSError):
            return
        finally:
            for s in (client, upstream):
                if s is None:
                    continue
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
                with self._lock:
                    self._socks.discard(s)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _read_body(self, reader: _Reader, headers, *, is_request: bool):
        """Generator of the raw wire bytes of a message body."""
        te = (_get(headers, "Transfer-Encoding") or "").lower()
        cl = _get(headers, "Content-Length")
        if "chunked" in te:
            def gen():
                while True:
                    line = reader.read_line()
                    yield line
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while True:  # trailers
                            t = reader.read_line()
                            yield t
                            if t == b"\r\n":
                                return
                    remaining = size + 2
                    while remaining:
                        d = reader.read_some(remaining)
                        remaining -= len(d)
                        yield d
            return list(gen()) if is_request else gen()
        if cl is not None:
            n = int(cl)
            def gen_cl():
                remaining = n
                while remaining:
                    d = reader.read_some(min(remaining, 65536))
                    remaining -= len(d)
                    yield d
            return list(gen_cl()) if is_request else gen_cl()
        if is_request:
            return []
        return reader.read_to_eof()

    def _relay_response(self, client, ureader, method, status, rhead, rheaders, rec, fault) -> bool:
        """Send one response; False when the connection must close after it."""
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        te = (_get(rheaders, "Transfer-Encoding") or "").lower()
        cl = _get(rheaders, "Content-Length")
        conn_close = (_get(rheaders, "Connection") or "").lower() == "close"
        if no_body:
            self._release(fault)
            client.sendall(rhead)
            return not conn_close
        chunked = "chunked" in te
        length = int(cl) if (cl is not None and not chunked) else None

        applies = fault is not None and fault.kind in ("cut", "flip") and status < 300
        cut_at = None
        flip_at = None
        if applies and fault.kind == "cut":
            if length is None or length > fault.n_bytes:
                cut_at = fault.n_bytes
        elif applies and fault.kind == "flip":
            if length is None:
                flip_at = fault.offset or 0
            elif length > 0:
                flip_at = (length // 2 if fault.offset is None else fault.offset)
                if flip_at >= length:
                    flip_at = None
        if cut_at is None and flip_at is None:
            self._release(fault)
            fault = None

        client.sendall(rhead)
        sent = 0  # body data bytes (de-chunked) sent

        def emit(data: bytes) -> bool:
            """Send body data with faults applied; False after a cut."""
            nonlocal sent, flip_at, cut_at
            if flip_at is not None and sent <= flip_at < sent + len(data):
                b = bytearray(data)
                b[flip_at - sent] ^= 0xFF
                data = bytes(b)
                self._fired(fault, rec, "flip")
                flip_at = None
            if cut_at is not None and sent + len(data) >= cut_at:
                part = data[: cut_at - sent]
                if chunked and part:
                    client.sendall(b"%x\r\n" % len(part) + part)
                elif part:
                    client.sendall(part)
                sent += len(part)
                rec.body_bytes_sent = sent
                self._fired(fault, rec, "cut")
                cut_at = None
                return False
            if chunked:
                client.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                client.sendall(data)
            sent += len(data)
            rec.body_bytes_sent = sent
            return True

        try:
            return self._relay_body(client, ureader, chunked, length, conn_close, emit)
        finally:
            if fault is not None and (cut_at is not None or flip_at is not None):
                self._release(fault)  # the body ended before the fault's offset

    def _relay_body(self, client, ureader, chunked, length, conn_close, emit) -> bool:
        if chunked:
            while True:
                line = ureader.read_line()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    trailer = b""
                    while True:
                        t = ureader.read_line()
                        trailer += t
                        if t == b"\r\n":
                            break
                    client.sendall(b"0\r\n" + trailer)
                    break
                data = ureader.read_exact(size)
                ureader.read_exact(2)
                if not emit(data):
                    return False
            return not conn_close
        if length is not None:
            remaining = length
            while remaining:
                d = ureader.read_some(min(remaining, 65536))
                remaining -= len(d)
                if not emit(d):
                    return False
            return not conn_close
        for d in ureader.read_to_eof():
            if not emit(d):
                return False
        return False

    @staticmethod
    def _fired(fault: Fault, rec: RecordedRequest, kind: str) -> None:
        rec.fault = kind  # the fault was reserved when picked
