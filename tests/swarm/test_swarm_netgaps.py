"""Overlay networking beyond the book's walk, on the multi-host harness (one manager, one
worker), each node with a second underlay address that is its ``--data-path-addr``:

- ``--data-path-addr``: the VXLAN devices' local end and the peers' VTEPs are the data path
  addresses (not the advertise addresses), and traffic flows on them; ``--data-path-port``
  is the VXLAN devices' UDP port on every node;
- ``docker_gwbridge``: a container on an attachable overlay network only reaches a TCP server
  on the other host's underlay address and one on its own host, through the node's
  ``docker_gwbridge`` (``network ls``: scope local; not in the container's inspect); a
  container on an ``--internal`` overlay network gets none and reaches neither;
- ``--publish mode=host``: published on the nodes that run a task, straight to the task's
  container; ``Status.PortStatus``, ``service ps`` and ``ps`` PORTS; a port another program
  holds on a node fails the task there with docker's error while the other task runs, and
  runs there once the port is free;
- ``--ip`` on an attachable overlay network: the managers' allocator reserves it, a taken one
  is docker's error, one whose container is refused afterwards (``--ip6``) is given back;
- ``--endpoint-mode dnsrr``: the service's name answers its tasks' addresses (no VIP), as
  ``tasks.<service>`` does; tasks on different hosts exchange a TCP download and a UDP
  datagram larger than the overlay's MTU.

One shared cluster for the module: the tests run in file order and build on each other.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.support.swarm import cluster_fixture, core_ok as ok, wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 1)
RAFT_TICK = 0.1
DATA_PORT = 7789
BIG = 200_000
DATAGRAM = 3000     # bytes of one UDP datagram (the overlay's MTU is 1450)
SERVE = ["sh", "-c", f"mkdir -p /www && head -c {BIG} /dev/zero > /www/big && hostname > /www/who "
         "&& exec httpd -f -p 80 -h /www"]


def fetch(host, url: str) -> str | None:
    """``url`` fetched from the host's own namespace (None: no answer)."""
    try:
        proc = host.exec("/bin/busybox", "wget", "-q", "-O", "-", url, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def data_addr(host) -> str:
    """The host's second underlay address (its ``--data-path-addr``)."""
    return f"{host.cluster.subnet_prefix}.{110 + host.index}"


class Server:
    """A TCP server (python's http.server over a directory) in a host's own namespace."""

    def __init__(self, host, address: str, port: int, root) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "who").write_text(f"{host.name}\n")
        self.proc = subprocess.Popen(
            [*host.launcher, sys.executable, "-m", "http.server", "--bind", address,
             "--directory", str(root), str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://{address}:{port}/who"
        wait_for(f"{host.name}'s server", lambda: fetch(host, self.url), timeout=15)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Holder:
    """A program of the host holding a TCP port on all its addresses."""

    def __init__(self, host, port: int) -> None:
        self.proc = subprocess.Popen(
            [*host.launcher, sys.executable, "-c",
             "import socket, time; s = socket.socket(); "
             "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
             f"s.bind(('0.0.0.0', {port})); s.listen(); print('ok', flush=True); time.sleep(3600)"],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


cluster = cluster_fixture(CLUSTER_SHAPE, RAFT_TICK)


@pytest.fixture(scope="module")
def swarm(cluster, test_images) -> dict[str, Any]:
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    for host in (mgr1, wrk1):
        host.exec("ip", "addr", "add", f"{data_addr(host)}/24", "dev", "eth0", check=True)
    cluster.forward_loopback(test_images.registry.port)
    ok(mgr1, "swarm", "init", "--advertise-addr", mgr1.address, "--data-path-addr", data_addr(mgr1),
       "--data-path-port", str(DATA_PORT), "--dispatcher-heartbeat", "1s")
    token = ok(mgr1, "swarm", "join-token", "-q", "worker").strip()
    ok(wrk1, "swarm", "join", "--token", token, "--advertise-addr", wrk1.address,
       "--data-path-addr", data_addr(wrk1), f"{mgr1.address}:2377")
    wait_for("the nodes ready", lambda: ok(mgr1, "node", "ls", "--format", "{{.Status}}").split()
             == ["Ready"] * 2)
    image = test_images["busybox:latest"].reference
    for host in (mgr1, wrk1):
        ok(host, "pull", image, timeout=120)
    ok(mgr1, "network", "create", "-d", "overlay", "--attachable", "--subnet", "10.41.0.0/24", "gap-net")
    ok(mgr1, "network", "create", "-d", "overlay", "--attachable", "--internal", "--subnet",
       "10.42.0.0/24", "closed-net")
    return {"image": image}


def address_on(host, container: str, network: str) -> str:
    return ok(host, "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
              container).strip()


def test_the_data_path_runs_on_the_data_path_addresses(cluster, swarm):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    for host in (mgr1, wrk1):  # made when the node joined (as docker does), before any container
        wait_for(f"{host.name}'s docker_gwbridge", lambda: "docker_gwbridge bridge local" in ok(
            host, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").splitlines())
    ok(mgr1, "run", "-d", "--name", "g1", "--network", "gap-net", swarm["image"], *SERVE)
    ok(wrk1, "run", "-d", "--name", "g2", "--network", "gap-net", swarm["image"], "sleep", "3600")
    a1 = address_on(mgr1, "g1", "gap-net")
    wait_for("g2 reaches g1", lambda: wrk1.core("exec", "g2", "ping", "-c1", "-W1", a1).returncode == 0)
    for host, other in ((mgr1, wrk1), (wrk1, mgr1)):
        links = host.exec("ip", "-d", "-o", "link", "show", "type", "vxlan", check=True).stdout
        mine = [line for line in links.splitlines() if "id " in line and " ingress" not in line]
        assert any(f"local {data_addr(host)}" in line and f"dstport {DATA_PORT}" in line
                   for line in mine), links
        assert f"local {host.address} " not in links
        fdb = host.exec("bridge", "fdb", "show", check=True).stdout
        assert f"dst {data_addr(other)}" in fdb and f"dst {other.address} " not in fdb, fdb
    # docker info: the node's address is its advertise address; the data path port the default
    info = ok(mgr1, "info")
    assert f"Node Address: {mgr1.address}" in info and f"Data Path Port: {DATA_PORT}" in info
    assert ok(mgr1, "info", "--format", "{{.Swarm.NodeAddr}}").strip() == mgr1.address


def test_overlay_containers_get_out_through_docker_gwbridge(cluster, swarm, tmp_path):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    remote = Server(mgr1, mgr1.address, 18080, tmp_path / "remote")
    local = Server(wrk1, wrk1.address, 18081, tmp_path / "local")
    try:
        # g2 (wrk1, gap-net only) reaches the other host's underlay and its own host
        assert ok(wrk1, "exec", "g2", "wget", "-q", "-O", "-", remote.url).strip() == "mgr1"
        assert ok(wrk1, "exec", "g2", "wget", "-q", "-O", "-", local.url).strip() == "wrk1"
        # ... through the node's docker_gwbridge: a local bridge network of its own engine
        nets = ok(wrk1, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").splitlines()
        assert "docker_gwbridge bridge local" in nets
        if shutil.which("docker"):
            assert "docker_gwbridge bridge local" in docker_cli(
                wrk1, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").splitlines()
        gw_id = ok(wrk1, "network", "inspect", "-f", "{{.Id}}", "docker_gwbridge").strip()
        assert f"br-{gw_id[:12]}" in wrk1.exec("ip", "-o", "link", "show", check=True).stdout
        members = ok(wrk1, "network", "inspect", "-f",
                     "{{range $k, $v := .Containers}}{{$v.Name}} {{end}}", "docker_gwbridge").split()
        g2 = ok(wrk1, "inspect", "-f", "{{.Id}}", "g2").strip()
        assert f"gateway_{g2[:12]}" in members
        # the container shows its overlay network only (as docker does)
        assert ok(wrk1, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                  "g2").split() == ["gap-net"]
        # a container with a way out of its own (the default bridge) gets none; once it leaves
        # that, docker_gwbridge gives it one
        def gw_members() -> list[str]:
            return ok(wrk1, "network", "inspect", "-f",
                      "{{range $k, $v := .Containers}}{{$v.Name}} {{end}}", "docker_gwbridge").split()

        ok(wrk1, "run", "-d", "--name", "g4", swarm["image"], "sleep", "3600")
        try:
            g4 = ok(wrk1, "inspect", "-f", "{{.Id}}", "g4").strip()
            ok(wrk1, "network", "connect", "gap-net", "g4")
            assert f"gateway_{g4[:12]}" not in gw_members()
            ok(wrk1, "network", "disconnect", "bridge", "g4")
            assert f"gateway_{g4[:12]}" in gw_members()
            assert ok(wrk1, "exec", "g4", "wget", "-q", "-O", "-", remote.url).strip() == "mgr1"
            ok(wrk1, "network", "connect", "bridge", "g4")   # a way out of its own: none again
            assert f"gateway_{g4[:12]}" not in gw_members()
            assert "default via 172.17." in ok(wrk1, "exec", "g4", "ip", "route")
            assert ok(wrk1, "exec", "g4", "wget", "-q", "-O", "-", remote.url).strip() == "mgr1"
            ok(wrk1, "network", "disconnect", "bridge", "g4")
            assert f"gateway_{g4[:12]}" in gw_members()
            ok(wrk1, "network", "disconnect", "gap-net", "g4")   # no swarm network: none again
            assert f"gateway_{g4[:12]}" not in gw_members()
        finally:
            wrk1.core("rm", "-f", "g4")
        # an internal overlay network gives no way out
        ok(wrk1, "run", "-d", "--name", "g3", "--network", "closed-net", swarm["image"], "sleep", "3600")
        try:
            for url in (remote.url, local.url):
                assert wrk1.core("exec", "g3", "wget", "-q", "-O", "-", url).returncode != 0
            routes = ok(wrk1, "exec", "g3", "ip", "route")
            assert "default" not in routes
            assert f"gateway_{ok(wrk1, 'inspect', '-f', '{{.Id}}', 'g3').strip()[:12]}" not in ok(
                wrk1, "network", "inspect", "-f", "{{range $k, $v := .Containers}}{{$v.Name}} {{end}}",
                "docker_gwbridge")
        finally:
            wrk1.core("rm", "-f", "g3")
    finally:
        remote.close()
        local.close()


def docker_cli(host, *args: str) -> str:
    """The real docker CLI against the host's engine."""
    proc = subprocess.run(["docker", *args], env={**host.env, "DOCKER_CLI_HINTS": "false"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def _tasks(host, service: str) -> list[dict[str, Any]]:
    import json

    out = ok(host, "service", "ps", "--no-trunc", "--format", "{{json .}}", service)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_publish_mode_host(cluster, swarm):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    holder = Holder(wrk1, 8081)   # another program holds the port on wrk1
    try:
        # on an overlay network: the port is published through the node's docker_gwbridge
        ok(mgr1, "service", "create", "-d", "--name", "hostweb", "--replicas", "2", "--network", "gap-net",
           "--restart-delay", "1s", "--publish", "published=8081,target=80,mode=host",
           swarm["image"], *SERVE)
        # the task on mgr1 runs and answers on mgr1's port 8081, straight to its container
        wait_for("hostweb answers on mgr1", lambda: fetch(mgr1, f"http://{mgr1.address}:8081/who"), timeout=90)
        ports = ok(mgr1, "ps", "--filter", "label=com.docker.swarm.service.name=hostweb",
                   "--format", "{{.Ports}}")
        assert "0.0.0.0:8081->80/tcp" in ports
        # the task on wrk1 fails with docker's error; the one on mgr1 keeps running
        failed = wait_for("the task on wrk1 failed", lambda: [
            t for t in _tasks(mgr1, "hostweb") if t["Node"] == "wrk1" and "8081" in t["Error"]])
        assert "starting container failed" in failed[0]["Error"]
        assert "address already in use" in failed[0]["Error"] or "already allocated" in failed[0]["Error"]
        running = [t for t in _tasks(mgr1, "hostweb") if t["CurrentState"].startswith("Running")]
        assert [t["Node"] for t in running] == ["mgr1"]
        assert running[0]["Ports"] == "*:8081->80/tcp"
        # the API: the task's PortStatus, the service's Endpoint
        task_id = running[0]["ID"]
        status = mgr1.docker().api.inspect_task(task_id)["Status"]
        assert status["PortStatus"] == {"Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                                   "PublishedPort": 8081, "PublishMode": "host"}]}
        svc = mgr1.docker().api.inspect_service("hostweb")
        assert {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8081,
                "PublishMode": "host"} in [{k: p.get(k) for k in ("Protocol", "TargetPort", "PublishedPort",
                                                                  "PublishMode")}
                                           for p in svc["Endpoint"]["Ports"]]
        if shutil.which("docker"):  # the real docker CLI reads the same
            rows = docker_cli(mgr1, "service", "ps", "--filter", "desired-state=running", "--format",
                              "{{.Node}} {{.CurrentState}} {{.Ports}}", "hostweb").splitlines()
            assert any(r.startswith("mgr1 Running") and r.endswith("*:8081->80/tcp") for r in rows), rows
            assert "0.0.0.0:8081->80/tcp" in docker_cli(
                mgr1, "ps", "--filter", "label=com.docker.swarm.service.name=hostweb", "--format", "{{.Ports}}")
        # not the routing mesh: wrk1's port is still the other program's
        assert fetch(wrk1, f"http://{wrk1.address}:8081/who") is None
    finally:
        holder.close()
    # the port free: the task on wrk1 runs at its next attempt
    wait_for("hostweb answers on wrk1", lambda: fetch(wrk1, f"http://{wrk1.address}:8081/who"), timeout=90)
    ok(mgr1, "service", "rm", "hostweb")
    wait_for("mgr1's port 8081 closed", lambda: fetch(mgr1, f"http://{mgr1.address}:8081/who") is None)


def test_a_task_whose_host_port_is_taken_is_placed_elsewhere(cluster, swarm):
    """A replica whose port is taken on the node it was placed on fails there, and after
    swarmkit's five failures is placed on the other node."""
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    holder = Holder(wrk1, 8082)
    # a task on mgr1 first: the scheduler places the next service's task on the emptier wrk1
    ok(mgr1, "service", "create", "-d", "--name", "filler", "--constraint", "node.hostname==mgr1",
       swarm["image"], "sleep", "3600")
    try:
        wait_for("filler running", lambda: [t for t in _tasks(mgr1, "filler")
                                            if t["CurrentState"].startswith("Running")], timeout=60)
        ok(mgr1, "service", "create", "-d", "--name", "hostone", "--replicas", "1",  # (on bridge)
           "--restart-delay", "200ms", "--publish", "published=8082,target=80,mode=host",
           swarm["image"], *SERVE)
        wait_for("hostone answers on mgr1", lambda: fetch(mgr1, f"http://{mgr1.address}:8082/who"),
                 timeout=120)
        tasks = _tasks(mgr1, "hostone")
        running = [t for t in tasks if t["CurrentState"].startswith("Running")]
        assert [t["Node"] for t in running] == ["mgr1"]
        failed = [t for t in tasks if t["Node"] == "wrk1" and "8082" in t["Error"]]
        assert failed, tasks
    finally:
        holder.close()
        mgr1.core("service", "rm", "hostone", "filler")


def test_ip_on_an_attachable_overlay_network(cluster, swarm):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    ok(wrk1, "run", "-d", "--name", "i1", "--network", "gap-net", "--ip", "10.41.0.50", swarm["image"],
       "sleep", "3600")
    try:
        assert address_on(wrk1, "i1", "gap-net") == "10.41.0.50"
        # reserved swarm-wide: another node's container cannot take it
        proc = mgr1.core("run", "-d", "--name", "i2", "--network", "gap-net", "--ip", "10.41.0.50",
                         swarm["image"], "sleep", "3600")
        assert proc.returncode != 0 and "Address already in use" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        mgr1.core("rm", "-f", "i2")
        # a request refused after the managers gave the address gives it back (--ip6: the
        # overlay network has no IPv6)
        proc = mgr1.core("run", "-d", "--name", "i5", "--network", "gap-net", "--ip", "10.41.0.52",
                         "--ip6", "fd00::52", swarm["image"], "sleep", "3600")
        assert proc.returncode != 0 and "IPv6" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        mgr1.core("rm", "-f", "i5")
        ok(wrk1, "run", "-d", "--name", "i6", "--network", "gap-net", "--ip", "10.41.0.52", swarm["image"],
           "sleep", "3600")
        wrk1.core("rm", "-f", "i6")
        # network connect --ip
        ok(mgr1, "run", "-d", "--name", "i3", swarm["image"], "sleep", "3600")
        ok(mgr1, "network", "connect", "--ip", "10.41.0.51", "gap-net", "i3")
        assert address_on(mgr1, "i3", "gap-net") == "10.41.0.51"
        wait_for("i3 reaches i1", lambda: mgr1.core("exec", "i3", "ping", "-c1", "-W1",
                                                    "10.41.0.50").returncode == 0)
        ok(mgr1, "run", "-d", "--name", "i4", swarm["image"], "sleep", "3600")
        proc = mgr1.core("network", "connect", "--ip", "10.41.0.50", "gap-net", "i4")
        assert proc.returncode != 0 and "Address already in use" in proc.stderr, proc.stderr
        assert "gap-net" not in ok(mgr1, "inspect", "-f",
                                   "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "i4").split()
    finally:
        for name in ("i3", "i4"):
            mgr1.core("rm", "-f", name)
        wrk1.core("rm", "-f", "i1")


def test_dnsrr_service_names_and_tasks_across_hosts(cluster, swarm):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    ok(mgr1, "service", "create", "-d", "--name", "rr", "--endpoint-mode", "dnsrr", "--network", "gap-net",
       "--replicas", "2", "--replicas-max-per-node", "1", swarm["image"], *SERVE)
    try:
        api = mgr1.docker().api
        net_id = ok(mgr1, "network", "inspect", "-f", "{{.Id}}", "gap-net").strip()

        def running():
            tasks = [t for t in api.tasks(filters={"service": "rr"})
                     if t["Status"]["State"] == "running"]
            return tasks if len(tasks) == 2 else None

        tasks = wait_for("rr's two tasks running", running, timeout=90)
        assert {t["NodeID"] for t in tasks} == {n["ID"] for n in api.nodes()}
        addresses = {t["NodeID"]: next(a["Addresses"][0].split("/")[0] for a in t["NetworksAttachments"]
                                       if a["Network"]["ID"] == net_id) for t in tasks}
        assert not api.inspect_service("rr")["Endpoint"].get("VirtualIPs")

        # the name answers the tasks' addresses (no VIP), as tasks.<name> does
        def answers(name: str) -> bool:
            out = wrk1.core("exec", "g2", "nslookup", name, "127.0.0.11").stdout
            return all(a in out for a in addresses.values())

        wait_for("rr answers its tasks", lambda: answers("rr"))
        wait_for("tasks.rr answers its tasks", lambda: answers("tasks.rr"))
        # a task on wrk1 downloads from the task on mgr1 (many MTUs) by address
        manager_id = api.inspect_node("mgr1")["ID"]
        local = ok(wrk1, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=rr").split()
        assert len(local) == 1
        got = ok(wrk1, "exec", local[0], "sh", "-c",
                 f"wget -q -O - http://{addresses[manager_id]}/big | wc -c")
        assert int(got.strip()) == BIG
        # UDP: one datagram larger than the overlay's MTU, from the task on wrk1 to mgr1's
        remote = ok(mgr1, "ps", "-q", "--no-trunc", "--filter",
                    "label=com.docker.swarm.service.name=rr").split()
        assert len(remote) == 1
        local_id = ok(wrk1, "inspect", "-f", "{{.Id}}", local[0]).strip()
        server = subprocess.Popen(
            ["nsenter", f"--net={mgr1.exec_root / 'netns' / remote[0][:12]}", sys.executable, "-c",
             "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5001));"
             "s.settimeout(20); data, peer = s.recvfrom(65535); print(len(data), peer[0])"],
            stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            subprocess.run(["nsenter", f"--net={wrk1.exec_root / 'netns' / local_id[:12]}", sys.executable,
                            "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                            f"s.sendto(b'x' * {DATAGRAM}, ('{addresses[manager_id]}', 5001))"],
                           check=True, timeout=20)
            out, _ = server.communicate(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        worker_id = api.inspect_node("wrk1")["ID"]
        assert out.split() == [str(DATAGRAM), addresses[worker_id]]
        # and by the service's name (one of the two tasks: its own or the other's)
        assert ok(wrk1, "exec", local[0], "wget", "-q", "-O", "-", "http://rr/who").strip()
    finally:
        mgr1.core("service", "rm", "rr")
