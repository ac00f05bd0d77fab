"""core's own ``swarm`` and ``node`` commands against a real swarm on the multi-host harness
(one manager, one worker: the book's commands typed with ``core``), side by side with docker's
CLI on the same daemons where it is installed.  The swarm itself (failures, refusals, the SDK)
is tests/test_swarm_cluster.py's; this module checks the CLI end to end.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from core.engine.swarm.service import ERR_NO_SWARM, ERR_NOT_MANAGER
from tests.support.swarm import core_ok as core, init_words, manager_join_words, wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]

CLUSTER_SHAPE = (1, 1)
HAVE_DOCKER = bool(shutil.which("docker"))


def docker(host, *args: str) -> str:
    proc = subprocess.run(["docker", *args], env={**host.env, "DOCKER_CLI_HINTS": "false"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"[{host.name}] docker {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def swarm(cluster) -> dict[str, Any]:
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    out: dict[str, Any] = {}
    out["init"] = core(mgr1, "swarm", "init", "--advertise-addr", f"{mgr1.address}:2377",
                       "--listen-addr", f"{mgr1.address}:2377", "--dispatcher-heartbeat", "1s")
    out["worker_token"] = core(mgr1, "swarm", "join-token", "-q", "worker").strip()
    out["manager_token"] = core(mgr1, "swarm", "join-token", "-q", "manager").strip()
    out["join"] = core(wrk1, "swarm", "join", "--token", out["worker_token"], "--advertise-addr", wrk1.address,
                       "--listen-addr", f"{wrk1.address}:2377", f"{mgr1.address}:2377")
    wait_for("both nodes ready", lambda: core(mgr1, "node", "ls", "--format", "{{.Status}}").split()
             == ["Ready", "Ready"])
    return out


def test_init_join_and_join_token_print_the_join_commands(swarm, cluster):
    mgr1 = cluster["mgr1"]
    m = re.fullmatch(init_words("core"), swarm["init"])
    assert m, swarm["init"]
    assert m.group(2) == swarm["worker_token"] and m.group(3) == f"{mgr1.address}:2377"
    assert swarm["join"] == "This node joined a swarm as a worker.\n"
    assert core(mgr1, "swarm", "join-token", "manager") == manager_join_words(
        "core", swarm["manager_token"], f"{mgr1.address}:2377")


def test_node_ls_marks_this_node_and_the_leader(swarm, cluster):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    table = core(mgr1, "node", "ls")
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS", "ENGINE", "VERSION"]
    assert re.fullmatch(r"\w{25} \*\s+mgr1\s+Ready\s+Active\s+Leader\s+\S+", lines[1]), table
    assert re.fullmatch(r"\w{25}\s+wrk1\s+Ready\s+Active\s+\S+", lines[2]), table
    assert core(wrk1, "node", "ls", code=1) == f"Error response from daemon: {ERR_NOT_MANAGER}\n"
    if HAVE_DOCKER:
        assert table == docker(mgr1, "node", "ls")


@pytest.mark.skipif(not HAVE_DOCKER, reason="no docker CLI here")
def test_inspect_pretty_info_and_ca_read_as_dockers(swarm, cluster):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    for args in (["node", "inspect", "--pretty", "self"], ["node", "inspect", "--pretty", "wrk1"],
                 ["node", "inspect", "--format", "{{.ID}} {{.Spec.Role}}", "self", "wrk1"], ["swarm", "ca"]):
        assert core(mgr1, *args) == docker(mgr1, *args)

    def section(text: str) -> list[str]:
        lines = text.splitlines()
        start = lines.index(" Swarm: active")
        end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  "))
        return lines[start:end]

    for host in (mgr1, wrk1):
        assert section(core(host, "info")) == section(docker(host, "info"))


def test_node_update_labels_and_availability(swarm, cluster):
    mgr1 = cluster["mgr1"]
    assert core(mgr1, "node", "update", "--label-add", "zone=east", "--label-add", "ssd",
                "--availability", "drain", "wrk1") == "wrk1\n"
    fmt = "{{json .Spec.Labels}}|{{.Spec.Availability}}"
    labels, availability = core(mgr1, "node", "inspect", "--format", fmt, "wrk1").strip().split("|")
    assert (json.loads(labels), availability) == ({"ssd": "", "zone": "east"}, "drain")
    assert core(mgr1, "node", "ls", "-q", "-f", "node.label=zone=east") == \
        core(mgr1, "node", "inspect", "--format", "{{.ID}}", "wrk1")
    assert core(mgr1, "node", "update", "--label-rm", "nope", "wrk1", code=1) == \
        "key nope doesn't exist in node's labels\n"
    core(mgr1, "node", "update", "--label-rm", "zone", "--label-rm", "ssd", "--availability", "active", "wrk1")
    assert core(mgr1, "node", "inspect", "--format", fmt, "wrk1") == "{}|active\n"


def test_swarm_update_and_token_rotation(swarm, cluster):
    mgr1 = cluster["mgr1"]
    assert core(mgr1, "swarm", "update", "--task-history-limit", "7") == "Swarm updated.\n"
    spec = mgr1.docker().swarm.attrs["Spec"]
    assert spec["Orchestration"]["TaskHistoryRetentionLimit"] == 7
    assert spec["Dispatcher"]["HeartbeatPeriod"] == 10**9  # kept from init
    rotated = core(mgr1, "swarm", "join-token", "--rotate", "worker")
    new = core(mgr1, "swarm", "join-token", "-q", "worker").strip()
    assert rotated == ("Successfully rotated worker join token.\n\n"
                       "To add a worker to this swarm, run the following command:\n\n"
                       f"    core swarm join --token {new} {mgr1.address}:2377\n\n")
    assert new != swarm["worker_token"]


def test_ca_rotate_waits_until_every_node_trusts_the_new_root(swarm, cluster):
    mgr1 = cluster["mgr1"]
    before = core(mgr1, "swarm", "ca")
    out = core(mgr1, "swarm", "ca", "--rotate")
    after = core(mgr1, "swarm", "ca")
    assert after != before and out.endswith(after)
    assert "desired root digest: sha256:" in out
    roots = core(mgr1, "node", "inspect", "--format", "{{json .Description.TLSInfo.TrustRoot}}", "self", "wrk1")
    assert [json.loads(r).strip() for r in roots.splitlines()] == [after.strip()] * 2


def test_leave_and_rm(swarm, cluster):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    node_id = core(mgr1, "node", "inspect", "--format", "{{.ID}}", "wrk1").strip()
    assert core(wrk1, "swarm", "leave") == "Node left the swarm.\n"
    assert core(wrk1, "swarm", "leave", code=1) == f"Error response from daemon: {ERR_NO_SWARM}\n"
    wait_for("wrk1 down", lambda: core(mgr1, "node", "inspect", "--format", "{{.Status.State}}", "wrk1")
             == "down\n")
    assert core(mgr1, "node", "rm", "wrk1") == "wrk1\n"
    assert core(mgr1, "node", "ls", "-q").split() != [] and node_id not in core(mgr1, "node", "ls", "-q")
    refusal = core(mgr1, "swarm", "leave", code=1)
    assert "You are attempting to leave the swarm on a node that is participating as a manager." in refusal
    assert core(mgr1, "swarm", "leave", "--force") == "Node left the swarm.\n"
    assert core(mgr1, "info", "--format", "{{.Swarm.LocalNodeState}}") == "inactive\n"


from tests.support.hosts import cluster  # noqa: E402,F401
