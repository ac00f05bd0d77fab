"""The overlay network driver: the multi-host conformance suite (``core.testing.network``'s
:class:`MultiHostSuite`) on two hosts of the multi-host harness (``tests/support/hosts.py``,
machines without daemons: the driver runs in each host's namespace in a process of the suite),
and what only the overlay does: device names per engine, the sweep of devices a crash left,
no ``/sys`` writes, and ports refused."""
from __future__ import annotations

import contextlib
import subprocess
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
        assert len(ours) == 3 and {n[:3] for n in ours} == {"ovb", "ovx", "ove"}
        assert len({n[3:7] for n in ours}) == 1, ours  # one engine tag
        assert ea.host_interface in ours

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

    def test_ports_are_not_published(self, pair: MultiHostPair) -> None:
        nid, _, _ = pair.network()
        pair.endpoints(nid)
        with pytest.raises(InvalidArgument, match="routing mesh"):
            pair.a.publish(nid, "ep-a", PortBinding.parse("8080:80"))
