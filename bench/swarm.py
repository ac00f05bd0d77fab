#!/usr/bin/env python3
"""Swarm mode on the book's cluster (3 managers + 3 workers, each a network namespace with its
own ``core daemon``, tests/support/hosts.py): how long the control plane takes to do what
chapter 7 shows, against docker 20.10's figures measured the same way on the same shape.

1. ``core swarm init`` on mgr1 (the command's wall time);
2. 5 joins, one after the other (mgr2, mgr3 with the manager token, wrk1..wrk3 with the worker
   token): the sum of the ``core swarm join`` wall times, then until ``node ls`` shows 6 Ready;
3. a worker cut off its network (its link down): the seconds until a manager's ``node ls``
   says ``Down``; its link back up: the seconds until ``Ready``;
4. the leader cut off: the seconds until another manager's ``node ls`` answers with a new
   ``Leader``;
5. each manager's memory at idle (PSS of every process in its namespace: the daemon, its etcd
   member, helpers), with the daemon and etcd apart.

The commands are typed with the core CLI on the hosts; the polling uses the Docker SDK (the
Engine API) with a short timeout, every 0.1 s.  The heartbeat period is the swarm default (5 s,
as docker's figures) unless ``--heartbeat`` says otherwise; the Raft tick is core's default
(0.1 s: etcd's election timeout 1 s) unless ``CORE_SWARM_RAFT_TICK`` is set (the daemons
inherit the environment).  Targets (issue 11): init and joins no slower than docker's, ``Down``
within 2 heartbeat periods, ``Ready`` within one, a new leader within 5 s.  A benchmark, not a test: it prints
the figures and never fails on timing; a step that does not complete within its budget is
reported as such.  Needs root (namespaces), like the tests.

    .venv/bin/python bench/swarm.py [--heartbeat 5s] [--timeout 90]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.proc import pss_kib  # noqa: E402
from tests.support.hosts import Cluster, Host, _netns_pids  # noqa: E402

# docker 20.10 on the same shape (seconds), from the project's issue
DOCKER = {"init": 0.7, "joins": 1.6, "down": "11.8–14.3", "ready": 8.7, "leader": 20.4}


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Step(Exception):
    """A step could not be measured (the daemon refused, or it did not happen in time)."""


def core(host: Host, *args: str, timeout: float = 120) -> tuple[float, str]:
    """``core ARGS`` on ``host``: its wall time and output; a failure is a :class:`Step`."""
    t = time.perf_counter()
    proc = host.core(*args, timeout=timeout)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise Step(f"[{host.name}] core {' '.join(args)} exited {proc.returncode}: "
                   f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
    return elapsed, proc.stdout


def api(host: Host, timeout: float = 3.0) -> Any:
    import docker

    return docker.APIClient(base_url=host.url, version="1.47", timeout=timeout)


def nodes_of(host: Host) -> list[dict[str, Any]] | None:
    """``GET /nodes`` on ``host`` (None while it cannot answer: no leader, cut off, ...)."""
    try:
        client = api(host)
        try:
            return client.nodes()
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure is "not answering yet"
        return None


def by_host(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {(n.get("Description") or {}).get("Hostname", ""): n for n in nodes}


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, started: float | None = None) -> float:
    """Poll ``predicate`` every 0.1 s; the seconds since ``started`` (default: now) when it holds."""
    t0 = time.perf_counter() if started is None else started
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise Step(f"{what}: not within {timeout:.0f} s")


def state_of(host: Host, name: str) -> str | None:
    nodes = nodes_of(host)
    if nodes is None:
        return None
    n = by_host(nodes).get(name)
    return ((n or {}).get("Status") or {}).get("State")


def leader_of(nodes: list[dict[str, Any]] | None) -> str | None:
    for n in nodes or []:
        if (n.get("ManagerStatus") or {}).get("Leader"):
            return (n.get("Description") or {}).get("Hostname")
    return None


def join_token(mgr: Host, role: str) -> str:
    _, out = core(mgr, "swarm", "join-token", "-q", role)
    token = out.strip()
    if not re.fullmatch(r"SWMTKN-1-[0-9a-z]+-[0-9a-z]+", token):
        raise Step(f"join-token {role} printed {out!r}")
    return token


def figure(name: str, ours: float | None, docker: Any, unit: str = "s") -> None:
    text = f"{ours:6.2f} {unit}" if ours is not None else "   n/a  "
    ratio = f"  (ratio {ours / docker:.2f})" if ours is not None and isinstance(docker, float) else ""
    theirs = f"docker 20.10 {docker} {unit}" if docker != "—" else ""
    print(f"{name:<46} core {text}   {theirs}{ratio}".rstrip(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heartbeat", default="5s", help="dispatcher heartbeat period given to swarm init")
    parser.add_argument("--timeout", type=float, default=90.0, help="budget of each step, in seconds")
    args = parser.parse_args()

    results: dict[str, float | None] = {}
    problems: list[str] = []
    print("starting 3 + 3 hosts (daemons) ...", flush=True)
    with Cluster(managers=3, workers=3) as cluster:
        mgr1, mgr2, mgr3 = cluster.managers
        addr = lambda h: f"{h.address}:2377"  # noqa: E731
        try:
            # 1. init
            init_args = ["swarm", "init", "--advertise-addr", addr(mgr1), "--listen-addr", addr(mgr1)]
            if args.heartbeat != "5s":
                init_args += ["--dispatcher-heartbeat", args.heartbeat]
            results["init"], out = core(mgr1, *init_args)
            if "is now a manager" not in out:
                raise Step(f"swarm init printed {out!r}")
            worker_token, manager_token = join_token(mgr1, "worker"), join_token(mgr1, "manager")

            # 2. five joins, one after the other
            total = 0.0
            for host in (mgr2, mgr3, *cluster.workers):
                token = manager_token if host.role == "manager" else worker_token
                elapsed, out = core(host, "swarm", "join", "--token", token, "--advertise-addr", addr(host),
                                    "--listen-addr", addr(host), addr(mgr1))
                print(f"  join {host.name}: {elapsed:.2f} s: {out.strip()}", flush=True)
                total += elapsed
            results["joins"] = total
            results["all ready"] = wait_for(
                "6 nodes Ready", lambda: (lambda n: n is not None and len(n) == 6 and all(
                    (x.get("Status") or {}).get("State") == "ready" for x in n))(nodes_of(mgr1)), args.timeout)
            for m in cluster.managers:  # node ls answers on every manager
                elapsed, out = core(m, "node", "ls")
                seen = [line.split()[0] for line in out.splitlines()[1:]]
                print(f"  node ls on {m.name}: {elapsed * 1000:.0f} ms, {len(seen)} nodes", flush=True)
            _, out = core(mgr1, "node", "ls")
            print(out, end="", flush=True)
        except Step as exc:
            problems.append(str(exc))
            print(f"stopped: {exc}", flush=True)
            _report(results, problems, cluster, measured_memory=False)
            return 0

        # 3. a worker cut off: Down, then Ready
        wrk = cluster.workers[0]
        try:
            wrk.cut()
            t0 = time.perf_counter()
            results["down"] = wait_for(f"{wrk.name} Down", lambda: state_of(mgr1, wrk.name) == "down",
                                       args.timeout, t0)
            wrk.restore()
            t0 = time.perf_counter()
            results["ready"] = wait_for(f"{wrk.name} Ready", lambda: state_of(mgr1, wrk.name) == "ready",
                                        args.timeout, t0)
        except Step as exc:
            problems.append(str(exc))
        finally:
            wrk.restore()

        # 5. memory at idle (before the leader test leaves the cluster with one manager fewer)
        time.sleep(3)
        _memory(cluster)

        # 4. the leader cut off: a new leader answers node ls
        leader_name = leader_of(nodes_of(mgr1))
        if leader_name is None:
            problems.append("no node is Leader in node ls")
        else:
            leader = cluster[leader_name]
            others = [m for m in cluster.managers if m is not leader]
            try:
                leader.cut()
                t0 = time.perf_counter()

                def new_leader() -> bool:
                    for m in others:
                        found = leader_of(nodes_of(m))
                        if found and found != leader_name:
                            return True
                    return False

                results["leader"] = wait_for("a new leader answering node ls", new_leader, args.timeout, t0)
                results["old leader unreachable"] = wait_for(
                    f"{leader_name} Unreachable",
                    lambda: any(((by_host(n).get(leader_name) or {}).get("ManagerStatus") or {})
                                .get("Reachability") == "unreachable"
                                for n in (nodes_of(m) for m in others) if n),
                    args.timeout, t0)
            except Step as exc:
                problems.append(str(exc))
            finally:
                leader.restore()
        _report(results, problems, cluster, measured_memory=True)
    return 0


MEMORY: list[str] = []


def _memory(cluster: Cluster) -> None:
    for m in cluster.managers:
        pids = _netns_pids(m.netns)
        daemon = pss_kib(m.pid) if m.pid else 0
        etcd = sum(pss_kib(p) for p in pids if comm(p).startswith("etcd"))
        total = sum(pss_kib(p) for p in pids)
        MEMORY.append(f"{m.name}: all {len(pids)} processes {total / 1024:6.1f} MiB "
                      f"(daemon {daemon / 1024:.1f} MiB, etcd {etcd / 1024:.1f} MiB)")
    for w in cluster.workers[:1]:
        pids = _netns_pids(w.netns)
        MEMORY.append(f"{w.name} (a worker, for comparison): {sum(pss_kib(p) for p in pids) / 1024:6.1f} MiB")


def _report(results: dict[str, float | None], problems: list[str], cluster: Cluster, measured_memory: bool) -> None:
    print("\nswarm control plane, 3 managers + 3 workers (network namespaces on one machine)")
    figure("swarm init", results.get("init"), DOCKER["init"])
    figure("5 joins (sequential, sum)", results.get("joins"), DOCKER["joins"])
    figure("  then until node ls shows 6 Ready", results.get("all ready"), "—")
    figure("worker cut off -> Down", results.get("down"), DOCKER["down"])
    figure("worker back -> Ready", results.get("ready"), DOCKER["ready"])
    figure("leader cut off -> new leader answers node ls", results.get("leader"), DOCKER["leader"])
    figure("  -> old leader Unreachable in node ls", results.get("old leader unreachable"), "—")
    if measured_memory:
        print("manager memory at idle (PSS):")
        for line in MEMORY:
            print("  " + line)
    for p in problems:
        print(f"not measured: {p}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
