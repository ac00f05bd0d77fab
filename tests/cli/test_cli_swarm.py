"""``core swarm ...`` and ``core node ...``: flags, the requests they send and docker's output
(docker/cli's cli/command/swarm and cli/command/node), against a recorded Engine API (no daemon:
the commands with a real swarm are tests/test_swarm_cluster.py's)."""
from __future__ import annotations

import json

import pytest

from core.cli import cmd_node, cmd_swarm
from core.cli.client import APIError, CLIError

NODE_ID = "7ktb2qsq3t6vy1d3pk0l1zf4a"
WORKER_TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"
MANAGER_TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-7p73s1dx5in4tatdymyhg9hu2"
ROOT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def node(ident, hostname, state="ready", availability="active", role="worker", leader=False,
         reachability=None, version=10, labels=None, trust_root=ROOT):
    n = {
        "ID": ident, "Version": {"Index": version},
        "CreatedAt": "2026-12-07T12:00:00.123456789Z", "UpdatedAt": "2026-12-07T12:00:01Z",
        "Spec": {"Role": role, "Availability": availability, "Labels": labels or {}},
        "Description": {"Hostname": hostname, "Platform": {"Architecture": "x86_64", "OS": "linux"},
                        "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 2_087_178_240},
                        "Engine": {"EngineVersion": "0.1.0",
                                   "Plugins": [{"Type": "Network", "Name": "bridge"},
                                               {"Type": "Network", "Name": "overlay"},
                                               {"Type": "Volume", "Name": "local"}]},
                        "TLSInfo": {"TrustRoot": trust_root, "CertIssuerSubject": "MBMxETAPBgNVBAMTCHN3YXJtLWNh",
                                    "CertIssuerPublicKey": "MFkwEwYHKoZIzj0CAQ=="}},
        "Status": {"State": state, "Addr": "10.0.0.1"},
    }
    if role == "manager":
        n["ManagerStatus"] = {"Leader": leader, "Reachability": reachability or "reachable",
                              "Addr": "10.0.0.1:2377"}
    return n


SWARM = {
    "ID": "abajmipo7b4xz5ip2nrla6b11", "Version": {"Index": 42},
    "CreatedAt": "2026-12-07T12:00:00Z", "UpdatedAt": "2026-12-07T12:00:00Z",
    "Spec": {"Name": "default", "Labels": {}, "Orchestration": {"TaskHistoryRetentionLimit": 5},
             "Raft": {"SnapshotInterval": 10000}, "Dispatcher": {"HeartbeatPeriod": 5_000_000_000},
             "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000}, "EncryptionConfig": {"AutoLockManagers": False},
             "TaskDefaults": {}},
    "TLSInfo": {"TrustRoot": ROOT, "CertIssuerSubject": "MBMxETAPBgNVBAMTCHN3YXJtLWNh",
                "CertIssuerPublicKey": "MFkwEwYHKoZIzj0CAQ=="},
    "RootRotationInProgress": False,
    "JoinTokens": {"Worker": WORKER_TOKEN, "Manager": MANAGER_TOKEN},
}


class Recorded:
    """The Engine API as a table: (method, path) -> answer (or an APIError to raise)."""

    def __init__(self, answers):
        self.answers = dict(answers)
        self.calls = []

    def _answer(self, method, path, params, body):
        self.calls.append((method, path, {k: v for k, v in (params or {}).items() if v is not None}, body))
        answer = self.answers.get((method, path))
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer()
        return json.loads(json.dumps(answer))

    def get_json(self, path, params=None):
        return self._answer("GET", path, params, None)

    def post(self, path, params=None, body=None):
        return self._answer("POST", path, params, body)

    def request(self, method, path, params=None, body=None):
        self._answer(method, path, params, body)

        class Done:
            def close(self):
                pass

        return Done()


class Ctx:
    def __init__(self, answers):
        self.client = Recorded(answers)


