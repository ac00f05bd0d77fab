"""The overlay network driver: the multi-host conformance suite (``core.testing.network``'s
:class:`MultiHostSuite`) on two hosts of the multi-host harness (``tests/support/hosts.py``,
machines without daemons: the driver runs in each host's namespace in a process of the suite),
and what only the overlay does: device names per engine, the sweep of devices a crash left,
no ``/sys`` writes, and ports refused."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.contracts.network import EndpointRequest, MultiHost, NetworkSpec, Peer, PortBinding
from core.errors import InvalidArgument
from core.testing.network import (HostContext, MultiHostPair, MultiHostSuite, links_in,
                                  netns_path, network_id, udp_reachable)
from tests.support.hosts import Cluster


class TestOverlay(MultiHostSuite):
    name = "overlay"

    @contextlib.contextmanager
    def make_hosts(self) -> Iterator[list[HostContext]]:
        with Cluster(0, 2, daemons=False) as cluster:
            yield [HostContext(h.name, str(h.netns_path), h.address, "eth0") for h in cluster]

    def test_device_names_are_the_engines_own(self, pair: MultiHostPair) -> None:
        """Two engines in one host (two drivers on two roots) with networks of the same id
        name their devices apart; each sweeps only its own leftovers."""
        nid, _, _ = pair.network()
        _, _, ea, _ = pair.endpoints(nid)
        links = links_in(pair.hosts[0].netns_path)
        ours = sorted(n for n in links if n.startswith("ov"))
        assert len(ours) == 1 and ours[0].startswith("ovx"), ours  # one VXLAN device, no bridge
        assert ea.host_interface == ours[0]

    def test_a_crash_leaves_nothing_after_the_next_start(self, pair: MultiHostPair) -> None:
        nid, _, _ = pair.network()
        pair.endpoints(nid)
        host = pair.hosts[0].netns_path
        state = Path(pair.roots[0]) / "data" / "overlay.json"
        if not state.exists():
            state = next(Path(pair.roots[0]).rglob("overlay.json"))
        pair.a.kill()  # a crash: the devices stay
        assert any(n.startswith("ovx") for n in links_in(host))
        state.write_text('{"networks": {}, "keys": []}')  # the state lost them (a crash between)
        from core.testing.network import RemoteDriver

        pair.drivers[0] = pair.a = RemoteDriver("network", "overlay", host, pair.roots[0])
        pair.a.networks()  # the first call starts the driver: its sweep
        assert not [n for n in links_in(host) if n.startswith("ov")]

    def test_the_encrypted_option_is_never_ignored(self, pair: MultiHostPair) -> None:
        """docker's ``--opt encrypted`` encrypts even if the engine forgot ``multi_host``'s flag;
        on a kernel without ESP it is refused with the reason, never sent in clear."""
        from core.errors import Unavailable
        from drivers.net_overlay.netlink import esp_support

        nid = network_id()
        spec = pair.spec(4400, "10.77.0.0/24", pair.hosts[0], options={"encrypted": ""})
        if esp_support() is not None:
            with pytest.raises(Unavailable, match="ESP"):
                pair.a.create_network(nid, spec)
            assert pair.a.networks() == []
        else:
            assert pair.a.create_network(nid, spec).multi_host.encrypted

    def test_ports_are_not_published(self, pair: MultiHostPair) -> None:
        nid, _, _ = pair.network()
        pair.endpoints(nid)
        with pytest.raises(InvalidArgument, match="routing mesh"):
            pair.a.publish(nid, "ep-a", PortBinding.parse("8080:80"))


def test_xfrm_clear_removes_the_engines_policies_only(machines) -> None:
    """The IPsec clean-up (kernels without ESP still take policies): what carries the engine's
    reqid goes, another engine's stays; a failed programming leaves nothing."""
    cluster = machines(0, 1)
    host = cluster.hosts[0]
    code = (
        "from drivers.net_overlay import netlink as nl\n"
        "def policy(dst, reqid):\n"
        "    nl._ip_xfrm('policy', 'add', 'src', '10.0.0.1/32', 'dst', dst + '/32', 'proto', 'udp',\n"
        "                'dport', '4789', 'dir', 'out', 'tmpl', 'src', '10.0.0.1', 'dst', dst,\n"
        "                'proto', 'esp', 'reqid', str(reqid), 'mode', 'transport')\n"
        "policy('10.0.0.2', 70000); policy('10.0.0.3', 70001)\n"
        "nl.xfrm_clear(70000)\n"
        "out = nl._ip_xfrm('policy', 'list').stdout\n"
        "assert 'reqid 70001' in out and 'reqid 70000 ' not in out, out\n"
        "if nl.esp_support() is None:\n"
        "    nl.xfrm_program(70000, 0xc0e00001, '10.0.0.1', ['10.0.0.2'], [(b'k' * 16, 3)])\n"
        "    assert 'reqid 70000' in nl._ip_xfrm('state', 'list').stdout\n"
        "else:\n"
        "    try:\n"
        "        nl.xfrm_program(70000, 0xc0e00001, '10.0.0.1', ['10.0.0.2'], [(b'k' * 16, 3)])\n"
        "    except nl.CoreError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError('programmed without ESP')\n"
        "nl.xfrm_clear(70000); nl.xfrm_clear(70001)\n"
        "assert not nl._ip_xfrm('policy', 'list').stdout.strip()\n"
        "assert not nl._ip_xfrm('state', 'list').stdout.strip()\n")
    import sys

    proc = host.exec(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr


def test_two_engines_on_one_host_stay_apart(machines, tmp_path) -> None:
    """Two engines (two roots) in one host: their devices differ, each one's sweep and clean-up
    leave the other's alone; one VNI twice on one host is a clear Conflict."""
    from core.errors import Conflict
    from core.testing.network import Namespaces, RemoteDriver

    cluster = machines(0, 2)
    h1, h2 = cluster.hosts
    ns = Namespaces()
    drivers = []
    try:
        one = RemoteDriver("network", "overlay", str(h1.netns_path), tmp_path / "one")
        drivers.append(one)
        two = RemoteDriver("network", "overlay", str(h1.netns_path), tmp_path / "two")
        drivers.append(two)
        far = RemoteDriver("network", "overlay", str(h2.netns_path), tmp_path / "far")
        drivers.append(far)
        nid1, nid2 = network_id(), network_id()
        spec = lambda vni, host: NetworkSpec(subnet="10.77.0.0/24",  # noqa: E731
                                             multi_host=MultiHost(vni=vni, local=host.address))
        one.create_network(nid1, spec(4301, h1))
        two.create_network(nid2, spec(4302, h1))
        far.create_network(nid1, spec(4301, h2))
        e1, e2, e3 = ns.new(), ns.new(), ns.new()
        a = one.join(nid1, "a", netns_path(e1), EndpointRequest(address="10.77.0.2"))
        two.join(nid2, "b", netns_path(e2), EndpointRequest(address="10.77.0.2"))
        c = far.join(nid1, "c", netns_path(e3), EndpointRequest(address="10.77.0.3"))
        peers = [Peer(a.address.ip, a.mac, h1.address), Peer(c.address.ip, c.mac, h2.address)]
        one.set_peers(nid1, peers)
        far.set_peers(nid1, peers)
        mine = {n for n in links_in(str(h1.netns_path)) if n.startswith("ov")}
        assert len(mine) == 2 and len({n[3:7] for n in mine}) == 2  # a VXLAN device each
        two.reopen()  # its start-up sweep
        two.leave(nid2, "b")
        two.delete_network(nid2)
        assert {n for n in links_in(str(h1.netns_path)) if n.startswith("ov")} < mine
        assert udp_reachable(netns_path(e1), netns_path(e3), "10.77.0.3", 3.0)
        nid3 = network_id()  # one VNI twice on one host
        two.create_network(nid3, NetworkSpec(subnet="10.79.0.0/24",
                                             multi_host=MultiHost(vni=4301, local=h1.address)))
        with pytest.raises(Conflict, match="VNI 4301"):
            two.join(nid3, "d", netns_path(ns.new()))
        assert not [n for n in links_in(str(h1.netns_path)) if n.startswith("ov")
                    and n not in mine], "the failed join left a device"
    finally:
        for d in drivers:
            try:
                d.clear()
            finally:
                d.close()
        ns.close()


def _in_host(host, code: str) -> None:
    import sys

    proc = host.exec(sys.executable, "-c", "from drivers.net_overlay import netlink as nl\n" + code)
    assert proc.returncode == 0, proc.stderr


def test_encryption_selects_only_its_networks_vxlan(machines, tmp_path) -> None:
    """The IPsec selectors without ESP (this kernel has none): the engine's nftables table marks
    the VXLAN packets of one VNI for an ``out`` policy whose state is missing (so they are
    dropped) and drops that VNI's packets arriving without IPsec; another VNI between the same
    two hosts flows untouched; clearing restores the first."""
    from core.testing.network import Namespaces, RemoteDriver

    cluster = machines(0, 2)
    h1, h2 = cluster.hosts
    ns = Namespaces()
    drivers = [RemoteDriver("network", "overlay", str(h.netns_path), tmp_path / h.name)
               for h in (h1, h2)]
    try:
        paths = {}
        for vni, subnet in ((4501, "10.77.0"), (4502, "10.78.0")):
            nid = network_id()
            eps = []
            for d, h, last in ((drivers[0], h1, 2), (drivers[1], h2, 3)):
                d.create_network(nid, NetworkSpec(subnet=f"{subnet}.0/24",
                                                  multi_host=MultiHost(vni=vni, local=h.address)))
                path = netns_path(ns.new())
                eps.append((path, d.join(nid, "e", path, EndpointRequest(address=f"{subnet}.{last}"))))
            peers = [Peer(e.address.ip, e.mac, h.address) for (_, e), h in zip(eps, (h1, h2))]
            for d in drivers:
                d.set_peers(nid, peers)
            paths[vni] = (eps[0][0], eps[1][0], f"{subnet}.2", f"{subnet}.3")

        def flows(vni: int, forward: bool, timeout: float = 3.0) -> bool:
            a, b, addr_a, addr_b = paths[vni]
            return udp_reachable(a, b, addr_b, timeout) if forward else udp_reachable(b, a, addr_a, timeout)

        assert all(flows(v, f) for v in paths for f in (True, False))
        _in_host(h1, f"nl.firewall_program('beef', [4501], keys=True)\n"
                     f"nl.xfrm_policy(0x1beef, nl.mark_for('beef'), '{h1.address}', '{h2.address}', 0x1234)")
        _in_host(h2, "nl.firewall_program('beef', [4501], keys=True)")
        assert not flows(4501, True, 0.5), "a marked packet left without its IPsec state"
        assert not flows(4501, False, 0.5), "an unencrypted packet of an encrypted VNI came in"
        assert flows(4502, True) and flows(4502, False), "another VNI was touched"
        _in_host(h1, "nl.firewall_program('beef', [4501], keys=False)\nnl.xfrm_clear(0x1beef)")
        assert not flows(4501, True, 0.5), "sent in clear while there is no key"
        for h in (h1, h2):
            _in_host(h, "nl.firewall_clear('beef'); nl.xfrm_clear(0x1beef)")
        assert flows(4501, True) and flows(4501, False)
    finally:
        for d in drivers:
            try:
                d.clear()
            finally:
                d.close()
        ns.close()
