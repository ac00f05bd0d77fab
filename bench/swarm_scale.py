#!/usr/bin/env python3
"""The swarm's control plane at scale, by simulation (issue 12 §5): 3 real managers (each a
``core daemon`` with its etcd member, on the multi-host harness) against N simulated nodes
(:mod:`core.engine.swarm.simnode`: the real node protocol, no containers) run in a few
processes inside one more namespace of the harness.

1. ``swarm init`` on mgr1, mgr2 and mgr3 join as managers; the simulated nodes join with the
   worker token (``ca.join``) and open their sessions: the time until all are ``ready``;
2. services totalling R replicas (S services, constrained to workers: the simulated nodes),
   created through the Engine API (``POST /services/create``; needs the leader's orchestrator
   and scheduler) or, with ``--direct``, written into the store already assigned (round robin
   over the simulated nodes, as the scheduler would): the time from the first create until
   every task is ``running`` (converge; the creates' own time is shown too);
3. F nodes fail at once (their simulating process killed): the time until the leader marks
   them ``down`` and, with the orchestrator, until R tasks run again on the live nodes
   (reschedule);
4. the managers' CPU (seconds of daemon + etcd over steps 2–3, and the average share of one
   core), memory (PSS of daemon and etcd at the end), the etcd database size, and the calls per
   second the leader served (sessions, heartbeats, task states; counted by the simulated nodes).

The bench follows the tasks and nodes by one watch of mgr1's store (:class:`Tracker`), not by
reading them all every second (10,000 tasks a second would be a good part of what it measures).
The managers log their busy figures every 10 s (``leader:``, ``assignments:``,
``tasks.status:`` lines in their daemon logs).

Targets (the issue's): 10,000 replicas converge within 60 s; 100 failed nodes' tasks
rescheduled within 15 s; manager memory ≤ 500 MiB.  A benchmark, not a test: it prints the
figures (and ``--json`` them) and never fails on timing.  Needs root, like the tests.

    .venv/bin/python bench/swarm_scale.py [--nodes 1000] [--replicas 10000] [--services 10]
        [--fail 100] [--procs 10] [--heartbeat 5s] [--direct] [--json FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from bench.proc import pss_kib  # noqa: E402
from core.engine.swarm import tasks as swarm_tasks  # noqa: E402
from core.engine.swarm.etcd import CLIENT_SOCKET_NAME, EtcdClient  # noqa: E402
from core.engine.swarm.store import NODES, TASKS, Store, now_text  # noqa: E402
from tests.support.hosts import Cluster, Host, _netns_pids  # noqa: E402

TARGETS = {"converge": 60.0, "reschedule": 15.0, "memory_mib": 500.0}


class Step(Exception):
    """A step did not complete."""


def core(host: Host, *args: str, timeout: float = 120) -> str:
    proc = host.core(*args, timeout=timeout)
    if proc.returncode != 0:
        raise Step(f"[{host.name}] core {' '.join(args)}: {proc.stderr.strip()}\n{host.log()[-3000:]}")
    return proc.stdout


def with_store(host: Host, fn: Callable[[Store], Any]) -> Any:
    async def main() -> Any:
        async with EtcdClient(host.data_root / "swarm" / CLIENT_SOCKET_NAME, timeout=30) as etcd:
            return await fn(Store(etcd))
    return trio.run(main)


def wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> float:
    """Seconds until ``check()`` is true; :class:`Step` after ``timeout``."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        last = check()
        if last is True:
            return time.monotonic() - start
        time.sleep(every)
    raise Step(f"{what}: not within {timeout:.0f} s (last: {last})")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def manager_pids(m: Host) -> list[int]:
    """The manager's daemon and etcd member (what the figures count)."""
    return [p for p in _netns_pids(m.netns) if p == m.pid or comm(p).startswith("etcd")]


