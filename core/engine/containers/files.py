"""A container's directory and the files in it; the network service's view of the containers.

On disk::

    containers/<id>/
        hostname, hosts, resolv.conf      bind-mounted on /etc/... of the container
        <id>-json.log                     stdout/stderr in docker's json-file format (the shim writes it)
        rootfs/                           the snapshot, mounted while the container runs
        bundle/config.json                the OCI runtime spec of the current run

:class:`ContainerFiles` knows those paths and writes the ``/etc`` files; :class:`Directory` is
the :class:`core.engine.interfaces.ContainerDirectory` the network service is built with (it
looks containers up, and hands back a container's ``hosts`` and ``resolv.conf`` when its
networks change).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from core.engine.containers.store import Container, ContainerStore
from core.engine.interfaces import ContainerRef
from core.errors import CoreError, InvalidArgument

ETC_FILES = ("hostname", "hosts", "resolv.conf")


def resolv_conf(host_text: str, *, dns: list[str] | None = None, search: list[str] | None = None,
                options: list[str] | None = None, host_network: bool = False) -> str:
    """The container's resolv.conf: the host's, without loopback nameservers (they cannot be
    reached from another network namespace) — docker's 8.8.8.8 and 8.8.4.4 when none is left —
    and with ``--dns``, ``--dns-search``, ``--dns-option`` replacing the host's."""
    lines = host_text.splitlines()
    out: list[str] = []
    nameservers = 0
    for line in lines:
        words = line.split()
        if words and words[0] == "nameserver" and len(words) > 1:
            if dns:
                continue
            addr = words[1].split("%")[0]
            if not host_network and (addr.startswith("127.") or addr == "::1"):
                continue
            nameservers += 1
        elif words and words[0] in ("search", "domain") and search:
            continue
        elif words and words[0] == "options" and options:
            continue
        out.append(line)
    if dns:
        out += [f"nameserver {d}" for d in dns]
        nameservers = len(dns)
    if search:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    if nameservers == 0:
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(out).rstrip("\n") + "\n"


HOSTS_DEFAULT = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def hosts_file(extra_hosts: list[str] | None = None, host_network: bool = False) -> str:
    if host_network:
        try:
            text = Path("/etc/hosts").read_text()
        except OSError:
            text = HOSTS_DEFAULT
    else:
        text = HOSTS_DEFAULT
    for entry in extra_hosts or []:
        if not isinstance(entry, str):
            raise InvalidArgument(f"invalid extra host {entry!r}")
        host, sep, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
        if not sep or not host or not ip:
            raise InvalidArgument(f"invalid argument \"{entry}\" for \"--add-host\" flag: bad format for add-host: {entry!r}")
        if ip == "host-gateway":
            ip = "172.17.0.1"
        text += f"{ip.strip('[]')}\t{host}\n"
    return text


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` whole (a temporary file renamed over it); ``durable``: fsync'ed first.
    Files a start writes again need not be durable: a host crash stops the container too."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_in_place(path: Path, text: str) -> None:
    """Rewrite a file's content keeping its inode (a bind mount of it sees the change)."""
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.write(text.encode())
        f.truncate()



class ContainerFiles:
    """The containers' directories under ``top`` (``<data-root>/containers``)."""

    def __init__(self, top: Path) -> None:
        self.top = top
        top.mkdir(parents=True, exist_ok=True)
        os.chmod(top, 0o710)

    def dir(self, c: Container) -> Path:
        return self.top / c.id

    def log_path(self, c: Container) -> Path:
        return self.dir(c) / f"{c.id}-json.log"

    def rootfs(self, c: Container) -> Path:
        return self.dir(c) / "rootfs"

    def make(self, cid: str) -> Path:
        """A new container's directory, with ``rootfs/`` and ``bundle/``."""
        cdir = self.top / cid
        cdir.mkdir(mode=0o710)
        (cdir / "rootfs").mkdir(mode=0o755)
        (cdir / "bundle").mkdir(mode=0o700)
        return cdir

    @staticmethod
    def write_etc(cdir: Path, config: dict[str, Any], hc: dict[str, Any]) -> None:
        """The container's /etc/hostname, hosts and resolv.conf (bind-mounted into it).  Not
        fsync'ed: a start writes any of them again that a host crash left missing or empty."""
        host_net = hc.get("NetworkMode") == "host"
        write_atomic(cdir / "hostname", f"{config['Hostname']}\n", durable=False)
        write_atomic(cdir / "hosts", hosts_file(hc.get("ExtraHosts"), host_net), durable=False)
        try:
            host_resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            host_resolv = ""
        write_atomic(cdir / "resolv.conf", resolv_conf(host_resolv, dns=hc.get("Dns"), search=hc.get("DnsSearch"),
                                                       options=hc.get("DnsOptions"), host_network=host_net),
                     durable=False)

    def check_etc(self, c: Container) -> None:
        """Before a start: write the /etc files again if one is missing or empty."""
        cdir = self.dir(c)
        for name in ETC_FILES:
            try:
                if os.stat(cdir / name).st_size:
                    continue
            except FileNotFoundError:
                pass
            self.write_etc(cdir, c.config, c.host_config)
            return

    def network_files(self, c: Container, hosts: str | None, resolv: str | None) -> None:
        """The network service's ``hosts`` and ``resolv.conf`` replace ours, written in place
        (the container's bind mounts hold the files' inodes)."""
        if hosts is not None:
            write_in_place(self.dir(c) / "hosts", hosts)
        if resolv is not None:
            write_in_place(self.dir(c) / "resolv.conf", resolv)

    @staticmethod
    def remove_dir(path: Path) -> None:
        """Remove a container's directory, unmounting what is still mounted under it."""
        from core.storage.mount import unmount

        prefix = str(path) + "/"
        try:
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
        except OSError:
            points = []
        for point in sorted(points, key=len, reverse=True):
            try:
                unmount(point, detach=True)
            except CoreError:
                pass
        shutil.rmtree(path, ignore_errors=True)


class Directory:
    """The network service's :class:`core.engine.interfaces.ContainerDirectory`: the containers
    of ``store``, whose files are in ``files``."""

    def __init__(self, store: ContainerStore, files: ContainerFiles) -> None:
        self._store = store
        self._files = files

    async def lookup(self, ref: str) -> ContainerRef:
        c = self._store.lookup(ref)
        return ContainerRef(id=c.id, pid=c.state.pid if c.running else 0, running=c.running,
                            name=c.name.lstrip("/"), env=tuple(c.config.get("Env") or ()))

    async def network_changed(self, container_id: str, hosts: str, resolv_conf: str) -> None:
        c = self._store.by_id.get(container_id)
        if c is not None:
            self._files.network_files(c, hosts, resolv_conf)
