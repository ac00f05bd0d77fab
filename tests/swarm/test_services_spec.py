"""Service specs without a cluster: what :func:`core.engine.swarm.services.normalize_spec` keeps,
fills in and refuses, docker's defaults, published ports allocation, filters and lookups."""
from __future__ import annotations

import pytest

from core import errors
from core.engine.swarm import services as svc


def spec(**extra):
    return {"TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}, **extra}


def test_normalize_fills_in_what_docker_stores():
    out = svc.normalize_spec(spec(Name="web"))
    assert out["Mode"] == {"Replicated": {"Replicas": 1}} and out["Labels"] == {}
    assert out["TaskTemplate"]["ForceUpdate"] == 0
    assert "UpdateConfig" not in out and "EndpointSpec" not in out
    out = svc.normalize_spec(spec(EndpointSpec={"Ports": [{"TargetPort": 80}]}, Mode={"Global": {}}))
    assert out["EndpointSpec"] == {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                                             "PublishMode": "ingress"}]}
    assert out["Mode"] == {"Global": {}}
    body = spec()
    body["TaskTemplate"]["ContainerSpec"]["PullOptions"] = {"RegistryAuth": "smuggled"}
    assert "PullOptions" not in svc.normalize_spec(body)["TaskTemplate"]["ContainerSpec"]


@pytest.mark.parametrize("body,message", [
    ([], "invalid service spec: expected a JSON object"),
    (spec(Name="-bad"), "name must be valid as a DNS name component"),
    (spec(Name="x" * 64), "name must be valid as a DNS name component"),
    ({"TaskTemplate": {}}, "TaskSpec: missing runtime"),
    (spec(RollbackConfig={"FailureAction": "rollback"}), "unrecognized rollback failure action rollback"),
    (spec(UpdateConfig={"Order": "sideways"}), "unrecognized update order sideways"),
    (spec(UpdateConfig={"Monitor": -1}), "TaskSpec: update-monitor cannot be negative"),
    (spec(EndpointSpec={"Mode": "x"}), 'invalid resolution mode: "x"'),
    (spec(EndpointSpec={"Ports": [{"TargetPort": 80, "PublishedPort": 80}, {"TargetPort": 81, "PublishedPort": 80}]}),
     "EndpointSpec: duplicate published ports provided"),
    ({"TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Mounts": [{"Type": "bind", "Source": "/a",
                                                                         "Target": "/x"},
                                                                        {"Type": "volume", "Target": "/x"}]}}},
     "ContainerSpec: duplicate mount point: /x"),
    ({"TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Healthcheck": {"Interval": 10}}}},
     "ContainerSpec: Interval in HealthConfig cannot be less than 1ms"),
    ({"TaskTemplate": {"ContainerSpec": {"Image": "busybox"}, "Resources": {"Reservations": {"NanoCPUs": 10}}}},
     "invalid cpu value 1e-08: Must be at least 0.001"),
    ({"TaskTemplate": {"ContainerSpec": {"Image": "busybox"}, "Placement": {"Constraints": ["node.id"]}}},
     "constraint expected one operator from ==, !="),
    ({"TaskTemplate": {"ContainerSpec": {"Image": "busybox"}, "RestartPolicy": {"Condition": "always"}}},
     "unknown restart policy: always"),
])
def test_bad_specs_get_dockers_messages(body, message):
    with pytest.raises(errors.InvalidArgument) as exc:
        svc.normalize_spec(body)
    assert exc.value.message == message


def test_jobs_are_not_supported():
    with pytest.raises(errors.NotImplemented_):
        svc.normalize_spec(spec(Mode={"ReplicatedJob": {}}))


