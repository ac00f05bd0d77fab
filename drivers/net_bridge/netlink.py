"""Links, addresses, routes and namespaces of the bridge driver, over netlink (pyroute2).

Synchronous code, run by the driver in one thread of its own (:class:`NetlinkThread`, one thread
hop per operation).  The host side uses one long-lived rtnetlink socket — and pyroute2 (0.9)
gives a socket a netlink socket and an event loop *per thread that uses it*, kept until the
socket is closed: used from trio's pool of worker threads, which come and go, it left two
netlink sockets behind for every operation after an idle pause.  So :class:`HostNet` is made,
used and closed in that one thread only.  Inside a container's namespace the driver opens a
socket *in* that namespace: a worker thread enters it with ``setns(2)`` (which moves only the
calling thread), creates the socket — a netlink socket belongs to the namespace it was created in
— and goes back at once.  No helper process, no ``ip netns exec``.

A join is five requests on the host socket and five in the namespace:

- ``RTM_NEWLINK`` veth ``veth<7 hex>`` (MTU, master = the bridge, up) with its peer created
  directly in the namespace under its final name (``eth0``), MAC and MTU;
- hairpin mode on the bridge port (a container reaching its own published port through the
  host's address comes back through the port it left by);
- in the namespace: the address, the interface up, ``lo`` up, the default route.
"""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import trio

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from core.errors import AlreadyExists, CoreError, InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)
CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02
_libc = ctypes.CDLL(None, use_errno=True)


T = TypeVar("T")


