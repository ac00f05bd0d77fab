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
(and, once, with ``ping`` run by ``nsenter``).  Four parts:

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

Cleanup is by construction: every namespace, network and endpoint a test makes is removed even
when it fails, and a run that was killed half-way is cleaned up by the next one
(:func:`reap_stale`: namespaces ``core-nt-<pid>-*`` and driver roots ``/tmp/core-nt-<pid>-*``
of dead processes — the driver itself is reopened on the stale root and asked to leave and
delete what it has).
"""
from __future__ import annotations

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
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, \
    run_state_machine_as_test

from core.testing import TrioThread, close_driver, make_driver, options_from_env, pid_alive
from core.contracts.network import (Endpoint, EndpointRequest, Network, NetworkSpec, PortBinding,
                                    mac_for_address)
from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument, NotFound

__all__ = ["NetworkSuite", "NetworkMachine", "NetworkHarness", "Namespaces", "HostSnapshot",
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


class TestNetwork(NetworkSuite):
    """Collected when this module is run with ``--pyargs``; runs for every ``--driver network=``."""
