"""Hostile input to the swarm's API: hypothesis throws malformed bodies, query strings and path
IDs at every swarm route of ONE single-node swarm (multi-host harness, CLUSTER_SHAPE (1, 0)).

Each example is one request.  Its answer must be docker's shape: a status below 500 (or one of
the 5xx docker itself answers there: 503 "already part of a swarm" / a manager's refused leave,
501 for what docker does not implement either, 503 for a join whose managers cannot be reached), and for an error a JSON ``message``.  After
it the daemon still answers, and the cluster's state (``service ls``, ``node ls``, ``network
ls`` and the swarm's spec) is what it was, unless the call succeeded: then the test undoes it.

The bodies are mutations of valid ones (a value anywhere in the tree replaced by a hostile one:
wrong JSON types, huge and negative numbers, unicode, nested nulls, odd durations, ports,
mounts and constraints), plus bodies that are not JSON at all.  The service templates carry a
constraint no node meets, so nothing a mutation lets through ever runs a container.

The first tests run before the swarm exists (``swarm init`` and ``join`` parse their requests
only outside a swarm); the others share the swarm the ``swarm`` fixture makes.  The CLI's part
is two tables: ``core swarm init`` outside the swarm, and ``service create|update|scale``,
``node update``, ``swarm update`` in it, each with bad flags: one clear line on stderr and
docker's exit status (125 for a flag the CLI refuses, 1 for what the daemon refuses).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
import urllib.parse
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core.engine.swarm.services import MAX_REPLICAS, MAX_SPEC_BYTES
from tests.support.hosts import Cluster
from tests.support.swarm import cluster_with_raft_tick

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 0)
#: more examples for a longer hunt: ``CORE_FUZZ_SCALE=10 pytest tests/swarm/test_swarm_fuzz.py``
SCALE = int(os.environ.get("CORE_FUZZ_SCALE") or 1)
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                   HealthCheck.data_too_large], derandomize=False)
# a pinned reference: a service create never asks a registry for it
IMAGE = "busybox@sha256:" + "ab" * 32
NOWHERE = "node.labels.fuzz==nowhere"
DOCKER_5XX = {
    503: ("This node is already part of a swarm", "You are attempting to leave the swarm",
          "This node is not part of a swarm", "no manager could be reached"),
    501: ("renaming services is not supported", "service mode change is not allowed",
          "are not supported by core"),
}

_NO_BODY: Any = object()


# -- the client --------------------------------------------------------------------------------------

class Api:
    """Raw requests on the host's socket: ``call`` answers (status, decoded JSON or text)."""

    def __init__(self, host) -> None:
        self.host = host
        self.client = httpx.Client(transport=httpx.HTTPTransport(uds=str(host.socket)),
                                   base_url="http://core/v1.47", timeout=60)

    def call(self, method: str, path: str, body: Any = _NO_BODY, *, raw: bytes | None = None,
             params: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
        content = raw if raw is not None else (None if body is _NO_BODY else json.dumps(body).encode())
        resp = self.client.request(method, path, content=content, params=params,
                                   headers={"Content-Type": "application/json"})
        try:
            payload = resp.json() if resp.content.strip() else None
        except ValueError:
            payload = resp.text
        return resp.status_code, payload

    def get(self, path: str) -> Any:
        status, payload = self.call("GET", path)
        assert status == 200, (path, status, payload)
        return payload

    def close(self) -> None:
        self.client.close()


def check_answer(api: Api, what: str, status: int, payload: Any) -> None:
    log = api.host.log()[-2500:]
    assert status < 500 or (status in DOCKER_5XX and isinstance(payload, dict) and any(
        m in str(payload.get("message")) for m in DOCKER_5XX[status])), f"{what}: {status} {payload}\n{log}"
    if status >= 400:
        assert isinstance(payload, dict) and isinstance(payload.get("message"), str) and payload["message"], \
            f"{what}: {status} without a message: {payload!r}"
        assert "Traceback" not in payload["message"], payload["message"]
    status_ping, _ = api.call("GET", "/_ping")
    assert status_ping == 200, f"the daemon stopped answering after {what}\n{log}"


def snapshot(api: Api) -> dict[str, Any]:
    """What must not move when a call fails."""
    swarm = api.get("/swarm")
    return {
        "services": sorted((s["ID"], s["Version"]["Index"], json.dumps(s["Spec"], sort_keys=True))
                           for s in api.get("/services")),
        "nodes": sorted((n["ID"], json.dumps(n["Spec"], sort_keys=True)) for n in api.get("/nodes")),
        "networks": sorted((n["Id"], n["Name"], n["Driver"]) for n in api.get("/networks")),
        "swarm": (json.dumps(swarm["Spec"], sort_keys=True), swarm["JoinTokens"]),
    }


# -- hostile values ------------------------------------------------------------------------------------

HUGE = [2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63) - 1, -(2**31), -1, 10**30]
ODD_TEXT = ["", " ", "\x00", "\u00e9t\u00e9", "\U0001f4a5", "../../etc/passwd", "a" * 300, "-1", "1e309",
            "10s", "-5s", "1h", "node.role==manager", "a==b==c", "node.labels.==x", "x!=", "==", "tcp", "udp",
            "sctp", "host", "ingress", "vip", "dnsrr", "overlay", "bridge", "/", "/x", "default", ":2377",
            "0.0.0.0:0", "[::1]:70000", "127.0.0.1:9", "10.0.0.0/33", "10.0.0.0/8", "300.1.1.1",
            "SWMTKN-1-x-y", "manager", "worker", "drain", "pause", "active", "spread", "bind", "volume", "tmpfs",
            "tcp://1.2.3.4:2377", "eth0", "lo", "null", "{}", "[]", "%s%n", "\r\nX-Evil: 1"]