def info(node_id=NODE_ID, control=True, state="active"):
    cluster = {k: v for k, v in SWARM.items() if k != "JoinTokens"}
    cluster.update(DefaultAddrPool=["10.0.0.0/8"], SubnetSize=24, DataPathPort=4789)
    return {"Swarm": {"NodeID": node_id, "NodeAddr": "10.0.0.1", "LocalNodeState": state, "ControlAvailable": control,
                      "Error": "", "RemoteManagers": [{"NodeID": "b", "Addr": "10.0.0.2:2377"},
                                                       {"NodeID": node_id, "Addr": "10.0.0.1:2377"}],
                      "Nodes": 6, "Managers": 3, "Cluster": cluster if control else None}}


def run(fn, ctx, *argv, prog="core x"):
    return fn(ctx, list(argv), prog=prog)


# -- swarm init / join / join-token / leave ---------------------------------------------------------


def test_init_prints_docker_text_with_the_worker_join_command(capsys):
    ctx = Ctx({("POST", "/swarm/init"): NODE_ID,
               ("GET", f"/nodes/{NODE_ID}"): node(NODE_ID, "mgr1", role="manager", leader=True),
               ("GET", "/swarm"): SWARM})
    assert run(cmd_swarm.init, ctx, "--advertise-addr", "10.0.0.1:2377", "--listen-addr", "10.0.0.1:2377") == 0
    assert capsys.readouterr().out == (
        f"Swarm initialized: current node ({NODE_ID}) is now a manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        f"    core swarm join --token {WORKER_TOKEN} 10.0.0.1:2377\n\n"
        "To add a manager to this swarm, run 'core swarm join-token manager' and follow the instructions.\n")
    method, path, params, body = ctx.client.calls[0]
    assert (method, path) == ("POST", "/swarm/init")
    assert body["ListenAddr"] == "10.0.0.1:2377" and body["AdvertiseAddr"] == "10.0.0.1:2377"
    assert body["Spec"] == {} and "Availability" not in body and body["ForceNewCluster"] is False


def test_init_spec_holds_only_the_flags_given_in_docker_units():
    ctx = Ctx({("POST", "/swarm/init"): NODE_ID, ("GET", f"/nodes/{NODE_ID}"): node(NODE_ID, "m", role="manager"),
               ("GET", "/swarm"): SWARM})
    run(cmd_swarm.init, ctx, "--listen-addr", "10.0.0.1", "--dispatcher-heartbeat", "2s", "--cert-expiry", "1h30m",
        "--task-history-limit", "3", "--default-addr-pool", "10.20.0.0/16", "--default-addr-pool-mask-length", "26",
        "--force-new-cluster", "--availability", "Drain")
    body = ctx.client.calls[0][3]
    assert body["ListenAddr"] == "10.0.0.1:2377"
    assert body["Spec"] == {"Dispatcher": {"HeartbeatPeriod": 2_000_000_000},
                            "CAConfig": {"NodeCertExpiry": 5400 * 10**9},
                            "Orchestration": {"TaskHistoryRetentionLimit": 3}}
    assert body["DefaultAddrPool"] == ["10.20.0.0/16"] and body["SubnetSize"] == 26
    assert body["ForceNewCluster"] is True and body["Availability"] == "drain"


@pytest.mark.parametrize("argv,message,code", [
    (["--availability", "sleepy"], 'invalid availability "sleepy", only active, pause and drain are supported', 1),
    (["--dispatcher-heartbeat", "5"], 'invalid argument "5" for "--dispatcher-heartbeat" flag: '
                                      'time: missing unit in duration "5"', 125),
    (["--listen-addr", "udp://1.2.3.4"], 'invalid argument "udp://1.2.3.4" for "--listen-addr" flag: '
                                         "invalid proto, expected tcp: udp://1.2.3.4", 125),
    (["--default-addr-pool", "10.0.0/8"], 'invalid argument "10.0.0/8" for "--default-addr-pool" flag: '
                                          "invalid CIDR address: 10.0.0/8", 125),
    (["extra"], "accepts no arguments", 1),
])
def test_init_refuses_bad_flags_before_asking_the_daemon(argv, message, code):
    ctx = Ctx({})
    with pytest.raises(CLIError) as err:
        run(cmd_swarm.init, ctx, *argv, prog="core swarm init")
    assert message in err.value.message and err.value.code == code
    assert ctx.client.calls == []


