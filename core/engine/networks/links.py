"""Legacy container links (docker's ``--link name[:alias]``), as docker keeps them.

On the default bridge a link gives the linking container (the *parent*)

- an ``/etc/hosts`` line ``<child's address>\\t<alias> <child's hostname> <child's name>`` (the
  name left out when it equals the alias), written with the parent's other entries;
- environment variables, set when the parent starts (:func:`link_env`)::

      DB_PORT=tcp://172.17.0.2:5432                 the lowest exposed port
      DB_PORT_5432_TCP=tcp://172.17.0.2:5432        each exposed port, and its parts:
      DB_PORT_5432_TCP_ADDR=172.17.0.2  DB_PORT_5432_TCP_PORT=5432  DB_PORT_5432_TCP_PROTO=tcp
      DB_NAME=/web/db                               the link's name: /<parent>/<alias>
      DB_ENV_<VAR>=<value>                          each of the child's Config.Env (not HOME, PATH)

  (``DB`` is the alias upper-cased, ``-`` as ``_``; docker's ``_START``/``_END`` variables for
  runs of consecutive ports are not made).

The child must exist when the parent is created (``could not get container for db``) and run,
on the default bridge, when it starts (``Cannot link to a non running container``).  On a
user-defined network a link is a name: the parent's embedded DNS answers the alias with the
child's address there (:class:`core.engine.networks.dnsview.DNSView`).  ``DELETE
/containers/<parent>/<alias>?link=1`` (``docker rm --link /web/db``) removes a link.
"""
from __future__ import annotations

from typing import Any, Iterable

from core.errors import InvalidArgument


def parse_link(text: Any) -> tuple[str, str]:
    """``db``, ``db:alias``, ``/db:/web/alias`` → ``(name, alias)`` (no slashes)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"invalid link {text!r}: expected name[:alias]")
    name, _, alias = text.partition(":")
    name = name.strip().lstrip("/")
    alias = (alias.strip().rstrip("/").rsplit("/", 1)[-1]) if alias else name
    if not name or not alias or "/" in name:
        raise InvalidArgument(f"invalid link {text!r}: expected name[:alias]")
    return name, alias


def parse_links(values: Iterable[Any]) -> list[list[str]]:
    return [list(parse_link(v)) for v in values]


def env_prefix(alias: str) -> str:
    return alias.upper().replace("-", "_")


def link_env(parent: str, alias: str, address: str, exposed: Iterable[str],
             child_env: Iterable[str]) -> list[str]:
    """The variables one link gives (see the module docstring); ``exposed`` are
    ``<port>/<proto>`` keys."""
    prefix = env_prefix(alias)
    ports: list[tuple[int, str]] = []
    for key in exposed:
        port, _, proto = str(key).partition("/")
        if port.isdigit():
            ports.append((int(port), (proto or "tcp").lower()))
    ports.sort(key=lambda p: (p[1] != "tcp", p[0]))  # docker's nat.Sort: tcp first, then by port
    out: list[str] = []
    if ports:
        port, proto = min(ports, key=lambda p: (p[0], p[1] != "tcp"))
        out.append(f"{prefix}_PORT={proto}://{address}:{port}")
    for port, proto in ports:
        key = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [f"{key}={proto}://{address}:{port}", f"{key}_ADDR={address}",
                f"{key}_PORT={port}", f"{key}_PROTO={proto}"]
    out.append(f"{prefix}_NAME=/{parent}/{alias}")
    for entry in child_env:
        name, sep, value = str(entry).partition("=")
        if not sep or name in ("HOME", "PATH"):
            continue
        out.append(f"{prefix}_ENV_{name}={value}")
    return out


def hosts_line(address: str, alias: str, hostname: str, name: str) -> tuple[str, str]:
    """The ``/etc/hosts`` entry of one link: ``(names, address)``."""
    names = f"{alias} {hostname}" if hostname else alias
    if name and name != alias:
        names += f" {name}"
    return names, address


def legacy_links(store: Any, sb: Any) -> list[tuple[str, str, Any, str | None]]:
    """The legacy links of a container whose first network is the default bridge:
    ``(child id, alias, child's sandbox or None, child's address on the bridge or None)``."""
    if sb is None or sb.mode != "networks" or not sb.request.get("Links"):
        return []
    endpoints = store.endpoints_of(sb.container_id)
    first = store.net(endpoints[0].network_id) if endpoints else None
    if first is None or not first.default_bridge:
        return []
    out = []
    for child_id, alias in sb.request.get("Links") or []:
        child = store.sandbox(child_id)
        address = None
        if child is not None and child.attached:
            for ep in store.endpoints_of(child_id):
                net = store.net(ep.network_id)
                if net is not None and net.default_bridge and ep.endpoint_id and ep.state:
                    address = ep.state["address"]
        out.append((child_id, alias, child, address))
    return out
