"""The dispatcher's assignment index (:class:`core.engine.swarm.dispatcher.Assignments`) and
the worker's task-to-container mapping (:mod:`core.engine.swarm.worker`), without a cluster."""
from __future__ import annotations

import base64
import json

import pytest

from core import errors
from core.engine.swarm.assignments import Assignments
from core.engine.swarm.worker import (container_body, exit_status, expand, port_status, registry_auth,
                                     task_labels)


class FakeSessions:
    def __init__(self, nodes: list[str]) -> None:
        self.nodes = nodes
        self.sent: list[tuple[str, dict]] = []

    def send(self, node_id: str, message: dict) -> bool:
        if node_id not in self.nodes:
            return False
        self.sent.append((node_id, message))
        return True


def task(task_id: str, node: str = "n1", state: str = "assigned", desired: str = "running", **extra) -> dict:
    return {"ID": task_id, "NodeID": node, "ServiceID": "s1", "Slot": 1, "DesiredState": desired,
            "ServiceAnnotations": {"Name": "web"}, "Status": {"State": state}, **extra}


def index(nodes=("n1", "n2")) -> tuple[Assignments, FakeSessions]:
    sessions = FakeSessions(list(nodes))
    a = Assignments(None, sessions)  # type: ignore[arg-type]
    a.reset([])
    a.ready.set()
    a.flush()
    sessions.sent.clear()
    return a, sessions


def test_a_node_gets_its_assigned_tasks_only():
    a, sessions = index()
    assert a.apply("t1", task("t1", state="pending", node="")) == set()  # not assigned yet
    assert a.apply("t1", task("t1"), 5) == {"n1"}
    assert a.apply("t2", task("t2", node="n2"), 6) == {"n2"}
    a.flush()
    sent = dict(sessions.sent)
    assert [t["ID"] for t in sent["n1"]["assignments"]] == ["t1"]
    assert sent["n1"]["assignments"][0]["Version"] == {"Index": 5}
    assert [t["ID"] for t in sent["n2"]["assignments"]] == ["t2"]
    assert a.message("n1") == {"assignments": a.assigned("n1")}


def test_a_nodes_own_status_report_is_not_sent_back_but_a_desired_state_is():
    a, sessions = index()
    a.apply("t1", task("t1"), 5)
    a.flush()
    sessions.sent.clear()
    assert a.apply("t1", task("t1", state="running"), 6) == set()  # the node's own report
    assert a.apply("t1", task("t1", state="running", desired="shutdown"), 7) == {"n1"}
    a.flush()
    assert sessions.sent == [("n1", {"assignments": a.assigned("n1")})]
    assert sessions.sent[0][1]["assignments"][0]["DesiredState"] == "shutdown"


def test_a_deleted_task_leaves_the_set_and_the_node_hears_it():
    a, sessions = index()
    a.apply("t1", task("t1"), 5)
    a.apply("t2", task("t2"), 6)
    a.flush()
    sessions.sent.clear()
    assert a.apply("t1", None) == {"n1"}
    a.flush()
    assert [t["ID"] for t in sessions.sent[0][1]["assignments"]] == ["t2"]
    assert a.node_of("t1") is None and a.node_of("t2") == "n1"
    a.apply("t2", None)
    assert a.by_node == {}


def test_changes_are_sent_once_per_node_per_flush_and_nodes_without_session_are_skipped():
    a, sessions = index(nodes=("n1",))
    for i in range(100):
        a.apply(f"t{i}", task(f"t{i}", node="n1" if i % 2 else "n3"), i + 1)
    assert a.flush() == 1
    assert len(sessions.sent) == 1 and len(sessions.sent[0][1]["assignments"]) == 50
    assert len(a.assigned("n3")) == 50


def test_reset_sends_every_session_its_set_even_an_empty_one():
    a, sessions = index(nodes=("n1", "n2"))
    a.reset([(task("t1"), 3)])
    a.flush()
    assert sorted((n, len(m["assignments"])) for n, m in sessions.sent) == [("n1", 1), ("n2", 0)]


def test_the_message_is_empty_until_the_index_is_read():
    a = Assignments(None, FakeSessions(["n1"]))  # type: ignore[arg-type]
    assert a.message("n1") == {}


# -- the worker's mapping -----------------------------------------------------------------------

NODE = {"ID": "node1", "Hostname": "wrk1", "Architecture": "x86_64"}