def test_init_advertise_hint_and_daemon_errors():
    ctx = Ctx({("POST", "/swarm/init"): APIError(400, "could not choose an IP address to advertise since this "
                                                      "system has multiple addresses on different interfaces")})
    with pytest.raises(CLIError) as err:
        run(cmd_swarm.init, ctx)
    assert err.value.message.endswith("- specify one with --advertise-addr")
    ctx = Ctx({("POST", "/swarm/init"): APIError(503, "This node is already part of a swarm. Use \"docker swarm "
                                                      "leave\" to leave this swarm and join another one.")})
    with pytest.raises(APIError) as err:
        run(cmd_swarm.init, ctx)
    assert err.value.message.startswith("Error response from daemon: This node is already part of a swarm.")


@pytest.mark.parametrize("value,expected", [
    ("10.0.0.1", "10.0.0.1:2377"), ("10.0.0.1:4000", "10.0.0.1:4000"), (":4000", "0.0.0.0:4000"),
    ("eth0", "eth0:2377"), ("eth0:2377", "eth0:2377"), ("tcp://10.0.0.1:2377", "10.0.0.1:2377"),
    ("[::1]:4000", "[::1]:4000"), ("[::1]:", "[::1]:2377"), ("", "0.0.0.0:2377"),
])
def test_listen_address_takes_missing_parts_from_the_default(value, expected):
    assert cmd_swarm.parse_tcp_addr(value) == expected


@pytest.mark.parametrize("value", ["udp://x", "a:b:c", "10.0.0.1:port"])
def test_listen_address_refusals(value):
    with pytest.raises(ValueError):
        cmd_swarm.parse_tcp_addr(value)


@pytest.mark.parametrize("control,role", [(False, "worker"), (True, "manager")])
def test_join_says_the_role_from_info(capsys, control, role):
    ctx = Ctx({("POST", "/swarm/join"): None, ("GET", "/info"): info(control=control)})
    assert run(cmd_swarm.join, ctx, "--token", WORKER_TOKEN, "--advertise-addr", "10.0.0.4", "10.0.0.1:2377") == 0
    assert capsys.readouterr().out == f"This node joined a swarm as a {role}.\n"
    body = ctx.client.calls[0][3]
    assert body == {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "10.0.0.4", "DataPathAddr": "",
                    "RemoteAddrs": ["10.0.0.1:2377"], "JoinToken": WORKER_TOKEN}


def test_join_needs_the_manager_address():
    with pytest.raises(CLIError) as err:
        run(cmd_swarm.join, Ctx({}), "--token", WORKER_TOKEN, prog="core swarm join")
    assert "requires 1 argument" in err.value.message and err.value.code == 1


def test_join_token_prints_the_join_command_or_only_the_token(capsys):
    answers = {("GET", "/swarm"): SWARM, ("GET", "/info"): info(),
               ("GET", f"/nodes/{NODE_ID}"): node(NODE_ID, "mgr1", role="manager", leader=True)}
    run(cmd_swarm.join_token, Ctx(answers), "manager")
    assert capsys.readouterr().out == ("To add a manager to this swarm, run the following command:\n\n"
                                       f"    core swarm join --token {MANAGER_TOKEN} 10.0.0.1:2377\n\n")
    run(cmd_swarm.join_token, Ctx(answers), "-q", "worker")
    assert capsys.readouterr().out == WORKER_TOKEN + "\n"
    with pytest.raises(CLIError) as err:
        run(cmd_swarm.join_token, Ctx(answers), "boss")
    assert err.value.message == "unknown role boss"


def test_join_token_rotate_updates_with_the_version_read(capsys):
    ctx = Ctx({("GET", "/swarm"): SWARM, ("POST", "/swarm/update"): None, ("GET", "/info"): info(),
               ("GET", f"/nodes/{NODE_ID}"): node(NODE_ID, "mgr1", role="manager", leader=True)})
    run(cmd_swarm.join_token, ctx, "--rotate", "worker")
    out = capsys.readouterr().out
    assert out.startswith("Successfully rotated worker join token.\n\nTo add a worker to this swarm")
    update = [c for c in ctx.client.calls if c[1] == "/swarm/update"]
    assert update == [("POST", "/swarm/update", {"version": "42", "rotateWorkerToken": "true",
                                                 "rotateManagerToken": "false", "rotateManagerUnlockKey": "false"},
                       SWARM["Spec"])]