KEYS = ["Name", "Labels", "Image", "Replicas", "Mode", "Ports", "TargetPort", "PublishedPort", "Mounts",
        "Target", "Source", "Type", "Constraints", "Networks", "Delay", "Spec", "Role", "Availability",
        "Subnet", "Gateway", "IPAM", "Driver", "Options", "Config", "ListenAddr", "AdvertiseAddr",
        "RemoteAddrs", "JoinToken", "Raft", "Dispatcher", "HeartbeatPeriod", "CAConfig", "NodeCertExpiry",
        "ForceRotate", "ExternalCAs", "TaskDefaults", "LogDriver", "DefaultAddrPool", "SubnetSize",
        "DataPathPort", "ContainerSpec", "TaskTemplate", "EndpointSpec", "UpdateConfig", "Global",
        "Replicated", "ReplicatedJob", "Healthcheck", "Resources", "Limits", "NanoCPUs", "MemoryBytes",
        "ElectionTick", "HeartbeatTick", "SnapshotInterval", "KeepOldSnapshots", "Orchestration",
        "TaskHistoryRetentionLimit", "MaxFailureRatio", "Preferences", "Spread", "SpreadDescriptor",
        "Ingress", "Internal", "Attachable", "Scope", "EnableIPv6", "EnableIPv4", "ConfigOnly", "ConfigFrom",
        "IPRange", "AuxiliaryAddresses", "Aliases", "DriverOpts", "PublishMode", "Protocol", "Runtime",
        "PluginSpec", "Hosts", "DNSConfig", "Ulimits", "Sysctls", "CapabilityAdd", "StopGracePeriod",
        "RestartPolicy", "Condition", "MaxAttempts", "Window", "ForceUpdate", "Placement", "MaxReplicas",
        "Platforms", "Privileges", "Isolation", "Init", "TTY", "ReadOnly", "Healthcheck", "Test", "Retries"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000), st.sampled_from(HUGE),
    st.floats(allow_nan=False, allow_infinity=False, width=64), st.text(max_size=12), st.sampled_from(ODD_TEXT))
values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), kids, max_size=3)), max_leaves=8)
texts = st.one_of(st.text(max_size=20), st.sampled_from(ODD_TEXT))
not_json = st.one_of(
    st.binary(max_size=40), st.sampled_from([b"{", b"[", b"nul", b'{"a":', b"1e999", b"-", b"\xff\xfe",
                                            b"[" * 5000 + b"]" * 5000, b'{"a":' * 200 + b"1" + b"}" * 200,
                                            b'"text"', b"123", b"[]", b"true"]))


def _paths(tree: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, template: Any) -> Any:
    """``template`` with one to three places replaced, added or removed."""
    body = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(body))))
        if not path:
            if draw(st.integers(0, 9)) == 0:
                body = draw(values)
            continue
        parent = body
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "replace", "replace", "add", "delete"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.sampled_from(KEYS))] = draw(values)
        elif isinstance(parent[path[-1]], list):
            parent[path[-1]].append(draw(values))
        else:
            parent[path[-1]] = draw(values)
    return body


def tame(spec: Any) -> Any:
    """A spec whose replica count a swarm would take, made small: thousands of (pending) tasks
    are no hostile input, only a slow test."""
    try:
        replicas = spec["Mode"]["Replicated"]["Replicas"]
    except (KeyError, TypeError, IndexError):
        return spec
    if isinstance(replicas, int) and not isinstance(replicas, bool) and 3 < replicas <= MAX_REPLICAS:
        spec["Mode"]["Replicated"]["Replicas"] = 3
    return spec