class Tracker:
    """The tasks' and nodes' states as one manager's store has them, kept current by one watch
    (in a thread of its own) rather than by reading every task each time the bench looks: a
    read of 10,000 tasks a second would be a good part of the load it measures."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.tasks: dict[str, tuple[str, str, str]] = {}  # ID -> (state, desired state, node)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise Step(f"the tracker did not start: {self.error!r}")

    def check(self) -> None:
        """:class:`Step` when the tracker's thread has ended (its figures would stand still)."""
        if not self._thread.is_alive():
            raise Step(f"the tracker stopped: {self.error!r}")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - shown by the bench
            self.error = exc

    def _take(self, key: str, value: bytes | None) -> None:
        if key.startswith(TASKS):
            tid = key[len(TASKS):]
            if value is None:
                self.tasks.pop(tid, None)
            else:
                t = json.loads(value)
                self.tasks[tid] = ((t.get("Status") or {}).get("State", ""), t.get("DesiredState", ""),
                                   t.get("NodeID", ""))
        elif key.startswith(NODES):
            nid = key[len(NODES):]
            if value is None:
                self.nodes.pop(nid, None)
            else:
                self.nodes[nid] = json.loads(value)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            self._started.set()
            while True:
                try:
                    async with EtcdClient(self.host.data_root / "swarm" / CLIENT_SOCKET_NAME, timeout=30) as etcd:
                        store = Store(etcd)
                        revision = await store.revision()
                        tasks, nodes = {}, {}
                        self.tasks, self.nodes = tasks, nodes
                        for prefix in (TASKS, NODES):
                            for kv in await etcd.range(prefix, prefix=True, revision=revision):
                                self._take(kv.key, kv.value)
                        async def follow(prefix: str) -> None:
                            async with etcd.watch(prefix, prefix=True, start_revision=revision + 1) as events:
                                async for e in events:
                                    self._take(e.kv.key, None if e.type == "DELETE" else e.kv.value)
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(follow, TASKS)
                            nursery.start_soon(follow, NODES)
                except Exception as exc:  # noqa: BLE001 - a broken watch: read again
                    print(f"tracker: {exc}; reading again", file=sys.stderr)
                    await trio.sleep(1)

    def close(self) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)


