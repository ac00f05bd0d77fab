"""Conformance: a network driver keeps the network contract (``core.contracts.network``).

Run against an installed driver (as root: the suite makes namespaces and talks through them)::

    pytest --pyargs core.testing.network --driver network=mydriver

(``CORE_TESTING_DRIVER_OPTIONS='{"nft-table": "ct1"}'`` hands the driver options, e.g. to keep
it off the names a live daemon uses), or subclass :class:`NetworkSuite` in your own tests::

    from core.testing.network import NetworkSuite

    class TestMyDriver(NetworkSuite):
        name = "mydriver"

        def driver_options(self):                  # DriverContext.options for the driver
            return {"table": "mytest"}

The driver is loaded through its entry point in a fresh root per test, its async methods run
on a trio loop of their own (:class:`NetworkHarness`), and every check looks at the kernel, not
at what the driver says: "containers" are network namespaces the suite makes
(``ip netns add core-nt-<pid>-<n>``), their interfaces, addresses and routes are read from
inside them, and reachability is tested with UDP datagrams between sockets opened inside them
(and, once, with ``ping`` run by ``nsenter``).  Five parts:

1. **Sequences against a model** (:class:`NetworkMachine`, hypothesis): networks with chosen or
   automatic subnets, ip ranges, internal or not; joins (dynamic and static addresses, taken
   ones, into fresh namespaces), leaves, deletions (refused while endpoints remain), driver
   restarts, publications (ephemeral and taken host ports), and reachability probes.  It
   checks that no address or host port is handed out twice, that the driver's listings match
   the model, that endpoints of one network reach each other and of different networks do not,
   that a failed join or a left endpoint leaves only ``lo`` in the namespace, and at the end
   that nothing is left: links, routes, namespaces, firewall state
   (:meth:`NetworkSuite.firewall_snapshot`) as before.
2. **Lifecycle rules** as plain tests: errors, static addresses, ip ranges, the namespace's
   configuration, internal networks, MTU, deletion leaving nothing.
3. **Published ports**: concrete host ports, conflicts, reachable from the host through
   loopback and the host's addresses, released by ``leave``.
4. **Restarts**: a new driver object on the same root has the same networks, endpoints,
   addresses and publications, and never hands out a live address again.
5. **Multi-host drivers** (:class:`MultiHostSuite`, for a
   :class:`~core.contracts.network.MultiHostNetworkDriver`): the driver runs in two hosts —
   network namespaces on one underlay (:class:`Underlay`, or the hosts of your own harness:
   override :meth:`MultiHostSuite.make_hosts`) — each in a process of its own
   (:class:`RemoteDriver`, ``python -m core.testing.network serve``); the same network is made
   on both with the swarm's allocation, endpoints join with the managers' addresses, peers are
   set, and traffic between the hosts is checked (TCP, UDP, payloads above the MTU, VXLAN or
   ESP seen on the underlay with an AF_PACKET :class:`Capture`), as is what is left in the
   hosts afterwards (links, XFRM state).  A driver whose networks are all multi-host
   (``multi_host_only = True``) skips parts 1-4.

Cleanup is by construction: every namespace, network and endpoint a test makes is removed even
when it fails, and a run that was killed half-way is cleaned up by the next one
(:func:`reap_stale`: namespaces ``core-nt-<pid>-*`` and driver roots ``/tmp/core-nt-<pid>-*``
of dead processes — the driver itself is reopened on the stale root and asked to leave and
delete what it has).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import ipaddress
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, \
    run_state_machine_as_test

from core.testing import TrioThread, close_driver, make_driver, options_from_env, pid_alive
from core.contracts.network import (Endpoint, EndpointRequest, MultiHost, Network, NetworkSpec,
                                    Peer, PortBinding, mac_for_address)
from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound

__all__ = ["NetworkSuite", "NetworkMachine", "NetworkHarness", "MultiHostSuite", "MultiHostPair",
           "RemoteDriver", "HostContext", "Underlay", "Capture", "tcp_transfer", "udp_datagram", "Namespaces", "HostSnapshot",
           "reap_stale", "netns_path", "call_in_netns", "socket_in", "netns_view", "udp_reachable",
           "tcp_exchange", "ping", "free_subnet", "PREFIX", "RUN_TAG", "run_tag"]

PREFIX = "core-nt"
"""Namespaces ``core-nt-<pid>-<n>`` and roots ``/tmp/core-nt-<pid>-*`` belong to this suite."""


def run_tag(pid: int) -> str:
    """The first 8 hex digits of every network id the run of process ``pid`` makes."""
    return f"c0{pid & 0xFFFFFF:06x}"


RUN_TAG = run_tag(os.getpid())
"""This run's tag (so ``br-<id[:12]>`` bridges of a run can be told apart, and those of a dead
run removed by :func:`reap_stale` when its driver cannot clear them)."""
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_ids = itertools.count()


def network_id() -> str:
    """A fresh 64-hex network id of this run."""
    return RUN_TAG + secrets.token_hex(28)


# =========================================================================== namespaces
def netns_path(name: str) -> str:
    return f"/var/run/netns/{name}"


class Namespaces:
    """Network namespaces of one test, removed by :meth:`close` whatever happened."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self) -> str:
        name = f"{PREFIX}-{os.getpid()}-{next(_ids)}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.names.append(name)
        return name

    def delete(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if name in self.names:
            self.names.remove(name)

    def close(self) -> None:
        for name in list(self.names):
            self.delete(name)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def call_in_netns(path: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a thread that has entered the namespace at ``path``; the thread
    ends with the call, so nothing else ever runs in the wrong namespace.  Sockets made there
    stay in that namespace."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            _setns(path)
            result.append(fn(*args))
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=target, name="core-testing-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def socket_in(path: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """An IPv4 socket inside the namespace at ``path``."""
    return call_in_netns(path, socket.socket, socket.AF_INET, kind)


def netns_view(path: str) -> dict[str, Any]:
    """What a container sees: ``{"links": {name: {"up", "mac", "mtu", "addresses"}},
    "routes": [(dst, gateway, dev)]}``, read with a netlink socket inside the namespace."""
    return call_in_netns(path, _view)


def _view() -> dict[str, Any]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:  # pyroute2 sockets belong to the thread (and namespace) using them
        names = {}
        links = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            links[name] = {"up": bool(link["flags"] & 1), "mac": link.get_attr("IFLA_ADDRESS"),
                           "mtu": link.get_attr("IFLA_MTU"), "addresses": []}
        for addr in ipr.get_addr(family=socket.AF_INET):
            links[names[addr["index"]]]["addresses"].append(
                ipaddress.IPv4Interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"))
        routes = []
        for r in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = r.get_attr("RTA_DST")
            routes.append((f"{dst}/{r['dst_len']}" if dst else "default",
                           r.get_attr("RTA_GATEWAY"), names.get(r.get_attr("RTA_OIF"))))
        return {"links": links, "routes": routes}


def udp_reachable(src: str, dst: str, address: str, timeout: float) -> bool:
    """Whether a datagram from namespace ``src`` reaches a socket bound to ``address`` in
    namespace ``dst`` within ``timeout`` seconds (an error sending counts as unreachable)."""
    rx = socket_in(dst)
    tx = socket_in(src)
    try:
        rx.bind((address, 0))
        rx.settimeout(timeout)
        token = secrets.token_bytes(8)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                tx.sendto(token, (address, rx.getsockname()[1]))
            except OSError:
                return False
            rx.settimeout(min(0.2, max(0.01, deadline - time.monotonic())))
            try:
                while True:
                    data, _ = rx.recvfrom(64)
                    if data == token:
                        return True
            except (socket.timeout, BlockingIOError):
                continue
        return False
    finally:
        rx.close()
        tx.close()


class TcpServer:
    """A TCP server inside a namespace (a thread of the test process, its socket made inside):
    every connection gets ``<peer ip>\\n`` and then an echo of what it sends."""

    def __init__(self, path: str, port: int, address: str = "0.0.0.0") -> None:
        self.sock = call_in_netns(path, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="core-testing-tcp")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.sendall(f"{peer[0]}\n".encode())
                    data = conn.recv(4096)
                    if data:
                        conn.sendall(data)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def tcp_exchange(address: str, port: int, path: str | None = None, timeout: float = 3.0,
                 source: str | None = None) -> str | None:
    """Connect (from namespace ``path``, or from here) to ``address:port``, send a token, and
    return the peer address the server saw — ``None`` if no connection or no echo."""
    s = socket_in(path, socket.SOCK_STREAM) if path else socket.socket(socket.AF_INET,
                                                                      socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((address, port))
        token = secrets.token_hex(8).encode()
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(256)
            if not chunk:
                return None
            buf += chunk
        seen, _, rest = buf.partition(b"\n")
        s.sendall(token)
        while len(rest) < len(token):
            chunk = s.recv(256)
            if not chunk:
                return None
            rest += chunk
        return seen.decode() if rest == token else None
    except OSError:
        return None
    finally:
        s.close()


def ping(path: str, address: str) -> bool:
    """One ICMP echo from namespace ``path`` with ``nsenter`` (iputils ``ping`` or busybox)."""
    if shutil.which("ping"):
        cmd = ["ping", "-c1", "-W1", address]
    elif shutil.which("busybox"):
        cmd = ["busybox", "ping", "-c1", "-W1", address]
    else:
        pytest.fail("neither ping nor busybox is installed: reachability cannot be checked")
    return subprocess.run(["nsenter", f"--net={path}", *cmd], capture_output=True,
                          timeout=10).returncode == 0


# =========================================================================== the host
def host_routes() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes or has an address in (default routes aside)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        out = set()
        for r in ipr.route("dump", family=socket.AF_INET):
            if r.get("dst_len") and (r.get_attr("RTA_TABLE") or r.get("table")) != 255:
                out.add(ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}",
                                              strict=False))
        for a in ipr.get_addr(family=socket.AF_INET):
            out.add(ipaddress.IPv4Network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}",
                                          strict=False))
        return sorted(out)


def free_subnet(prefixlen: int, avoid: list[ipaddress.IPv4Network] = (),
                within: str = "10.200.0.0/13") -> ipaddress.IPv4Network:
    """A random subnet of ``within`` overlapping no route of the host and nothing of ``avoid``."""
    base = ipaddress.IPv4Network(within)
    taken = host_routes() + list(avoid)
    count = 2 ** (prefixlen - base.prefixlen)
    for _ in range(200):
        n = secrets.randbelow(count)
        subnet = ipaddress.IPv4Network((int(base.network_address) + n * 2 ** (32 - prefixlen),
                                        prefixlen))
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise AssertionError(f"no free /{prefixlen} in {within}")


def host_links() -> dict[str, str]:
    """Host link name → kind (``""`` when it has none)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        out = {}
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            out[link.get_attr("IFLA_IFNAME")] = (info.get_attr("IFLA_INFO_KIND") or "") if info else ""
        return out


def nft_ruleset() -> list[dict[str, Any]]:
    """``nft -j list ruleset``, without metainfo ([] when nft is not installed)."""
    if shutil.which("nft") is None:
        return []
    out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                         check=True).stdout
    return [o for o in json.loads(out or '{"nftables": []}')["nftables"] if "metainfo" not in o]


def normalized(objects: list[dict[str, Any]]) -> frozenset[str]:
    """nft JSON objects without handles or counters, comparable across time."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("handle", "counter")}
        if isinstance(value, list):
            return [strip(v) for v in value if not (isinstance(v, dict) and "counter" in v)]
        return value
    return frozenset(json.dumps(strip(o), sort_keys=True) for o in objects)


class HostSnapshot:
    """What a driver may change on the host, as the suite compares it before and after."""

    def __init__(self, suite: NetworkSuite) -> None:
        self.links = {n for n in host_links() if suite.owned_link(n)}
        self.routes = set(host_routes())
        self.netns = {n for n in os.listdir("/var/run/netns")
                      if n.startswith(f"{PREFIX}-{os.getpid()}-")} if os.path.isdir(
            "/var/run/netns") else set()
        self.firewall = suite.firewall_snapshot()

    def assert_unchanged_since(self, before: HostSnapshot,
                               subnets: list[ipaddress.IPv4Network]) -> None:
        leaked_links = self.links - before.links
        assert not leaked_links, f"links left on the host: {sorted(leaked_links)}"
        leaked_routes = {r for r in self.routes - before.routes
                         if any(r.overlaps(s) for s in subnets)}
        assert not leaked_routes, f"routes left on the host: {sorted(map(str, leaked_routes))}"
        assert self.netns <= before.netns, f"namespaces left: {sorted(self.netns - before.netns)}"
        if self.firewall != before.firewall:
            gone = sorted(set(before.firewall) - set(self.firewall))
            new = sorted(set(self.firewall) - set(before.firewall))
            raise AssertionError(f"firewall state changed:\n  missing: {gone}\n  new: {new}")


# =========================================================================== harness
class NetworkHarness:
    """The driver under test in a fresh root, with synchronous helpers and the namespaces of
    the test.  :meth:`close` leaves every endpoint, deletes every network, closes the driver,
    removes the namespaces and the root — whatever state a failed test left."""

    def __init__(self, kind: str, name: str, options: dict[str, str] | None = None) -> None:
        if os.geteuid() != 0:
            pytest.skip("the network conformance suite makes namespaces and devices: run as root")
        self.kind, self.name = kind, name
        self.options = dict(options or {})
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{os.getpid()}-", dir="/tmp"))
        (self.root / "suite.json").write_text(json.dumps(
            {"kind": kind, "name": name, "options": self.options}))
        self.ns = Namespaces()
        self.subnets: list[ipaddress.IPv4Network] = []  # of every network made
        self._loop = TrioThread()
        self.driver: Any = None
        try:
            self.loaded, self.context, self.driver = self._loop.run_sync(
                make_driver, kind, name, self.root, self.options)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------- driver calls
    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._loop.run(functools.partial(method, *args, **kwargs))

    def create(self, spec: NetworkSpec | None = None, nid: str | None = None) -> Network:
        net = self.call(self.driver.create_network, nid or network_id(), spec or NetworkSpec())
        self.subnets.append(net.subnet)
        return net

    def delete(self, nid: str) -> None:
        self.call(self.driver.delete_network, nid)

    def join(self, nid: str, eid: str, netns: str, request: EndpointRequest | None = None) -> Endpoint:
        return self.call(self.driver.join, nid, eid, netns_path(netns), request)

    def leave(self, nid: str, eid: str) -> None:
        self.call(self.driver.leave, nid, eid)

    def publish(self, nid: str, eid: str, bindings: list[PortBinding]) -> list[PortBinding]:
        return self.call(self.driver.publish, nid, eid, bindings)

    def networks(self) -> list[Network]:
        return self.call(self.driver.networks)

    def endpoints(self, nid: str) -> list[Endpoint]:
        return self.call(self.driver.endpoints, nid)

    def reopen(self) -> None:
        """Close the driver and build it again on the same root (as a daemon restart does)."""
        self.call(close_driver, self.driver)
        self.driver = self._loop.run_sync(self.loaded.create, self.context)

    def clear(self) -> None:
        """Leave every endpoint and delete every network the driver has."""
        for net in self.networks():
            for ep in self.endpoints(net.id):
                self.leave(net.id, ep.endpoint_id)
            self.delete(net.id)

    def close(self) -> None:
        cleared = self.driver is None
        try:
            if self.driver is not None:
                try:
                    self.clear()
                    cleared = True
                finally:
                    self.call(close_driver, self.driver)
                    self.driver = None
        finally:
            self._loop.close()
            self.ns.close()
            if cleared:  # else the root stays: reap_stale clears the driver's leftovers later
                shutil.rmtree(self.root, ignore_errors=True)


async def clear_network_driver(driver: Any) -> None:
    """Leave every endpoint and delete every network a network driver has, then close it: what
    a test leaves on the host, removed through the driver itself (bridges, nft rules, ports)."""
    try:
        for net in await driver.networks():
            for ep in await driver.endpoints(net.id):
                await driver.leave(net.id, ep.endpoint_id)
            await driver.delete_network(net.id)
    finally:
        await close_driver(driver)


def reap_stale() -> None:
    """Remove what runs of this suite that died half-way left: their namespaces, and everything
    their drivers made (each stale root's driver is rebuilt and cleared, then the root removed)."""
    pattern = re.compile(rf"^{re.escape(PREFIX)}-(\d+)-")
    if os.path.isdir("/var/run/netns"):
        for name in os.listdir("/var/run/netns"):
            m = pattern.match(name)
            if m and not pid_alive(int(m.group(1))):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for root in Path("/tmp").glob(f"{PREFIX}-*"):
        m = pattern.match(root.name)
        if not m or pid_alive(int(m.group(1))) or not root.is_dir():
            continue
        try:
            info = json.loads((root / "suite.json").read_text())
            _, _, driver = make_driver(info["kind"], info["name"], root, info["options"])
            trio.run(clear_network_driver, driver)
        except Exception:  # noqa: BLE001 - the driver cannot clear it: remove the run's bridges by name
            for link in host_links():
                if link.startswith(f"br-{run_tag(int(m.group(1)))}"):
                    subprocess.run(["ip", "link", "delete", link], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_reaped = False
_multi_host: dict[str, bool] = {}


def _multi_host_only(kind: str, name: str, options: dict[str, str]) -> bool:
    """Whether the driver says its networks all need ``NetworkSpec.multi_host``
    (``multi_host_only = True`` on a :class:`MultiHostNetworkDriver`); built once in a scratch
    root to ask."""
    if name not in _multi_host:
        from core.contracts.network import MultiHostNetworkDriver

        root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{os.getpid()}-", dir="/tmp"))
        try:
            _, _, driver = make_driver(kind, name, root, options)
            _multi_host[name] = (isinstance(driver, MultiHostNetworkDriver)
                                 and bool(getattr(driver, "multi_host_only", False)))
            trio.run(close_driver, driver)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return _multi_host[name]


# =========================================================================== the model
class NetworkMachine(RuleBasedStateMachine):
    """Random create/join/leave/delete/restart sequences through the driver, against a model.

    Set ``suite`` on a subclass (:meth:`NetworkSuite.test_sequences_match_the_model` does).
    Bounded: at most 3 networks and 6 endpoints at a time; every endpoint is a fresh namespace,
    removed when it leaves.
    """

    suite: NetworkSuite

    def __init__(self) -> None:
        super().__init__()
        self.before = HostSnapshot(self.suite)
        self.h = NetworkHarness(self.suite.kind, self.suite.driver_name, self.suite.driver_options())
        self.nets: dict[str, dict[str, Any]] = {}   # id -> {"net": Network, "eps": {eid: (ns, ip)}}
        self.ports: dict[tuple[str, str], list[PortBinding]] = {}  # (network, endpoint) -> published
        self.subnets: list[ipaddress.IPv4Network] = []
        self.count = 0

    def teardown(self) -> None:
        try:
            for nid, m in list(self.nets.items()):
                for eid in list(m["eps"]):
                    self.h.leave(nid, eid)
                self.h.delete(nid)
        finally:
            self.h.close()
        HostSnapshot(self.suite).assert_unchanged_since(self.before, self.subnets)

    def _endpoints(self) -> list[tuple[str, str]]:
        return [(nid, eid) for nid, m in self.nets.items() for eid in m["eps"]]

    # ------------------------------------------------------------------- rules
    @precondition(lambda self: len(self.nets) < 3)
    @rule(explicit=st.booleans(), internal=st.booleans(), prefixlen=st.sampled_from([24, 26, 28]),
          with_range=st.booleans())
    def create_network(self, explicit: bool, internal: bool, prefixlen: int, with_range: bool) -> None:
        live = [m["net"].subnet for m in self.nets.values()]
        if explicit:
            subnet = free_subnet(prefixlen, live)
            ip_range = (list(subnet.subnets(new_prefix=prefixlen + 2))[1] if with_range else None)
            spec = NetworkSpec(name=f"m{len(self.subnets)}", subnet=subnet, ip_range=ip_range,
                               internal=internal)
        else:
            spec = NetworkSpec(name=f"m{len(self.subnets)}", internal=internal)
        taken = host_routes()
        net = self.h.create(spec)
        self.subnets.append(net.subnet)
        if explicit:
            assert net.subnet == spec.subnet and net.ip_range == spec.ip_range
            assert net.gateway == net.subnet.network_address + 1
        else:
            overlaps = [t for t in taken if t.overlaps(net.subnet)]
            assert not overlaps, f"automatic subnet {net.subnet} overlaps {overlaps} of the host"
        assert net.internal == internal and net.gateway in net.subnet
        self.nets[net.id] = {"net": net, "eps": {}}

    @precondition(lambda self: self.nets and len(self._endpoints()) < 6)
    @rule(data=st.data())
    def join(self, data: st.DataObject) -> None:
        nid = data.draw(st.sampled_from(list(self.nets)), label="network")
        m = self.nets[nid]
        net: Network = m["net"]
        used = {ip for _, ip in m["eps"].values()}
        request = EndpointRequest()
        expect: type[Exception] | None = None
        if net.subnet_given and data.draw(st.booleans(), label="static"):
            hosts = list(net.subnet.hosts())
            address = data.draw(st.sampled_from(hosts), label="address")
            request = EndpointRequest(address=address)
            if address == net.gateway or address in used:
                expect = Conflict
        eid = f"ep{self.count}"
        self.count += 1
        ns = self.h.ns.new()
        if expect is not None:
            with pytest.raises(expect):
                self.h.join(nid, eid, ns, request)
            assert self._only_loopback(ns), "a failed join left an interface in the namespace"
            self.h.ns.delete(ns)
            return
        ep = self.h.join(nid, eid, ns, request)
        ip = ep.address.ip
        assert ip not in used, f"{ip} handed out twice on {net.subnet}"
        assert ep.address.network == net.subnet and ip != net.gateway
        assert ip not in (net.subnet.network_address, net.subnet.broadcast_address)
        if request.address is not None:
            assert ip == request.address
        elif net.ip_range is not None:
            assert ip in net.ip_range, f"{ip} is outside the ip range {net.ip_range}"
        assert ep.gateway == (None if net.internal else net.gateway)
        view = netns_view(netns_path(ns))
        link = view["links"].get(ep.interface_name)
        assert link is not None and link["up"], f"no interface {ep.interface_name} up in {view}"
        assert ep.address in link["addresses"] and link["mac"] == ep.mac
        assert view["links"]["lo"]["up"]
        default = [r for r in view["routes"] if r[0] == "default"]
        assert default == ([] if net.internal else [("default", str(net.gateway), ep.interface_name)])
        m["eps"][eid] = (ns, ip)

    @precondition(lambda self: self._endpoints())
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        nid, eid = data.draw(st.sampled_from(self._endpoints()), label="endpoint")
        ns, _ = self.nets[nid]["eps"].pop(eid)
        self.ports.pop((nid, eid), None)
        self.h.leave(nid, eid)
        assert self._only_loopback(ns, wait=3.0), "leave left an interface in the namespace"
        self.h.ns.delete(ns)

    @precondition(lambda self: self.nets)
    @rule(data=st.data())
    def delete_network(self, data: st.DataObject) -> None:
        nid = data.draw(st.sampled_from(list(self.nets)), label="network")
        m = self.nets[nid]
        if m["eps"]:
            with pytest.raises(Conflict):
                self.h.delete(nid)
            return
        self.h.delete(nid)
        del self.nets[nid]
        net: Network = m["net"]
        assert net.interface not in host_links(), f"{net.interface} is left on the host"
        left = [r for r in host_routes() if r.overlaps(net.subnet)]
        assert not left, f"routes to {net.subnet} left: {left}"

    @precondition(lambda self: any(not self.nets[n]["net"].internal for n, _ in self._endpoints()))
    @rule(data=st.data(), udp=st.booleans(), reuse=st.booleans())
    def publish(self, data: st.DataObject, udp: bool, reuse: bool) -> None:
        choices = [(n, e) for n, e in self._endpoints() if not self.nets[n]["net"].internal]
        nid, eid = data.draw(st.sampled_from(choices), label="endpoint")
        held = [b for bs in self.ports.values() for b in bs]
        proto = "udp" if udp else "tcp"
        same = [b for b in held if b.protocol.value == proto]
        if reuse and same:  # a host port that is published already: refused, nothing changes
            with pytest.raises(Conflict):
                self.h.publish(nid, eid, PortBinding.parse(f"{same[0].host_port}:80/{proto}"))
            return
        (binding,) = self.h.publish(nid, eid, PortBinding.parse(f"80/{proto}"))
        assert binding.host_port and all(
            (b.host_port, b.protocol) != (binding.host_port, binding.protocol) for b in held), \
            f"host port {binding} handed out twice"
        self.ports.setdefault((nid, eid), []).append(binding)

    @rule()
    def restart(self) -> None:
        self.h.reopen()

    @precondition(lambda self: len(self._endpoints()) >= 2)
    @rule(data=st.data())
    def probe(self, data: st.DataObject) -> None:
        (na, ea), (nb, eb) = data.draw(
            st.lists(st.sampled_from(self._endpoints()), min_size=2, max_size=2, unique=True),
            label="pair")
        ns_a, _ = self.nets[na]["eps"][ea]
        ns_b, ip_b = self.nets[nb]["eps"][eb]
        if na == nb:
            assert udp_reachable(netns_path(ns_a), netns_path(ns_b), str(ip_b), 3.0), \
                f"{ea} cannot reach {eb} ({ip_b}) on the same network"
        else:
            assert not udp_reachable(netns_path(ns_a), netns_path(ns_b), str(ip_b), 0.3), \
                f"{ea} reaches {eb} ({ip_b}) on another network"

    # ------------------------------------------------------------------- invariants
    @invariant()
    def listings_match_the_model(self) -> None:
        nets = {n.id: n for n in self.h.networks()}
        assert set(nets) == set(self.nets)
        for nid, m in self.nets.items():
            assert nets[nid] == m["net"], "the network changed"
            listed = self.h.endpoints(nid)
            eps = {e.endpoint_id: e.address.ip for e in listed}
            assert eps == {eid: ip for eid, (_, ip) in m["eps"].items()}
            for e in listed:
                assert sorted(map(str, e.ports)) == sorted(map(str, self.ports.get((nid, e.endpoint_id), [])))
            assert len(set(eps.values())) == len(eps), "an address is handed out twice"

    def _only_loopback(self, ns: str, wait: float = 0.0) -> bool:
        deadline = time.monotonic() + wait
        while True:
            if set(netns_view(netns_path(ns))["links"]) == {"lo"}:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


# =========================================================================== the suite
class NetworkSuite:
    """The network conformance suite; subclass it with ``name = "<driver>"``."""

    kind = "network"
    name: str | None = None
    driver_name: str  # set per test from driver_under_test

    #: hypothesis settings of the state machine (bounded: each step makes real namespaces)
    stateful_settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                 database=None, suppress_health_check=list(HealthCheck))

    # ------------------------------------------------------------------- hooks for drivers
    def driver_options(self) -> dict[str, str]:
        """``DriverContext.options`` of the driver under test (a fresh call per harness):
        by default the JSON object in ``$CORE_TESTING_DRIVER_OPTIONS``, if set — so a run with
        ``--pyargs`` can keep its driver off the names a live daemon uses."""
        return options_from_env()

    def owned_link(self, name: str) -> bool:
        """Whether a host link named ``name`` could be the driver's (leak checks look at
        these only; the default, every link, is strictest but sees other programs' links)."""
        return True

    def firewall_snapshot(self) -> Any:
        """The firewall state the driver may change, comparable with ``==`` (default: the whole
        nftables ruleset without handles and counters)."""
        return normalized(nft_ruleset())

    # ------------------------------------------------------------------- fixtures
    @pytest.fixture(autouse=True)
    def _setup(self, driver_under_test: tuple[str, str]) -> None:
        global _reaped
        if os.geteuid() != 0:
            pytest.skip("the network conformance suite makes namespaces and devices: run as root")
        self.driver_name = driver_under_test[1]
        if not _reaped:
            _reaped = True
            reap_stale()
        if _multi_host_only(self.kind, self.driver_name, self.driver_options()):
            pytest.skip(f"{self.driver_name}'s networks are multi-host only: MultiHostSuite proves it")

    @pytest.fixture
    def h(self) -> Iterator[NetworkHarness]:
        before = HostSnapshot(self)
        harness = NetworkHarness(self.kind, self.driver_name, self.driver_options())
        try:
            yield harness
        finally:
            harness.close()
        HostSnapshot(self).assert_unchanged_since(before, harness.subnets)

    # ------------------------------------------------------------------- 1. the model
    def test_sequences_match_the_model(self) -> None:
        machine = type("NetworkSequences", (NetworkMachine,), {"suite": self})
        run_state_machine_as_test(machine, settings=self.stateful_settings)

    # ------------------------------------------------------------------- 2. lifecycle
    def test_create_and_delete_leave_nothing(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec(name="n"))
        assert net.gateway in net.subnet and net.interface in host_links()
        assert [n.id for n in h.networks()] == [net.id]
        assert h.call(h.driver.network, net.id) == net
        h.delete(net.id)
        assert h.networks() == [] and net.interface not in host_links()
        assert not [r for r in host_routes() if r.overlaps(net.subnet)]

    def test_network_errors(self, h: NetworkHarness) -> None:
        subnet = free_subnet(24)
        net = h.create(NetworkSpec(subnet=subnet))
        with pytest.raises(AlreadyExists):
            h.create(NetworkSpec(), nid=net.id)
        with pytest.raises(Conflict):
            h.create(NetworkSpec(subnet=subnet))
        with pytest.raises(NotFound):
            h.delete(network_id())
        with pytest.raises(NotFound):
            h.call(h.driver.network, network_id())
        other = free_subnet(24, [subnet])
        for bad in (dict(subnet=other, gateway=subnet.network_address + 1),
                    dict(subnet=other, ip_range=subnet),
                    dict(subnet=other, gateway=other.broadcast_address),
                    dict(subnet=other, aux_addresses={"x": str(subnet.network_address + 5)})):
            with pytest.raises(InvalidArgument):
                h.create(NetworkSpec(**bad))
        with pytest.raises(InvalidArgument):
            NetworkSpec(gateway="10.0.0.1")  # a gateway needs a subnet
        assert [n.id for n in h.networks()] == [net.id]

    def test_join_configures_the_namespace(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec(subnet=free_subnet(24), mtu=1280))
        ns = h.ns.new()
        ep = h.join(net.id, "e1", ns)
        assert ep.address.ip == net.subnet.network_address + 2  # the first after the gateway
        assert ep.mac == mac_for_address(ep.address.ip) and ep.mtu == 1280
        view = netns_view(netns_path(ns))
        eth0 = view["links"]["eth0"]
        assert eth0["up"] and eth0["mtu"] == 1280 and eth0["mac"] == ep.mac
        assert eth0["addresses"] == [ep.address] and view["links"]["lo"]["up"]
        assert ("default", str(net.gateway), "eth0") in view["routes"]
        ns2 = h.ns.new()
        ep2 = h.join(net.id, "e2", ns2, EndpointRequest(mac="02:00:00:00:00:2a", interface_name="net1"))
        assert netns_view(netns_path(ns2))["links"]["net1"]["mac"] == "02:00:00:00:00:2a"
        assert ep2.address.ip == net.subnet.network_address + 3
        assert ping(netns_path(ns), str(ep2.address.ip)), "ping between endpoints failed"
        assert ping(netns_path(ns), str(net.gateway)), "ping of the gateway failed"
        assert {e.endpoint_id for e in h.endpoints(net.id)} == {"e1", "e2"}
        assert h.call(h.driver.endpoint, net.id, "e1") == ep

    def test_join_errors_change_nothing(self, h: NetworkHarness) -> None:
        subnet = free_subnet(24)
        pool = list(subnet.subnets(new_prefix=30))[1]  # four addresses
        net = h.create(NetworkSpec(subnet=subnet, ip_range=pool))
        ns = h.ns.new()
        h.join(net.id, "e1", ns)
        with pytest.raises(AlreadyExists):
            h.join(net.id, "e1", h.ns.new())
        with pytest.raises(AlreadyExists):  # the namespace has an eth0 already
            h.join(net.id, "e2", ns)
        with pytest.raises(NotFound):
            h.call(h.driver.join, net.id, "e3", f"/var/run/netns/{PREFIX}-missing")
        with pytest.raises(NotFound):
            h.join(network_id(), "e4", h.ns.new())
        with pytest.raises(NotFound):
            h.leave(net.id, "nobody")
        assert set(netns_view(netns_path(ns))["links"]) == {"lo", "eth0"}
        for i in range(3):  # the failed joins hold no address: the other three are free
            h.join(net.id, f"ok{i}", h.ns.new())
        assert {e.address.ip for e in h.endpoints(net.id)} == set(pool)
        assert {e.endpoint_id for e in h.endpoints(net.id)} == {"e1", "ok0", "ok1", "ok2"}

    def test_static_addresses(self, h: NetworkHarness) -> None:
        subnet = free_subnet(24)
        ip_range = list(subnet.subnets(new_prefix=26))[1]
        net = h.create(NetworkSpec(subnet=subnet, ip_range=ip_range,
                                   aux_addresses={"router": str(subnet.network_address + 200)}))
        static = subnet.network_address + 10  # outside the ip range: allowed, as in docker
        ep = h.join(net.id, "s", h.ns.new(), EndpointRequest(address=static))
        assert ep.address.ip == static
        for taken in (static, net.gateway, subnet.network_address + 200):
            with pytest.raises(Conflict):
                h.join(net.id, f"t{int(taken)}", h.ns.new(), EndpointRequest(address=taken))
        for outside in (free_subnet(24, [subnet]).network_address + 5, subnet.broadcast_address):
            with pytest.raises(InvalidArgument):
                h.join(net.id, f"o{int(outside)}", h.ns.new(), EndpointRequest(address=outside))
        dynamic = h.join(net.id, "d", h.ns.new())
        assert dynamic.address.ip in ip_range
        h.leave(net.id, "s")
        again = h.join(net.id, "s2", h.ns.new(), EndpointRequest(address=static))
        assert again.address.ip == static  # freed by leave
        auto = h.create(NetworkSpec())
        with pytest.raises(InvalidArgument):
            h.join(auto.id, "x", h.ns.new(), EndpointRequest(address=auto.subnet.network_address + 9))

    def test_a_range_runs_out(self, h: NetworkHarness) -> None:
        subnet = free_subnet(24)
        net = h.create(NetworkSpec(subnet=subnet, ip_range=list(subnet.subnets(new_prefix=30))[1]))
        got = {h.join(net.id, f"e{i}", h.ns.new()).address.ip for i in range(4)}
        assert got == set(list(subnet.subnets(new_prefix=30))[1])
        with pytest.raises(CoreError) as info:
            h.join(net.id, "e5", h.ns.new())
        assert info.value.status == 503
        h.leave(net.id, "e2")
        assert h.join(net.id, "e6", h.ns.new()).address.ip in got

    def test_addresses_are_not_reused_at_once(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec(subnet=free_subnet(24)))
        first = h.join(net.id, "a", h.ns.new()).address.ip
        h.leave(net.id, "a")
        second = h.join(net.id, "b", h.ns.new()).address.ip
        assert second != first, "a freed address was handed out again at once"

    def test_delete_with_endpoints_is_refused(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec())
        h.join(net.id, "e", h.ns.new())
        with pytest.raises(Conflict):
            h.delete(net.id)
        h.leave(net.id, "e")
        h.delete(net.id)

    def test_leave_removes_the_interface(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec())
        ns = h.ns.new()
        h.join(net.id, "e", ns)
        h.leave(net.id, "e")
        deadline = time.monotonic() + 3
        while set(netns_view(netns_path(ns))["links"]) != {"lo"}:
            assert time.monotonic() < deadline, "the interface is still in the namespace"
            time.sleep(0.02)
        assert h.endpoints(net.id) == []

    def test_leave_after_the_namespace_is_gone(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec())
        ns = h.ns.new()
        h.join(net.id, "e", ns)
        h.ns.delete(ns)  # the container died first
        h.leave(net.id, "e")
        assert h.endpoints(net.id) == []

    def test_networks_are_isolated(self, h: NetworkHarness) -> None:
        a, b = h.create(NetworkSpec(name="a")), h.create(NetworkSpec(name="b"))
        assert not a.subnet.overlaps(b.subnet)
        na1, na2, nb = h.ns.new(), h.ns.new(), h.ns.new()
        h.join(a.id, "a1", na1)
        a2 = h.join(a.id, "a2", na2)
        b1 = h.join(b.id, "b1", nb)
        assert udp_reachable(netns_path(na1), netns_path(na2), str(a2.address.ip), 3.0)
        assert not udp_reachable(netns_path(na1), netns_path(nb), str(b1.address.ip), 0.5)
        assert not udp_reachable(netns_path(nb), netns_path(na2), str(a2.address.ip), 0.5)

    def test_internal_networks_have_no_way_out(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec(internal=True))
        assert net.internal
        n1, n2 = h.ns.new(), h.ns.new()
        e1 = h.join(net.id, "e1", n1)
        e2 = h.join(net.id, "e2", n2)
        assert e1.gateway is None
        assert [r for r in netns_view(netns_path(n1))["routes"] if r[0] == "default"] == []
        assert udp_reachable(netns_path(n1), netns_path(n2), str(e2.address.ip), 3.0)
        with pytest.raises(InvalidArgument):
            h.publish(net.id, "e1", PortBinding.parse("80"))

    def test_state_survives_a_restart(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec(subnet=free_subnet(24)))
        ns1, ns2 = h.ns.new(), h.ns.new()
        e1 = h.join(net.id, "e1", ns1)
        e2 = h.join(net.id, "e2", ns2)
        ports = h.publish(net.id, "e2", PortBinding.parse("80"))
        h.reopen()
        assert h.networks() == [net]
        assert {e.endpoint_id: (e.address, tuple(e.ports)) for e in h.endpoints(net.id)} == \
            {"e1": (e1.address, ()), "e2": (e2.address, tuple(ports))}
        e3 = h.join(net.id, "e3", h.ns.new())
        assert e3.address.ip not in (e1.address.ip, e2.address.ip)
        assert udp_reachable(netns_path(ns1), netns_path(ns2), str(e2.address.ip), 3.0)
        with pytest.raises(Conflict):
            h.publish(net.id, "e1", [PortBinding(80, host_port=ports[0].host_port)])

    # ------------------------------------------------------------------- 3. published ports
    def test_published_ports_answer_on_the_host(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec())
        ns = h.ns.new()
        h.join(net.id, "web", ns)
        server = TcpServer(netns_path(ns), 80)
        try:
            (binding,) = h.publish(net.id, "web", PortBinding.parse("80"))
            assert binding.host_port and binding.container_port == 80 and not binding.host_port_end
            assert tcp_exchange("127.0.0.1", binding.host_port) is not None, "not on 127.0.0.1"
            for address in _host_addresses():
                assert tcp_exchange(address, binding.host_port) is not None, f"not on {address}"
            h.leave(net.id, "web")
            assert tcp_exchange("127.0.0.1", binding.host_port, timeout=0.5) is None, \
                "the port still answers after leave"
        finally:
            server.close()

    def test_host_port_conflicts(self, h: NetworkHarness) -> None:
        net = h.create(NetworkSpec())
        h.join(net.id, "a", h.ns.new())
        h.join(net.id, "b", h.ns.new())
        (first,) = h.publish(net.id, "a", PortBinding.parse("80"))
        port = first.host_port
        with pytest.raises(Conflict, match=rf"Bind for 0\.0\.0\.0:{port} failed: port is already allocated"):
            h.publish(net.id, "b", PortBinding.parse(f"{port}:80"))
        with pytest.raises(Conflict):
            h.publish(net.id, "b", PortBinding.parse(f"127.0.0.1:{port}:80"))
        (udp,) = h.publish(net.id, "b", PortBinding.parse(f"{port}:80/udp"))  # another protocol
        assert udp.host_port == port
        two = h.publish(net.id, "b", PortBinding.parse("81") + PortBinding.parse("82"))
        assert len({b.host_port for b in two}) == 2 and port not in {b.host_port for b in two}
        with pytest.raises(Conflict):  # all or nothing
            h.publish(net.id, "b", PortBinding.parse("83") + PortBinding.parse(f"{port}:84"))
        assert len(h.call(h.driver.endpoint, net.id, "b").ports) == 3
        h.leave(net.id, "a")
        (again,) = h.publish(net.id, "b", PortBinding.parse(f"{port}:85"))
        assert again.host_port == port


def _host_addresses() -> list[str]:
    """The host's global IPv4 addresses (traffic to them stays on the host)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)
                if a["scope"] == 0 and not a.get_attr("IFA_ADDRESS").startswith("127.")]


# =========================================================================== multi-host
class RemoteDriver:
    """A network driver running in another host's network namespace: a process of its own
    (``nsenter --net=<host> python -m core.testing.network serve ...``) that loads the driver
    through its entry point on ``root`` and runs the calls it is sent (pickled, over its stdin
    and stdout) on a trio loop.  Errors come back as the driver's exceptions.  The process ends
    when :meth:`close` is called or the test process dies (its stdin closes)."""

    def __init__(self, kind: str, name: str, host_netns: str, root: Path,
                 options: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        self.timeout = timeout
        config = json.dumps({"kind": kind, "name": name, "root": str(root),
                             "options": dict(options or {})})
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={host_netns}", sys.executable, "-m", "core.testing.network",
             "serve", config], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._lock = threading.Lock()
        try:
            self.call("__ping__")
        except BaseException:
            self.kill()
            raise

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``await driver.<method>(*args, **kwargs)`` in the host; its result or its error."""
        with self._lock:
            _send(self.proc.stdin, (method, args, kwargs))
            reply = _receive(self.proc.stdout)
        if reply is None:
            raise RuntimeError(f"the driver process of {method} exited "
                               f"({self.proc.poll()}); see its stderr above")
        status, value = reply
        if status == "err":
            raise value
        return value

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(self.call, method)

    def reopen(self) -> None:
        """Close the driver and build it again on the same root (a daemon restart)."""
        self.call("__reopen__")

    def clear(self) -> None:
        """Leave every endpoint and delete every network."""
        self.call("__clear__")

    def close(self) -> None:
        """Close the driver and end the process (killed if it does not end in 10 s)."""
        if self.proc.poll() is None:
            try:
                self.call("__close__")
            except Exception:  # noqa: BLE001 - ending it regardless
                pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _send(stream: Any, obj: Any) -> None:
    import pickle

    data = pickle.dumps(obj)
    stream.write(len(data).to_bytes(4, "big") + data)
    stream.flush()


def _receive(stream: Any) -> Any:
    import pickle

    head = stream.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "big")
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def _serve(config: dict[str, Any]) -> None:
    """The process of a :class:`RemoteDriver` (stdout carries replies only: prints go to stderr)."""
    import pickle

    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr

    async def main() -> None:
        loaded, context, driver = make_driver(config["kind"], config["name"], Path(config["root"]),
                                              config["options"])
        while True:
            message = await trio.to_thread.run_sync(_receive, requests)
            if message is None:
                await close_driver(driver)
                return
            method, args, kwargs = message
            try:
                if method == "__ping__":
                    result: Any = None
                elif method == "__multi_host__":
                    from core.contracts.network import MultiHostNetworkDriver

                    result = isinstance(driver, MultiHostNetworkDriver)
                elif method == "__reopen__":
                    await close_driver(driver)
                    driver = loaded.create(context)
                    result = None
                elif method == "__clear__":
                    for net in await driver.networks():
                        for ep in await driver.endpoints(net.id):
                            await driver.leave(net.id, ep.endpoint_id)
                        await driver.delete_network(net.id)
                    result = None
                elif method == "__close__":
                    await close_driver(driver)
                    _send(replies, ("ok", None))
                    return
                else:
                    result = await getattr(driver, method)(*args, **kwargs)
                reply: tuple[str, Any] = ("ok", result)
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                reply = ("err", exc)
            try:
                pickle.dumps(reply)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                reply = ("err", RuntimeError(repr(reply[1])))
            _send(replies, reply)

    trio.run(main)


@attrs.frozen
class HostContext:
    """One host of a multi-host test: its network namespace (``netns_path``), its underlay
    address (``address``, IPv4) and the interface that holds it there (``interface``)."""

    name: str
    netns_path: str
    address: str
    interface: str = "eth0"


class Underlay:
    """``count`` hosts on one underlay of the suite's own: namespaces ``core-nt-<pid>-<n>``, a
    bridge in one of them, a veth ``eth0`` into each host with ``10.251.<x>.<10+i>/24`` (MTU
    1500).  :meth:`close` removes them all (so everything a driver made in them goes too)."""

    def __init__(self, count: int = 2) -> None:
        self.ns = Namespaces()
        self.hosts: list[HostContext] = []
        try:
            ul = self.ns.new()
            prefix = f"10.251.{os.getpid() % 250}"
            _ip_run("-n", ul, "link", "add", "br0", "type", "bridge")
            _ip_run("-n", ul, "link", "set", "br0", "up")
            for i in range(count):
                host = self.ns.new()
                _ip_run("-n", ul, "link", "add", f"h{i}", "type", "veth", "peer", "name", "eth0",
                        "netns", host)
                _ip_run("-n", ul, "link", "set", f"h{i}", "master", "br0", "up")
                _ip_run("-n", host, "link", "set", "lo", "up")
                _ip_run("-n", host, "addr", "add", f"{prefix}.{10 + i}/24", "dev", "eth0")
                _ip_run("-n", host, "link", "set", "eth0", "up")
                self.hosts.append(HostContext(f"host{i}", netns_path(host), f"{prefix}.{10 + i}"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.ns.close()


def _ip_run(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def links_in(path: str) -> set[str]:
    """The names of the links in the namespace at ``path``."""
    return set(netns_view(path)["links"])


def xfrm_in(path: str) -> str:
    """``ip xfrm state`` and ``ip xfrm policy`` of the namespace at ``path`` ("" if none)."""
    out = []
    for what in ("state", "policy"):
        proc = subprocess.run(["nsenter", f"--net={path}", "ip", "xfrm", what], capture_output=True,
                              text=True, timeout=30)
        out.append(proc.stdout.strip())
    return "\n".join(o for o in out if o)


class Capture:
    """IPv4 packets seen on ``interface`` of the namespace at ``path``, both ways (an AF_PACKET
    socket made there, read by a thread): :attr:`packets` holds ``(protocol, src, dst, udp
    dport)``."""

    def __init__(self, path: str, interface: str) -> None:
        self.packets: list[tuple[int, str, str, int | None]] = []
        # ETH_P_ALL: a socket bound to one protocol (ETH_P_IP) sees only what comes in
        self.sock = call_in_netns(path, socket.socket, socket.AF_PACKET, socket.SOCK_RAW,
                                  socket.htons(0x0003))
        self.sock.bind((interface, 0))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="core-testing-capture")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(65535)
            except (socket.timeout, OSError):
                continue
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            if len(ip) < 20 or ip[0] >> 4 != 4:
                continue
            ihl = (ip[0] & 15) * 4
            proto = ip[9]
            dport = int.from_bytes(ip[ihl + 2:ihl + 4], "big") if proto == 17 else None
            self.packets.append((proto, socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]),
                                 dport))

    def close(self) -> list[tuple[int, str, str, int | None]]:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.packets


def tcp_transfer(src: str, dst: str, address: str, size: int, timeout: float = 20.0) -> bool:
    """Whether ``size`` bytes sent over TCP from namespace ``src`` to a server in namespace
    ``dst`` at ``address`` arrive whole and in order (a digest of both ends compared)."""
    import hashlib

    payload = secrets.token_bytes(size)
    server = call_in_netns(dst, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    got: list[bytes] = []

    def receive() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(timeout)
            digest, n = hashlib.sha256(), 0
            try:
                while n < size:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    digest.update(chunk)
                    n += len(chunk)
            except OSError:
                pass
            got.append(digest.digest() if n == size else b"")

    server.bind((address, 0))
    server.listen(1)
    server.settimeout(timeout)
    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    client = socket_in(src, socket.SOCK_STREAM)
    try:
        client.settimeout(timeout)
        client.connect((address, server.getsockname()[1]))
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
    except OSError:
        return False
    finally:
        client.close()
        thread.join(timeout)
        server.close()
    return bool(got) and got[0] == hashlib.sha256(payload).digest()


def udp_datagram(src: str, dst: str, address: str, size: int, timeout: float = 3.0) -> bool:
    """Whether one UDP datagram of ``size`` bytes (fragmented if larger than the MTU) from
    namespace ``src`` reaches a socket at ``address`` in namespace ``dst`` whole (retried)."""
    payload = secrets.token_bytes(size)
    rx, tx = socket_in(dst), socket_in(src)
    try:
        rx.bind((address, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tx.sendto(payload, (address, rx.getsockname()[1]))
            rx.settimeout(0.3)
            try:
                data, _ = rx.recvfrom(size + 1)
                if data == payload:
                    return True
            except socket.timeout:
                continue
        return False
    except OSError:
        return False
    finally:
        rx.close()
        tx.close()


class MultiHostPair:
    """What a :class:`MultiHostSuite` test gets: the driver in two hosts (``a``, ``b``: each a
    :class:`RemoteDriver`), their :class:`HostContext` s, and namespaces for endpoints."""

    def __init__(self, suite: MultiHostSuite, hosts: list[HostContext]) -> None:
        self.hosts = hosts
        self.ns = Namespaces()
        self.roots: list[Path] = []
        self.drivers: list[RemoteDriver] = []
        try:
            for host in hosts[:2]:
                root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{os.getpid()}-", dir="/tmp"))
                self.roots.append(root)
                self.drivers.append(RemoteDriver(suite.kind, suite.driver_name, host.netns_path,
                                                 root, suite.driver_options()))
        except BaseException:
            self.close()
            raise
        self.a, self.b = self.drivers

    def spec(self, vni: int, subnet: str, host: HostContext, **kwargs: Any) -> NetworkSpec:
        return NetworkSpec(name=kwargs.pop("name", "ov"), subnet=subnet,
                           multi_host=MultiHost(vni=vni, local=host.address,
                                                encrypted=kwargs.pop("encrypted", False),
                                                port=kwargs.pop("port", 4789)),
                           **kwargs)

    def network(self, vni: int = 4097, subnet: str = "10.77.0.0/24", **kwargs: Any
                ) -> tuple[str, Network, Network]:
        """The same network (id, VNI, subnet) created on both hosts."""
        nid = network_id()
        na = self.a.create_network(nid, self.spec(vni, subnet, self.hosts[0], **dict(kwargs)))
        nb = self.b.create_network(nid, self.spec(vni, subnet, self.hosts[1], **dict(kwargs)))
        return nid, na, nb

    def endpoints(self, nid: str, first: str = "10.77.0.2", second: str = "10.77.0.3",
                  peers: bool = True) -> tuple[str, str, Endpoint, Endpoint]:
        """An endpoint on each host (namespaces ``na``, ``nb``), with the managers' addresses;
        with ``peers``, each host told of the other's endpoint (and of its own, to be ignored)."""
        na, nb = self.ns.new(), self.ns.new()
        ea = self.a.join(nid, "ep-a", netns_path(na), EndpointRequest(address=first))
        eb = self.b.join(nid, "ep-b", netns_path(nb), EndpointRequest(address=second))
        if peers:
            both = [Peer(ea.address.ip, ea.mac, self.hosts[0].address),
                    Peer(eb.address.ip, eb.mac, self.hosts[1].address)]
            self.a.set_peers(nid, both)
            self.b.set_peers(nid, both)
        return netns_path(na), netns_path(nb), ea, eb

    def close(self) -> None:
        try:
            for driver in self.drivers:
                try:
                    driver.clear()
                finally:
                    driver.close()
        finally:
            self.ns.close()
            for root in self.roots:
                shutil.rmtree(root, ignore_errors=True)


class MultiHostSuite:
    """The conformance suite of multi-host network drivers
    (:class:`core.contracts.network.MultiHostNetworkDriver`): the driver runs in two hosts
    (network namespaces on one underlay, :class:`Underlay`, unless :meth:`make_hosts` gives
    others) — each its own process (:class:`RemoteDriver`) — and the same network is created on
    both with the swarm's allocation; endpoints are namespaces made by the test.  It checks
    TCP and UDP between endpoints on different hosts only once peers are set (on the VXLAN port
    of ``MultiHost.port``), payloads larger than the overlay's MTU (fragmented UDP, a TCP
    stream), the MTU (underlay − 50, or the
    ``com.docker.network.driver.mtu`` option), that removed peers are cut off, a restart of
    the driver keeping the data path, errors, encrypted networks (the underlay carries ESP, IP
    protocol 50, and no VXLAN — or, on a kernel without ESP, ``Unavailable`` at create), and
    that the last ``leave`` and ``delete_network`` leave no device and no XFRM state in the
    hosts.

    Subclass it with ``name = "<driver>"``; override :meth:`make_hosts` to run on hosts of your
    own harness (the project's tests use its multi-host harness, ``tests/support/hosts.py``).
    """

    kind = "network"
    name: str | None = None
    driver_name: str
    #: the underlay MTU of the hosts (:class:`Underlay`'s)
    underlay_mtu = 1500

    def driver_options(self) -> dict[str, str]:
        return options_from_env()

    @contextlib.contextmanager
    def make_hosts(self) -> Iterator[list[HostContext]]:
        """Two hosts (:class:`HostContext`) on one underlay, removed afterwards."""
        underlay = Underlay(2)
        try:
            yield underlay.hosts
        finally:
            underlay.close()

    @pytest.fixture(autouse=True)
    def _setup(self, driver_under_test: tuple[str, str]) -> None:
        global _reaped
        if os.geteuid() != 0:
            pytest.skip("the multi-host network suite makes namespaces and devices: run as root")
        self.driver_name = driver_under_test[1]
        if not _reaped:
            _reaped = True
            reap_stale()

    @pytest.fixture
    def pair(self) -> Iterator[MultiHostPair]:
        with self.make_hosts() as hosts:
            before = [links_in(h.netns_path) for h in hosts[:2]]
            p = MultiHostPair(self, hosts)
            if not p.a.call("__multi_host__"):
                p.close()
                pytest.skip(f"{self.driver_name} is not a multi-host network driver")
            try:
                yield p
            finally:
                p.close()
            after = [links_in(h.netns_path) for h in hosts[:2]]
            assert after == before, f"links left in the hosts: {[a - b for a, b in zip(after, before)]}"
            for h in hosts[:2]:
                assert xfrm_in(h.netns_path) == "", f"XFRM state left in {h.name}"

    # ------------------------------------------------------------------- traffic
    def test_endpoints_on_two_hosts_talk_once_peers_are_set(self, pair: MultiHostPair) -> None:
        nid, net_a, net_b = pair.network()
        assert net_a.multi_host.vni == net_b.multi_host.vni == 4097
        ns_a, ns_b, ea, eb = pair.endpoints(nid, peers=False)
        assert not udp_reachable(ns_a, ns_b, "10.77.0.3", 0.5), "reached before any peer was set"
        both = [Peer(ea.address.ip, ea.mac, pair.hosts[0].address),
                Peer(eb.address.ip, eb.mac, pair.hosts[1].address)]
        pair.a.set_peers(nid, both)
        pair.b.set_peers(nid, both)
        assert set(pair.a.peers(nid)) == set(both)
        host_a, host_b = pair.hosts[0], pair.hosts[1]
        capture = Capture(host_a.netns_path, host_a.interface)
        try:
            assert udp_reachable(ns_a, ns_b, "10.77.0.3", 3.0), "UDP a -> b"
            assert udp_reachable(ns_b, ns_a, "10.77.0.2", 3.0), "UDP b -> a"
            server = TcpServer(ns_b, 8080)
            try:
                assert tcp_exchange("10.77.0.3", 8080, ns_a) == "10.77.0.2", "TCP a -> b"
            finally:
                server.close()
        finally:
            packets = capture.close()
        # the traffic crossed the underlay between the two VTEPs, encapsulated (VXLAN: UDP 4789)
        assert (17, host_a.address, host_b.address, 4789) in packets, sorted(set(packets))
        assert (17, host_b.address, host_a.address, 4789) in packets, packets[:20]

    def test_the_data_path_port(self, pair: MultiHostPair) -> None:
        """``MultiHost.port`` (``swarm init --data-path-port``): the tunnels' UDP port."""
        nid, _, _ = pair.network(port=7789)
        ns_a, ns_b, _, _ = pair.endpoints(nid)
        host_a, host_b = pair.hosts[0], pair.hosts[1]
        capture = Capture(host_a.netns_path, host_a.interface)
        try:
            assert udp_reachable(ns_a, ns_b, "10.77.0.3", 3.0), "UDP a -> b"
            assert tcp_transfer(ns_a, ns_b, "10.77.0.3", 1 << 20), "1 MiB over TCP"
            time.sleep(0.5)  # (the capture's thread reads what it has queued)
        finally:
            packets = capture.close()
        assert (17, host_a.address, host_b.address, 7789) in packets, sorted(set(packets))
        assert not [p for p in packets if p[0] == 17 and p[3] == 4789], "VXLAN on port 4789"

    def test_mtu_and_payloads_larger_than_it(self, pair: MultiHostPair) -> None:
        nid, net, _ = pair.network()
        assert net.mtu == self.underlay_mtu - 50
        ns_a, ns_b, ea, _ = pair.endpoints(nid)
        assert ea.mtu == net.mtu
        assert netns_view(ns_a)["links"]["eth0"]["mtu"] == net.mtu
        assert udp_datagram(ns_a, ns_b, "10.77.0.3", 8000), "a fragmented UDP datagram"
        assert tcp_transfer(ns_a, ns_b, "10.77.0.3", 4 << 20), "4 MiB over TCP"
        assert tcp_transfer(ns_b, ns_a, "10.77.0.2", 1 << 20), "1 MiB back over TCP"

    def test_the_mtu_option(self, pair: MultiHostPair) -> None:
        nid, net, _ = pair.network(options={"com.docker.network.driver.mtu": "1300"})
        assert net.mtu == 1300
        ns_a, ns_b, _, _ = pair.endpoints(nid)
        assert netns_view(ns_b)["links"]["eth0"]["mtu"] == 1300
        assert tcp_transfer(ns_a, ns_b, "10.77.0.3", 1 << 20)

    def test_endpoints_have_no_route_out(self, pair: MultiHostPair) -> None:
        nid, _, _ = pair.network(internal=True)
        ns_a, _, ea, _ = pair.endpoints(nid)
        assert ea.gateway is None
        assert not [r for r in netns_view(ns_a)["routes"] if r[0] == "default"]

    def test_peers_may_come_before_the_endpoints(self, pair: MultiHostPair) -> None:
        """The engine learns the cluster's endpoints (its own node's among them) before its
        tasks join: the peers are programmed when the first endpoint joins."""
        nid, _, _ = pair.network()
        both = [Peer("10.77.0.2", mac_for_address(ipaddress.IPv4Address("10.77.0.2")),
                     pair.hosts[0].address),
                Peer("10.77.0.3", mac_for_address(ipaddress.IPv4Address("10.77.0.3")),
                     pair.hosts[1].address)]
        pair.a.set_peers(nid, both)
        pair.b.set_peers(nid, both)
        ns_a, ns_b, _, _ = pair.endpoints(nid, peers=False)
        assert udp_reachable(ns_a, ns_b, "10.77.0.3", 3.0)
        assert udp_reachable(ns_b, ns_a, "10.77.0.2", 3.0)
        with pytest.raises(Conflict):  # a remote endpoint's address is not this node's to give
            pair.a.join(nid, "c", netns_path(pair.ns.new()), EndpointRequest(address="10.77.0.3"))

    def test_removed_peers_are_cut_off(self, pair: MultiHostPair) -> None:
        nid, _, _ = pair.network()
        ns_a, ns_b, ea, eb = pair.endpoints(nid)
        assert udp_reachable(ns_a, ns_b, "10.77.0.3", 3.0)
        pair.a.set_peers(nid, [])
        assert not udp_reachable(ns_a, ns_b, "10.77.0.3", 0.5), "a removed peer is still reached"
        pair.a.set_peers(nid, [Peer(eb.address.ip, eb.mac, pair.hosts[1].address)])
        assert udp_reachable(ns_a, ns_b, "10.77.0.3", 3.0), "the peer is back"

    def test_networks_with_other_vnis_are_apart(self, pair: MultiHostPair) -> None:
        nid1, nid2 = network_id(), network_id()   # the same subnet, two VNIs
        pair.a.create_network(nid1, pair.spec(4101, "10.77.0.0/24", pair.hosts[0]))
        pair.b.create_network(nid2, pair.spec(4102, "10.77.0.0/24", pair.hosts[1]))
        na, nb = pair.ns.new(), pair.ns.new()
        ea = pair.a.join(nid1, "a", netns_path(na), EndpointRequest(address="10.77.0.2"))
        eb = pair.b.join(nid2, "b", netns_path(nb), EndpointRequest(address="10.77.0.3"))
        pair.a.set_peers(nid1, [Peer(eb.address.ip, eb.mac, pair.hosts[1].address)])
        pair.b.set_peers(nid2, [Peer(ea.address.ip, ea.mac, pair.hosts[0].address)])
        assert not udp_reachable(netns_path(na), netns_path(nb), "10.77.0.3", 0.5), \
            "traffic crossed from one VNI to another"

    def test_a_restart_keeps_the_data_path(self, pair: MultiHostPair) -> None:
        nid, _, _ = pair.network()
        ns_a, ns_b, _, _ = pair.endpoints(nid)
        peers = pair.a.peers(nid)
        pair.a.reopen()
        pair.b.reopen()
        assert pair.a.peers(nid) == peers
        assert [e.endpoint_id for e in pair.b.endpoints(nid)] == ["ep-b"]
        assert udp_reachable(ns_a, ns_b, "10.77.0.3", 3.0)

    # ------------------------------------------------------------------- lifecycle
    def test_the_last_leave_removes_the_data_path(self, pair: MultiHostPair) -> None:
        host = pair.hosts[0].netns_path
        before = links_in(host)
        nid, _, _ = pair.network()
        assert links_in(host) == before, "devices made before any endpoint joined"
        _, ns_b, _, _ = pair.endpoints(nid)
        assert links_in(host) - before, "no device while an endpoint is joined"
        pair.ns.delete(os.path.basename(ns_b))  # the container is gone before it leaves
        pair.b.leave(nid, "ep-b")
        assert pair.b.endpoints(nid) == []
        pair.a.leave(nid, "ep-a")
        deadline = time.monotonic() + 5
        while links_in(host) != before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert links_in(host) == before, f"left after the last leave: {links_in(host) - before}"
        pair.a.delete_network(nid)
        assert [n.id for n in pair.a.networks()] == []

    def test_errors(self, pair: MultiHostPair) -> None:
        host = pair.hosts[0]
        with pytest.raises(InvalidArgument):  # no swarm allocation
            pair.a.create_network(network_id(), NetworkSpec(subnet="10.78.0.0/24"))
        with pytest.raises(InvalidArgument):  # an underlay address that is not the host's
            pair.a.create_network(network_id(), NetworkSpec(
                subnet="10.78.0.0/24", multi_host=MultiHost(vni=5000, local="192.0.2.77")))
        nid, _, _ = pair.network()
        with pytest.raises(Conflict):  # the subnet overlaps
            pair.a.create_network(network_id(), pair.spec(4200, "10.77.0.128/25", host))
        with pytest.raises(Conflict):  # the VNI is taken
            pair.a.create_network(network_id(), pair.spec(4097, "10.79.0.0/24", host))
        with pytest.raises(InvalidArgument):
            pair.a.set_peers(nid, [Peer("10.99.0.1", "02:42:0a:63:00:01", pair.hosts[1].address)])
        with pytest.raises(NotFound):
            pair.a.set_peers(network_id(), [])
        _, _, _, _ = pair.endpoints(nid)
        with pytest.raises(Conflict):  # the address is taken on this host
            pair.a.join(nid, "again", netns_path(pair.ns.new()), EndpointRequest(address="10.77.0.2"))
        with pytest.raises(Conflict):
            pair.a.delete_network(nid)

    # ------------------------------------------------------------------- encryption
    def test_encrypted_networks_carry_esp(self, pair: MultiHostPair) -> None:
        from core.contracts.network import DataPathKey
        from core.errors import Unavailable

        pair.a.set_keys([DataPathKey(key=b"k" * 16, tag=2), DataPathKey(key=b"j" * 16, tag=1)])
        pair.b.set_keys([DataPathKey(key=b"k" * 16, tag=2), DataPathKey(key=b"j" * 16, tag=1)])
        try:
            nid, net, _ = pair.network(encrypted=True)
        except Unavailable as exc:
            assert "ESP" in str(exc), exc
            pytest.skip(f"this kernel cannot encrypt: {exc}")
        assert net.multi_host.encrypted and net.mtu < self.underlay_mtu - 50
        ns_a, ns_b, _, _ = pair.endpoints(nid)
        host_a = pair.hosts[0]
        capture = Capture(host_a.netns_path, host_a.interface)
        try:
            assert udp_reachable(ns_a, ns_b, "10.77.0.3", 3.0), "UDP over the encrypted network"
            assert tcp_transfer(ns_a, ns_b, "10.77.0.3", 1 << 20), "TCP over the encrypted network"
        finally:
            packets = capture.close()
        between = [p for p in packets if {p[1], p[2]} == {host_a.address, pair.hosts[1].address}]
        assert any(p[0] == 50 for p in between), "no ESP on the underlay"
        assert not [p for p in between if p[3] == 4789], "VXLAN in clear on the underlay"


class TestNetwork(NetworkSuite):
    """Collected when this module is run with ``--pyargs``; runs for every ``--driver network=``."""


class TestMultiHostNetwork(MultiHostSuite):
    """Collected with ``--pyargs`` too; skipped for drivers that are not multi-host."""


if __name__ == "__main__":  # the process of a RemoteDriver: python -m core.testing.network serve CONFIG
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m core.testing.network serve CONFIG-JSON")
    _serve(json.loads(sys.argv[2]))
