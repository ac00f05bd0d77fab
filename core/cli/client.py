"""The CLI's client of the Engine API: HTTP/1.1 over a unix socket, standard library only.

It stays small on purpose: ``core ps`` must feel instant, so only C modules are imported here
(``_socket``, and JSON and URL quoting through :mod:`core.cli.lean`).
If no daemon answers on the socket, :func:`connect` starts ``core daemon`` in the background
(its log in ``<exec-root>/daemon.log``), waits until it answers, and carries on.
"""
from __future__ import annotations

import _socket
import os
import sys
import time

from core import API_VERSION
from core.cli.lean import dumps, loads, quote, urlencode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

DEFAULT_HOST = "unix:///run/core/core.sock"
DEFAULT_EXEC_ROOT = "/run/core"
DEFAULT_CONFIG_FILE = "/etc/core/daemon.json"
START_TIMEOUT = 30.0


class CLIError(Exception):
    """An error the CLI prints as it is, then exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class APIError(CLIError):
    """The daemon answered with an error status."""

    def __init__(self, status: int, message: str, kind: str = "") -> None:
        super().__init__(f"Error response from daemon: {message}", 125 if kind == "DriverError" else 1)
        self.status = status
        self.detail = message
        self.kind = kind


def socket_path(host: str) -> str:
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if host.startswith("/"):
        return host
    raise CLIError(f'invalid host "{host}": only unix:///path sockets are supported', 125)


class Response:
    def __init__(self, sock: _socket.socket, status: int, headers: dict[str, str], buf: bytes) -> None:
        self.sock = sock
        self.status = status
        self.headers = headers
        self._buf = buf
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else None
        self._done = False

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self._buf += data
        return True

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise CLIError("error during connect: the daemon closed the connection unexpectedly")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if not self._fill():
                raise CLIError("error during connect: the daemon closed the connection unexpectedly")
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def iter_chunks(self) -> Iterator[bytes]:
        """The body as it arrives."""
        if self._done:
            return
        if self._chunked:
            while True:
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line():  # trailers
                        pass
                    break
                yield self._read_exact(size)
                self._read_exact(2)
        elif self._remaining is not None:
            while self._remaining > 0:
                if not self._buf and not self._fill():
                    raise CLIError("error during connect: the daemon closed the connection unexpectedly")
                piece, self._buf = self._buf[: self._remaining], self._buf[self._remaining:]
                self._remaining -= len(piece)
                yield piece
        else:  # until the daemon closes
            if self._buf:
                yield self._buf
                self._buf = b""
            while self._fill():
                yield self._buf
                self._buf = b""
        self._done = True

    def read(self) -> bytes:
        return b"".join(self.iter_chunks())

    def close(self) -> None:
        """Close the connection (quietly: the daemon may have closed it first)."""
        try:
            self.sock.close()
        except OSError:
            pass

    def json(self) -> Any:
        return loads(self.read() or b"null")

    def iter_json_lines(self) -> Iterator[Any]:
        """Docker's JSON-lines streams (pull progress, events)."""
        pending = b""
        for chunk in self.iter_chunks():
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                if line.strip():
                    yield loads(line)
        if pending.strip():
            yield loads(pending)