def test_defaults_fill_only_what_is_unset():
    out = svc.with_defaults(svc.normalize_spec(spec(UpdateConfig={"Parallelism": 2, "Delay": 10})))
    assert out["UpdateConfig"] == {"Parallelism": 2, "Delay": 10, "FailureAction": "pause", "Monitor": 5 * 10**9,
                                   "MaxFailureRatio": 0, "Order": "stop-first"}
    assert out["TaskTemplate"]["RestartPolicy"] == {"Condition": "any", "Delay": 5 * 10**9, "MaxAttempts": 0}
    assert out["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 10 * 10**9
    assert out["EndpointSpec"] == {"Mode": "vip"}


def _service(name, ports, sid=None):
    s = svc.normalize_spec(spec(Name=name, EndpointSpec={"Ports": ports}))
    return {"ID": sid or name + "id", "Spec": s, "Endpoint": svc.SwarmServices._endpoint(s, [], None)}


def test_published_ports_are_allocated_and_kept():
    a = _service("a", [{"TargetPort": 80}, {"TargetPort": 81, "PublishedPort": 30001}])
    assert [p["PublishedPort"] for p in a["Endpoint"]["Ports"]] == [30000, 30001]
    b = svc.normalize_spec(spec(Name="b", EndpointSpec={"Ports": [{"TargetPort": 80}, {"TargetPort": 53,
                                                                                       "Protocol": "udp"}]}))
    ports = svc.SwarmServices._endpoint(b, [a], None)["Ports"]
    assert [(p["PublishedPort"], p["Protocol"]) for p in ports] == [(30002, "tcp"), (30000, "udp")]
    # an update keeps a port already allocated for the same target
    again = svc.SwarmServices._endpoint(a["Spec"], [], a)
    assert again["Ports"] == a["Endpoint"]["Ports"]
    with pytest.raises(errors.InvalidArgument, match="port '30001' is already in use by service 'a' \\(aid\\)"):
        svc.SwarmServices._endpoint(svc.normalize_spec(spec(EndpointSpec={"Ports": [
            {"TargetPort": 1, "PublishedPort": 30001}]})), [a], None)
    host = svc.normalize_spec(spec(EndpointSpec={"Ports": [{"TargetPort": 1, "PublishedPort": 30001,
                                                            "PublishMode": "host"}]}))
    assert svc.SwarmServices._endpoint(host, [a], None)["Ports"][0]["PublishedPort"] == 30001


def test_lookups_are_mobys():
    objs = [({"ID": "abc123", "Spec": {"Name": "web"}}, 1), ({"ID": "abd456", "Spec": {"Name": "db"}}, 2)]
    name = lambda s: s["Spec"]["Name"]  # noqa: E731
    assert svc.find(objs, "web", "service", name)[0]["ID"] == "abc123"
    assert svc.find(objs, "abd", "service", name)[0]["ID"] == "abd456"
    with pytest.raises(errors.InvalidArgument, match="service ab is ambiguous \\(2 matches found\\)"):
        svc.find(objs, "ab", "service", name)
    with pytest.raises(errors.NotFound, match="service nope not found"):
        svc.find(objs, "nope", "service", name)


def test_render_hides_the_credentials():
    s = svc.normalize_spec(spec())
    s["TaskTemplate"]["ContainerSpec"]["PullOptions"] = {"RegistryAuth": "secret"}
    stored = {"ID": "x", "CreatedAt": "", "UpdatedAt": "", "Spec": s, "PreviousSpec": s}
    shown = svc.render(stored, 7, insert_defaults=True)
    assert "PullOptions" not in shown["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert "PullOptions" not in shown["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]
    assert svc.registry_auth_of(stored["Spec"]) == "secret" and shown["Version"] == {"Index": 7}


def test_service_status_counts_as_swarmkit():
    """``GET /services?status=true``: replicated desires its replicas, global its tasks desired
    running (one per eligible node); running tasks on nodes not down, whatever their desired
    state; no completed count."""
    def task(sid, node, state, desired="running"):
        return ({"ID": f"{sid}-{node}-{state}", "ServiceID": sid, "NodeID": node, "DesiredState": desired,
                 "Status": {"State": state}}, 1)
    nodes = [({"ID": n, "Status": {"State": "down" if n == "n3" else "ready"}}, 1) for n in ("n1", "n2", "n3")]
    tasks = [task("g", "n1", "running"), task("g", "n2", "preparing"), task("g", "n3", "orphaned", "shutdown"),
             task("g", "n2", "failed", "shutdown"),
             task("r", "n1", "running"), task("r", "n2", "complete", "shutdown"), task("r", "n3", "running"),
             task("r", "n2", "running", "shutdown")]  # being stopped (a scale-down): still running
    counts = svc.SwarmServices.task_counts(tasks, nodes)
    glob = {"ID": "g", "Spec": {"Mode": {"Global": {}}}}
    repl = {"ID": "r", "Spec": {"Mode": {"Replicated": {"Replicas": 3}}}}
    assert svc.SwarmServices._status(glob, counts) == {"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 0}
    assert svc.SwarmServices._status(repl, counts) == {"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0}
    assert svc.SwarmServices._status({"ID": "x", "Spec": {"Mode": {"Global": {}}}}, counts) == \
        {"RunningTasks": 0, "DesiredTasks": 0, "CompletedTasks": 0}