class Simulation:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, Any] = {"nodes": args.nodes, "replicas": args.replicas,
                                        "services": args.services, "fail": args.fail,
                                        "mode": "direct" if args.direct else "api"}
        self.procs: list[subprocess.Popen] = []
        self.cluster: Cluster | None = None

    # -- the parts --

    def start_swarm(self) -> None:
        old = os.environ.get("CORE_SWARM_LEADER_LOOPS")
        if self.args.direct:  # the bench plays the scheduler: the managers run no leader loops
            os.environ["CORE_SWARM_LEADER_LOOPS"] = "0"
        try:
            c = self.cluster = Cluster(3, 0)  # (the daemons take the environment now)
        finally:
            if old is None:
                os.environ.pop("CORE_SWARM_LEADER_LOOPS", None)
            else:
                os.environ["CORE_SWARM_LEADER_LOOPS"] = old
        self.sim = c.add_host("sim", start=False)
        mgr1 = c["mgr1"]
        core(mgr1, "swarm", "init", "--advertise-addr", f"{mgr1.address}:2377", "--listen-addr",
             f"{mgr1.address}:2377", "--dispatcher-heartbeat", self.args.heartbeat)
        mtoken = core(mgr1, "swarm", "join-token", "-q", "manager").strip()
        self.token = core(mgr1, "swarm", "join-token", "-q", "worker").strip()
        for m in (c["mgr2"], c["mgr3"]):
            core(m, "swarm", "join", "--token", mtoken, "--advertise-addr", m.address,
                 "--listen-addr", f"{m.address}:2377", f"{mgr1.address}:2377")
        self.managers = [c["mgr1"], c["mgr2"], c["mgr3"]]
        self.tracker = Tracker(mgr1)

    def start_nodes(self) -> None:
        a = self.args
        per = -(-a.nodes // a.procs)
        addrs = ",".join(f"{m.address}:2377" for m in self.managers)
        self.stats_files: list[Path] = []
        left = a.nodes
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for p in range(a.procs):
            count = min(per, left)
            if count <= 0:
                break
            left -= count
            stats = self.sim.root / f"sim{p}.json"
            self.stats_files.append(stats)
            argv = [*self.sim.launcher, sys.executable, "-m", "core.engine.swarm.simnode",
                    "--token", self.token, "--managers", addrs, "--count", str(count),
                    "--prefix", f"sim{p}-", "--stats", str(stats)]
            log = open(self.sim.root / f"sim{p}.log", "wb")
            self.procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
            self.cluster._record(pid=self.procs[-1].pid)
        t = time.monotonic()
        wait("the simulated nodes ready", lambda: self.ready_sim_nodes() >= a.nodes or
             self.sims_alive() and f"{self.ready_sim_nodes()} ready", timeout=a.timeout * 4, every=1.0)
        self.results["join_s"] = round(time.monotonic() - t, 1)

    def sims_alive(self) -> bool:
        """True while every simulating process (and the tracker) runs (:class:`Step` with its
        output if not)."""
        self.tracker.check()
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                tail = (self.sim.root / f"sim{i}.log").read_text(errors="replace")[-2000:]
                raise Step(f"simulating process sim{i} exited ({p.returncode}):\n{tail}")
        return True

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.tracker.nodes.values())

    def ready_sim_nodes(self) -> int:
        return sum(1 for n in self.nodes() if n["Description"].get("Hostname", "").startswith("sim")
                   and n["Status"]["State"] == "ready")


    def create_services(self) -> None:
        a = self.args
        per = [a.replicas // a.services + (1 if i < a.replicas % a.services else 0) for i in range(a.services)]
        if a.direct:
            sim_ids = sorted(n["ID"] for n in self.nodes() if n["Description"]["Hostname"].startswith("sim"))
            tasks = []
            k = 0
            for s, count in enumerate(per):
                for slot in range(1, count + 1):
                    tasks.append({"ID": swarm_tasks.new_task_id(), "CreatedAt": now_text(), "Labels": {},
                                  "Spec": {"ContainerSpec": {"Image": "busybox"}},
                                  "ServiceID": f"scale{s:021d}", "Slot": slot, "NodeID": sim_ids[k % len(sim_ids)],
                                  "Status": swarm_tasks.status("assigned", "scheduler assigned task to node"),
                                  "DesiredState": "running", "NetworksAttachments": [],
                                  "ServiceAnnotations": {"Name": f"scale{s}", "Labels": {}},
                                  "SpecVersion": {"Index": 1}})
                    k += 1
            with_store(self.managers[0], lambda st: st.put_many(TASKS, tasks))
        else:
            from docker.types import ServiceMode

            client = self.managers[0].docker()
            for s, count in enumerate(per):
                client.services.create("busybox:latest", name=f"scale{s}", command=["sleep", "1d"],
                                       mode=ServiceMode("replicated", replicas=count),
                                       constraints=["node.role==worker"])

    def running_on(self, live: set[str] | None) -> int:
        return sum(1 for state, desired, node in list(self.tracker.tasks.values())
                   if state == "running" and desired == "running" and (live is None or node in live))

    def sim_calls(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for f in self.stats_files:
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            for addr, n in data.get("calls", {}).items():
                total[addr] = total.get(addr, 0) + n
        return total

    def leader(self) -> Host:
        leader_id = with_store(self.managers[0], lambda s: s.leader())
        for m in self.managers:
            if json.loads((m.data_root / "swarm" / "state.json").read_text())["NodeID"] == leader_id:
                return m
        return self.managers[0]

    # -- the run --

    def run(self) -> dict[str, Any]:
        a = self.args
        r = self.results
        try:
            self.start_swarm()
            self.start_nodes()
            cpu0 = {m.name: sum(cpu_seconds(p) for p in manager_pids(m)) for m in self.managers}
            leader = self.leader()
            calls0, t0 = self.sim_calls().get(f"{leader.address}:2377", 0), time.monotonic()
            self.create_services()
            r["create_s"] = round(time.monotonic() - t0, 1)
            # from the first create call (what a user waits for), the creates included
            r["converge_s"] = round(wait("converge", lambda: self.running_on(None) >= a.replicas
                                         or self.sims_alive() and f"{self.running_on(None)} running",
                                         a.timeout, every=0.5)
                                    + r["create_s"], 1)
            calls1, t1 = self.sim_calls().get(f"{leader.address}:2377", 0), time.monotonic()
            r["leader_calls_per_s"] = round((calls1 - calls0) / max(t1 - t0, 1e-3), 1)
            # fail F nodes at once: whole simulating processes
            per = -(-a.nodes // a.procs)
            victims = self.procs[:max(1, a.fail // per)]
            failed_prefixes = tuple(f"sim{i}-" for i in range(len(victims)))
            ready = [n for n in self.nodes() if n["Status"]["State"] == "ready"]  # not a retried join's leftover
            failed = {n["ID"] for n in ready if n["Description"]["Hostname"].startswith(failed_prefixes)}
            # every other node is live (one that was not ready at this moment comes back)
            live = {n["ID"] for n in self.nodes() if not n["Description"]["Hostname"].startswith(failed_prefixes)}
            r["failed_nodes"] = len(failed)
            for p in victims:
                p.send_signal(signal.SIGKILL)
            for p in victims:
                p.wait(timeout=10)

            def down() -> Any:
                states = [n["Status"]["State"] for n in self.nodes() if n["ID"] in failed]
                return all(s == "down" for s in states) or f"{states.count('down')} down"
            r["down_s"] = round(wait("failed nodes down", down, a.timeout, every=0.5), 1)
            if not a.direct:
                r["reschedule_s"] = round(
                    wait("rescheduled", lambda: self.running_on(live) >= a.replicas
                         or f"{self.running_on(live)} running on live nodes", a.timeout, every=0.5)
                    + r["down_s"], 1)
            elapsed = time.monotonic() - t0
            cpu = {m.name: round(sum(cpu_seconds(p) for p in manager_pids(m)) - cpu0[m.name], 1)
                   for m in self.managers}
            r["manager_cpu_s"] = cpu
            r["manager_cpu_share"] = {k: round(v / max(elapsed, 1e-3), 2) for k, v in cpu.items()}
            r["manager_memory_mib"] = {m.name: round(sum(pss_kib(p) for p in manager_pids(m)) / 1024, 1)
                                       for m in self.managers}
            r["etcd_db_bytes"] = with_store(self.managers[0], lambda s: s.etcd.call(
                "maintenance/status", {}, require_leader=False)).get("dbSize")
            r["leader"] = leader.name
        except Step as exc:
            r["error"] = str(exc)
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in self.procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
            if getattr(self, "tracker", None) is not None:
                self.tracker.close()
            if self.cluster is not None:
                self.cluster.close()
        return r


def report(r: dict[str, Any]) -> None:
    print(f"\nswarm scale simulation: 3 managers, {r['nodes']} simulated nodes, {r['replicas']} replicas "
          f"in {r['services']} services ({r['mode']})")
    if "join_s" in r:
        print(f"  nodes joined and ready      {r['join_s']:8.1f} s")
    if "converge_s" in r:
        print(f"  converged                   {r['converge_s']:8.1f} s   (target ≤ {TARGETS['converge']:.0f} s; "
              f"the creates took {r.get('create_s', 0):.1f} s of it)")
    if "down_s" in r:
        print(f"  {r['failed_nodes']} failed nodes down       {r['down_s']:8.1f} s")
    if "reschedule_s" in r:
        print(f"  their tasks rescheduled     {r['reschedule_s']:8.1f} s   (target ≤ {TARGETS['reschedule']:.0f} s)")
    for key, label in (("manager_cpu_s", "manager CPU (s)"), ("manager_cpu_share", "manager CPU (cores)"),
                       ("manager_memory_mib", "manager memory (MiB)")):
        if key in r:
            print(f"  {label:27} " + ", ".join(f"{k} {v}" for k, v in r[key].items()))
    if "etcd_db_bytes" in r:
        print(f"  etcd database               {int(r['etcd_db_bytes'] or 0) / 2**20:8.1f} MiB")
    if "leader_calls_per_s" in r:
        print(f"  calls/s at the leader       {r['leader_calls_per_s']:8.1f}   ({r.get('leader')})")
    if "error" in r:
        print(f"  NOT COMPLETED: {r['error']}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--replicas", type=int, default=10000)
    p.add_argument("--services", type=int, default=10)
    p.add_argument("--fail", type=int, default=100)
    p.add_argument("--procs", type=int, default=10, help="processes simulating the nodes")
    p.add_argument("--heartbeat", default="5s")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per step")
    p.add_argument("--direct", action="store_true",
                   help="write the tasks assigned, as the scheduler would (no orchestrator needed)")
    p.add_argument("--json", type=Path, help="write the figures there too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results = Simulation(args).run()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if "error" not in results else 1


if __name__ == "__main__":
    sys.exit(main())
