"""Swarm services, the front: ``/services`` and ``/tasks`` and the ``service`` commands on a real
one-manager swarm (multi-host harness, CLUSTER_SHAPE (1, 0)), through core's CLI, raw API calls
and the Docker SDK; images come from the test registry on loopback (forwarded into the host),
so specs are pinned to real digests.

What needs the leader's loops and the agent (tasks created, scheduled and run) is the book's
web-fe walk at the end: it is skipped until those parts are present
(``core.engine.swarm.orchestrator``), and runs as it is once they are merged.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from typing import Any

import pytest

from core.engine.swarm.service import ERR_NO_MANAGER
from tests.support.swarm import core_ok as core, wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 0)


def api(host, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
    """One raw API call on the host's socket: (status, decoded JSON or None)."""
    client = host.docker().api
    resp = client.request(method, client._url(path), data=json.dumps(body) if body is not None else None,
                          headers={"Content-Type": "application/json", **(headers or {})})
    try:
        payload = resp.json() if resp.content.strip() else None
    except ValueError:
        payload = resp.content
    return resp.status_code, payload


@pytest.fixture(scope="module")
def swarm(cluster, test_images) -> dict[str, Any]:
    mgr1 = cluster["mgr1"]
    cluster.forward_loopback(test_images.registry.port)
    out: dict[str, Any] = {"before": api(mgr1, "GET", "/services")}
    core(mgr1, "swarm", "init", "--advertise-addr", f"{mgr1.address}:2377",
         "--listen-addr", f"{mgr1.address}:2377", "--dispatcher-heartbeat", "1s")
    wait_for("the manager ready", lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split() == ["Ready"])
    out["image"] = test_images["busybox:latest"].ref()
    out["digest"] = test_images["busybox:latest"].digest
    out["image2"] = test_images["busybox:1.0"].ref()
    out["digest2"] = test_images["busybox:1.0"].digest
    return out


def _rm(host, *names: str) -> None:
    for name in names:
        host.core("service", "rm", name)


def test_not_in_a_swarm_is_dockers_503(swarm):
    status, body = swarm["before"]
    assert status == 503 and body["message"] == ERR_NO_MANAGER