def ident(text: str) -> str:
    return urllib.parse.quote(text, safe="") or "%20"


# -- the swarm -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One host; its etcd elects at once (a short Raft tick)."""
    c = cluster_with_raft_tick(CLUSTER_SHAPE, "0.1")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def api(cluster) -> Iterator[Api]:
    a = Api(cluster["mgr1"])
    try:
        yield a
    finally:
        a.close()


def _init_body(host) -> dict[str, Any]:
    return {"ListenAddr": f"{host.address}:2377", "AdvertiseAddr": f"{host.address}:2377",
            "DataPathAddr": host.address, "DataPathPort": 4789, "ForceNewCluster": False,
            "DefaultAddrPool": ["10.20.0.0/16"], "SubnetSize": 24, "Availability": "active",
            "Spec": {"Name": "default", "Labels": {"a": "b"}, "Orchestration": {"TaskHistoryRetentionLimit": 5},
                     "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
                              "ElectionTick": 10, "HeartbeatTick": 1},
                     "Dispatcher": {"HeartbeatPeriod": 5 * 10**9},
                     "CAConfig": {"NodeCertExpiry": 90 * 24 * 3600 * 10**9},
                     "TaskDefaults": {"LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}}},
                     "EncryptionConfig": {"AutoLockManagers": False}}}


JOIN_TOKEN = "SWMTKN-1-" + "0" * 50 + "-" + "0" * 25


@pytest.fixture(scope="module")
def swarm(cluster, api) -> dict[str, Any]:
    """The swarm, its node, a baseline service and an overlay network."""
    mgr1 = cluster["mgr1"]
    status, payload = api.call("POST", "/swarm/init", {"ListenAddr": f"{mgr1.address}:2377",
                                                        "AdvertiseAddr": f"{mgr1.address}:2377"})
    assert status == 200, payload
    status, payload = api.call("POST", "/services/create", {
        "Name": "fuzzbase", "Labels": {"fuzz": "1"},
        "TaskTemplate": {"ContainerSpec": {"Image": IMAGE, "Args": ["sleep", "1"]},
                         "Placement": {"Constraints": [NOWHERE]}},
        "Mode": {"Replicated": {"Replicas": 0}}})
    assert status == 201, payload
    status, net = api.call("POST", "/networks/create", {"Name": "fuzznet", "Driver": "overlay", "Attachable": True})
    assert status == 201, net
    [node] = api.get("/nodes")
    return {"service": payload["ID"], "node": node["ID"], "network": net["Id"],
            "networks": {n["Id"] for n in api.get("/networks")}}


def service_template(**over: Any) -> dict[str, Any]:
    spec = {
        "Name": "fuzzsvc", "Labels": {"tier": "x"},
        "TaskTemplate": {
            "ContainerSpec": {"Image": IMAGE, "Args": ["sleep", "1"], "Env": ["A=1"], "Hostname": "h",
                              "Mounts": [{"Type": "volume", "Source": "v", "Target": "/data"},
                                         {"Type": "bind", "Source": "/tmp", "Target": "/b", "ReadOnly": True},
                                         {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}}],
                              "Healthcheck": {"Test": ["CMD", "true"], "Interval": 10**9, "Retries": 3},
                              "StopGracePeriod": 10**9, "DNSConfig": {"Nameservers": ["1.1.1.1"]}},
            "Resources": {"Limits": {"NanoCPUs": 10**8, "MemoryBytes": 64 << 20}},
            "RestartPolicy": {"Condition": "on-failure", "Delay": 10**9, "MaxAttempts": 3, "Window": 10**9},
            "Placement": {"Constraints": [NOWHERE, "node.role==manager"],
                          "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]},
            "Networks": [{"Target": "fuzznet", "Aliases": ["a"]}],
            "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}},
            "ForceUpdate": 0},
        "Mode": {"Replicated": {"Replicas": 0}},
        "UpdateConfig": {"Parallelism": 1, "Delay": 10**9, "FailureAction": "pause", "Monitor": 10**9,
                         "MaxFailureRatio": 0.5, "Order": "stop-first"},
        "RollbackConfig": {"Parallelism": 1, "FailureAction": "continue", "Order": "start-first"},
        "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 18080},
                                                  {"Protocol": "udp", "TargetPort": 53, "PublishMode": "host"}]},
    }
    spec.update(over)
    return spec


NETWORK = {"Name": "fuzzo", "Driver": "overlay", "Attachable": True, "Internal": False, "Labels": {"a": "b"},
           "Options": {"com.docker.network.driver.mtu": "1400"},
           "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.1"}],
                    "Options": {}}}