def test_container_labels_are_dockers():
    t = task("abc", Spec={"ContainerSpec": {"Image": "busybox", "Labels": {"a": "1",
                                                                        "com.docker.swarm.task.id": "x"}}})
    assert task_labels(t) == {"a": "1", "com.docker.swarm.task": "", "com.docker.swarm.task.id": "abc",
                              "com.docker.swarm.task.name": "web.1.abc", "com.docker.swarm.node.id": "n1",
                              "com.docker.swarm.service.id": "s1", "com.docker.swarm.service.name": "web"}


def test_templates_expand_and_an_unknown_one_is_an_error():
    t = task("abc")
    assert expand("{{.Service.Name}}-{{ .Task.Slot }}-{{.Node.Hostname}}-{{.Node.ID}}", t, NODE) == \
        "web-1-wrk1-node1"
    assert expand("{{.Task.Name}}", t, NODE) == "web.1.abc"
    with pytest.raises(errors.InvalidArgument, match="can't evaluate field Nope"):
        expand("{{.Task.Nope}}", t, NODE)


def test_container_body_maps_the_container_spec():
    spec = {"Image": "busybox:latest", "Command": ["sh"], "Args": ["-c", "sleep 1"], "Env": ["H={{.Node.Hostname}}"],
            "Hostname": "{{.Service.Name}}.{{.Task.Slot}}", "Dir": "/tmp", "User": "nobody",
            "StopSignal": "SIGINT", "StopGracePeriod": 3 * 10**9,
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 10**9},
            "Mounts": [{"Type": "volume", "Source": "data-{{.Task.Slot}}", "Target": "/data"}],
            "Hosts": ["10.0.0.1 a b"], "DNSConfig": {"Nameservers": ["1.1.1.1"]}}
    t = task("abc", Spec={"ContainerSpec": spec, "Resources": {"Limits": {"NanoCPUs": 500000000,
                                                                         "MemoryBytes": 1 << 26}},
                          "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}}})
    body = container_body(t, NODE)
    assert body["Image"] == "busybox:latest" and body["Entrypoint"] == ["sh"]
    assert body["Cmd"] == ["-c", "sleep 1"] and body["Env"] == ["H=wrk1"]
    assert body["Hostname"] == "web.1" and body["WorkingDir"] == "/tmp" and body["User"] == "nobody"
    assert body["StopSignal"] == "SIGINT" and body["Healthcheck"]["Test"] == ["CMD", "true"]
    hc = body["HostConfig"]
    assert hc["RestartPolicy"] == {"Name": "no"} and hc["AutoRemove"] is False
    assert hc["Mounts"] == [{"Type": "volume", "Source": "data-1", "Target": "/data"}]
    assert hc["NanoCpus"] == 500000000 and hc["Memory"] == 1 << 26
    assert hc["ExtraHosts"] == ["a:10.0.0.1", "b:10.0.0.1"] and hc["Dns"] == ["1.1.1.1"]
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}


def test_host_mode_ports_are_published_and_reported():
    ports = [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8081, "PublishMode": "host"},
             {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 0, "PublishMode": "host"}]
    t = task("abc", Spec={"ContainerSpec": {"Image": "x"}}, Endpoint={"Ports": ports})
    body = container_body(t, NODE)
    assert body["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert body["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8081"}],
                                                  "53/udp": [{"HostIp": "", "HostPort": ""}]}
    info = {"NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8081"}],
                                          "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}]}}}
    assert port_status(t, info) == {"Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8081, "PublishMode": "host"},
        {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 32768, "PublishMode": "host"}]}
    plain = task("def", Spec={"ContainerSpec": {"Image": "x"}})
    assert "PortBindings" not in container_body(plain, NODE)["HostConfig"]
    assert port_status(plain, info) == {}


def test_registry_auth_and_exit_states():
    auth = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode().rstrip("=")
    t = task("abc", Spec={"ContainerSpec": {"Image": "x", "PullOptions": {"RegistryAuth": auth}}})
    assert registry_auth(t) == {"username": "u", "password": "p"}
    assert registry_auth(task("abc", Spec={"ContainerSpec": {"Image": "x"}})) is None
    assert exit_status(0) == ("complete", "finished", "")
    assert exit_status(3) == ("failed", "started", "task: non-zero exit (3)")
