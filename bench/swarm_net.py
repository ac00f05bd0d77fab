#!/usr/bin/env python3
"""The overlay's data plane against the underlay: TCP throughput and request latency between two
endpoints on different hosts, over the overlay (the ``overlay`` driver's VXLAN) and between the
hosts' underlay addresses (the floor).

Two machines of the multi-host harness (``tests/support/hosts.py``, without daemons), the
overlay driver run in each host's namespace (``core.testing.network.RemoteDriver``), one
endpoint namespace per host joined to one overlay network, peers set.  A third path is a bare
VXLAN device made by hand (``ip link add … type vxlan``, another VNI and port) in each host's
namespace with an address on it: the ceiling of any VXLAN overlay between these hosts, to tell
the driver's own cost from VXLAN's.

Throughput: ``iperf3`` where it is installed (Debian's ``iperf3``, ``ci/apt-packages.txt``),
else a Python socket pump (a sender writing 256 KiB blocks, a receiver reading into one
buffer) — the tool is printed; each run ``-t`` seconds.  Latency: a 1-byte request/response
ping-pong over one TCP connection (``-n`` round trips, median), always the Python pump.  Every
round measures each path once, one right after another, in an order that alternates round by
round (A B C, C B A, ...): the machine's load, shared with other work, moves between rounds far
more than within one, so the figure is the **median over rounds of the round's own ratio**
overlay / underlay (medians of each path's rates are printed as well).  With iperf3, the CPU
time the two ends used per GB is printed too, and its ratio underlay / overlay: what the
throughput ratio would be on an idle machine where the CPU is the limit — a figure the load of
other work on the machine hardly moves.  Targets (issue 13):
overlay throughput >= 0.8 x underlay.  A benchmark, not a test: it prints, it never fails on
timing.

    PYTHONPATH=. .venv/bin/python bench/swarm_net.py [-t 2] [-n 2000] [-r 7] [--pump]

``--mesh`` measures the routing mesh instead, on three hosts with daemons (one manager, two
workers; a registry on loopback with the tests' busybox image): a service publishing port 80
in ingress mode with one task on wrk1 (the bench plays the leader: it writes the service and
its tasks into the managers' store, as tests/swarm/test_swarm_mesh.py does); the request latency
(a new TCP connection, ``GET /`` of busybox httpd, the answer read: median of ``-n``) from wrk2
through the mesh at wrk2's own address (no task there: host -> ingress sandbox -> overlay ->
task) against the same request to an httpd on wrk1's underlay address (the floor); then a second
task is added (a ``service scale`` 1 -> 2 as the leader writes it) and the bench reports the time
from the task's ``running`` report until the mesh's first answer from it.  Target (issue 13):
added latency through the mesh <= 0.2 ms per request.

    PYTHONPATH=. .venv/bin/python bench/swarm_net.py --mesh [-n 300]

Then a service of three tasks on port 8080 (an httpd that stops at once on SIGTERM) is updated,
one task at a time, with
``--update-order start-first`` and then ``stop-first``, while a machine of the underlay that runs
no task requests through mgr1's port in a loop (3 s timeout): the requests dropped are printed
(target, issue 13: zero for start-first); then the daemons are restarted without the drain
(``CORE_SWARM_TASK_DRAIN=0``, the tasks run on) and both updates are measured again.

``--peers`` measures how soon a new endpoint is reachable from another node, on three hosts with
daemons (one manager, two workers): an attachable overlay network, a container on wrk2 that
probes; ``-n`` times a container is created and started on wrk1 on the network (through the
API, docker's ``containers.run``) and the bench reports the time from the call's return (the
container runs) until a TCP
connection from the wrk2 container's namespace to the new one's address gets an answer (the
prober started beforehand; connection attempts every 5 ms, ARP retries every 10 ms in its
namespace; refused counts as an answer), and the same for an address known for long (the
method's floor).  Before the managers pushed networks' state, wrk2
learnt the new peer at its next poll (every second); now the manager pushes it on wrk2's session.

    PYTHONPATH=. .venv/bin/python bench/swarm_net.py --peers [-n 10]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any
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
    c, _ = s.accept(); n = 0; t0 = None; buf = bytearray(1 << 20)
    while True:
        k = c.recv_into(buf)
        if not k: break
        if t0 is None: t0 = time.perf_counter()
        n += k
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


HTTP_CLIENT = r'''
import socket, statistics, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = []
for _ in range(n):
    t0 = time.perf_counter()
    c = socket.create_connection((host, port), timeout=5)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    while c.recv(65536):
        pass
    c.close()
    times.append(time.perf_counter() - t0)
print(statistics.median(times))
'''


def core(host, *argv: str) -> str:
    """``core`` on ``host``; its output, or the bench ends with the error."""
    proc = host.core(*argv, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"[{host.name}] core {' '.join(argv)}: {proc.stderr}")
    return proc.stdout


def until(check, timeout: float = 90.0, what: str = ""):
    """``check()``'s first truthy answer, asked every 50 ms; the bench ends after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise SystemExit(f"timed out{': ' + what if what else ''}")


