"""Registry credentials in docker's ``config.json`` (``~/.docker/config.json``, ``$DOCKER_CONFIG``).

``core login`` writes ``{"auths": {"<server>": {"auth": base64("user:password")}}}`` exactly as
docker does, so docker and core share logins.  Credential helpers (``credsStore``) are not run.
"""
from __future__ import annotations

import os

from core.cli.client import CLIError
from core.cli.lean import dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HUB = "https://index.docker.io/v1/"
HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/",
               "https://index.docker.io/v1", "registry.hub.docker.com")


def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def server_key(server: str) -> str:
    """The key docker uses in ``auths`` for a registry: Docker Hub's is its v1 URL."""
    if not server or server in HUB_ALIASES:
        return HUB
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    return server.rstrip("/")


def load() -> dict[str, Any]:
    path = config_path()
    try:
        with open(path, "rb") as f:   # read by every `run` (detachKeys): no json/base64 import
            data = loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CLIError(f"error loading {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def save(data: dict[str, Any]) -> None:
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        import json

        json.dump(data, f, indent="\t")
        f.write("\n")
    os.replace(tmp, path)


def credentials(server: str) -> dict[str, str] | None:
    """The auth config for ``server`` (username, password, serveraddress), if logged in."""
    entry = (load().get("auths") or {}).get(server_key(server))
    if not isinstance(entry, dict):
        return None
    out: dict[str, str] = {"serveraddress": server_key(server)}
    if entry.get("auth"):
        import base64

        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise CLIError(f"invalid auth entry for {server} in {config_path()}") from None
        out.update(username=user, password=password)
    if entry.get("identitytoken"):
        out["identitytoken"] = entry["identitytoken"]
    return out if len(out) > 1 else None


def store(server: str, username: str, password: str, identity_token: str = "") -> None:
    import base64

    data = load()
    entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if identity_token:
        entry = {"auth": base64.b64encode(f"{username}:".encode()).decode(), "identitytoken": identity_token}
    data.setdefault("auths", {})[server_key(server)] = entry
    save(data)


def forget(server: str) -> bool:
    data = load()
    auths = data.get("auths") or {}
    if server_key(server) not in auths:
        return False
    del auths[server_key(server)]
    save(data)
    return True


def header_for(server: str) -> dict[str, str]:
    """``X-Registry-Auth`` for a request that talks to ``server`` (empty when not logged in)."""
    creds = credentials(server)
    if not creds:
        return {}
    import base64

    return {"X-Registry-Auth": base64.urlsafe_b64encode(dumps(creds).encode()).decode()}


def registry_of(name: str) -> str:
    """The registry host of an image name, as docker reads it (no full parsing on the CLI side)."""
    first, sep, _rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"
