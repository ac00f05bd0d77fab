#!/usr/bin/env python3
"""The overlay's data plane against the underlay: TCP throughput and request latency between two
endpoints on different hosts, over the overlay (the ``overlay`` driver's VXLAN) and between the
hosts' underlay addresses (the floor).

Two machines of the multi-host harness (``tests/support/hosts.py``, without daemons), the
overlay driver run in each host's namespace (``core.testing.network.RemoteDriver``), one
endpoint namespace per host joined to one overlay network, peers set.  The traffic is a Python
socket pump in processes of their own (``iperf3`` is not installed here): a sender writing
256 KiB blocks for ``-t`` seconds, a receiver counting; and a 1-byte request/response ping-pong
over one TCP connection (``-n`` round trips, median).  Throughput and latency are measured
alternately overlay/underlay, ``-r`` rounds, medians reported.  Targets (issue 13): overlay
throughput >= 0.8 x underlay.  A benchmark, not a test: it prints, it never fails on timing.

    PYTHONPATH=. .venv/bin/python bench/swarm_net.py [-t 3] [-n 2000] [-r 3]

The routing mesh, ``service scale`` convergence and rolling-update drops are measured when those
parts exist (later work of issue 13).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.contracts.network import EndpointRequest, MultiHost, NetworkSpec, Peer  # noqa: E402
from core.testing.network import Namespaces, RemoteDriver, netns_path, network_id  # noqa: E402
from tests.support.hosts import Cluster  # noqa: E402

PUMP = r'''
import socket, sys, time
mode = sys.argv[1]
if mode == "sink":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3]))); s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept(); n = 0; t0 = None
    while True:
        b = c.recv(1 << 20)
        if not b: break
        if t0 is None: t0 = time.perf_counter()
        n += len(b)
    print(n / (time.perf_counter() - t0), flush=True)
elif mode == "source":
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    block = b"x" * (256 << 10); end = time.perf_counter() + float(sys.argv[4])
    while time.perf_counter() < end: c.sendall(block)
    c.close()
elif mode == "echo":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3]))); s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(1)
        if not b: break
        c.sendall(b)
elif mode == "ping":
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(int(sys.argv[4])):
        t = time.perf_counter(); c.sendall(b"x"); c.recv(1); times.append(time.perf_counter() - t)
    times.sort(); print(times[len(times) // 2], flush=True)
'''


def _in(path: str, *args: str) -> list[str]:
    return ["nsenter", f"--net={path}", sys.executable, "-c", PUMP, *args]


def pair_run(server_ns: str, server: list[str], client_ns: str, client: list[str]) -> float:
    """Start ``server`` in ``server_ns`` (waits for "ready"), run ``client``; the number the
    server (sink) or the client (ping) prints."""
    srv = subprocess.Popen(_in(server_ns, *server), stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        cli = subprocess.run(_in(client_ns, *client), capture_output=True, text=True, timeout=120,
                             check=True)
        out = srv.communicate(timeout=60)[0]
        return float((cli.stdout.strip() or out.strip()).splitlines()[-1])
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", type=float, default=3.0, help="seconds per throughput run (default 3)")
    ap.add_argument("-n", type=int, default=2000, help="round trips per latency run (default 2000)")
    ap.add_argument("-r", type=int, default=3, help="rounds, alternating overlay and underlay (default 3)")
    args = ap.parse_args()
    with Cluster(0, 2, daemons=False) as cluster:
        h1, h2 = cluster.hosts
        ns = Namespaces()
        drivers: list[RemoteDriver] = []
        try:
            nid = network_id()
            for host in (h1, h2):
                root = cluster.root / host.name / "overlay"
                d = RemoteDriver("network", "overlay", str(host.netns_path), root)
                drivers.append(d)
                d.create_network(nid, NetworkSpec(name="bench", subnet="10.77.0.0/24",
                                                  multi_host=MultiHost(vni=4242, local=host.address)))
            e1, e2 = ns.new(), ns.new()
            a = drivers[0].join(nid, "a", netns_path(e1), EndpointRequest(address="10.77.0.2"))
            b = drivers[1].join(nid, "b", netns_path(e2), EndpointRequest(address="10.77.0.3"))
            peers = [Peer(a.address.ip, a.mac, h1.address), Peer(b.address.ip, b.mac, h2.address)]
            for d in drivers:
                d.set_peers(nid, peers)
            paths = {"overlay": (netns_path(e1), netns_path(e2), "10.77.0.3"),
                     "underlay": (str(h1.netns_path), str(h2.netns_path), h2.address)}
            rate: dict[str, list[float]] = {"overlay": [], "underlay": []}
            lat: dict[str, list[float]] = {"overlay": [], "underlay": []}
            port = 5201
            for _ in range(args.r):
                for kind, (src, dst, address) in paths.items():
                    port += 1
                    rate[kind].append(pair_run(dst, ["sink", address, str(port)],
                                               src, ["source", address, str(port), str(args.t)]))
                    port += 1
                    lat[kind].append(pair_run(dst, ["echo", address, str(port)],
                                              src, ["ping", address, str(port), str(args.n)]))
            print(f"MTU: overlay {a.mtu}, underlay 1500")
            for kind in paths:
                print(f"{kind:9s} TCP throughput: median {statistics.median(rate[kind]) * 8 / 1e9:6.2f} Gbit/s"
                      f"   request latency: median {statistics.median(lat[kind]) * 1e6:6.1f} us"
                      f"  ({args.r} rounds)")
            ratio = statistics.median(rate["overlay"]) / statistics.median(rate["underlay"])
            added = (statistics.median(lat["overlay"]) - statistics.median(lat["underlay"])) * 1e6
            print(f"overlay/underlay throughput: {ratio:.2f} (target >= 0.8); "
                  f"added latency per request: {added:+.1f} us")
        finally:
            for d in drivers:
                try:
                    d.clear()
                finally:
                    d.close()
            ns.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