class NetlinkThread:
    """One long-lived thread that runs every call on the host's netlink sockets.

    pyroute2's sockets keep per-thread state (a kernel socket, an event loop) for every thread
    that ever used them until they are closed, so a socket must stay with one thread: this one.
    :meth:`run` is awaited from trio (not cancellable half-way: the call finishes, as with
    ``trio.to_thread.run_sync``); :meth:`close` runs a last call (closing the sockets) and ends
    the thread.
    """

    def __init__(self, name: str = "core-bridge-netlink") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_future: Any) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        future = self._pool.submit(fn, *args)
        future.add_done_callback(wake)
        with trio.CancelScope(shield=True):
            await done.wait()
        return future.result()

    def close(self, last: Callable[[], Any] | None = None) -> None:
        """Run ``last`` in the thread (errors logged), then end the thread.  Blocking."""
        if last is not None:
            try:
                self._pool.submit(last).result()
            except Exception:
                log.exception("closing the bridge driver's netlink sockets failed")
        self._pool.shutdown(wait=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netlink_error(exc: NetlinkError, what: str) -> CoreError:
    code = exc.code
    text = f"{what}: {os.strerror(code) if code else exc}"
    if code == errno.EEXIST:
        return AlreadyExists(text)
    if code in (errno.ENODEV, errno.ENOENT):
        return NotFound(text)
    if code in (errno.EINVAL, errno.ERANGE):
        return InvalidArgument(text)
    if code in (errno.EPERM, errno.EACCES, errno.EOPNOTSUPP):
        return Unavailable(text)
    return CoreError(text)


def write_sysctl(path: str, value: str) -> None:
    """Write a ``/proc/sys/net`` value (of the calling thread's namespace) if it differs."""
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise Unavailable(f"cannot set {path} to {value}: {exc.strerror}") from exc


def read_sysctl(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


class HostNet:
    """The host side: one rtnetlink socket (and an nftables one for a cheap chain listing).
    Not thread-safe, and bound to the thread that made it: the driver makes it, calls it and
    closes it in its :class:`NetlinkThread`."""

    def __init__(self) -> None:
        self.ipr = IPRoute()
        self._nft: Any = None
        self._chains: list[tuple[int, str, str, int | None, int | None]] | None = None
        self._chains_gen: int | None = None  # the ruleset generation _chains was read at
        self._bridges: dict[str, int] = {}  # name -> ifindex

    def close(self) -> None:
        for sock in (self.ipr, self._nft):
            if sock is not None:
                try:
                    sock.close()
                except Exception:
                    pass

    # ----------------------------------------------------------------------- queries
    def link(self, name: str) -> Any | None:
        """The link called ``name``, or ``None``."""
        try:
            return self.ipr.link("get", ifname=name)[0]
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise netlink_error(exc, f"cannot look up {name}") from exc

    def link_kind(self, name: str) -> str | None:
        """The kind of the link called ``name`` (``bridge``, ``veth``...; ``""`` for a device
        without one, such as ``lo``), or ``None`` if there is none."""
        msg = self.link(name)
        if msg is None:
            return None
        info = msg.get_attr("IFLA_LINKINFO")
        return (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""

    def taken_networks(self, ignore: str | None = None) -> list[ipaddress.IPv4Network]:
        """Every IPv4 network the host routes (any table but ``local``) or has an address in;
        default routes excepted, and the routes and addresses of the device ``ignore``."""
        skip = None
        if ignore is not None:
            msg = self.link(ignore)
            skip = msg["index"] if msg is not None else None
        taken = set()
        for r in self.ipr.route("dump", family=2):
            table = r.get_attr("RTA_TABLE") or r.get("table")
            if table == 255 or not r.get("dst_len"):
                continue
            if skip is not None and r.get_attr("RTA_OIF") == skip:
                continue
            taken.add(ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False))
        for a in self.ipr.get_addr(family=2):
            if skip is not None and a["index"] == skip:
                continue
            taken.add(ipaddress.IPv4Network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}",
                                            strict=False))
        return sorted(taken)

    def uplink_mtu(self, default: int = 1500) -> int:
        """The MTU of the interface of the host's default route (the main table's first)."""
        for r in self.ipr.route("dump", family=2):
            table = r.get_attr("RTA_TABLE") or r.get("table")
            if table == 254 and r.get("dst_len") == 0 and r.get("type") == 1:
                oif = r.get_attr("RTA_OIF")
                if oif is None:
                    multipath = r.get_attr("RTA_MULTIPATH")
                    oif = multipath[0]["oif"] if multipath else None
                if oif:
                    try:
                        return self.ipr.link("get", index=oif)[0].get_attr("IFLA_MTU") or default
                    except NetlinkError:
                        pass
        return default

    # ----------------------------------------------------------------------- bridges
    def ensure_bridge(self, name: str, mac: str, gateway: ipaddress.IPv4Interface, mtu: int,
                      gateway6: ipaddress.IPv6Interface | None = None) -> None:
        """Create the bridge (or repair it): MAC, MTU, the gateway address (and the IPv6 one,
        without duplicate address detection), up, ``route_localnet``.  ``AlreadyExists`` if
        ``name`` is a device of another kind."""
        self._bridges.pop(name, None)
        msg = self.link(name)
        try:
            if msg is None:
                self.ipr.link("add", ifname=name, kind="bridge", address=mac, mtu=mtu)
                msg = self.link(name)
            else:
                info = msg.get_attr("IFLA_LINKINFO")
                if info is None or info.get_attr("IFLA_INFO_KIND") != "bridge":
                    raise AlreadyExists(f"cannot create bridge {name}: a device of that name exists")
                if msg.get_attr("IFLA_MTU") != mtu:
                    self.ipr.link("set", index=msg["index"], mtu=mtu)
            index = msg["index"]
            addresses = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                         for a in self.ipr.get_addr(family=2, index=index)}
            want = (str(gateway.ip), gateway.network.prefixlen)
            for address, prefixlen in addresses - {want}:
                self.ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
            if want not in addresses:
                self.ipr.addr("add", index=index, address=want[0], prefixlen=want[1],
                              broadcast=str(gateway.network.broadcast_address))
            if gateway6 is not None:
                write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "0")
                have6 = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                         for a in self.ipr.get_addr(family=10, index=index)}
                if (str(gateway6.ip), gateway6.network.prefixlen) not in have6:
                    self.ipr.addr("add", index=index, address=str(gateway6.ip),
                                  prefixlen=gateway6.network.prefixlen, flags=IFA_F_NODAD)
            self.ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            raise netlink_error(exc, f"cannot set up bridge {name}") from exc
        write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")

    def delete_link(self, name: str) -> None:
        """Delete ``name`` if it exists (a veth takes its peer with it)."""
        self._bridges.pop(name, None)
        delete_link(self.ipr, name)

    def detach(self, name: str) -> None:
        """Take ``name`` off its bridge and down, if it exists: from then on no frame reaches
        it or leaves it (its peer loses carrier), and its deletion can wait."""
        try:
            self.ipr.link("set", ifname=name, state="down", master=0)
        except NetlinkError as exc:
            if exc.code not in (errno.ENODEV, errno.ENOENT):
                raise netlink_error(exc, f"cannot detach {name}") from exc

    # ----------------------------------------------------------------------- endpoints
    def attach(self, *, bridge: str, host_if: str, netns_path: str, ifname: str, mac: str,
               address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address | None,
               mtu: int, address6: ipaddress.IPv6Interface | None = None,
               gateway6: ipaddress.IPv6Address | None = None) -> None:
        """Make the endpoint; on failure remove what was made and raise."""
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"network namespace {netns_path} does not exist") from None
        except OSError as exc:
            raise InvalidArgument(f"cannot open network namespace {netns_path}: {exc.strerror}") from exc
        created = False
        try:
            with in_netns(fd, netns_path) as inner:
                try:
                    self._add_veth(bridge, host_if, fd, ifname, mac, mtu)
                    created = True
                    index = self.ipr.link("get", ifname=host_if)[0]["index"]
                    self.ipr.brport("set", index=index, mode=1)  # hairpin
                except NetlinkError as exc:
                    if exc.code == errno.EEXIST and _has_link(inner, ifname):
                        raise AlreadyExists(f"network namespace {netns_path} already has an "
                                            f"interface {ifname}") from None
                    raise netlink_error(exc, f"cannot create the veth pair {host_if}/{ifname}") from exc
                try:
                    inner_index = inner.link("get", ifname=ifname)[0]["index"]
                    inner.addr("add", index=inner_index, address=str(address.ip),
                               prefixlen=address.network.prefixlen,
                               broadcast=str(address.network.broadcast_address))
                    inner.link("set", index=inner_index, state="up", mtu=mtu)
                    inner.link("set", index=1, state="up")  # lo
                    if gateway is not None:
                        inner.route("add", dst="0.0.0.0/0", gateway=str(gateway),
                                    oif=inner_index, proto=3)
                    if address6 is not None:
                        inner.addr("add", index=inner_index, address=str(address6.ip),
                                   prefixlen=address6.network.prefixlen, flags=IFA_F_NODAD)
                        if gateway6 is not None:
                            inner.route("add", dst="::/0", gateway=str(gateway6),
                                        oif=inner_index, proto=3, family=10)
                except NetlinkError as exc:
                    raise netlink_error(exc, f"cannot configure {ifname} in {netns_path}") from exc
        except BaseException:
            if created:
                try:
                    self.delete_link(host_if)
                except CoreError:
                    pass
            raise
        finally:
            os.close(fd)

    def _add_veth(self, bridge: str, host_if: str, fd: int, ifname: str, mac: str, mtu: int) -> None:
        """One request: the pair, the host side on the bridge and up, the peer in the namespace
        (the bridge's index is cached; a stale one is looked up again)."""
        for attempt in (0, 1):
            index = self._bridges.get(bridge) if attempt == 0 else None
            if index is None:
                msg = self.link(bridge)
                if msg is None:
                    raise NotFound(f"bridge {bridge} does not exist")
                index = self._bridges[bridge] = msg["index"]
            try:
                self.ipr.link("add", ifname=host_if, kind="veth", mtu=mtu, master=index,
                              state="up", peer={"ifname": ifname, "net_ns_fd": fd,
                                                "address": mac, "mtu": mtu})
                return
            except NetlinkError as exc:
                if attempt or exc.code not in (errno.ENODEV, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                self._bridges.pop(bridge, None)

    # ----------------------------------------------------------------------- conntrack
    def forget_udp_flows(self, address: str) -> int:
        """Delete the UDP flows whose replies come from ``address`` (a leaving endpoint's).

        Connection tracking keeps a UDP "connection" alive as long as datagrams keep coming, and
        its NAT decision with it: without this, a client that keeps sending to a published UDP
        port would keep reaching the dead endpoint's address, never the port's next owner.
        Returns how many were deleted."""
        from pyroute2.conntrack import Conntrack
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        deleted = 0
        with Conntrack() as ct:
            stale = [e for e in ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=socket.IPPROTO_UDP))
                     if e.tuple_reply.saddr == address]
            for entry in stale:
                try:
                    ct.delete(entry)
                    deleted += 1
                except NetlinkError:
                    pass  # gone meanwhile
        return deleted

    # ----------------------------------------------------------------------- nftables
    def forward_chains(self) -> list[tuple[int, str, str, int | None, int | None]]:
        """``(family, table, chain, hooknum, policy)`` of every nftables base chain, from one
        netlink dump (no subprocess): what :func:`nft.drop_chain_fingerprint` needs.

        The ruleset's generation id (``NFT_MSG_GETGEN``, one short message) tells whether
        anything changed since the last dump; if nothing did, the last answer is returned.
        """
        if self._nft is None:
            from pyroute2.nftables.main import NFTables

            self._nft = NFTables(nfgen_family=0)
        from pyroute2.netlink import NLM_F_REQUEST
        from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_GETGEN, nft_gen_msg

        gen = [m.get_attr("NFTA_GEN_ID")
               for m in self._nft.request_get(nft_gen_msg(), NFT_MSG_GETGEN, msg_flags=NLM_F_REQUEST)]
        if gen and self._chains_gen == gen[0] and self._chains is not None:
            return list(self._chains)
        out = []
        for c in self._nft.get_chains():
            hook = c.get_attr("NFTA_CHAIN_HOOK")
            if hook is None:
                continue
            out.append((c["nfgen_family"], c.get_attr("NFTA_CHAIN_TABLE"),
                        c.get_attr("NFTA_CHAIN_NAME"), hook.get_attr("NFTA_HOOK_HOOKNUM"),
                        c.get_attr("NFTA_CHAIN_POLICY")))
        self._chains, self._chains_gen = out, (gen[0] if gen else None)
        return list(out)


