"""A small Docker-registry token server (the "realm" of ``auth: token``).

It speaks the token protocol of https://distribution.github.io/distribution/spec/auth/token/
on 127.0.0.1:

* ``GET /token?service=S&scope=repository:NAME:pull,push[&scope=...][&account=U][&offline_token=true]``
  with optional ``Authorization: Basic``; answers
  ``{"token", "access_token", "expires_in", "issued_at"[, "refresh_token"]}``.
* ``POST /token`` (OAuth2 form: ``grant_type=password|refresh_token``,
  ``username``, ``password``, ``refresh_token``, ``service``, ``scope``
  space-separated, ``access_type=offline``), as containerd/docker use with
  identity tokens.

Tokens are JWTs signed RS256 with a key generated at start.  The JWT header
carries ``x5c`` = [the key's self-signed certificate]; Debian's
docker-registry (distribution 2.8) verifies the chain against
``rootcertbundle`` = :attr:`TokenServer.cert_path`, checks ``iss`` ==
issuer, ``aud`` (a string in 2.8) == service, ``exp``/``nbf`` with 60 s
leeway, and the ``access`` claim.

Signing uses the ``cryptography`` package when importable, else the
``openssl`` command line (Debian's openssl package).

Policy: users in ``users`` (name -> password) get every action they ask for on
any repository (and ``registry:catalog:*``).  Anonymous requests get ``pull``
on repositories not starting with one of ``private_prefixes`` when
``anonymous_pull`` is true, and a 401 when it is false.  Wrong credentials
always give a 401.  ``issued`` counts tokens handed out (so a test can check
a client reuses tokens); ``requests`` records every request.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping, Sequence

DEFAULT_SERVICE = "core-test-registry"
DEFAULT_ISSUER = "core-test-token-issuer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def decode_jwt(token: str) -> tuple[dict, dict]:
    """(header, claims) of a JWT, unverified -- for assertions in tests."""
    h, c, _sig = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(c))


class _Signer:
    """An RSA key with a self-signed certificate; RS256 signatures."""

    def __init__(self, workdir: Path, common_name: str) -> None:
        self.workdir = workdir
        self.key_path = workdir / "token-key.pem"
        self.cert_path = workdir / "token-cert.pem"
        self.backend: str
        try:
            self._init_cryptography(common_name)
            self.backend = "cryptography"
        except ImportError:
            self._init_openssl(common_name)
            self.backend = "openssl"
        pem = self.cert_path.read_text()
        body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        self.cert_der_b64 = body  # std base64 of the DER certificate, as x5c wants

    def _init_cryptography(self, cn: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = _dt.datetime.now(_dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key
        self._sign = lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def _init_openssl(self, cn: str) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("token signing needs the 'cryptography' package or the openssl command")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                "-keyout", str(self.key_path), "-out", str(self.cert_path),
                "-days", "3650", "-subj", f"/CN={cn}",
                "-addext", "basicConstraints=critical,CA:TRUE",
            ],
            check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )
        os.chmod(self.key_path, 0o600)

        def sign(data: bytes) -> bytes:
            return subprocess.run(
                [openssl, "dgst", "-sha256", "-sign", str(self.key_path)],
                input=data, check=True, capture_output=True,
            ).stdout

        self._sign = sign

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)


@dataclass
class TokenRequest:
    method: str
    user: str | None  # None: anonymous
    scopes: list[str]
    granted: list[dict]
    status: int
    service: str = ""
    grant_type: str = ""
    headers: dict = field(default_factory=dict)


class TokenServer:
    """Threaded token server on 127.0.0.1:free port.  Use as a context manager
    or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        anonymous_pull: bool = True,
        private_prefixes: Sequence[str] = ("private/",),
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        expires_in: int = 300,
        workdir: str | os.PathLike | None = None,
    ) -> None:
        self.users = dict(users or {})
        self.anonymous_pull = anonymous_pull
        self.private_prefixes = tuple(private_prefixes)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="core-token-"))
        self._lock = threading.Lock()
        self.issued = 0
        self.requests: list[TokenRequest] = []
        self.fail_next = 0  # answer the next N requests with fail_status
        self.fail_status = 503
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.signer = _Signer(self.workdir, issuer)

    # -- lifecycle
    def start(self) -> "TokenServer":
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- facts
    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def cert_path(self) -> Path:
        """PEM bundle for the registry's ``rootcertbundle``."""
        return self.signer.cert_path

    def reset_counters(self) -> None:
        with self._lock:
            self.issued = 0
            self.requests.clear()

    # -- tokens
    def make_token(
        self,
        subject: str,
        access: list[dict],
        *,
        expires_in: int | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        not_before: int | None = None,
    ) -> str:
        """Sign a token (also usable by tests to forge odd ones)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.signer.cert_der_b64]}
        claims = {
            "iss": issuer or self.issuer,
            "sub": subject,
            "aud": audience or self.service,
            "exp": now + (self.expires_in if expires_in is None else expires_in),
            "nbf": now - 1 if not_before is None else not_before,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": access,
        }
        signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(
            json.dumps(claims, separators=(",", ":")).encode()
        )
        sig = self.signer.sign(signing_input.encode())
        return signing_input + "." + b64url(sig)

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        granted: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            for one in scope.split(" "):
                if not one:
                    continue
                typ, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                wanted = [a for a in actions.split(",") if a]
                if not typ or not name:
                    continue
                if user is not None:
                    ok = wanted
                elif typ == "repository" and self.anonymous_pull and not name.startswith(self.private_prefixes):
                    ok = [a for a in wanted if a == "pull"]
                else:
                    ok = []
                if ok:
                    acts = granted.setdefault((typ, name), [])
                    acts.extend(a for a in ok if a not in acts)
        return [{"type": t, "name": n, "actions": a} for (t, n), a in granted.items()]


def _make_handler(ts: TokenServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "core-test-token/1"

        def log_message(self, fmt, *args):  # quiet
            pass

        def _send(self, status: int, body: dict, extra: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _basic_user(self) -> tuple[bool, str | None]:
            """(credentials ok, user); no header -> (True, None)."""
            auth = self.headers.get("Authorization")
            if not auth:
                return True, None
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "basic":
                return False, None
            try:
                user, _, pw = base64.b64decode(value.strip()).decode().partition(":")
            except Exception:
                return False, None
            return (ts.users.get(user) == pw and user in ts.users), user

        def _record(self, user, scopes, granted, status, service, grant_type="") -> None:
            with ts._lock:
                ts.requests.append(
                    TokenRequest(self.command, user, scopes, granted, status, service, grant_type, dict(self.headers))
                )

        def _failing(self) -> bool:
            with ts._lock:
                if ts.fail_next > 0:
                    ts.fail_next -= 1
                    fail = True
                else:
                    fail = False
            if fail:
                self._record(None, [], [], ts.fail_status, "")
                self._send(ts.fail_status, {"errors": [{"code": "UNAVAILABLE", "message": "injected failure"}]})
            return fail

        def _issue(self, user: str | None, scopes: list[str], service: str, *, refresh: bool, grant_type: str,
                   oauth: bool) -> None:
            granted = ts._grant(user, scopes)
            token = ts.make_token(user or "", granted)
            with ts._lock:
                ts.issued += 1
            body = {
                "access_token": token,
                "expires_in": ts.expires_in,
                "issued_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            if not oauth:
                body["token"] = token
            else:
                body["scope"] = " ".join(scopes)
            if refresh and user is not None:
                rt = secrets.token_hex(16)
                with ts._lock:
                    ts._refresh_tokens[rt] = user
                body["refresh_token"] = rt
            self._record(user, scopes, granted, 200, service, grant_type)
            self._send(200, body)

        def _unauthorized(self, user, scopes, service, grant_type="") -> None:
            self._record(user, scopes, [], 401, service, grant_type)
            self._send(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                {"WWW-Authenticate": f'Basic realm="{ts.realm}"'},
            )

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            if self._failing():
                return
            q = urllib.parse.parse_qs(url.query)
            scopes = q.get("scope", [])
            service = (q.get("service") or [""])[0]
            ok, user = self._basic_user()
            if not ok or (user is None and not ts.anonymous_pull):
                self._unauthorized(user, scopes, service)
                return
            refresh = (q.get("offline_token") or ["false"])[0].lower() == "true"
            self._issue(user, scopes, service, refresh=refresh, grant_type="", oauth=False)

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode()) if length else {}
            if url.path != "/token":
                self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            if self._failing():
                return
            f = {k: v[0] for k, v in form.items()}
            scopes = [s for s in f.get("scope", "").split(" ") if s]
            service = f.get("service", "")
            grant_type = f.get("grant_type", "")
            user: str | None
            if grant_type == "password":
                user = f.get("username", "")
                if ts.users.get(user) != f.get("password") or user not in ts.users:
                    self._unauthorized(user, scopes, service, grant_type)
                    return
            elif grant_type == "refresh_token":
                with ts._lock:
                    user = ts._refresh_tokens.get(f.get("refresh_token", ""))
                if user is None:
                    self._unauthorized(None, scopes, service, grant_type)
                    return
            else:
                self._record(None, scopes, [], 400, service, grant_type)
                self._send(400, {"error": "unsupported_grant_type"})
                return
            refresh = f.get("access_type") == "offline"
            self._issue(user, scopes, service, refresh=refresh, grant_type=grant_type, oauth=True)

    return Handler
