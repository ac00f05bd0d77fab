"""The routing mesh on one node: the ingress sandbox and the nftables that send a published
port of any node to the service's tasks across the swarm (docker's ingress-sbox, with nftables
where docker uses IPVS, which this kernel lacks).

Made by :class:`core.engine.networks.swarmlocal.SwarmLocal` when the node is in a swarm::

    host namespace                          ingress sandbox (<exec-root>/netns/ingress_sbox)
    ------------------------------------    -----------------------------------------------
    nft table ip core-mesh-<tag>:           eth0: an endpoint on the ingress overlay, its
      prerouting/output, to a local           address the managers' (owner <node>/ingress-sbox)
      address, published port P ->          ovm<tag>s: 169.254.N.2/30, default route to the host
      dnat to 169.254.N.2:P                 nft table ip core-mesh:
    ovm<tag>h: 169.254.N.1/30  <-- veth -->   prerouting: dport P -> dnat to numgen over the
                                                service's tasks (their ingress addresses)
                                              postrouting: out eth0 -> masquerade (the tasks
                                                answer the sandbox: replies return the same way)

``<tag>`` is four hex digits of the engine's exec root (engines sharing a host never share a
device name or a table) and ``N`` comes from it too.  The table of published ports comes from
the managers with the ingress network's state (``published``: protocol, published and target
port, the serving tasks' addresses) and is written again only when it changes; a task wanted
stopped leaves it at the next pass (and its node keeps it running a while longer:
:mod:`core.engine.swarm.worker`, draining).  Rewriting the tables changes where *new*
connections go: the connections already made keep their translation in conntrack, whatever the
new set.  A published port that something else holds on the node (a process listening on it, a
container's ``-p``: :func:`port_free`) is not published on that node -- its holder keeps it,
unlike docker, whose iptables take it over (moby#39089) -- and a warning says so; the node
fails the service's tasks (:meth:`.swarmlocal.SwarmLocal.check_published`).
:meth:`Mesh.close` (``swarm leave``) removes all of it.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import trio

from core import netns

log = logging.getLogger("core.engine.networks.mesh")

SANDBOX_NAME = "ingress_sbox"
SANDBOX_TABLE = "core-mesh"


def tag_of(exec_root: Path) -> str:
    return hashlib.sha256(str(exec_root).encode()).hexdigest()[:4]


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


async def _run(argv: list[str], stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return await trio.run_process(argv, stdin=stdin, capture_stdout=True, capture_stderr=True,
                                  check=check)


def port_free(proto: str, port: int) -> bool:
    """Whether nothing holds ``port`` (``tcp``/``udp``) on this namespace's addresses: a bind of
    0.0.0.0:``port`` succeeds (TCP with ``SO_REUSEADDR``: only a listener counts, not the
    TIME_WAIT of a connection the mesh carried)."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _address(ipr: Any, index: int, address: str) -> None:
    """``address``/30 on the link (already there: fine)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.addr("add", index=index, address=address, prefixlen=30)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


class Mesh:
    """One node's routing mesh (see the module docstring)."""

    def __init__(self, exec_root: Path) -> None:
        self.exec_root = Path(exec_root)
        self.tag = tag_of(self.exec_root)
        n = int(self.tag, 16) % 250 + 1
        self.host_ip, self.sbox_ip = f"169.254.{n}.1", f"169.254.{n}.2"
        self.host_if, self.sbox_if = f"ovm{self.tag}h", f"ovm{self.tag}s"
        self.host_table = f"core-mesh-{self.tag}"
        self.path = str(self.exec_root / "netns" / SANDBOX_NAME)
        self._written: Any = None

    def exists(self) -> bool:
        return netns.exists(self.path)

    def _in_sbox(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net={self.path}", *argv]

    async def make_sandbox(self) -> str:
        """The sandbox namespace with its link to the host (idempotent); returns its path."""
        if not netns.exists(self.path):
            await trio.to_thread.run_sync(netns.create, self.path)
        await trio.to_thread.run_sync(self._host_side)
        await trio.to_thread.run_sync(netns.run_in, self.path, self._sandbox_side)
        return self.path

    def _host_side(self) -> None:
        """The veth pair (its peer moved into the sandbox), the host's end addressed and up,
        the host forwarding (as the bridge driver sets it).  Blocking."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self.host_if):
                ipr.link("add", ifname=self.host_if, kind="veth", peer=self.sbox_if)
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    ipr.link("set", index=ipr.link_lookup(ifname=self.sbox_if)[0], net_ns_fd=fd)
                finally:
                    os.close(fd)
            index = ipr.link_lookup(ifname=self.host_if)[0]
            _address(ipr, index, self.host_ip)
            ipr.link("set", index=index, state="up")
        Path(IP_FORWARD).write_text("1")

    def _sandbox_side(self) -> None:
        """Inside the sandbox: its end addressed and up, loopback up, the default route via the
        host's end, forwarding on (this namespace's own).  Blocking, in the namespace."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.sbox_if)[0]
            _address(ipr, index, self.sbox_ip)
            ipr.link("set", index=index, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.route("replace", dst="0.0.0.0/0", gateway=self.host_ip)
        Path(IP_FORWARD).write_text("1")

    async def program(self, published: list[dict[str, Any]]) -> None:
        """The nftables of the published ports (written only when they change), but for the
        ports something else holds on this node."""
        key = sorted((p["Protocol"], p["PublishedPort"], p["TargetPort"], tuple(p["Backends"]),
                      not port_free(p["Protocol"], p["PublishedPort"]))
                     for p in published if p.get("Protocol") in ("tcp", "udp"))
        if key == self._written:
            return
        host_rules = ""
        sbox_rules = ""
        for proto, port, target, backends, taken in key:
            if taken:
                log.warning("routing mesh: port %s/%s is in use on this node: not published here",
                            port, proto)
                continue
            host_rules += f"  fib daddr type local {proto} dport {port} dnat to {self.sbox_ip}:{port}\n"
            if backends:
                table = ", ".join(f"{i} : {a}" for i, a in enumerate(backends))
                sbox_rules += (f"  {proto} dport {port} dnat to numgen inc mod {len(backends)} "
                               f"map {{ {table} }} : {target}\n")
        host = (f"table ip {self.host_table}\ndelete table ip {self.host_table}\n"
                f"table ip {self.host_table} {{\n"
                f" chain pre {{\n  type nat hook prerouting priority -100; policy accept;\n"
                f"{host_rules} }}\n"
                f" chain out {{\n  type nat hook output priority -100; policy accept;\n"
                f"{host_rules} }}\n}}\n")
        sbox = (f"table ip {SANDBOX_TABLE}\ndelete table ip {SANDBOX_TABLE}\n"
                f"table ip {SANDBOX_TABLE} {{\n"
                f" chain pre {{\n  type nat hook prerouting priority -100; policy accept;\n"
                f"{sbox_rules} }}\n"
                f" chain post {{\n  type nat hook postrouting priority 100; policy accept;\n"
                f"  oifname \"eth0\" masquerade\n }}\n}}\n")
        await _run(["nft", "-f", "-"], stdin=host.encode())
        await _run(self._in_sbox("nft", "-f", "-"), stdin=sbox.encode())
        self._written = key

    def _unlink(self) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=self.host_if):
                ipr.link("del", index=index)

    async def close(self) -> None:
        """Everything of the mesh off the node: the host's table, the link, the namespace."""
        await _run(["nft", "delete", "table", "ip", self.host_table], check=False)
        await trio.to_thread.run_sync(self._unlink)
        if netns.exists(self.path):
            try:
                await trio.to_thread.run_sync(netns.delete, self.path)
            except OSError as exc:
                log.warning("routing mesh: removing %s: %s", self.path, exc)
        self._written = None