@contextlib.contextmanager
def small_swarm(pull: bool = False):
    """A registry on loopback with the tests' busybox image and three harness hosts in a swarm
    (mgr1 a manager at a 1 s heartbeat, wrk1 and wrk2 workers, all Ready): ``(cluster, image)``.
    ``pull``: the workers pull the image beforehand."""
    import tempfile

    from core.testing.registry_server import Registry
    from tests.support.fixtures import build_and_push_stock_images

    with Registry() as registry, tempfile.TemporaryDirectory() as layouts, Cluster(1, 2) as cluster:
        image = build_and_push_stock_images(registry, Path(layouts))["busybox:latest"].reference
        cluster.forward_loopback(registry.port)
        mgr1 = cluster["mgr1"]
        core(mgr1, "swarm", "init", "--advertise-addr", mgr1.address, "--dispatcher-heartbeat", "1s")
        token = core(mgr1, "swarm", "join-token", "-q", "worker").strip()
        for w in (cluster["wrk1"], cluster["wrk2"]):
            core(w, "swarm", "join", "--token", token, "--advertise-addr", w.address, f"{mgr1.address}:2377")
            if pull:
                core(w, "pull", image)
        until(lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split() == ["Ready"] * 3,
              what="the nodes ready")
        yield cluster, image


