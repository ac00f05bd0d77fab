"""Run Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1: the real registry the
registry conformance suite (:mod:`core.testing.registry`), core's own tests and benchmarks pull
from and push to.  Shipped with core so that a third party's run needs no ``tests/`` tree; it
needs ``/usr/bin/docker-registry`` (Debian's ``docker-registry`` package) and, for token auth,
:mod:`core.testing.token_server`.

::

    with Registry() as reg:                       # plain HTTP, no auth
        Backdoor(reg).push_image("busybox", "latest", [layer])   # core.testing.registry
        urllib.request.urlopen(reg.url + "/v2/")

    with Registry(auth="token", users={"alice": "pw"}) as reg:
        reg.token_server.issued                   # tokens handed out so far

    with Registry(auth="basic", users={"alice": "pw"}) as reg: ...

The process is started from ``/usr/bin/docker-registry serve CONFIG`` with a
generated YAML config and storage in a temporary directory (or a given
``storage_dir``, e.g. shared with another Registry so both serve the same
images); ``stop()`` terminates then kills exactly the PID it started and
removes its temporary directory.  An ``atexit`` hook stops any registry still
running when the interpreter exits, and when started from the main thread the
child gets ``PR_SET_PDEATHSIG`` so it dies with the test process.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping

from .token_server import DEFAULT_SERVICE, TokenServer

REGISTRY_BIN = "/usr/bin/docker-registry"

_running: "set[Registry]" = set()
_running_lock = threading.Lock()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registry_available() -> bool:
    return os.access(REGISTRY_BIN, os.X_OK)


def registry_version() -> str:
    out = subprocess.run([REGISTRY_BIN, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip()


def _q(s: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(s))


try:  # resolved in the parent: the child only calls it (no dlopen after fork)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _pdeathsig() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd line (registry 2.8 accepts bcrypt only): python bcrypt
    if importable, else ``htpasswd -nbB`` (Debian's apache2-utils)."""
    try:
        import bcrypt  # type: ignore

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"
    except ImportError:
        pass
    exe = shutil.which("htpasswd")
    if exe is None:
        raise RuntimeError("basic auth needs python bcrypt or htpasswd (Debian's apache2-utils)")
    out = subprocess.run([exe, "-nbBC", "5", user, password], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def http_request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """urllib without exceptions for HTTP errors: (status, headers, body).
    Header names are lower-cased."""
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, {k.lower(): v for k, v in e.headers.items()}, body


def parse_www_authenticate(value: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y",scope="z"`` -> ("bearer", {...})."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            j = i + 1
            val = []
            while j < len(rest) and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < len(rest):
                    j += 1
                val.append(rest[j])
                j += 1
            params[key] = "".join(val)
            i = j + 1
        else:
            j = rest.find(",", i)
            j = len(rest) if j < 0 else j
            params[key] = rest[i:j].strip()
            i = j
    return scheme.lower(), params


class RegistryError(RuntimeError):
    pass


class Registry:
    """One docker-registry process.

    auth: None (anonymous read/write), ``"token"`` (a :class:`TokenServer`
    is started, or pass ``token_server=``) or ``"basic"`` (htpasswd).
    users: name -> password for token/basic auth (default ``{"alice":
    "alice-password"}``).  token_options: extra TokenServer keyword args
    (``anonymous_pull``, ``private_prefixes``, ``expires_in``).
    """

    DEFAULT_USERS = {"alice": "alice-password"}

    def __init__(
        self,
        *,
        auth: str | None = None,
        users: Mapping[str, str] | None = None,
        storage_dir: str | os.PathLike | None = None,
        token_server: TokenServer | None = None,
        token_options: Mapping | None = None,
        log_level: str = "info",
        start_timeout: float = 15,
        extra_config: str = "",
    ) -> None:
        if auth not in (None, "token", "basic"):
            raise ValueError("auth must be None, 'token' or 'basic'")
        self.auth = auth
        self.users = dict(self.DEFAULT_USERS if users is None else users)
        self.workdir: Path | None = None
        self._storage_arg = Path(storage_dir) if storage_dir else None
        self.storage_dir: Path | None = None
        self.token_server = token_server
        self._own_token_server = False
        self._token_options = dict(token_options or {})
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.extra_config = extra_config
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.config_path: Path | None = None
        self.log_path: Path | None = None
        self._token_cache: dict[tuple[str, str, str | None], str] = {}

    # -- facts
    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` -- what goes in an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def service(self) -> str:
        return self.token_server.service if self.token_server else DEFAULT_SERVICE

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"<Registry {self.url if self.port else '(stopped)'} auth={self.auth} pid={self.pid}>"

    # -- lifecycle
    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Registry":
        if self.proc is not None:
            return self
        if not registry_available():
            raise RegistryError(f"{REGISTRY_BIN} missing: install Debian's docker-registry")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"core-registry-{os.getpid()}-"))
        try:
            self.storage_dir = self._storage_arg or (self.workdir / "storage")
            self.storage_dir.mkdir(parents=True, exist_ok=True)
            if self.auth == "token" and self.token_server is None:
                self.token_server = TokenServer(self.users, **self._token_options).start()
                self._own_token_server = True
            last = ""
            for _attempt in range(5):
                self.port = free_port()
                self._write_config()
                if self._spawn_and_wait():
                    with _running_lock:
                        _running.add(self)
                    return self
                last = self.log_text()
                if "address already in use" not in last:
                    break
            raise RegistryError(f"docker-registry did not start; log:\n{last[-4000:]}")
        except BaseException:
            self.stop()
            raise

    def _write_config(self) -> None:
        assert self.workdir is not None and self.storage_dir is not None
        lines = [
            "version: 0.1",
            "log:",
            f"  level: {self.log_level}",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {_q(self.storage_dir)}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {_q(self.host)}",
            f"  secret: {_q(secrets.token_hex(16))}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self.auth == "token":
            ts = self.token_server
            assert ts is not None
            lines += [
                "auth:",
                "  token:",
                f"    realm: {_q(ts.realm)}",
                f"    service: {_q(ts.service)}",
                f"    issuer: {_q(ts.issuer)}",
                f"    rootcertbundle: {_q(ts.cert_path)}",
            ]
        elif self.auth == "basic":
            htp = self.workdir / "htpasswd"
            htp.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.users.items()))
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: core-test-basic",
                f"    path: {_q(htp)}",
            ]
        if self.extra_config:
            lines.append(self.extra_config.rstrip("\n"))
        self.config_path = self.workdir / "config.yml"
        self.config_path.write_text("\n".join(lines) + "\n")

    def _spawn_and_wait(self) -> bool:
        assert self.workdir is not None and self.config_path is not None
        self.log_path = self.workdir / "registry.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.pop("OTEL_TRACES_EXPORTER", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                preexec_fn=_pdeathsig if threading.current_thread() is threading.main_thread() else None,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            try:
                status, _, _ = http_request(self.url + "/v2/", timeout=1)
                if status in (200, 401):
                    return True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        self._kill()
        return False

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s), the token server
        this Registry started, and remove its temporary directory."""
        with _running_lock:
            _running.discard(self)
        try:
            self._kill()
        finally:
            if self._own_token_server and self.token_server is not None:
                self.token_server.stop()
                self.token_server = None
                self._own_token_server = False
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    # -- a tiny client, for fixtures and infrastructure tests
    def auth_headers(self, repo: str, actions: str = "pull", creds: str | None = None) -> dict[str, str]:
        """Authorization header for ``repo`` (``creds`` = "user:password";
        default: the first configured user).  Empty for auth=None."""
        if self.auth is None:
            return {}
        if creds is None and self.users:
            u, p = next(iter(self.users.items()))
            creds = f"{u}:{p}"
        if self.auth == "basic":
            return {"Authorization": "Basic " + base64.b64encode((creds or ":").encode()).decode()}
        key = (repo, actions, creds)
        tok = self._token_cache.get(key)
        if tok is None:
            tok = self.get_token(f"repository:{repo}:{actions}", creds)
            self._token_cache[key] = tok
        return {"Authorization": f"Bearer {tok}"}

    def get_token(self, scope: str, creds: str | None = None) -> str:
        assert self.token_server is not None
        q = urllib.parse.urlencode({"service": self.token_server.service, "scope": scope})
        headers = {}
        if creds:
            headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
        status, _, body = http_request(f"{self.token_server.realm}?{q}", headers=headers)
        if status != 200:
            raise RegistryError(f"token request failed: {status} {body[:200]!r}")
        data = json.loads(body)
        return data.get("token") or data["access_token"]

    def get(self, path: str, *, headers: Mapping[str, str] | None = None, repo: str | None = None,
            creds: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """GET ``/v2/...`` with auth handled for ``repo`` (pull)."""
        h = dict(headers or {})
        if repo and self.auth:
            h.update(self.auth_headers(repo, "pull", creds))
        return http_request(self.url + path, headers=h)


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        regs = list(_running)
    for r in regs:
        try:
            r.stop()
        except Exception:
            pass