def test_leave(capsys):
    ctx = Ctx({("POST", "/swarm/leave"): None})
    run(cmd_swarm.leave, ctx)
    run(cmd_swarm.leave, ctx, "-f")
    assert capsys.readouterr().out == "Node left the swarm.\n" * 2
    assert [c[2] for c in ctx.client.calls] == [{}, {"force": "1"}]
    refusal = ("You are attempting to leave the swarm on a node that is participating as a manager. Removing the "
               "last manager erases all current state of the swarm. Use `--force` to ignore this message.")
    with pytest.raises(APIError) as err:
        run(cmd_swarm.leave, Ctx({("POST", "/swarm/leave"): APIError(503, refusal)}))
    assert err.value.message == "Error response from daemon: " + refusal and err.value.code == 1


def test_update_merges_the_flags_given_into_the_current_spec(capsys):
    ctx = Ctx({("GET", "/swarm"): SWARM, ("POST", "/swarm/update"): None})
    run(cmd_swarm.update, ctx, "--dispatcher-heartbeat", "1s", "--task-history-limit", "10")
    assert capsys.readouterr().out == "Swarm updated.\n"
    _, _, params, spec = ctx.client.calls[-1]
    assert params["version"] == "42"
    assert spec["Dispatcher"] == {"HeartbeatPeriod": 1_000_000_000}
    assert spec["Orchestration"] == {"TaskHistoryRetentionLimit": 10}
    assert spec["CAConfig"] == SWARM["Spec"]["CAConfig"] and spec["Raft"] == SWARM["Spec"]["Raft"]


def test_update_without_flags_shows_the_usage(capsys):
    ctx = Ctx({})
    assert run(cmd_swarm.update, ctx, prog="core swarm update") == 0
    assert capsys.readouterr().out.startswith("Usage:  core swarm update [OPTIONS]")
    assert ctx.client.calls == []


def test_ca_shows_the_root_and_rotation_needs_rotate(capsys):
    ctx = Ctx({("GET", "/swarm"): SWARM})
    run(cmd_swarm.ca, ctx)
    assert capsys.readouterr().out == ROOT
    with pytest.raises(CLIError) as err:
        run(cmd_swarm.ca, ctx, "--cert-expiry", "2h")
    assert err.value.message == "`--cert-expiry` flag requires the `--rotate` flag to update the CA"


def test_ca_rotate_bumps_force_rotate_and_waits_for_convergence(capsys):
    rotating = dict(SWARM, RootRotationInProgress=True)
    answers = iter([rotating, SWARM, SWARM])
    nodes = [node("a", "mgr1", role="manager"), node("b", "wrk1")]
    ctx = Ctx({("GET", "/swarm"): lambda: json.loads(json.dumps(next(answers, SWARM))),
               ("POST", "/swarm/update"): None, ("GET", "/nodes"): nodes})
    assert run(cmd_swarm.ca, ctx, "--rotate") == 0
    update = [c for c in ctx.client.calls if c[1] == "/swarm/update"][0]
    assert update[3]["CAConfig"]["ForceRotate"] == 1 and update[3]["CAConfig"]["SigningCACert"] == ""
    out = capsys.readouterr().out
    assert out.endswith(ROOT)


def test_rotation_progress_converges_when_every_node_has_the_new_root():
    nodes = [node("a", "mgr1", role="manager"), node("b", "wrk1", trust_root="old")]
    messages, done = cmd_swarm.rotation_progress(SWARM, nodes)
    assert not done
    assert messages[1]["progressDetail"] == {"current": 2, "total": 2}
    assert messages[2]["progressDetail"] == {"current": 1, "total": 2}
    _, done = cmd_swarm.rotation_progress(SWARM, [node("a", "mgr1")])
    assert done


def test_unlock_key_reports_the_daemons_refusal():
    ctx = Ctx({("GET", "/swarm/unlockkey"): APIError(400, "autolock is not supported by core")})
    with pytest.raises(CLIError) as err:
        run(cmd_swarm.unlock_key, ctx)
    assert err.value.message == ("could not fetch unlock key: Error response from daemon: "
                                 "autolock is not supported by core")