def mesh_main(args: argparse.Namespace) -> int:
    import trio

    from core.engine.swarm import tasks as swarm_tasks
    from core.engine.swarm.etcd import CLIENT_SOCKET_NAME, EtcdClient
    from core.engine.swarm.networks import AddressAllocator
    from core.engine.swarm.store import SERVICES, TASKS, Store, now_text

    serve = ["/bin/sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]

    def store_do(host, fn):
        async def run():
            async with EtcdClient(host.data_root / "swarm" / CLIENT_SOCKET_NAME, timeout=10) as etcd:
                return await fn(Store(etcd))
        return trio.run(run)

    with small_swarm() as (cluster, image):
        mgr1, wrk1, wrk2 = cluster["mgr1"], cluster["wrk1"], cluster["wrk2"]
        ids = {h: core(mgr1, "node", "inspect", "--format", "{{.ID}}", h).strip() for h in ("mgr1", "wrk1", "wrk2")}
        svc_id = "benchMesh0000000000000000"
        # the tasks' spec is the service's template: the leader's updater leaves them alone
        template = {"ContainerSpec": {"Image": image, "Command": serve}, "RestartPolicy": {"Condition": "none"}}
        store_do(mgr1, lambda s: s.put(SERVICES, {"ID": svc_id, "CreatedAt": now_text(), "Spec": {
            "Name": "bench", "TaskTemplate": template,
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 80,
                                        "PublishMode": "ingress"}]}}}, 0))

        def add_task(node: str, slot: int) -> str:
            async def put(store: Store) -> str:
                tid = swarm_tasks.new_task_id()
                await store.put(TASKS, {
                    "ID": tid, "CreatedAt": now_text(), "Labels": {}, "ServiceID": svc_id, "Slot": slot,
                    "Spec": template,
                    "NodeID": ids[node], "DesiredState": "running",
                    "Status": swarm_tasks.status("assigned", "scheduler assigned task to node"),
                    "NetworksAttachments": await AddressAllocator(store).attach([], tid, ingress=True),
                    "ServiceAnnotations": {"Name": "bench", "Labels": {}}, "SpecVersion": {"Index": 1}}, 0)
                return tid
            return store_do(mgr1, put)

        def state(tid: str) -> str:
            return store_do(mgr1, lambda s: s.get(TASKS, tid))[0]["Status"]["State"]

        def fetch(host, address: str) -> str:
            proc = host.exec("/bin/busybox", "wget", "-q", "-O", "-", f"http://{address}:80/", timeout=10)
            return proc.stdout.strip() if proc.returncode == 0 else ""

        first = add_task("wrk1", 1)
        until(lambda: state(first) == "running", what="the first task running")
        until(lambda: fetch(wrk2, wrk2.address), what="the mesh answering on wrk2")
        floor = subprocess.Popen([*wrk1.launcher, "/bin/busybox", "httpd", "-f", "-p", "8081", "-h", "/etc"])
        try:
            time.sleep(0.5)
            lat = {}
            for kind, address, port in (("underlay", wrk1.address, 8081), ("mesh", wrk2.address, 80)):
                out = wrk2.exec(sys.executable, "-c", HTTP_CLIENT.replace("GET /", "GET /hostname")
                                if kind == "underlay" else HTTP_CLIENT, address, str(port), str(args.n),
                                timeout=300)
                lat[kind] = float(out.stdout.strip())
        finally:
            floor.terminate()
            floor.wait()
        print(f"request latency (new connection, GET): underlay {lat['underlay'] * 1e3:.3f} ms, "
              f"through the mesh (node without a task) {lat['mesh'] * 1e3:.3f} ms, "
              f"added {(lat['mesh'] - lat['underlay']) * 1e3:+.3f} ms (target <= 0.2 ms)")
        before = {fetch(wrk2, wrk2.address) for _ in range(4)}
        second = add_task("mgr1", 2)
        until(lambda: state(second) == "running", what="the second task running")
        t_running = time.monotonic()
        until(lambda: fetch(wrk2, wrk2.address) not in before, what="the mesh answering from the second task")
        print(f"scale 1 -> 2: the mesh answers from the new task {time.monotonic() - t_running:.2f} s "
              f"after it reported running")
        rolling_updates(cluster, image, store_do)
    return 0