def test_create_inspect_ls_and_clashes(swarm, cluster):
    mgr1 = cluster["mgr1"]
    image = swarm["image"]
    try:
        service_id = core(mgr1, "service", "create", "-d", "--name", "web", "--replicas", "2", "-p", "8080:80",
                          "--label", "tier=front", "--env", "MODE=test", "--container-label", "c=1",
                          "--constraint", "node.role==manager", "--update-parallelism", "2",
                          "--update-delay", "10s", "--limit-memory", "64m", image, "sleep", "3600").strip()
        assert re.fullmatch(r"[0-9a-z]{25}", service_id)
        [svc] = json.loads(core(mgr1, "service", "inspect", "web"))
        spec = svc["Spec"]
        assert svc["ID"] == service_id and svc["Version"]["Index"] > 0
        assert spec["Name"] == "web" and spec["Labels"] == {"tier": "front"}
        assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
        cs = spec["TaskTemplate"]["ContainerSpec"]
        assert cs["Image"] == f"{image}@{swarm['digest']}"  # pinned, as docker does
        assert cs["Args"] == ["sleep", "3600"] and cs["Env"] == ["MODE=test"] and cs["Labels"] == {"c": "1"}
        assert cs["StopGracePeriod"] == 10 * 10**9 and "PullOptions" not in cs
        assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==manager"]
        assert spec["TaskTemplate"]["Resources"]["Limits"] == {"MemoryBytes": 64 * 1024 * 1024}
        assert spec["TaskTemplate"]["RestartPolicy"] == {"Condition": "any", "Delay": 5 * 10**9, "MaxAttempts": 0}
        assert spec["UpdateConfig"] == {"Parallelism": 2, "Delay": 10 * 10**9, "FailureAction": "pause",
                                        "Monitor": 5 * 10**9, "MaxFailureRatio": 0, "Order": "stop-first"}
        assert spec["EndpointSpec"] == {"Mode": "vip", "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]}
        assert svc["Endpoint"]["Ports"] == spec["EndpointSpec"]["Ports"]
        assert "PreviousSpec" not in svc

        lines = core(mgr1, "service", "ls").splitlines()
        assert lines[0].split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
        row = lines[1].split()
        assert row[0] == service_id[:12] and row[1:3] == ["web", "replicated"]
        assert re.fullmatch(r"\d/2", row[3]) and row[4] == image and row[5] == "*:8080->80/tcp"
        assert core(mgr1, "service", "ls", "-q") == service_id[:12] + "\n"  # docker's are truncated too

        err = core(mgr1, "service", "create", "-d", "--name", "web", image, code=1)
        assert "name conflicts with an existing object" in err
        err = core(mgr1, "service", "create", "-d", "--name", "web2", "-p", "8080:81", image, code=1)
        assert f"port '8080' is already in use by service 'web' ({service_id}) as an ingress port" in err
        # a published port left out is allocated from docker's dynamic range
        core(mgr1, "service", "create", "-d", "--name", "web2", "-p", "80", image)
        [web2] = json.loads(core(mgr1, "service", "inspect", "web2"))
        assert web2["Endpoint"]["Ports"][0]["PublishedPort"] == 30000
        assert "PublishedPort" not in web2["Spec"]["EndpointSpec"]["Ports"][0]
    finally:
        _rm(mgr1, "web", "web2")


def test_update_stale_version_rollback_and_pretty(swarm, cluster):
    mgr1 = cluster["mgr1"]
    client = mgr1.docker()
    try:
        core(mgr1, "service", "create", "-d", "--name", "uber-svc", "--replicas", "3", swarm["image"])
        [before] = json.loads(core(mgr1, "service", "inspect", "uber-svc"))
        out = core(mgr1, "service", "update", "-d", "--image", swarm["image2"], "--update-parallelism", "2",
                   "--update-delay", "20s", "--env-add", "A=1", "--label-add", "x=y", "uber-svc")
        assert out == "uber-svc\n"
        [after] = json.loads(core(mgr1, "service", "inspect", "uber-svc"))
        assert after["Version"]["Index"] > before["Version"]["Index"]
        assert after["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{swarm['image2']}@{swarm['digest2']}"
        assert after["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == \
            before["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert after["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1"]
        assert after["Spec"]["Labels"] == {"x": "y"}
        assert after["Endpoint"] == {"Spec": {}}  # nothing published: docker's empty endpoint

        pretty = core(mgr1, "service", "inspect", "--pretty", "uber-svc")
        assert f"\nID:\t\t{after['ID']}\nName:\t\tuber-svc\nLabels:\n x=y\nService Mode:\tReplicated\n Replicas:\t3\n" \
            in pretty
        assert ("UpdateConfig:\n Parallelism:\t2\n Delay:\t\t20s\n On failure:\tpause\n Monitoring Period: 5s\n"
                " Max failure ratio: 0\n Update order:      stop-first\n") in pretty
        assert ("RollbackConfig:\n Parallelism:\t1\n On failure:\tpause\n Monitoring Period: 5s\n"
                " Max failure ratio: 0\n Rollback order:    stop-first\n") in pretty
        assert f"ContainerSpec:\n Image:\t\t{swarm['image2']}@{swarm['digest2']}\n Env:\t\tA=1 \n" in pretty
        assert pretty.endswith("Endpoint Mode:\tvip\n\n")

        # an update naming the version read before the last one is refused, nothing changes
        status, body = api(mgr1, "POST", f"/services/{after['ID']}/update?version={before['Version']['Index']}",
                           before["Spec"])
        assert status == 409
        assert "update out of sequence" in body["message"]
        [same] = json.loads(core(mgr1, "service", "inspect", "uber-svc"))
        assert same["Spec"] == after["Spec"]  # (the Version moves on: the updater writes UpdateStatus)

        out = core(mgr1, "service", "rollback", "-d", "uber-svc")
        assert out == "uber-svc\n"
        [back] = json.loads(core(mgr1, "service", "inspect", "uber-svc"))
        assert back["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == \
            before["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert back["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == \
            after["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert back["UpdateStatus"]["State"] == "rollback_started"
        assert back["UpdateStatus"]["Message"] == "manually requested rollback"

        core(mgr1, "service", "update", "-d", "--force", "--publish-add", "9000:90", "--publish-add", "91",
             "uber-svc")
        [forced] = json.loads(core(mgr1, "service", "inspect", "uber-svc"))
        assert forced["Spec"]["TaskTemplate"]["ForceUpdate"] == 1
        assert [(p["TargetPort"], p["PublishedPort"]) for p in forced["Endpoint"]["Ports"]] == [(90, 9000), (91, 30000)]
        core(mgr1, "service", "update", "-d", "--publish-rm", "90", "--replicas", "4", "uber-svc")
        [fewer] = json.loads(core(mgr1, "service", "inspect", "uber-svc"))
        assert [(p["TargetPort"], p["PublishedPort"]) for p in fewer["Endpoint"]["Ports"]] == [(91, 30000)]
        assert fewer["Spec"]["Mode"]["Replicated"]["Replicas"] == 4
        core(mgr1, "service", "update", "-d", "--publish-rm", "91", "uber-svc")
        [last] = json.loads(core(mgr1, "service", "inspect", "uber-svc"))
        assert last["Endpoint"] == {"Spec": {}} and last["Spec"]["EndpointSpec"] == {"Mode": "vip"}


        # scale: replicated yes, global no (docker's words), nothing changed for the refused one
        assert core(mgr1, "service", "scale", "-d", "uber-svc=5") == "uber-svc scaled to 5\n"
        assert client.services.get("uber-svc").attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 5
        core(mgr1, "service", "create", "-d", "--mode", "global", "--name", "agent", swarm["image"])
        err = core(mgr1, "service", "scale", "-d", "agent=3", code=1)
        assert err.strip() == "agent: scale can only be used with replicated or replicated-job mode"
        err = core(mgr1, "service", "scale", "agent", code=1)
        assert "Invalid scale specifier 'agent'" in err
    finally:
        _rm(mgr1, "uber-svc", "agent")


def test_bad_input_gets_dockers_errors(swarm, cluster):
    mgr1 = cluster["mgr1"]
    image = swarm["image"]
    err = core(mgr1, "service", "create", "--replicas", "x", image, code=125)
    assert 'invalid argument "x" for "--replicas" flag' in err
    err = core(mgr1, "service", "create", "-d", "--mode", "global", "--replicas", "2", image, code=1)
    assert "replicas can only be used with replicated mode" in err
    err = core(mgr1, "service", "create", "-d", "--name", "bad_name!", image, code=1)
    assert "name must be valid as a DNS name component" in err
    err = core(mgr1, "service", "create", "-d", "--update-failure-action", "explode", image, code=1)
    assert "unrecognized update failure action explode" in err
    err = core(mgr1, "service", "create", "-d", "--constraint", "node.role", image, code=1)
    assert "constraint expected one operator from ==, !=" in err
    err = core(mgr1, "service", "create", code=1)
    assert "requires at least 1 argument" in err
    cases = [
        ({"Name": "x"}, "TaskSpec: missing runtime"),
        ({"TaskTemplate": {"ContainerSpec": {}}}, "ContainerSpec: image reference must be provided"),
        ({"TaskTemplate": {"ContainerSpec": {"Image": "Bad Image"}}},
         'ContainerSpec: "Bad Image" is not a valid repository/tag'),
        ({"TaskTemplate": {"ContainerSpec": {"Image": image}}, "UpdateConfig": {"MaxFailureRatio": 2}},
         "TaskSpec: update-maxfailureratio cannot be less than 0 or bigger than 1"),
        ({"TaskTemplate": {"ContainerSpec": {"Image": image}, "RestartPolicy": {"Delay": -1}}},
         "TaskSpec: restart-delay cannot be negative"),
        ({"TaskTemplate": {"ContainerSpec": {"Image": image}},
          "Mode": {"Replicated": {"Replicas": 1}, "Global": {}}}, "must specify only one service mode"),
        ({"TaskTemplate": {"ContainerSpec": {"Image": image}},
          "EndpointSpec": {"Mode": "dnsrr", "Ports": [{"TargetPort": 80, "PublishedPort": 80}]}},
         "EndpointSpec: port published with ingress mode can't be used with dnsrr mode"),
        ({"TaskTemplate": {"ContainerSpec": {"Image": image}, "Resources": {"Limits": {"MemoryBytes": 1}}}},
         "invalid memory value 1: Must be at least 4MiB"),
    ]
    for body, message in cases:
        status, answer = api(mgr1, "POST", "/services/create", body)
        assert (status, answer["message"]) == (400, message), body
    assert api(mgr1, "GET", "/services?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D")[1]["message"] == \
        "invalid filter 'colour'"
    assert api(mgr1, "GET", "/services/nope")[0] == 404
    assert api(mgr1, "GET", "/tasks/nope") == (404, {"message": "task nope not found"})
    assert api(mgr1, "POST", "/services/nope/update?version=1", {"TaskTemplate": {
        "ContainerSpec": {"Image": image}}})[0] == 404
    assert core(mgr1, "service", "ls", "-q") == ""  # nothing was created


def test_mangled_specs_are_client_errors(swarm, cluster):
    """Random damage to a full spec (wrong types, odd values, nulls): 4xx, never 5xx, nothing
    stored but what was valid."""
    import copy
    import random

    mgr1 = cluster["mgr1"]
    rnd = random.Random(20261207)
    base = {"Name": "fz", "Labels": {"a": "b"},
            "TaskTemplate": {"ContainerSpec": {"Image": swarm["image"], "Args": ["sleep", "1"], "Env": ["A=1"],
                                               "Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}],
                                               "Healthcheck": {"Test": ["CMD", "true"], "Interval": 10**9},
                                               "StopGracePeriod": 10**9},
                             "Resources": {"Limits": {"NanoCPUs": 10**9, "MemoryBytes": 2**26}},
                             "RestartPolicy": {"Condition": "on-failure", "Delay": 10**9, "MaxAttempts": 3},
                             "Placement": {"Constraints": ["node.role==manager"],
                                           "Preferences": [{"Spread": {"SpreadDescriptor": "node.id"}}]},
                             "Networks": [{"Target": "nonet"}]},
            "Mode": {"Replicated": {"Replicas": 2}},
            "UpdateConfig": {"Parallelism": 2, "Delay": 10**9, "FailureAction": "pause", "MaxFailureRatio": 0.5},
            "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8090}]}}
    odd = [None, -1, 0, 2**70, 1.5, "", "x", "-1", True, [], [None], {}, {"a": None}, ["x", 1], "\u2603" * 70]

    def paths(obj, prefix=()):
        yield prefix
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from paths(v, prefix + (i,))

    every = [p for p in paths(base) if p]
    failures = []
    for _ in range(120):
        body = copy.deepcopy(base)
        for _ in range(rnd.randint(1, 3)):
            where = rnd.choice(every)
            node = body
            try:
                for k in where[:-1]:
                    node = node[k]
                node[where[-1]] = rnd.choice(odd)
            except (KeyError, IndexError, TypeError):
                continue
        status, answer = api(mgr1, "POST", "/services/create", body)
        if status >= 500:
            failures.append((status, answer, body))
        if status == 201:
            mgr1.docker().api.remove_service(answer["ID"])
    assert not failures, failures[:3]
    assert "Traceback" not in mgr1.log()


def test_filters_and_tasks(swarm, cluster):
    mgr1 = cluster["mgr1"]
    try:
        a = core(mgr1, "service", "create", "-d", "--name", "alpha", "--label", "team=a", swarm["image"]).strip()
        b = core(mgr1, "service", "create", "-d", "--name", "beta", "--mode", "global", swarm["image"]).strip()
        assert core(mgr1, "service", "ls", "-q", "-f", "mode=global") == b[:12] + "\n"
        assert core(mgr1, "service", "ls", "-q", "-f", "label=team=a") == a[:12] + "\n"
        assert core(mgr1, "service", "ls", "-q", "-f", "name=al") == a[:12] + "\n"
        assert core(mgr1, "service", "ls", "-q", "-f", f"id={b[:6]}") == b[:12] + "\n"
        assert sorted(core(mgr1, "service", "ls", "-q").split()) == sorted([a[:12], b[:12]])
        err = core(mgr1, "service", "ls", "-f", "mode=sideways", code=1)
        assert "Invalid filter: 'mode'='sideways'" in err
        global_row = [r for r in core(mgr1, "service", "ls").splitlines() if " beta " in r][0]
        assert " global " in global_row
        # tasks: whatever the leader made of them, the filters hold
        tasks = mgr1.docker().api.tasks(filters={"service": "alpha"})
        assert all(t["ServiceID"] == a for t in tasks)
        assert mgr1.docker().api.tasks(filters={"service": "no-such-service"}) == []
        err = core(mgr1, "service", "ps", "nope", code=1)
        assert "no such service: nope" in err
        header = core(mgr1, "service", "ps", "alpha").splitlines()[0]
        assert header.split() == ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE",
                                  "ERROR", "PORTS"]
        assert core(mgr1, "node", "ps").splitlines()[0].split() == header.split()
        status, body = api(mgr1, "GET", "/tasks?filters=%7B%22desired-state%22%3A%5B%22dancing%22%5D%7D")
        assert status == 400 and "desired-state" in body["message"]
    finally:
        _rm(mgr1, "alpha", "beta")


def test_networks_are_named_or_refused(swarm, cluster):
    """``--network NAME``: stored as the swarm network's ID, as docker stores it; an unknown one
    is refused, nothing created."""
    mgr1 = cluster["mgr1"]
    net_id = core(mgr1, "network", "create", "-d", "overlay", "svcnet").strip()
    try:
        core(mgr1, "service", "create", "-d", "--name", "netsvc", "--network", "svcnet", swarm["image"])
        spec = mgr1.docker().api.inspect_service("netsvc")["Spec"]
        assert spec["TaskTemplate"]["Networks"] == [{"Target": net_id}]
        core(mgr1, "service", "update", "-d", "--network-rm", "svcnet", "netsvc")
        assert "Networks" not in mgr1.docker().api.inspect_service("netsvc")["Spec"]["TaskTemplate"]
        err = core(mgr1, "service", "create", "-d", "--name", "lost", "--network", "nope", swarm["image"], code=1)
        assert "network nope not found" in err
        assert "lost" not in core(mgr1, "service", "ls", "--format", "{{.Name}}").split()
    finally:
        _rm(mgr1, "netsvc", "lost")
        mgr1.core("network", "rm", "svcnet")


def test_docker_sdk_services(swarm, cluster):
    import docker.types

    mgr1 = cluster["mgr1"]
    client = mgr1.docker()
    svc = client.services.create(swarm["image"], command=["sleep", "3600"], name="sdk-svc",
                                 labels={"made-by": "sdk"},
                                 endpoint_spec=docker.types.EndpointSpec(ports={9090: 80}),
                                 mode=docker.types.ServiceMode("replicated", replicas=2))
    try:
        assert [s.name for s in client.services.list()] == ["sdk-svc"]
        got = client.services.get(svc.id)
        assert got.attrs["Spec"]["Labels"] == {"made-by": "sdk"}
        # the SDK sends no defaults: inspect with insertDefaults shows docker's
        raw = client.api.inspect_service(svc.id, insert_defaults=True)
        assert raw["Spec"]["UpdateConfig"]["FailureAction"] == "pause"
        assert raw["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
        assert raw["Endpoint"]["Ports"][0]["PublishedPort"] == 9090
        got.update(labels={"made-by": "sdk", "updated": "yes"})
        got.reload()
        assert got.attrs["Spec"]["Labels"]["updated"] == "yes"
        assert got.scale(3)
        got.reload()
        assert got.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
        assert isinstance(client.api.tasks(), list)
        assert [s.name for s in client.services.list(filters={"name": "sdk"})] == ["sdk-svc"]
    finally:
        svc.remove()
    assert client.services.list() == []


def _ageless(table: str) -> str:
    """A ``ps`` table with its ages ("3 seconds ago") blanked and its columns' padding gone."""
    aged = re.sub(r"(?i)(Less than a second|About a minute|About an hour|\d+ (seconds?|minutes?|hours?)) ago",
                  "AGE", table)
    return "\n".join(" ".join(line.split()) for line in aged.splitlines())


def docker_cli(host, *args: str, code: int = 0) -> str:
    import subprocess

    proc = subprocess.run(["docker", *args], env={**host.env, "DOCKER_CLI_HINTS": "false"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, f"[{host.name}] docker {' '.join(args)}: {proc.returncode}\n{proc.stderr}"
    return proc.stdout if code == 0 else proc.stderr


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_side_by_side(swarm, cluster):
    """docker's own CLI on core's socket: its service commands work, and core's print the same."""
    mgr1 = cluster["mgr1"]
    image = swarm["image"]
    try:
        out = docker_cli(mgr1, "service", "create", "-d", "--name", "dk", "--replicas", "3", "-p", "8081:80",
                         "--label", "a=b", "--env", "X=1", "--limit-cpu", "0.5", "--reserve-memory", "32m",
                         "--constraint", "node.role==manager", "--placement-pref", "spread=node.labels.zone",
                         "--health-cmd", "true", "--health-interval", "5s", "--update-delay", "3s",
                         "--mount", "type=volume,source=data,target=/data", image, "sleep", "60")
        service_id = out.strip().splitlines()[-1]
        [svc] = json.loads(docker_cli(mgr1, "service", "inspect", "dk"))
        assert svc["ID"] == service_id
        assert svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{image}@{swarm['digest']}"
        assert svc["Spec"]["UpdateConfig"]["Delay"] == 3 * 10**9
        assert docker_cli(mgr1, "service", "inspect", "--pretty", "dk") == \
            core(mgr1, "service", "inspect", "--pretty", "dk")
        assert docker_cli(mgr1, "service", "ls") == core(mgr1, "service", "ls")
        # the CURRENT STATE's age moves between the two calls: compared with the ages blanked
        # (and a task may move on between them: compared again a few times)
        for _ in range(10):
            theirs, ours = (_ageless(docker_cli(mgr1, "service", "ps", "dk")),
                            _ageless(core(mgr1, "service", "ps", "dk")))
            if theirs == ours:
                break
            time.sleep(0.5)
        assert theirs == ours
        docker_cli(mgr1, "service", "update", "-d", "--env-add", "Y=2", "--publish-add", "8082:82", "dk")
        [svc] = json.loads(core(mgr1, "service", "inspect", "dk"))
        env = svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        assert sorted(env) == ["X=1", "Y=2"]  # docker's CLI orders them as a Go map: at random
        assert [p["PublishedPort"] for p in svc["Endpoint"]["Ports"]] == [8081, 8082]
        assert docker_cli(mgr1, "service", "inspect", "--pretty", "dk") == \
            core(mgr1, "service", "inspect", "--pretty", "dk")
        docker_cli(mgr1, "service", "scale", "-d", "dk=4")
        assert mgr1.docker().services.get("dk").attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 4
        docker_cli(mgr1, "service", "rollback", "-d", "dk")
        [svc] = json.loads(core(mgr1, "service", "inspect", "dk"))
        assert svc["Spec"]["Mode"]["Replicated"]["Replicas"] == 3 and svc["UpdateStatus"]["State"] == "rollback_started"
        # back and forth while the updater writes each rollback's UpdateStatus (rollback_completed
        # at once: no task changes) between the CLI's read and its write, or the front's
        for i in range(6):
            docker_cli(mgr1, "service", "rollback", "-d", "dk")
        assert mgr1.docker().api.inspect_service("dk")["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
        err = docker_cli(mgr1, "service", "create", "-d", "--name", "dk", image, code=1)
        assert "name conflicts with an existing object" in err
        assert docker_cli(mgr1, "service", "rm", "dk") == "dk\n"
        # what each says of a service that is not there
        import os
        import subprocess

        for args in (["service", "inspect", "nope"], ["service", "inspect", "--pretty", "nope"],
                     ["service", "ps", "nope"], ["service", "rm", "nope"], ["service", "scale", "-d", "nope=2"],
                     ["service", "update", "-d", "--replicas", "2", "nope"], ["service", "rollback", "-d", "nope"],
                     ["service", "logs", "nope"]):
            theirs = subprocess.run(["docker", *args], env={**mgr1.env, "DOCKER_CLI_HINTS": "false"},
                                    capture_output=True, text=True, timeout=60)
            ours = mgr1.core(*args)
            if os.environ.get("SHOW_DIFF"):
                print("\n", args, "\n D", (theirs.returncode, theirs.stdout, theirs.stderr), "\n C",
                      (ours.returncode, ours.stdout, ours.stderr))
                continue
            assert (ours.returncode, ours.stdout, ours.stderr) == \
                (theirs.returncode, theirs.stdout, theirs.stderr), args
    finally:
        _rm(mgr1, "dk")


# -- tasks, as the leader would write them --------------------------------------------------------

def _store_call(host, fn) -> Any:
    """``fn(store)`` on the host's etcd member (its client socket), from the test process."""
    import trio

    from core.engine.swarm.etcd import EtcdClient
    from core.engine.swarm.store import Store

    async def run() -> Any:
        async with EtcdClient(host.data_root / "swarm" / "etcd.sock:0") as etcd:
            return await fn(Store(etcd))

    return trio.run(run)


def _fake_task(service: dict[str, Any], node_id: str, slot: int, state: str, *, desired: str = "running",
               err: str = "", age: float = 0.0) -> dict[str, Any]:
    import datetime as dt

    from core.engine.swarm.tasks import new_task_id

    t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age)
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    status = {"Timestamp": stamp, "State": state, "Message": state}
    if err:
        status["Err"] = err
    return {"ID": new_task_id(), "CreatedAt": stamp, "UpdatedAt": stamp, "Labels": {},
            "Spec": service["Spec"]["TaskTemplate"], "ServiceID": service["ID"], "Slot": slot, "NodeID": node_id,
            "Status": status, "DesiredState": desired,
            "ServiceAnnotations": {"Name": service["Spec"]["Name"], "Labels": {}},
            "SpecVersion": {"Index": service["Version"]["Index"]}}


def test_book_web_fe_walk(swarm, cluster):
    """Chapter 7: create 5, ls 5/5, ps, inspect --pretty, scale 10 and 5, rm."""
    mgr1 = cluster["mgr1"]
    image = swarm["image"]
    try:
        out = core(mgr1, "service", "create", "--name", "web-fe", "-p", "8080:8080", "--replicas", "5",
                   image, "sleep", "3600", timeout=180)
        lines = out.splitlines()
        assert re.fullmatch(r"[0-9a-z]{25}", lines[0])
        assert "overall progress: 5 out of 5 tasks" in out and lines[-1] == "verify: Service converged"
        row = core(mgr1, "service", "ls").splitlines()[1].split()
        assert row[1:5] == ["web-fe", "replicated", "5/5", image]
        ps = core(mgr1, "service", "ps", "web-fe").splitlines()
        assert len(ps) == 6 and all(" Running " in line and "mgr1" in line for line in ps[1:])
        assert sorted(line.split()[1] for line in ps[1:]) == [f"web-fe.{i}" for i in range(1, 6)]
        pretty = core(mgr1, "service", "inspect", "--pretty", "web-fe")
        assert "Service Mode:\tReplicated\n Replicas:\t5\n" in pretty
        assert " PublishedPort = 8080\n  Protocol = tcp\n  TargetPort = 8080\n  PublishMode = ingress \n" in pretty
        out = core(mgr1, "service", "scale", "web-fe=10", timeout=180)
        assert out.startswith("web-fe scaled to 10\n") and "verify: Service converged" in out
        assert core(mgr1, "service", "ls", "--format", "{{.Replicas}}") == "10/10\n"
        core(mgr1, "service", "scale", "web-fe=5", timeout=180)
        wait_for("5 tasks running", lambda: core(mgr1, "service", "ls", "--format", "{{.Replicas}}") == "5/5\n")
        running = core(mgr1, "service", "ps", "-q", "-f", "desired-state=running", "web-fe").split()
        assert len(running) == 5
        assert core(mgr1, "service", "rm", "web-fe") == "web-fe\n"
        assert core(mgr1, "service", "ls", "-q") == ""
    finally:
        _rm(mgr1, "web-fe")


# -- logs: the route's framing and the CLI's prefixes (no cluster: a gatherer that yields lines) ----

def test_logs_are_framed_and_prefixed_as_dockers(capfdbinary):
    import struct

    import trio

    from core.api.http import Request
    from core.api.services import service_logs
    from core.cli.cmd_service import logs as logs_command

    task_id, node_id, service_id = "t" * 25, "n" * 25, "s" * 25
    lines = [(task_id, "stdout", "2026-12-07T10:00:00.123Z", b"hello\n"),
             (task_id, "stderr", "2026-12-07T10:00:01Z", b"oops\n")]

    class Gatherer:
        asked: dict = {}

        async def logs(self, task_ids, *, follow, tail, timestamps, since):
            Gatherer.asked = {"tasks": task_ids, "follow": follow, "tail": tail, "since": since}
            for line in lines:
                yield line

    class Services:
        gatherer = Gatherer()

        async def logs_of(self, ref, *, task):
            return [task_id], False, {task_id: {"NodeID": node_id, "ServiceID": service_id}}, service_id

        def logs_source(self, task_ids, tasks, *, service_id, follow, tail, timestamps, since):
            return self.gatherer.logs(task_ids, follow=follow, tail=tail, timestamps=timestamps, since=since)

        async def task(self, task_id):
            return None

    query = {"stdout": ["1"], "stderr": ["1"], "details": ["1"], "timestamps": ["1"], "tail": ["10"],
             "follow": ["1"]}
    req = Request(method="GET", path=f"/services/{service_id}/logs", query=query, headers={},
                  params={"id": service_id})

    async def collect() -> bytes:
        response = await service_logs(req, Services())
        assert response.content_type == "application/vnd.docker.multiplexed-stream"
        return b"".join([chunk async for chunk in response.body])

    body = trio.run(collect)
    assert Gatherer.asked == {"tasks": [task_id], "follow": True, "tail": 10, "since": 0.0}
    details = (f"com.docker.swarm.node.id={node_id},com.docker.swarm.service.id={service_id},"
               f"com.docker.swarm.task.id={task_id}").encode()
    first = b"2026-12-07T10:00:00.123000000Z " + details + b" hello\n"
    second = b"2026-12-07T10:00:01.000000000Z " + details + b" oops\n"
    assert body == struct.pack(">BxxxL", 1, len(first)) + first + struct.pack(">BxxxL", 2, len(second)) + second

    class Answer:
        def iter_chunks(self):
            yield body[:7]  # frames split anywhere
            yield body[7:]

        def close(self):
            pass

    class Client:
        def get_json(self, path, params=None):
            return {"/services/web": {"ID": service_id, "Spec": {"TaskTemplate": {"ContainerSpec": {}}}},
                    f"/tasks/{task_id}": {"ID": task_id, "Slot": 1, "ServiceAnnotations": {"Name": "web"}},
                    f"/nodes/{node_id}": {"ID": node_id, "Description": {"Hostname": "mgr1"}}}[path]

        def request(self, method, path, params=None):
            assert path == f"/services/{service_id}/logs" and params["details"] == "1"
            return Answer()

    class Ctx:
        client = Client()

    assert logs_command(Ctx(), ["-t", "web"], "core service logs") == 0
    out, err = capfdbinary.readouterr()
    assert out == f"2026-12-07T10:00:00.123000000Z web.1.{task_id[:12]}@mgr1    | hello\n".encode()
    assert err == f"2026-12-07T10:00:01.000000000Z web.1.{task_id[:12]}@mgr1    | oops\n".encode()


def test_with_registry_auth_pins_through_a_token_registry_and_keeps_the_credentials(swarm, cluster, token_registry,
                                                                                   tmp_path):
    """``--with-registry-auth``: the daemon resolves the digest with the credentials, stores them
    for the agents (``ContainerSpec.PullOptions.RegistryAuth``) and never shows them."""
    import subprocess

    from core.engine.swarm.store import SERVICES
    from tests.support.fixtures import TEST_PASSWORD, TEST_USER
    from tests.support.hosts import CORE

    mgr1 = cluster["mgr1"]
    cluster.forward_loopback(token_registry.port)
    cluster.forward_loopback(token_registry.token_server.port)
    image = f"{token_registry.host}/busybox:latest"  # the token registry shares the plain one's storage
    env = {**mgr1.env, "DOCKER_CONFIG": str(tmp_path)}

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([*mgr1.launcher, *CORE, *args], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == code, proc.stderr
        return proc

    try:
        proc = subprocess.run([*mgr1.launcher, *CORE, "login", "-u", TEST_USER, "--password-stdin",
                               token_registry.host], input=TEST_PASSWORD, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        # a registry that does not answer: docker's warning, the tag as given
        nowhere = "127.0.0.1:1/nothing:latest"
        proc = cli("service", "create", "-d", "--name", "anon", nowhere)
        assert proc.stderr.startswith(f"image {nowhere} could not be accessed on a registry to record\nits digest.")
        assert mgr1.docker().api.inspect_service("anon")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == nowhere
        proc = cli("service", "create", "-d", "--with-registry-auth", "--name", "authed", image)
        assert proc.stderr == ""
        svc = mgr1.docker().api.inspect_service("authed")
        cs = svc["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert cs["Image"] == f"{image}@{swarm['digest']}" and "PullOptions" not in cs
        stored, _version = _store_call(mgr1, lambda store: store.get(SERVICES, svc["ID"]))
        auth = stored["Spec"]["TaskTemplate"]["ContainerSpec"]["PullOptions"]["RegistryAuth"]
        decoded = json.loads(__import__("base64").urlsafe_b64decode(auth + "=" * (-len(auth) % 4)))
        assert decoded["username"] == TEST_USER and decoded["password"] == TEST_PASSWORD
        # an update without the flag keeps them (registryAuthFrom=spec)
        cli("service", "update", "-d", "--env-add", "A=1", "authed")
        stored, _version = _store_call(mgr1, lambda store: store.get(SERVICES, svc["ID"]))
        assert stored["Spec"]["TaskTemplate"]["ContainerSpec"]["PullOptions"]["RegistryAuth"] == auth
    finally:
        _rm(mgr1, "anon", "authed")