def test_info_swarm_section():
    lines = cmd_swarm.info_lines(info()["Swarm"])
    assert lines == [
        f"  NodeID: {NODE_ID}", "  Is Manager: true", "  ClusterID: abajmipo7b4xz5ip2nrla6b11", "  Managers: 3",
        "  Nodes: 6", "  Default Address Pool: 10.0.0.0/8  ", "  SubnetSize: 24", "  Data Path Port: 4789",
        "  Orchestration:", "   Task History Retention Limit: 5", "  Raft:", "   Snapshot Interval: 10000",
        "   Heartbeat Tick: 0", "   Election Tick: 0", "  Dispatcher:", "   Heartbeat Period: 5 seconds",
        "  CA Configuration:", "   Expiry Duration: 3 months", "   Force Rotate: 0", "  Autolock Managers: false",
        "  Root Rotation In Progress: false", "  Node Address: 10.0.0.1", "  Manager Addresses:",
        "   10.0.0.1:2377", "   10.0.0.2:2377"]
    worker = cmd_swarm.info_lines(info(control=False)["Swarm"])
    assert worker[:2] == [f"  NodeID: {NODE_ID}", "  Is Manager: false"] and worker[2] == "  Node Address: 10.0.0.1"
    assert cmd_swarm.info_lines({"LocalNodeState": "inactive"}) == []


@pytest.mark.parametrize("ns,text", [(5 * 10**9, "5s"), (90 * 24 * 3600 * 10**9, "2160h0m0s"),
                                     (90 * 10**9, "1m30s"), (1_500_000_000, "1.5s"), (100 * 10**6, "100ms")])
def test_go_duration(ns, text):
    assert cmd_swarm.go_duration(ns) == text


# -- node ----------------------------------------------------------------------------------------


NODES = [
    node("wrk10id", "wrk10"),
    node("mgr2id", "mgr2", role="manager"),
    node(NODE_ID, "mgr1", role="manager", leader=True),
    node("wrk2id", "wrk2", state="down", availability="drain"),
    node("mgr3id", "mgr3", role="manager", reachability="unreachable", state="down"),
]


def test_node_ls_draws_dockers_table(capsys):
    ctx = Ctx({("GET", "/nodes"): NODES, ("GET", "/info"): info()})
    assert run(cmd_node.ls, ctx) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS", "ENGINE", "VERSION"]
    assert [line.split() for line in lines[1:]] == [
        [NODE_ID, "*", "mgr1", "Ready", "Active", "Leader", "0.1.0"],
        ["mgr2id", "mgr2", "Ready", "Active", "Reachable", "0.1.0"],
        ["mgr3id", "mgr3", "Down", "Active", "Unreachable", "0.1.0"],
        ["wrk2id", "wrk2", "Down", "Drain", "0.1.0"],
        ["wrk10id", "wrk10", "Ready", "Active", "0.1.0"],
    ]
    # columns line up: each header starts where its values do
    assert lines[1].index("mgr1") == lines[0].index("HOSTNAME")
    assert lines[1].index("Leader") == lines[0].index("MANAGER STATUS")
    assert lines[4].index("0.1.0") == lines[0].index("ENGINE VERSION")
    assert lines[1].startswith(NODE_ID + " *")


def test_node_ls_quiet_format_and_filters(capsys):
    ctx = Ctx({("GET", "/nodes"): NODES, ("GET", "/info"): info()})
    run(cmd_node.ls, ctx, "-q", "-f", "role=manager")
    assert capsys.readouterr().out.split() == [NODE_ID, "mgr2id", "mgr3id", "wrk2id", "wrk10id"]
    assert ctx.client.calls == [("GET", "/nodes", {"filters": json.dumps({"role": ["manager"]})}, None)]
    run(cmd_node.ls, ctx, "--format", "{{.Hostname}} {{.Self}} {{.ManagerStatus}} {{.TLSStatus}}")
    assert capsys.readouterr().out.splitlines()[:2] == ["mgr1 true Leader Ready", "mgr2 false Reachable Ready"]
    run(cmd_node.ls, ctx, "--format", "json")
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first == {"Availability": "Active", "EngineVersion": "0.1.0", "Hostname": "mgr1", "ID": NODE_ID,
                     "ManagerStatus": "Leader", "Self": True, "Status": "Ready", "TLSStatus": "Ready"}