def rolling_updates(cluster, image: str, store_do) -> None:
    """Requests dropped during rolling updates (start-first, stop-first) of a service of three
    tasks published on port 8080, one task at a time, requested through mgr1's port from a
    machine of the underlay that runs no task; then again with the daemons restarted without
    the drain (``CORE_SWARM_TASK_DRAIN=0``: a task stopped as soon as it is told), to show what
    the drain saves."""
    from core.engine.swarm.store import TASKS
    from core.engine.swarm.worker import DRAIN_ENV
    from tests.support.mesh import REQUESTER, SERVE

    mgr1 = cluster["mgr1"]
    client = cluster.add_host("client", start=False)
    core(mgr1, "service", "create", "-d", "--name", "roll", "-p", "8080:80", "--replicas", "3",
         "--update-parallelism", "1", "--update-delay", "0s", "--update-monitor", "1s", image, *SERVE)

    def converged() -> bool:
        async def read(store):
            return [t for t, _v in await store.objects(TASKS)
                    if t.get("ServiceAnnotations", {}).get("Name") == "roll"]
        tasks = store_do(mgr1, read)
        live = [t for t in tasks if t.get("DesiredState") == "running"]
        return len(live) == 3 and all(t["Status"]["State"] == "running" for t in live) and all(
            t["Status"]["State"] in ("shutdown", "complete", "failed", "rejected", "orphaned")
            for t in tasks if t.get("DesiredState") != "running")

    def done() -> bool:
        state = mgr1.docker().services.get("roll").attrs.get("UpdateStatus", {}).get("State")
        return state == "completed" and converged()

    until(converged, timeout=180, what="three tasks of roll running")
    until(lambda: mgr1.exec("/bin/busybox", "wget", "-q", "-O", "-", f"http://{mgr1.address}:8080/",
                            timeout=10).returncode == 0, what="port 8080 answering")
    figures: dict[str, dict[str, Any]] = {}
    n = 0
    for drain in ("2 s", "none"):
        if drain == "none":  # the daemons again, without the drain (tasks outlive the restarts)
            for host in cluster.hosts:
                if host.name != "client":
                    host.stop()
                    host.env[DRAIN_ENV] = "0"
                    host.start()
            until(lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split() == ["Ready"] * 3,
                  timeout=120, what="the nodes ready after the restart")
            until(converged, timeout=120, what="roll's tasks after the restart")
        for order in ("start-first", "stop-first"):
            n += 1
            stop = client.root / f"stop-{n}"
            proc = subprocess.Popen([*client.launcher, sys.executable, "-c", REQUESTER, mgr1.address, "8080",
                                     str(stop), "3"], stdout=subprocess.PIPE, text=True)
            try:
                time.sleep(1)
                core(mgr1, "service", "update", "-d", "--update-order", order, "--env-add", f"ROUND={n}", "roll")
                until(done, timeout=240, what=f"the {order} update of roll")
                time.sleep(3)
            finally:
                stop.write_text("")
                out = proc.communicate(timeout=60)[0]
            figures[f"{order}, drain {drain}"] = json.loads(out)
    print("rolling update of 3 tasks, one at a time, requests through the mesh (mgr1:8080) from a "
          "machine without a task:")
    for what, f in figures.items():
        print(f"  {what:24s}: {len(f['failed'])} dropped of {f['ok'] + len(f['failed'])} requests "
              f"({len(f['slow'])} slower than 0.5 s)" + ("   (target: 0 for start-first)"
                                                    if what == "start-first, drain 2 s" else ""))


