"""The routing mesh under change, on the multi-host harness (one manager, two workers, and a
``client`` namespace on the same underlay that runs no engine and no task): a client keeps
requesting through a node's published port while the service's tasks change.

- a rolling update with ``--update-order start-first``: **no** failed request (a task wanted
  stopped leaves every node's balancing set, then its node drains it for 2 s before it stops
  it, as docker does; a new task joins the set once it runs);
- a rolling update with ``stop-first`` (three replicas, one at a time): the failed requests are
  counted (none expected: the two other tasks serve while one is replaced, and the one going
  away is drained the same way);
- connections established through the mesh to tasks that stay up keep working while the set
  changes (a scale up, a scale down: nftables' dnat applies to new connections only, conntrack
  keeps the old ones' translation); connections to a task that is retired end with it;
- a port the service publishes that something else holds on one node: the task placed there is
  rejected with a clear error (``service ps``' ERROR), the others run, the mesh answers on the
  other nodes and the holder keeps its port on its node;
- a worker cut off the network (a task on each node): the requests through the other nodes'
  ports (mgr1's, wrk2's) that the mesh sent to the cut worker's task fail (the client's connect
  timeout) until the leader marks the node down and the task leaves every node's set; counted,
  timed, then nothing fails any more.

The figures are printed (``pytest -s``) and README's *Routing mesh under change* quotes them.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

from core.engine.swarm.store import NODES, TASKS, Store
from tests.support.mesh import REQUESTER, SERVE
from tests.support.swarm import core_ok as core, wait_for, with_store

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 2)
# connections held open: "open N" then "check" lines on stdin, one JSON answer a line
HOLDER = r'''
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
conns = []
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "open":
        for _ in range(int(cmd[1])):
            c = socket.create_connection((host, port), timeout=5)
            f = c.makefile("rwb", buffering=0)
            conns.append((c, f, f.readline().decode().strip()))
        print(json.dumps([n for _c, _f, n in conns]), flush=True)
    elif cmd[0] == "check":
        out = []
        for i, (c, f, name) in enumerate(conns):
            try:
                c.sendall(b"ping %d\n" % i)
                got = f.readline().decode().strip()
                out.append([name, got == "ping %d" % i])
            except OSError:
                out.append([name, False])
        print(json.dumps(out), flush=True)
'''


def tasks_of(mgr, service: str) -> list[dict[str, Any]]:
    async def read(store: Store) -> list[dict[str, Any]]:
        return [t for t, _v in await store.objects(TASKS)
                if t.get("ServiceAnnotations", {}).get("Name") == service]
    return with_store(mgr, read)


def live(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t.get("DesiredState") == "running"]


def converged(mgr, service: str, replicas: int) -> list[dict[str, Any]] | None:
    """The service's tasks when ``replicas`` run and every other one has stopped."""
    tasks = tasks_of(mgr, service)
    running = [t for t in live(tasks) if t["Status"]["State"] == "running"]
    others = [t for t in tasks if t.get("DesiredState") != "running"]
    if len(running) == replicas and len(live(tasks)) == replicas and all(
            t["Status"]["State"] in ("shutdown", "complete", "failed", "rejected", "orphaned")
            for t in others):
        return running
    return None


def hostname_of(task: dict[str, Any]) -> str:
    return task["Status"]["ContainerStatus"]["ContainerID"][:12]


def ingress_address(task: dict[str, Any]) -> str:
    for att in task.get("NetworksAttachments") or []:
        if att["Network"]["Spec"].get("Ingress"):
            return att["Addresses"][0].split("/")[0]
    raise AssertionError(f"task {task['ID']} is not on ingress")