def undo(api: Api, swarm: dict[str, Any], before: dict[str, Any]) -> None:
    """Put back what a successful call changed (so the next example starts from the same state)."""
    for svc in api.get("/services"):
        if svc["ID"] != swarm["service"]:
            api.call("DELETE", f"/services/{svc['ID']}")
    for net in api.get("/networks"):
        if net["Id"] not in swarm["networks"]:
            api.call("DELETE", f"/networks/{net['Id']}")
    current = api.get("/swarm")
    old_spec, _tokens = before["swarm"]
    if json.dumps(current["Spec"], sort_keys=True) != old_spec:
        status, payload = api.call("POST", "/swarm/update", json.loads(old_spec),
                                   params=[("version", str(current["Version"]["Index"]))])
        assert status == 200, payload
    for node_id, spec in before["nodes"]:
        node = api.get(f"/nodes/{node_id}")
        if json.dumps(node["Spec"], sort_keys=True) != spec:
            status, payload = api.call("POST", f"/nodes/{node_id}/update", json.loads(spec),
                                       params=[("version", str(node["Version"]["Index"]))])
            assert status == 200, payload
    for sid, _v, spec in before["services"]:
        svc = api.get(f"/services/{sid}")
        if json.dumps(svc["Spec"], sort_keys=True) != spec:
            status, payload = api.call("POST", f"/services/{sid}/update", json.loads(spec),
                                       params=[("version", str(svc["Version"]["Index"]))])
            assert status == 200, payload


def one_call(api: Api, swarm: dict[str, Any], what: str, method: str, path: str, body: Any = _NO_BODY, *,
             raw: bytes | None = None, params: list[tuple[str, str]] | None = None) -> int:
    before = snapshot(api)
    status, payload = api.call(method, path, body, raw=raw, params=params)
    check_answer(api, f"{what}: {method} {path} {params} {str(body)[:300] if raw is None else raw[:100]!r}",
                 status, payload)
    if status < 300:
        undo(api, swarm, before)
    after = snapshot(api)
    if status >= 300:
        assert after == before, f"{what}: a refused call ({status} {payload}) changed the cluster"
    return status


# -- outside a swarm: init and join -------------------------------------------------------------------------

@settings(max_examples=40 * SCALE, **FAST)
@given(data=st.data())
def test_init_and_join_refuse_hostile_requests(cluster, api, data):
    """Before the swarm exists: what init and join refuse, they refuse with a 4xx and leave the
    node outside a swarm; an init that succeeds is undone (``leave --force``)."""
    host = cluster["mgr1"]
    join = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": host.address, "RemoteAddrs": ["127.0.0.1:9"],
            "JoinToken": JOIN_TOKEN, "Availability": "active"}
    route, body = data.draw(st.one_of(
        st.tuples(st.just("/swarm/init"), mutated(_init_body(host))),
        st.tuples(st.just("/swarm/join"), mutated(join)),
        st.tuples(st.sampled_from(["/swarm/init", "/swarm/join"]), not_json)))
    raw = body if isinstance(body, bytes) else None
    status, payload = api.call("POST", route, _NO_BODY if raw is not None else body, raw=raw)
    check_answer(api, f"{route} {body!r:.300}", status, payload)
    if status == 200:
        assert route == "/swarm/init", payload
        status, payload = api.call("POST", "/swarm/leave", params=[("force", "1")])
        assert status == 200, payload
    info = api.get("/info")
    assert info["Swarm"]["LocalNodeState"] == "inactive", info["Swarm"]


# -- the CLI: bad flags are one clear line and docker's exit status ----------------------------------------