def _has_link(ipr: IPRoute, name: str) -> bool:
    try:
        ipr.link("get", ifname=name)
        return True
    except NetlinkError:
        return False


def delete_link(ipr: IPRoute, name: str) -> None:
    try:
        ipr.link("del", ifname=name)
    except NetlinkError as exc:
        if exc.code not in (errno.ENODEV, errno.ENOENT):
            raise netlink_error(exc, f"cannot delete {name}") from exc


class Reaper:
    """Deletes detached links in a thread of its own.

    Unregistering a veth costs the kernel one RCU barrier — 20-30 ms on a small VM, more than
    the whole budget of a join and a leave — and most of it after the rtnl lock is released, so
    it need not hold anyone up.  ``leave`` detaches the host side at once (off the bridge, down)
    and hands the name here; ``done(name)`` is called once it is gone (the driver then forgets
    it: names waiting here are kept in the state, so a daemon killed meanwhile reaps them when
    it starts again).  :meth:`drain` waits until nothing is pending.
    """

    def __init__(self, done: Callable[[str], None]) -> None:
        self._done = done
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pending = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, name: str) -> None:
        with self._cond:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="core-bridge-reaper",
                                                daemon=True)
                self._thread.start()
        self._queue.put(name)

    def _run(self) -> None:
        ipr: IPRoute | None = None
        while True:
            name = self._queue.get()
            if name is None:
                break
            try:
                if ipr is None:
                    ipr = IPRoute()
                delete_link(ipr, name)
                self._done(name)
            except Exception:
                log.exception("cannot delete %s; it is retried when the driver starts again", name)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()
        if ipr is not None:
            ipr.close()

    def drain(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self.drain()
        with self._cond:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()


@contextmanager
def in_netns(fd: int, path: str) -> Iterator[IPRoute]:
    """An rtnetlink socket inside the namespace ``fd`` (the calling thread enters and leaves)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(fd)
        except OSError as exc:
            raise InvalidArgument(f"{path} is not a network namespace: {exc.strerror}") from exc
        try:
            sock = IPRoute()
        finally:
            _setns(home)  # a thread left in a container's namespace would poison the pool
    finally:
        os.close(home)
    try:
        yield sock
    finally:
        sock.close()