def mesh_set(host, port: int = 0) -> set[str]:
    """The addresses in the node's balancing sets (its ingress sandbox's nftables), of one
    published port or of all."""
    proc = subprocess.run(["nsenter", f"--net={host.exec_root / 'netns' / 'ingress_sbox'}", "nft", "list",
                           "table", "ip", "core-mesh"], capture_output=True, text=True, timeout=20)
    lines = [line for line in proc.stdout.splitlines() if not port or f"dport {port} " in line]
    return set(re.findall(r": (\d+\.\d+\.\d+\.\d+)\b", "\n".join(lines)))


class Requester:
    """The client host requesting ``address:port`` in a loop (see ``REQUESTER``): a request
    fails when it is refused, reset or unanswered for ``timeout`` s (a SYN lost once is sent
    again after 1 s: such a request is ``slow``, not failed; the summary lists both)."""

    def __init__(self, client, address: str, port: int = 80, timeout: float = 3.0) -> None:
        self.stop_file = client.root / f"stop-{time.monotonic_ns()}"
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([*client.launcher, sys.executable, "-c", REQUESTER, address, str(port),
                                      str(self.stop_file), str(timeout)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> dict[str, Any]:
        self.stop_file.write_text("")
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return json.loads(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def swarm(cluster, test_images) -> dict[str, Any]:
    mgr1, wrk1, wrk2 = cluster["mgr1"], cluster["wrk1"], cluster["wrk2"]
    client = cluster.add_host("client", start=False)   # a machine on the underlay, no engine
    cluster.forward_loopback(test_images.registry.port)
    core(mgr1, "swarm", "init", "--advertise-addr", mgr1.address, "--dispatcher-heartbeat", "1s")
    token = core(mgr1, "swarm", "join-token", "-q", "worker").strip()
    for w in (wrk1, wrk2):
        core(w, "swarm", "join", "--token", token, "--advertise-addr", w.address, f"{mgr1.address}:2377")
    wait_for("the nodes ready", lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split()
             == ["Ready"] * 3)
    image = test_images["busybox:latest"].reference
    core(mgr1, "service", "create", "-d", "--name", "web", "-p", "80:80", "-p", "81:81", "--replicas", "3",
         "--update-parallelism", "1", "--update-delay", "0s", "--update-monitor", "1s", image, *SERVE)
    wait_for("three tasks running", lambda: converged(mgr1, "web", 3), timeout=120)
    wait_for("the mesh answering", lambda: mgr1.exec("/bin/busybox", "wget", "-q", "-O", "-",
                                                     f"http://{mgr1.address}/", timeout=10).returncode == 0)
    return {"client": client, "image": image}


def rolling_update(cluster, swarm, order: str, round_: int) -> tuple[dict[str, Any], set[str], set[str]]:
    """A rolling update of ``web`` (one task at a time) while the client requests through
    mgr1's port 80; returns the client's summary and the hostnames before and after."""
    mgr1 = cluster["mgr1"]
    before = {hostname_of(t) for t in converged(mgr1, "web", 3)}
    client = Requester(swarm["client"], mgr1.address)
    try:
        time.sleep(2)
        core(mgr1, "service", "update", "-d", "--update-order", order, "--env-add", f"ROUND={round_}", "web")
        after = wait_for("the update done", lambda: converged(mgr1, "web", 3) if
                         mgr1.docker().services.get("web").attrs.get("UpdateStatus", {}).get("State")
                         == "completed" else None, timeout=180)
        time.sleep(3)   # the mesh's sets settled on the new tasks
    finally:
        summary = client.stop()
    after_names = {hostname_of(t) for t in after}
    assert not before & after_names   # every task was replaced
    return summary, before, after_names


def test_start_first_rolling_update_fails_no_request(cluster, swarm):
    summary, before, after = rolling_update(cluster, swarm, "start-first", 1)
    print(f"\nstart-first rolling update of 3 tasks: {summary['ok']} requests answered, "
          f"{len(summary['failed'])} failed over {summary['seconds']:.1f} s: {summary['failed']}; "
          f"slower than 0.5 s: {summary['slow']}")
    assert summary["failed"] == []
    assert set(summary["served"]) & after and set(summary["served"]) & before
    assert summary["ok"] > 100


def test_stop_first_rolling_update_counts_its_failed_requests(cluster, swarm):
    summary, before, after = rolling_update(cluster, swarm, "stop-first", 2)
    print(f"\nstop-first rolling update of 3 tasks: {summary['ok']} requests answered, "
          f"{len(summary['failed'])} failed over {summary['seconds']:.1f} s: {summary['failed']}; "
          f"slower than 0.5 s: {summary['slow']}")
    # two tasks serve while the third is replaced, and the one going away is drained first
    assert summary["failed"] == []
    assert set(summary["served"]) & after


def test_established_connections_survive_set_changes(cluster, swarm):
    mgr1 = cluster["mgr1"]
    holder = subprocess.Popen([*swarm["client"].launcher, sys.executable, "-c", HOLDER, mgr1.address, "81"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(line: str) -> Any:
        holder.stdin.write(line + "\n")
        holder.stdin.flush()
        return json.loads(holder.stdout.readline())

    try:
        names = ask("open 6")
        assert len(set(names)) == 3   # the connections spread over the three tasks
        core(mgr1, "service", "scale", "-d", "web=5")
        running = wait_for("five tasks", lambda: converged(mgr1, "web", 5), timeout=120)
        for host in (mgr1, cluster["wrk1"], cluster["wrk2"]):
            wait_for(f"{host.name}'s mesh set of 5", lambda: all(
                ingress_address(t) in mesh_set(host) for t in running))
        assert ask("check") == [[n, True] for n in names]
        core(mgr1, "service", "scale", "-d", "web=2")
        kept = {hostname_of(t) for t in wait_for("two tasks", lambda: converged(mgr1, "web", 2), timeout=120)}
        time.sleep(2)
        checked = ask("check")
        assert [n for n, alive in checked if alive] == [n for n in names if n in kept]
        assert any(n in kept for n in names)
    finally:
        holder.stdin.close()
        holder.wait(timeout=20)
    core(mgr1, "service", "scale", "-d", "web=3")
    wait_for("three tasks again", lambda: converged(mgr1, "web", 3), timeout=120)


def test_a_port_taken_on_one_node_fails_the_task_placed_there(cluster, swarm):
    mgr1, wrk1, wrk2 = cluster["mgr1"], cluster["wrk1"], cluster["wrk2"]
    image = swarm["image"]
    core(wrk2, "run", "-d", "--name", "holder", "-p", "8088:80", image, "/bin/sh", "-c",
         "mkdir -p /www && echo holder > /www/index.html && exec httpd -f -p 80 -h /www")
    try:
        core(mgr1, "service", "create", "-d", "--name", "taken", "-p", "8088:80", "--replicas", "2",
             "--replicas-max-per-node", "1", "--constraint", "node.role==worker", image, *SERVE)

        def refused() -> str | None:
            out = core(mgr1, "service", "ps", "--no-trunc", "--format",
                       "{{.Node}}|{{.CurrentState}}|{{.Error}}", "taken")
            rows = [line.split("|") for line in out.splitlines()]
            on_wrk2 = [r for r in rows if r[0] == "wrk2" and "already in use" in r[2]]
            on_wrk1 = [r for r in rows if r[0] == "wrk1" and r[1].startswith("Running")]
            return out if on_wrk2 and on_wrk1 else None

        table = wait_for("wrk2's task refused, wrk1's running", refused, timeout=120)
        print(f"\nservice ps taken:\n{table}")
        assert "host port 8088/tcp is already in use on this node" in table
        wrk1_task = next(t for t in tasks_of(mgr1, "taken") if t["Status"]["State"] == "running")

        def get(host, address: str) -> str | None:
            proc = host.exec("/bin/busybox", "wget", "-q", "-O", "-", f"http://{address}:8088/", timeout=10)
            return proc.stdout.strip() if proc.returncode == 0 else None

        for node in (mgr1, wrk1):
            assert wait_for(f"port 8088 of {node.name}", lambda: get(swarm["client"], node.address)) \
                == hostname_of(wrk1_task)
        assert get(swarm["client"], wrk2.address) == "holder"   # the holder keeps its port
        assert "dport 8088" not in wrk2.exec("nft", "list", "ruleset", check=True).stdout
    finally:
        mgr1.core("service", "rm", "taken")
        wrk2.core("rm", "-f", "holder")


def test_a_worker_cut_off_fails_requests_until_it_is_down(cluster, swarm):
    mgr1, wrk1, wrk2 = cluster["mgr1"], cluster["wrk1"], cluster["wrk2"]
    core(mgr1, "service", "create", "-d", "--name", "spread", "-p", "8090:80", "--replicas", "3",
         "--replicas-max-per-node", "1", swarm["image"], *SERVE)   # a task on every node
    tasks = wait_for("a task on every node", lambda: converged(mgr1, "spread", 3), timeout=120)
    wrk1_id = core(mgr1, "node", "inspect", "--format", "{{.ID}}", "wrk1").strip()
    on_wrk1 = [t["ID"] for t in tasks if t["NodeID"] == wrk1_id]
    assert len(on_wrk1) == 1
    for host in (mgr1, wrk2):
        wait_for(f"{host.name}'s set of 8090", lambda: mesh_set(host, 8090) == {ingress_address(t) for t in tasks})

    def node_down() -> bool:
        node = with_store(mgr1, lambda s: s.get(NODES, wrk1_id))[0]
        return node["Status"]["State"] == "down"

    def left(host) -> bool:
        """wrk1's tasks out of the node's set: every address there is a task's that runs
        elsewhere (a replacement may have been given an address of an orphaned task)."""
        serving = {ingress_address(t) for t in live(tasks_of(mgr1, "spread"))
                   if t["Status"]["State"] == "running" and t["NodeID"] != wrk1_id}
        return bool(serving) and mesh_set(host, 8090) <= serving

    clients = {h.name: Requester(swarm["client"], h.address, port=8090, timeout=1.0) for h in (mgr1, wrk2)}
    times: dict[str, float] = {}
    summaries: dict[str, dict[str, Any]] = {}
    try:
        time.sleep(2)
        wrk1.cut()
        t_cut = time.monotonic()
        try:
            wait_for("wrk1 down", node_down, timeout=60, every=0.1)
            times["down"] = time.monotonic() - t_cut

            def both_left() -> bool:
                for host in (mgr1, wrk2):
                    if host.name not in times and left(host):
                        times[host.name] = time.monotonic() - t_cut
                return len(times) == 3

            wait_for("wrk1's tasks out of mgr1's and wrk2's sets", both_left, timeout=60, every=0.1)
            time.sleep(5)
        finally:
            for name, client in clients.items():
                summaries[name] = client.stop()
            wrk1.restore()
    finally:
        for client in clients.values():
            client.kill()
    print(f"\nworker cut off ({len(on_wrk1)} of 3 tasks on it): node down after {times['down']:.1f} s, "
          f"its tasks out of mgr1's set after {times['mgr1']:.1f} s and wrk2's after {times['wrk2']:.1f} s")
    for name, summary in summaries.items():
        cut_at = t_cut - clients[name].t0
        failed = summary["failed"]
        print(f"  through {name}'s port: {summary['ok']} requests answered, {len(failed)} failed, the last "
              f"{(failed[-1][0] - cut_at) if failed else 0:.1f} s after the cut: {failed}")
        assert failed, f"no request through {name} went to the cut worker's task"
        assert all(at >= cut_at - 0.5 for at, _err in failed)
        # none once the node's set changed (a request sent just before fails its 1 s later)
        assert all(at <= cut_at + times[name] + 1.5 for at, _err in failed)
    wait_for("wrk1 ready again", lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split()
             == ["Ready"] * 3)
    core(mgr1, "service", "rm", "spread")
