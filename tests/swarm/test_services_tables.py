"""Swarm services' tables, progress and logs on tasks written by hand as the leader writes them:
the daemons of this module run without the leader's loops (the orchestrator would reconcile
hand-written tasks away), the rest as in :mod:`tests.swarm.test_services_api`."""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from typing import Any

import pytest

from tests.swarm.test_services_api import (CLUSTER_SHAPE, _fake_task, _rm, _store_call, api, core,  # noqa: F401
                                           docker_cli, swarm, wait_for)

pytestmark = [pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]


@pytest.fixture(scope="module", autouse=True)
def no_leader_loops():
    """Set before the module's ``cluster`` starts its daemons."""
    from core.engine.swarm.leader import LOOPS_ENV

    mp = pytest.MonkeyPatch()
    mp.setenv(LOOPS_ENV, "0")
    yield
    mp.undo()


def test_tasks_in_dockers_tables_and_progress(swarm, cluster):
    """Tasks written into the store as the leader's loops would write them: ``service ls``,
    ``service ps`` (history lines, errors, --no-trunc, filters), ``node ps``, ``GET /tasks`` and the
    progress of a ``service create`` that waits for convergence."""
    import subprocess

    from core.engine.swarm.store import TASKS

    mgr1 = cluster["mgr1"]
    # the tasks go to a node of their own, which the test keeps alive (a record and a session
    # key it puts again as heartbeats would, since the leader marks a node Down when its key
    # stops changing): no agent touches them
    from core.engine.swarm.nodes import new_record
    from core.engine.swarm.store import NODES, SESSIONS
    from core.engine.swarm.tasks import new_task_id

    node_id = new_task_id()
    fake = new_record(node_id, "worker")
    fake["Description"]["Hostname"] = "fake1"
    fake["Status"] = {"State": "ready", "Addr": "10.9.9.9"}

    async def add_node(store) -> None:
        await store.put_node(fake)
        await store.etcd.put(SESSIONS + node_id, json.dumps({"Manager": "", "Addr": "10.9.9.9"}))

    _store_call(mgr1, add_node)
    beating = threading.Event()

    def heartbeats() -> None:
        while not beating.wait(0.3):
            with contextlib.suppress(Exception):
                _store_call(mgr1, lambda store: store.etcd.put(
                    SESSIONS + node_id, json.dumps({"Manager": "", "Addr": "10.9.9.9"})))

    beater = threading.Thread(target=heartbeats, daemon=True)
    beater.start()
    written: list[str] = []

    def put(tasks: list[dict[str, Any]]) -> None:
        written.extend(t["ID"] for t in tasks)
        _store_call(mgr1, lambda store: store.put_many(TASKS, tasks))

    try:
        core(mgr1, "service", "create", "-d", "--name", "web-fe", "-p", "8080:8080", "--replicas", "2",
             swarm["image"])
        svc = mgr1.docker().api.inspect_service("web-fe")
        old = _fake_task(svc, node_id, 1, "failed", desired="shutdown", err="task: non-zero exit (1)", age=90)
        one = _fake_task(svc, node_id, 1, "running", age=75)
        two = _fake_task(svc, node_id, 2, "running", age=75)
        put([old, one, two])
        row = core(mgr1, "service", "ls").splitlines()[1].split()
        assert row[1:4] == ["web-fe", "replicated", "2/2"]
        lines = core(mgr1, "service", "ps", "web-fe").splitlines()
        assert len(lines) == 4
        assert lines[1].split()[:6] == [one["ID"][:12], "web-fe.1", swarm["image"], "fake1", "Running", "Running"]
        assert " Running about a minute ago " in lines[1]
        if shutil.which("docker"):  # docker's CLI prints the same tables
            assert docker_cli(mgr1, "service", "ps", "web-fe").splitlines() == lines
            assert docker_cli(mgr1, "service", "ps", "--no-trunc", "web-fe") == \
                core(mgr1, "service", "ps", "--no-trunc", "web-fe")
            assert docker_cli(mgr1, "node", "ps", "fake1") == core(mgr1, "node", "ps", "fake1")
            assert docker_cli(mgr1, "service", "ls") == core(mgr1, "service", "ls")
        assert lines[2].split()[:7] == [old["ID"][:12], "\\_", "web-fe.1", swarm["image"], "fake1", "Shutdown",
                                        "Failed"]
        assert re.search(r'Failed about a minute ago +"task: non-zero exit \(1\)"$', lines[2].rstrip())
        assert lines[3].split()[1] == "web-fe.2"
        wide = core(mgr1, "service", "ps", "--no-trunc", "web-fe").splitlines()
        assert wide[1].split()[:3] == [one["ID"], "web-fe.1", f"{swarm['image']}@{swarm['digest']}"]
        assert sorted(core(mgr1, "service", "ps", "-q", "-f", "desired-state=running", "web-fe").split()) == \
            sorted([one["ID"][:12], two["ID"][:12]])
        assert core(mgr1, "service", "ps", "--format", "{{.Name}} {{.Node}}", "-f", "name=web-fe.2",
                    "web-fe") == "web-fe.2 fake1\n"
        assert core(mgr1, "node", "ps", "fake1").splitlines()[1:] == lines[1:]
        assert core(mgr1, "node", "ps", "-q", "fake1").split() == [l.split()[0] for l in lines[1:]]
        assert core(mgr1, "node", "ps").splitlines()[1:] == []  # this node runs none of them
        tasks = mgr1.docker().api.tasks(filters={"service": "web-fe", "desired-state": "running"})
        assert sorted(t["ID"] for t in tasks) == sorted([one["ID"], two["ID"]])
        assert mgr1.docker().api.tasks(filters={"node": "fake1", "name": "web-fe.1"})[0]["Slot"] == 1
        task = mgr1.docker().api.inspect_task(one["ID"][:10])
        assert task["ID"] == one["ID"] and task["Version"]["Index"] > 0
        assert core(mgr1, "service", "logs", "web-fe") == ""  # no log gathering yet: nothing, no error

        # a create that waits: the progress ends when both tasks run the current spec (docker's
        # CLI too, where it is installed: it asks for the up-to-date tasks)
        from tests.support.hosts import CORE

        clis = {"conv": [*CORE]} | ({"conv-dk": ["docker"]} if shutil.which("docker") else {})
        procs = {name: subprocess.Popen([*mgr1.launcher, *cli, "service", "create", "--name", name,
                                         "--replicas", "2", swarm["image"]],
                                        env={**mgr1.env, "DOCKER_CLI_HINTS": "false"}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, cli in clis.items()}
        try:
            later = {}
            for name in procs:
                wait_for(name, lambda: name in core(mgr1, "service", "ls", "--format", "{{.Name}}").split())
                conv = mgr1.docker().api.inspect_service(name)
                later[name] = _fake_task(conv, node_id, 2, "starting")
                put([_fake_task(conv, node_id, 1, "running"), later[name]])
            time.sleep(1.5)
            assert all(p.poll() is None for p in procs.values())  # one task is not running yet
            for task in later.values():  # the agent moves it on
                task["Status"] = {**task["Status"], "State": "running", "Message": "started"}
                put([task])
            outputs = {}
            for name, p in procs.items():
                outputs[name] = p.communicate(timeout=30)
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for name, p in procs.items():
            assert p.returncode == 0, outputs[name]
        out_lines = outputs["conv"][0].splitlines()
        assert out_lines[0] == mgr1.docker().api.inspect_service("conv")["ID"]
        assert "overall progress: 1 out of 2 tasks" in out_lines
        assert "overall progress: 2 out of 2 tasks" in out_lines
        assert "verify: Waiting 5 seconds to verify that tasks are stable..." in out_lines
        assert out_lines[-1] == "verify: Service converged"
        if "conv-dk" in outputs:
            # docker 20's words, which core prints; docker 28 names the service in them
            assert re.search(r"^verify: Service (\w+ )?converged$", outputs["conv-dk"][0], re.M)
    finally:
        beating.set()
        beater.join()
        _rm(mgr1, "web-fe", "conv", "conv-dk")

        async def drop(store) -> None:
            for task_id in written:
                await store.delete(TASKS, task_id)
            await store.etcd.delete(SESSIONS + node_id)
            await store.delete(NODES, node_id)

        _store_call(mgr1, drop)


def test_logs_of_a_task_the_agent_runs(swarm, cluster):
    """A task assigned by hand to this node: its agent runs it, and ``service logs`` (core's and
    docker's CLI) shows its output with docker's ``<service>.<slot>.<task>@<node>    |`` prefix."""
    from core.engine.swarm.store import TASKS

    mgr1 = cluster["mgr1"]
    node_id = mgr1.docker().info()["Swarm"]["NodeID"]
    core(mgr1, "service", "create", "-d", "--name", "talker", swarm["image"], "sh", "-c",
         "echo hello-from-task; echo oops >&2; sleep 60")
    svc = mgr1.docker().api.inspect_service("talker")
    task = _fake_task(svc, node_id, 1, "assigned")
    try:
        _store_call(mgr1, lambda store: store.put_many(TASKS, [task]))
        wait_for("the task running", lambda: (mgr1.docker().api.inspect_task(task["ID"])["Status"]["State"]
                                              == "running"), timeout=60)
        prefix = f"talker.1.{task['ID'][:12]}@mgr1    | "

        def both() -> Any:
            proc = mgr1.core("service", "logs", "talker")
            return proc if "hello-from-task" in proc.stdout and "oops" in proc.stderr else None

        proc = wait_for("the task's output", both, timeout=30)
        assert proc.stdout == prefix + "hello-from-task\n" and proc.stderr == prefix + "oops\n"
        assert core(mgr1, "service", "logs", "--raw", task["ID"]) == "hello-from-task\n"
        if shutil.which("docker"):
            assert docker_cli(mgr1, "service", "logs", "talker") == proc.stdout
    finally:
        def stop(t: dict[str, Any]) -> None:
            t["DesiredState"] = "shutdown"

        _store_call(mgr1, lambda store: store.update(TASKS, task["ID"], stop))
        _rm(mgr1, "talker")