def iperf3_run(server_ns: str, client_ns: str, address: str, port: int, seconds: float,
               cpu: list[float] | None = None) -> float:
    """Bytes per second received in one ``iperf3`` run (server in ``server_ns``); appends to
    ``cpu`` the CPU seconds the sender and the receiver used per GB (their own time and the
    softirq work done in their context: on veths that is nearly the whole path)."""
    iperf = shutil.which("iperf3")
    srv = subprocess.Popen(["nsenter", f"--net={server_ns}", iperf, "-s", "-1", "-B", address,
                            "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # until it listens
            probe = subprocess.run(["nsenter", f"--net={server_ns}", "ss", "-Htln", f"sport = :{port}"],
                                   capture_output=True, text=True)
            if probe.stdout.strip():
                break
            time.sleep(0.02)
        out = subprocess.run(["nsenter", f"--net={client_ns}", iperf, "-c", address, "-p", str(port),
                              "-t", str(seconds), "-J"], capture_output=True, text=True, timeout=120,
                             check=True).stdout
        srv.wait(timeout=30)
        end = json.loads(out)["end"]
        rate = end["sum_received"]["bits_per_second"] / 8
        if cpu is not None:
            used = end["cpu_utilization_percent"]
            cpu.append((used["host_total"] + used["remote_total"]) / 100 * 1e9 / rate)
        return rate
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def bare_vxlan(hosts: list, vni: int = 4343, port: int = 4799) -> list[str]:
    """A VXLAN device ``bvx0`` by hand in each host's namespace (``10.78.0.<n>/24`` on it, static
    FDB and neighbour entries): no bridge, no endpoint namespace.  Returns the addresses."""
    def ip(host, *args: str) -> None:
        subprocess.run(["ip", "-n", host.netns, *args], check=True, capture_output=True)

    addrs, macs = [], []
    for n, host in enumerate(hosts, start=1):
        mac, addr = f"02:00:0a:4e:00:{n:02x}", f"10.78.0.{n}"
        ip(host, "link", "add", "bvx0", "type", "vxlan", "id", str(vni), "local", host.address,
           "dstport", str(port), "nolearning", "noudpcsum")
        ip(host, "link", "set", "bvx0", "address", mac, "mtu", "1450", "up")
        ip(host, "addr", "add", f"{addr}/24", "dev", "bvx0")
        addrs.append(addr)
        macs.append(mac)
    for n, host in enumerate(hosts):
        for m, other in enumerate(hosts):
            if m != n:
                ip(host, "neigh", "add", addrs[m], "lladdr", macs[m], "dev", "bvx0", "nud", "permanent")
                subprocess.run(["bridge", "-n", host.netns, "fdb", "add", macs[m], "dev", "bvx0",
                                "dst", other.address, "self", "permanent"], check=True, capture_output=True)
    return addrs


PROBE = r'''
import os, socket, sys, time
for dev in os.listdir("/proc/sys/net/ipv4/neigh"):
    if dev not in ("default", "lo"):
        with open(f"/proc/sys/net/ipv4/neigh/{dev}/retrans_time_ms", "w") as f:
            f.write("10")
print("ready", flush=True)
addr, port, t0, limit = sys.stdin.readline().split()
port, t0, limit = int(port), float(t0), float(limit)
while time.time() < t0 + limit:
    c = socket.socket(); c.settimeout(0.05)
    try:
        c.connect((addr, port))
    except ConnectionRefusedError:
        pass                       # an answer: the peer is reachable
    except OSError:
        time.sleep(0.005); continue
    finally:
        c.close()
    print(time.time() - t0); sys.exit(0)
print("timeout"); sys.exit(1)
'''


def probe(netns: str, start, limit: float = 30.0) -> float:
    """Seconds from ``t0`` until a TCP connection from ``netns`` to ``address`` is answered,
    ``(address, t0) = start()``; the prober is started (and its ARP retries shortened) before
    ``start`` runs."""
    proc = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", PROBE],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        address, t0 = start()
        proc.stdin.write(f"{address} 80 {t0} {limit}\n")
        proc.stdin.flush()
        out = proc.communicate(timeout=limit + 30)[0].strip()
        if proc.returncode != 0:
            raise SystemExit(f"{address} not reached: {out}")
        return float(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def peers_main(args: argparse.Namespace) -> int:
    with small_swarm(pull=True) as (cluster, image):
        mgr1, wrk1, wrk2 = cluster["mgr1"], cluster["wrk1"], cluster["wrk2"]
        core(mgr1, "network", "create", "-d", "overlay", "--attachable", "--subnet", "10.31.0.0/24", "peers-net")
        core(wrk2, "run", "-d", "--name", "prober", "--network", "peers-net", image, "sleep", "3600")
        cid = core(wrk2, "inspect", "-f", "{{.Id}}", "prober").strip()
        netns = str(wrk2.exec_root / "netns" / cid[:12])
        api = wrk1.docker()

        def start(name: str):
            def go() -> tuple[str, float]:
                c = api.containers.run(image, ["sleep", "3600"], name=name, network="peers-net",
                                       detach=True)
                t0 = time.time()  # the container runs
                c.reload()
                return c.attrs["NetworkSettings"]["Networks"]["peers-net"]["IPAddress"], t0
            return go

        times = []
        for i in range(args.n):
            time.sleep(0.5 + (i % 4) * 0.27)  # spread the starts over the poll's phase
            times.append(probe(netns, start(f"new{i}")))
        known = api.containers.get("new0").attrs["NetworkSettings"]["Networks"]["peers-net"]["IPAddress"]
        floor = statistics.median(probe(netns, lambda: (known, time.time())) for _ in range(5))
        times.sort()
        print(f"a new container on wrk1 reached from wrk2 (from its start's return through the API, "
              f"{args.n} starts): median {statistics.median(times) * 1e3:.0f} ms, "
              f"max {times[-1] * 1e3:.0f} ms, min {times[0] * 1e3:.0f} ms; an address known for long: "
              f"{floor * 1e3:.0f} ms (the method's floor)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", type=float, default=2.0, help="seconds per throughput run (default 2)")
    ap.add_argument("-n", type=int, default=2000, help="round trips per latency run (default 2000)")
    ap.add_argument("-r", type=int, default=7, help="rounds, each path once per round (default 7)")
    ap.add_argument("--pump", action="store_true", help="the Python pump even if iperf3 is installed")
    ap.add_argument("--mesh", action="store_true", help="measure the routing mesh instead (see above)")
    ap.add_argument("--peers", action="store_true", help="measure how soon a new endpoint is reached")
    args = ap.parse_args()
    if args.peers:
        if args.n == 2000:
            args.n = 10
        return peers_main(args)
    if args.mesh:
        if args.n == 2000:
            args.n = 300
        return mesh_main(args)
    tool = "python pump" if args.pump or not shutil.which("iperf3") else "iperf3"
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
            bare = bare_vxlan([h1, h2])
            paths = {"overlay": (netns_path(e1), netns_path(e2), "10.77.0.3"),
                     "underlay": (str(h1.netns_path), str(h2.netns_path), h2.address),
                     "bare vxlan": (str(h1.netns_path), str(h2.netns_path), bare[1])}
            rate: dict[str, list[float]] = {k: [] for k in paths}
            lat: dict[str, list[float]] = {k: [] for k in paths}
            cost: dict[str, list[float]] = {k: [] for k in paths}
            port = 5201
            for r in range(args.r):
                for kind in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
                    src, dst, address = paths[kind]
                    port += 1
                    if tool == "iperf3":
                        rate[kind].append(iperf3_run(dst, src, address, port, args.t, cost[kind]))
                    else:
                        rate[kind].append(pair_run(dst, ["sink", address, str(port)],
                                                   src, ["source", address, str(port), str(args.t)]))
                    port += 1
                    lat[kind].append(pair_run(dst, ["echo", address, str(port)],
                                              src, ["ping", address, str(port), str(args.n)]))
            print(f"MTU: overlay {a.mtu}, underlay 1500; throughput by {tool}, {args.t:g} s per run, "
                  f"{args.r} rounds")
            for kind in paths:
                ratios = [x / u for x, u in zip(rate[kind], rate["underlay"])]
                print(f"{kind:10s} TCP throughput: median {statistics.median(rate[kind]) * 8 / 1e9:6.2f} Gbit/s"
                      f"  (per round / underlay: {' '.join(f'{x:.2f}' for x in ratios)})"
                      f"   request latency: median {statistics.median(lat[kind]) * 1e6:6.1f} us")
            ratio = statistics.median(x / u for x, u in zip(rate["overlay"], rate["underlay"]))
            added = (statistics.median(lat["overlay"]) - statistics.median(lat["underlay"])) * 1e6
            print(f"overlay/underlay throughput: {ratio:.2f} (median of the rounds' ratios; "
                  f"target >= 0.8); added latency per request: {added:+.1f} us")
            if cost["overlay"]:
                print("CPU seconds per GB (sender + receiver): " + ", ".join(
                    f"{k} {statistics.median(v):.3f}" for k, v in cost.items()) +
                    f"; underlay/overlay: "
                    f"{statistics.median(cost['underlay']) / statistics.median(cost['overlay']):.2f} "
                    "(the throughput ratio an idle machine would show, if the CPU is the limit)")
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