def cli_refuses(host, argv: list[str], code: int, fragment: str) -> None:
    proc = host.core(*argv, timeout=60)
    err = proc.stderr
    assert proc.returncode == code, f"core {' '.join(argv)}: exit {proc.returncode}\n{proc.stdout}\n{err}"
    first = err.strip().splitlines()[0] if err.strip() else ""
    assert fragment in first, f"core {' '.join(argv)}: {err!r}"
    assert "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("argv,code,fragment", [
    (["--advertise-addr", "bogus"], 1, "Error response from daemon: failed to resolve address 'bogus'"),
    (["--advertise-addr", "10.0.0.1:70000"], 1, "invalid address '10.0.0.1:70000'"),
    (["--advertise-addr"], 125, "flag needs an argument: --advertise-addr"),
    (["--listen-addr", ":abc"], 125, 'invalid argument ":abc" for "--listen-addr" flag'),
    (["--data-path-port", "x"], 125, 'strconv.ParseUint: parsing "x": invalid syntax'),
    (["--data-path-port", "99999999999"], 125, "value out of range"),
    (["--data-path-port", "80"], 1, "data path port 80 is out of the range 1024-49151"),
    (["--data-path-addr", "bogus"], 1, "data path address must be a non-zero IP address or network interface"),
    (["--default-addr-pool", "bogus"], 125, "invalid CIDR address: bogus"),
    (["--default-addr-pool-mask-length", "99"], 1, "invalid subnet size 99"),
    (["--dispatcher-heartbeat", "5"], 125, 'time: missing unit in duration "5"'),
    (["--dispatcher-heartbeat", "9999999h"], 125, 'time: invalid duration "9999999h"'),
    (["--dispatcher-heartbeat", "1ns"], 1, "invalid heartbeat period"),
    (["--cert-expiry", "1m"], 1, "minimum certificate expiry time is: 1h0m0s"),
    (["--task-history-limit", "x"], 125, 'strconv.ParseInt: parsing "x": invalid syntax'),
    (["--max-snapshots", "-1"], 125, 'strconv.ParseUint: parsing "-1": invalid syntax'),
    (["--availability", "bogus"], 1, 'invalid availability "bogus"'),
    (["--autolock"], 1, "autolock is not supported by core"),
    (["extra"], 1, "'core swarm init' accepts no arguments"),
])
def test_cli_swarm_init_refusals(cluster, api, argv, code, fragment):
    """``core swarm init`` with bad flags, outside a swarm: one clear line, docker's status (125
    for a flag the CLI refuses, 1 for what the daemon refuses), and still no swarm."""
    host = cluster["mgr1"]
    if "--advertise-addr" not in argv:
        argv = ["--advertise-addr", host.address, *argv]
    cli_refuses(host, ["swarm", "init", *argv], code, fragment)
    assert api.get("/info")["Swarm"]["LocalNodeState"] == "inactive"


# -- in the swarm -------------------------------------------------------------------------------------------

CURRENT = "<current>"
versions = st.one_of(st.just(CURRENT), st.just(CURRENT), st.just(CURRENT), st.just(None), texts,
                     st.sampled_from([str(v) for v in HUGE] + ["0", "1", "1.5", "0x10", " 7", "+3", "-0"]))


def _version_params(version: str | None, current: int) -> list[tuple[str, str]]:
    if version is None:
        return []
    return [("version", str(current) if version == CURRENT else version)]


@settings(max_examples=60 * SCALE, **FAST)
@given(data=st.data())
def test_service_create_and_update(api, swarm, data):
    """``/services/create`` and ``/services/{id}/update`` with odd specs and odd versions."""
    kind = data.draw(st.sampled_from(["create", "create", "update", "update", "raw"]))
    if kind == "create":
        one_call(api, swarm, "service create", "POST", "/services/create",
                 tame(data.draw(mutated(service_template()))))
        return
    svc = api.get(f"/services/{swarm['service']}")
    path = f"/services/{data.draw(st.one_of(st.just(swarm['service']), st.just('fuzzbase'), texts.map(ident)))}/update"
    params = _version_params(data.draw(versions), svc["Version"]["Index"])
    params += data.draw(st.lists(st.tuples(st.sampled_from(["rollback", "registryAuthFrom"]), texts), max_size=1))
    if kind == "raw":
        one_call(api, swarm, "service update", "POST", path, raw=data.draw(not_json), params=params)
    else:
        one_call(api, swarm, "service update", "POST", path, tame(data.draw(mutated(svc["Spec"]))), params=params)