class Client:
    def __init__(self, host: str, drivers: list[str] | None = None, autostart: bool = True) -> None:
        self.host = host
        self.path = socket_path(host)
        self.drivers = drivers or []
        self.autostart = autostart and not os.environ.get("CORE_NO_AUTOSTART")
        self._started = False

    # -- connecting ----------------------------------------------------------------------------

    def _connect_once(self) -> _socket.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self) -> _socket.socket:
        try:
            return self._connect_once()
        except PermissionError:
            raise CLIError(
                f"permission denied while trying to connect to the core daemon socket at {self.host}: "
                'run core as root, or join the "core" group (usermod -aG core $USER, then log in again)'
            ) from None
        except (FileNotFoundError, ConnectionRefusedError):
            if not self.autostart or self._started or not self.is_local_engine():
                # docker's words, which scripts and users look for
                where = self.host if "://" in self.host else f"unix://{self.path}"
                raise CLIError(f"Cannot connect to the Docker daemon at {where}. "
                               "Is the docker daemon running?") from None
        self._start_daemon()
        return self._connect_once()

    def is_local_engine(self) -> bool:
        """Whether the socket is the local engine's own: the one a daemon started with the user's
        environment (``CORE_EXEC_ROOT``, ``CORE_CONFIG_FILE``) listens on.  Only that engine is
        started on demand; a socket named by ``-H`` or ``CORE_HOST``/``DOCKER_HOST`` that points
        elsewhere is someone else's, and its absence is an error."""
        exec_root = os.environ.get("CORE_EXEC_ROOT") or DEFAULT_EXEC_ROOT
        own = {os.path.abspath(os.path.join(exec_root, "core.sock"))}
        config = os.environ.get("CORE_CONFIG_FILE") or DEFAULT_CONFIG_FILE
        try:
            with open(config, "rb") as fh:
                hosts = loads(fh.read() or b"{}").get("hosts") or []
            own = {os.path.abspath(socket_path(h)) for h in hosts if isinstance(h, str)} or own
        except (OSError, ValueError, AttributeError, CLIError):
            pass  # the daemon itself reports a broken config when it starts
        return os.path.abspath(self.path) in own

    def _start_daemon(self) -> None:
        import subprocess

        self._started = True
        exec_root = os.environ.get("CORE_EXEC_ROOT") or DEFAULT_EXEC_ROOT
        os.makedirs(exec_root, exist_ok=True)
        log_path = os.path.join(exec_root, "daemon.log")
        cmd = [sys.executable, "-m", "core", "daemon", "-H", self.host]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.005
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise CLIError(f"the core daemon failed to start (exit {code}):\n{_tail(log_path)}",
                               125 if code == 125 else 1)
            try:
                self._connect_once().close()
                return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        raise CLIError(f"the core daemon did not answer on {self.host} within {START_TIMEOUT:.0f}s; see {log_path}")

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                headers: dict[str, str] | None = None, raw_body: bytes | Any = None,
                versioned: bool = True) -> Response:
        """Send one request on a fresh connection and return the response, its body unread.

        ``raw_body`` is bytes, or a binary file (sent from where it stands to its end, in pieces).

        Error statuses raise :class:`APIError` with the daemon's message.
        """
        target = (f"/v{API_VERSION}" if versioned else "") + quote(path, safe="/:@")
        if params:
            clean = {k: ("1" if v is True else "0" if v is False else v) for k, v in params.items() if v is not None}
            target += "?" + urlencode(clean)
        hdrs = {"Host": "core", "User-Agent": "core-cli", "Connection": "close"}
        if self.drivers:
            hdrs["X-Core-Driver"] = ",".join(self.drivers)
        data = b""
        body_file = None
        if raw_body is not None and hasattr(raw_body, "read"):
            body_file = raw_body
            hdrs["Content-Length"] = str(os.fstat(body_file.fileno()).st_size - body_file.tell())
        elif raw_body is not None:
            data = raw_body
        elif body is not None:
            data = dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if (data or method in ("POST", "PUT")) and body_file is None:
            hdrs["Content-Length"] = str(len(data))
        hdrs.update(headers or {})
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock = self.connect()
        try:
            sock.sendall(head.encode("latin-1") + data)
            while body_file is not None and (piece := body_file.read(1 << 20)):
                sock.sendall(piece)
            resp = self._read_head(sock)
        except OSError as exc:
            sock.close()
            raise CLIError(f"error during connect: {exc}") from None
        if resp.status >= 400:
            try:
                payload = resp.json()
                message = payload.get("message", "") if isinstance(payload, dict) else str(payload)
            except (ValueError, CLIError):
                message = f"status {resp.status}"
            finally:
                sock.close()
            raise APIError(resp.status, message, resp.headers.get("x-core-error", ""))
        return resp

    def _read_head(self, sock: _socket.socket) -> Response:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise CLIError("error during connect: the daemon closed the connection without answering")
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(sock, status, headers, rest)

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        resp = self.request("GET", path, params)
        try:
            return resp.json()
        finally:
            resp.sock.close()

    def get_each(self, paths: list[str], params: dict[str, Any] | None = None) -> tuple[list[Any], list[str]]:
        """GET each path: the answers, and the daemon's messages for those it refused (``inspect``)."""
        found, errors = [], []
        for path in paths:
            try:
                found.append(self.get_json(path, params))
            except APIError as exc:
                errors.append(exc.message)
        return found, errors

    def post(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """POST (``body`` as JSON, else empty); the answer's JSON, or None when it has none."""
        resp = self.request("POST", path, params, body=body, raw_body=None if body is not None else b"")
        try:
            return resp.json() if resp.status not in (204, 304) else None
        except (ValueError, CLIError):
            return None
        finally:
            resp.close()


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace").rstrip()
    except OSError:
        return ""