def test_node_ls_on_a_worker_passes_the_daemons_refusal_on():
    message = ("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
               "Please run this command on a manager node or promote the current node to a manager.")
    with pytest.raises(APIError) as err:
        run(cmd_node.ls, Ctx({("GET", "/nodes"): APIError(503, message)}))
    assert err.value.message == "Error response from daemon: " + message and err.value.code == 1


def test_node_inspect_self_and_pretty(capsys):
    me = node(NODE_ID, "mgr1", role="manager", leader=True, labels={"zone": "a", "ssd": ""})
    ctx = Ctx({("GET", "/info"): info(), ("GET", f"/nodes/{NODE_ID}"): me})
    assert run(cmd_node.inspect, ctx, "self") == 0
    assert json.loads(capsys.readouterr().out) == [me]
    assert run(cmd_node.inspect, ctx, "--pretty", "self") == 0
    assert capsys.readouterr().out == (
        f"ID:\t\t\t{NODE_ID}\n"
        "Labels:\n - ssd\n - zone=a\n"
        "Hostname:              \tmgr1\n"
        "Joined at:             \t2026-12-07 12:00:00.123456789 +0000 utc\n"
        "Status:\n State:\t\t\tReady\n Availability:         \tActive\n Address:\t\t10.0.0.1\n"
        "Manager Status:\n Address:\t\t10.0.0.1:2377\n Raft Status:\t\tReachable\n Leader:\t\tYes\n"
        "Platform:\n Operating System:\tlinux\n Architecture:\t\tx86_64\n"
        "Resources:\n CPUs:\t\t\t2\n Memory:\t\t1.944GiB\n"
        "Plugins:\n Network:\t\tbridge, overlay\n Volume:\t\tlocal\n"
        "Engine Version:\t\t0.1.0\n"
        "TLS Info:\n TrustRoot:\n" + ROOT + "\n"
        " Issuer Subject:\tMBMxETAPBgNVBAMTCHN3YXJtLWNh\n Issuer Public Key:\tMFkwEwYHKoZIzj0CAQ==\n")
    with pytest.raises(CLIError) as err:
        run(cmd_node.inspect, ctx, "--format", "pretty {{.ID}}", "self")
    assert err.value.message == "cannot supply extra formatting options to the pretty template"


def test_node_inspect_reports_each_missing_node(capsys):
    ctx = Ctx({("GET", "/nodes/nope"): APIError(404, "node nope not found"),
               ("GET", "/nodes/mgr2id"): NODES[1]})
    assert run(cmd_node.inspect, ctx, "--format", "{{.Description.Hostname}}", "mgr2id", "nope") == 1
    captured = capsys.readouterr()
    assert captured.out == "mgr2\n" and captured.err == "Error response from daemon: node nope not found\n"


def test_node_update_changes_the_spec_read_and_sends_its_version(capsys):
    n = node("wrk2id", "wrk2", labels={"old": "1", "keep": "x"}, version=17)
    ctx = Ctx({("GET", "/nodes/wrk2"): n, ("POST", "/nodes/wrk2id/update"): None})
    assert run(cmd_node.update, ctx, "--availability", "drain", "--label-add", "zone=b", "--label-add", "ssd",
               "--label-rm", "old", "wrk2") == 0
    assert capsys.readouterr().out == "wrk2\n"
    assert ctx.client.calls[-1] == ("POST", "/nodes/wrk2id/update", {"version": "17"},
                                    {"Role": "worker", "Availability": "drain",
                                     "Labels": {"keep": "x", "zone": "b", "ssd": ""}})
    with pytest.raises(CLIError) as err:
        run(cmd_node.update, Ctx({("GET", "/nodes/wrk2"): n}), "--label-rm", "nope", "wrk2")
    assert err.value.message == "key nope doesn't exist in node's labels"