@settings(max_examples=40 * SCALE, **FAST)
@given(data=st.data())
def test_swarm_update_unlock_leave_and_node_update(api, swarm, data):
    """``/swarm/update`` (odd specs, versions, rotation flags), ``/swarm/init`` and ``join`` in
    a swarm, ``/swarm/unlock``, ``/swarm/leave`` without force, ``/nodes/{id}/update``."""
    kind = data.draw(st.sampled_from(["update", "update", "node", "node", "init", "unlock", "leave"]))
    if kind == "update":
        current = api.get("/swarm")
        params = _version_params(data.draw(versions), current["Version"]["Index"])
        params += data.draw(st.lists(st.tuples(st.sampled_from(["rotateWorkerToken", "rotateManagerToken",
                                                                 "rotateManagerUnlockKey"]), texts), max_size=2))
        one_call(api, swarm, "swarm update", "POST", "/swarm/update", data.draw(mutated(current["Spec"])),
                 params=params)
    elif kind == "node":
        node = api.get(f"/nodes/{swarm['node']}")
        ref = data.draw(st.one_of(st.just(swarm["node"]), texts.map(ident)))
        params = _version_params(data.draw(versions), node["Version"]["Index"])
        one_call(api, swarm, "node update", "POST", f"/nodes/{ref}/update", data.draw(mutated(node["Spec"])),
                 params=params)
    elif kind == "init":
        route = data.draw(st.sampled_from(["/swarm/init", "/swarm/join"]))
        one_call(api, swarm, "init in a swarm", "POST", route, data.draw(mutated({"ListenAddr": "0.0.0.0:2377",
                                                                                 "RemoteAddrs": ["1.2.3.4"]})))
    elif kind == "unlock":
        one_call(api, swarm, "unlock", "POST", "/swarm/unlock", data.draw(mutated({"UnlockKey": "SWMKEY-1-x"})))
    else:  # never a true force: that would end the swarm
        force = data.draw(st.one_of(texts, st.just("0")).filter(
            lambda v: v.strip().lower() not in ("1", "true", "yes")))
        one_call(api, swarm, "leave", "POST", "/swarm/leave", params=[("force", force)])


filters = st.one_of(
    texts,
    values.map(json.dumps),
    st.dictionaries(st.one_of(st.sampled_from(["id", "name", "label", "mode", "service", "node", "desired-state",
                                               "role", "membership", "driver", "scope", "type", "_up-to-date",
                                               "node.label"]), st.text(max_size=6)),
                    st.one_of(st.lists(texts, max_size=3), st.dictionaries(texts, st.booleans(), max_size=2),
                              values), max_size=3).map(json.dumps))


@settings(max_examples=50 * SCALE, **FAST)
@given(data=st.data())
def test_lists_inspects_and_removals(api, swarm, data):
    """``GET /tasks|/services|/nodes|/networks?filters=…``, inspects and removals of odd IDs,
    service logs with odd options."""
    kind = data.draw(st.sampled_from(["filters", "filters", "inspect", "logs", "remove"]))
    if kind == "filters":
        route = data.draw(st.sampled_from(["/tasks", "/services", "/nodes", "/networks"]))
        params = [("filters", data.draw(filters))]
        if route == "/services":
            params += data.draw(st.lists(st.tuples(st.just("status"), texts), max_size=1))
        one_call(api, swarm, "list", "GET", route, params=params)
    elif kind == "inspect":
        route = data.draw(st.sampled_from(["/tasks/{}", "/services/{}", "/nodes/{}", "/networks/{}"]))
        ref = data.draw(texts.map(ident))
        params = data.draw(st.lists(st.tuples(st.sampled_from(["insertDefaults", "scope", "verbose"]), texts),
                                    max_size=1))
        one_call(api, swarm, "inspect", "GET", route.format(ref), params=params)
    elif kind == "logs":
        route = data.draw(st.sampled_from([f"/services/{swarm['service']}/logs", "/tasks/{}/logs",
                                           "/services/{}/logs"])).format(data.draw(texts.map(ident)))
        params = data.draw(st.lists(st.tuples(st.sampled_from(["stdout", "stderr", "tail", "since", "timestamps",
                                                               "details"]), texts), max_size=4))
        one_call(api, swarm, "logs", "GET", route, params=params)
    else:  # odd references that can name none of the swarm's own objects
        ref = data.draw(texts.filter(lambda t: t.strip() and not any(
            o.startswith(t) for o in (swarm["service"], swarm["node"], swarm["network"], "fuzzbase", "fuzznet",
                                      "ingress"))))
        route = data.draw(st.sampled_from(["/services/{}", "/nodes/{}", "/networks/{}"]))
        one_call(api, swarm, "remove", "DELETE", route.format(ident(ref)),
                 params=data.draw(st.lists(st.tuples(st.just("force"), texts), max_size=1)))


@settings(max_examples=40 * SCALE, **FAST)
@given(data=st.data())
def test_overlay_network_create(api, swarm, data):
    """``/networks/create`` with Driver overlay and odd names, IPAM and options."""
    if data.draw(st.integers(0, 7)) == 0:
        one_call(api, swarm, "network create", "POST", "/networks/create", raw=data.draw(not_json))
    else:
        one_call(api, swarm, "network create", "POST", "/networks/create", data.draw(mutated(NETWORK)))


SVC = ["-d", "--constraint", NOWHERE]


@pytest.mark.parametrize("argv,code,fragment", [
    (["service", "create", *SVC, "--replicas", "x", IMAGE], 125, 'strconv.ParseUint: parsing "x": invalid syntax'),
    (["service", "create", *SVC, "--replicas", "-1", IMAGE], 125, 'parsing "-1": invalid syntax'),
    (["service", "create", *SVC, "--replicas", "1000000", IMAGE], 1, "core runs at most 100000 replicas"),
    (["service", "create", *SVC, "-p", "70000:80", IMAGE], 125, 'parsing "70000": value out of range'),
    (["service", "create", *SVC, "-p", "\u0668\u0660:80", IMAGE], 125, "invalid syntax"),
    (["service", "create", *SVC, "-p", "target=\u00b2", IMAGE], 125, "invalid target port"),
    (["service", "create", *SVC, "-p", "80:80", "-p", "80:81", IMAGE], 1, "duplicate published ports provided"),
    (["service", "create", *SVC, "--mount", "type=bind,source=rel,target=/x", IMAGE], 1,
     "invalid bind mount source, must be an absolute path: rel"),
    (["service", "create", *SVC, "--mount", "type=bogus,target=/x", IMAGE], 1, "invalid mount type"),
    (["service", "create", *SVC, "--mount", "bogus", IMAGE], 125, "must be a key=value pair"),
    (["service", "create", "-d", "--constraint", "a==b==c", IMAGE], 1, "key 'a' is invalid"),
    (["service", "create", "-d", "--constraint", "node.role==x!", IMAGE], 1, "value 'x!' is invalid"),
    (["service", "create", "-d", "--constraint", "nooperator", IMAGE], 1, "constraint expected one operator"),
    (["service", "create", *SVC, "--restart-delay", "9999999h", IMAGE], 125, "time: invalid duration"),
    (["service", "create", *SVC, "--update-delay", "-5s", IMAGE], 1, "update-delay cannot be negative"),
    (["service", "create", *SVC, "--update-max-failure-ratio", "2", IMAGE], 1, "maxfailureratio"),
    (["service", "create", *SVC, "--limit-memory", "1b", IMAGE], 1, "Must be at least 4MiB"),
    (["service", "create", *SVC, "--env", "=x", IMAGE], 125, "invalid environment variable: =x"),
    (["service", "create", *SVC, "--label", "=x", IMAGE], 125, "invalid label '=x': empty name"),
    (["service", "create", *SVC, "--entrypoint", "'open", IMAGE], 125, "EOF found when expecting closing quote"),
    (["service", "create", *SVC, "--name", "\u00e9t\u00e9", IMAGE], 1, "name must be valid as a DNS name"),
    (["service", "create", *SVC, "--network", "nonexistent", IMAGE], 1, "network nonexistent not found"),
    (["service", "create", *SVC, "--mode", "global", "--replicas", "2", IMAGE], 1,
     "replicas can only be used with replicated mode"),
    (["service", "create", *SVC, "bad image!!"], 1, "is not a valid repository/tag"),
    (["service", "create", *SVC, "--bogus", IMAGE], 125, "unknown flag: --bogus"),
    (["service", "create"], 1, "requires at least 1 argument"),
    (["service", "update", "-d", "--replicas", "x", "fuzzbase"], 125, "invalid syntax"),
    (["service", "update", "-d", "--constraint-add", "x", "fuzzbase"], 1, "constraint expected one operator"),
    (["service", "update", "-d", "--image", "bad image!!", "fuzzbase"], 1, "is not a valid repository/tag"),
    (["service", "update", "-d", "--publish-add", "80:70000", "fuzzbase"], 125, "value out of range"),
    (["service", "update", "-d", "--container-label-add", " =x", "fuzzbase"], 125, "empty name"),
    (["service", "update", "-d", "nonexistent"], 1, "service nonexistent not found"),
    (["service", "update", "-d"], 1, "requires 1 argument"),
    (["service", "scale", "-d", "fuzzbase=x"], 1, 'fuzzbase: invalid replicas value x: strconv.ParseUint'),
    (["service", "scale", "-d", "fuzzbase=\u00b2"], 1, "invalid syntax"),
    (["service", "scale", "-d", "fuzzbase=99999999999999999999"], 1, "value out of range"),
    (["service", "scale", "-d", "fuzzbase"], 1, "Invalid scale specifier 'fuzzbase'."),
    (["service", "scale", "-d", "nonexistent=3"], 1, "nonexistent: Error response from daemon: service nonexistent"),
    (["service", "logs", "--since", "x", "fuzzbase"], 1, 'failed to parse value as time or duration: "x"'),
    (["service", "ls", "--filter", "mode=bogus"], 1, "Invalid filter: 'mode'='bogus'"),
    (["node", "update", "--availability", "bogus", "<node>"], 1, 'invalid Availability: "bogus"'),
    (["node", "update", "--role", "bogus", "<node>"], 1, 'invalid Role: "bogus"'),
    (["node", "update", "--role", "worker", "<node>"], 1, "attempting to demote the last manager of the swarm"),
    (["node", "update", "--label-add", "=x", "<node>"], 125, "invalid label '=x': empty name"),
    (["node", "update", "--label-rm", "nonexist", "<node>"], 1, "key nonexist doesn't exist in node's labels"),
    (["node", "update", "--availability", "drain", "nonexistent"], 1, "node nonexistent not found"),
    (["swarm", "update", "--dispatcher-heartbeat", "1ns"], 1, "invalid heartbeat period"),
    (["swarm", "update", "--cert-expiry", "1s"], 1, "minimum certificate expiry time is: 1h0m0s"),
    (["swarm", "update", "--max-snapshots", "99999999999999999999999"], 125, "value out of range"),
    (["swarm", "init", "--advertise-addr", "127.0.0.1"], 1, "This node is already part of a swarm"),
])
def test_cli_refusals_in_the_swarm(api, swarm, argv, code, fragment):
    """``core service create|update|scale|logs|ls``, ``node update``, ``swarm update`` with bad
    flags: one clear line, docker's exit status (125 for a flag the CLI refuses, 1 for the
    rest), no traceback, and the cluster as it was."""
    before = snapshot(api)
    cli_refuses(api.host, [swarm["node"] if a == "<node>" else a for a in argv], code, fragment)
    assert snapshot(api) == before