def test_promote_and_demote(capsys):
    worker, manager = node("wrk1id", "wrk1"), node("mgr2id", "mgr2", role="manager")
    ctx = Ctx({("GET", "/nodes/wrk1"): worker, ("GET", "/nodes/mgr2"): manager,
               ("POST", "/nodes/wrk1id/update"): None, ("POST", "/nodes/mgr2id/update"): None})
    run(cmd_node.promote, ctx, "wrk1", "mgr2")
    assert capsys.readouterr().out == ("Node wrk1 promoted to a manager in the swarm.\n"
                                       "Node mgr2id is already a manager.\n")
    assert [c[3]["Role"] for c in ctx.client.calls if c[0] == "POST"] == ["manager"]
    run(cmd_node.demote, ctx, "mgr2", "wrk1")
    assert capsys.readouterr().out == "Manager mgr2 demoted in the swarm.\nNode wrk1id is already a worker.\n"
    refusal = "attempting to demote the last manager of the swarm"
    ctx = Ctx({("GET", "/nodes/mgr2"): manager, ("POST", "/nodes/mgr2id/update"): APIError(400, refusal)})
    with pytest.raises(APIError):
        run(cmd_node.demote, ctx, "mgr2")


def test_node_rm(capsys):
    refusal = ("rpc error: code = FailedPrecondition desc = node wrk1id is not down and can't be removed")
    ctx = Ctx({("DELETE", "/nodes/wrk1"): APIError(400, refusal), ("DELETE", "/nodes/wrk2"): None})
    assert run(cmd_node.rm, ctx, "wrk1", "wrk2") == 1
    captured = capsys.readouterr()
    assert captured.out == "wrk2\n" and captured.err == "Error response from daemon: " + refusal + "\n"
    run(cmd_node.rm, ctx, "-f", "wrk1")
    assert ctx.client.calls[-1][2] == {"force": "1"}


def test_the_commands_are_in_the_cli_tables():
    from core.cli import main

    for name in ("swarm init", "swarm join", "swarm join-token", "swarm leave", "swarm update", "swarm ca",
                 "node ls", "node inspect", "node update", "node promote", "node demote", "node rm"):
        module, func, _ = main.COMMANDS[name]
        assert callable(getattr(__import__(module, fromlist=[func]), func))
    assert main.ALIASES["node list"] == "node ls" and main.ALIASES["node remove"] == "node rm"


# -- the same requests and output as docker's own CLI (where it is installed) ------------------------