def test_objects_too_large_for_the_store(api, swarm):
    """What etcd cannot take (a request over 1.5 MiB) is a 400 that says so, nothing stored; a
    service spec is bounded at the front (MAX_SPEC_BYTES), and one just under the bound still
    gets its tasks written (the leader's transactions are bounded in bytes too, so one big
    service cannot stall the loops of all)."""
    labels = {f"k{i}": "v" * 100 for i in range(20000)}  # 2.2 MB of JSON
    for path, read in [("/networks/create", None), (f"/nodes/{swarm['node']}/update", f"/nodes/{swarm['node']}"),
                       ("/swarm/update", "/swarm")]:
        for _attempt in range(5):  # a node's version moves with its heartbeats
            current = api.get(read) if read else {"Spec": {"Name": "bignet", "Driver": "overlay"}}
            params = [("version", str(current["Version"]["Index"]))] if read else None
            status, payload = api.call("POST", path, {**current["Spec"], "Labels": labels}, params=params)
            if status != 409:
                break
        assert status == 400 and "too large for the swarm's store" in payload["message"], (path, status, payload)
    env = [f"E{i}=" + "x" * 100 for i in range(MAX_SPEC_BYTES // 100)]
    status, payload = api.call("POST", "/services/create", service_template(
        Name="big", TaskTemplate={"ContainerSpec": {"Image": IMAGE, "Env": env}, "Placement": {"Constraints": [NOWHERE]}}))
    assert status == 400 and "service spec too large" in payload["message"], payload
    env = env[:int(len(env) * 0.9)]
    status, payload = api.call("POST", "/services/create", {
        "Name": "big", "Mode": {"Replicated": {"Replicas": 4}},
        "TaskTemplate": {"ContainerSpec": {"Image": IMAGE, "Env": env}, "Placement": {"Constraints": [NOWHERE]}}})
    assert status == 201, payload
    try:
        deadline = time.monotonic() + 30
        while len(tasks := api.get("/tasks?filters=" + urllib.parse.quote('{"service":["big"]}'))) < 4:
            assert time.monotonic() < deadline, f"the big service's tasks were not written: {len(tasks)}"
            time.sleep(0.5)
        assert {t["Status"]["State"] for t in tasks} <= {"new", "pending"}
    finally:
        api.call("DELETE", f"/services/{payload['ID']}")


def test_the_swarm_is_whole_afterwards(api, swarm):
    """After all of that: the node is ready, the baseline service and networks are as made, and
    the daemon logged no traceback."""
    nodes = api.get("/nodes")
    assert [n["Status"]["State"] for n in nodes] == ["ready"] and nodes[0]["Spec"]["Role"] == "manager"
    assert [s["Spec"]["Name"] for s in api.get("/services")] == ["fuzzbase"]
    assert {n["Id"] for n in api.get("/networks")} == swarm["networks"]
    # nothing the front let through broke a loop behind it (orchestrator, scheduler, allocator)
    text = (api.host.root / "daemon.log").read_text(errors="replace")
    assert "Traceback" not in text, text[text.index("Traceback") - 2000:][:6000]