def _zero_free(v):
    """A request body without Go's zero values (docker's CLI sends them, core's leaves them out)."""
    if isinstance(v, dict):
        v = {k: _zero_free(x) for k, x in v.items()}
        return {k: x for k, x in v.items() if x not in ("", 0, False, None, {}, [])}
    if isinstance(v, list):
        return [_zero_free(x) for x in v]
    return v


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    """An Engine API on a unix socket that answers from a table and records what it is asked."""
    import os
    import socketserver
    import threading
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlsplit

    answers = {("GET", "/swarm"): SWARM, ("GET", "/info"): info(), ("POST", "/swarm/init"): NODE_ID,
               ("GET", f"/nodes/{NODE_ID}"): node(NODE_ID, "mgr1", role="manager", leader=True),
               ("GET", "/nodes"): NODES, ("GET", "/nodes/wrk1"): node("wrk1id", "wrk1", labels={"a": "1"}),
               ("GET", "/nodes/mgr2"): node("mgr2id", "mgr2", role="manager")}
    calls = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_one_request(self):
            try:
                super().handle_one_request()
            except BrokenPipeError:
                self.close_connection = True

        def _serve(self):
            url = urlsplit(self.path)
            path = url.path
            if path.startswith("/v1."):
                path = "/" + path.split("/", 2)[2]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if path != "/_ping":
                calls.append((self.command, path, parse_qs(url.query), _zero_free(json.loads(body)) if body else None))
            answer = answers.get((self.command, path))
            data = b"OK" if path == "/_ping" else json.dumps(answer).encode() if answer is not None else b""
            self.send_response(200)
            self.send_header("Api-Version", "1.47")
            self.send_header("Content-Type", "text/plain" if path == "/_ping" else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_HEAD = _serve

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    root = tmp_path_factory.mktemp("api")
    server = Server(str(root / "api.sock"), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = dict(os.environ, DOCKER_HOST=f"unix://{root}/api.sock", CORE_HOST=f"unix://{root}/api.sock",
               DOCKER_CONFIG=str(root / "docker-config"), CORE_NO_AUTOSTART="1")
    try:
        yield env, calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(not __import__("shutil").which("docker"), reason="no docker CLI here")
@pytest.mark.parametrize("argv", [
    "swarm init --advertise-addr 10.0.0.1:2377 --listen-addr 10.0.0.1",
    "swarm init --dispatcher-heartbeat 2s --cert-expiry 1h --task-history-limit 3 --default-addr-pool 10.20.0.0/16 "
    "--availability drain --force-new-cluster",
    "swarm join --token X --advertise-addr 10.0.0.4 10.0.0.1:2377",
    "swarm join-token worker", "swarm join-token -q manager", "swarm join-token --rotate worker",
    "swarm leave -f", "swarm update --dispatcher-heartbeat 1s --snapshot-interval 5", "swarm ca",
    "swarm ca --rotate -d", "node ls", "node ls --format json", "node inspect self", "node inspect --pretty self",
    "node update --label-add b=2 --label-rm a --availability drain wrk1", "node promote wrk1", "node demote mgr2",
    "node rm -f wrk1", "info",
])
def test_same_requests_and_output_as_the_docker_cli(recorder, argv):
    import subprocess
    import sys

    env, calls = recorder
    seen = {}
    for who, cmd in (("docker", ["docker"]), ("core", [sys.executable, "-m", "core"])):
        calls.clear()
        proc = subprocess.run(cmd + argv.split(), env=env, capture_output=True, text=True, timeout=60)
        seen[who] = (list(calls), proc.stdout.replace("docker swarm", "core swarm"), proc.returncode)
    (docker_calls, docker_out, docker_rc), (core_calls, core_out, core_rc) = seen["docker"], seen["core"]
    assert (core_rc, docker_rc) == (0, 0)
    if argv == "info":  # the swarm section; the rest of info is each engine's own
        def section(text):
            lines = text.splitlines()
            start = lines.index(" Swarm: active")
            end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  "))
            return lines[start:end]

        assert section(core_out) == section(docker_out)
        return
    assert core_calls == docker_calls
    if "inspect self" not in argv or "--pretty" in argv:  # inspect: the JSON's key order is each one's
        assert core_out == docker_out


@pytest.mark.parametrize("text,expected", [
    ("2026-12-07T12:00:19.151292000Z", "2026-12-07 12:00:19.151292 +0000 UTC"),
    ("2026-12-07T12:00:19.000Z", "2026-12-07 12:00:19 +0000 UTC"),
    ("2026-12-07T12:00:10.100Z", "2026-12-07 12:00:10.1 +0000 UTC"),
    ("2026-12-07T12:00:19Z", "2026-12-07 12:00:19 +0000 UTC"),
])
def test_joined_at_is_gos_time_string(text, expected):
    assert cmd_node._go_time(text) == expected


def test_ca_rotate_waits_out_a_moment_without_leader(capsys, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    no_leader = APIError(503, "The swarm does not have a leader. It's possible that too few managers are online. "
                              "Make sure more than half of the managers are online.")
    answers = iter([SWARM, no_leader, no_leader, SWARM, SWARM])

    def swarm():
        a = next(answers, SWARM)
        if isinstance(a, Exception):
            raise a
        return json.loads(json.dumps(a))

    ctx = Ctx({("GET", "/swarm"): swarm, ("POST", "/swarm/update"): None, ("GET", "/nodes"): [node("a", "mgr1")]})
    assert run(cmd_swarm.ca, ctx, "--rotate") == 0
    assert capsys.readouterr().out.endswith(ROOT)
    other = Ctx({("GET", "/swarm"): SWARM, ("POST", "/swarm/update"): None,
                 ("GET", "/nodes"): APIError(503, "This node is not a swarm manager.")})
    with pytest.raises(APIError):
        run(cmd_swarm.ca, other, "--rotate")
