"""The scale simulation (bench/swarm_scale.py) at CI size: 3 real managers on the harness, 50
simulated nodes (core.engine.swarm.simnode) speaking the real node protocol, 500 replicas
written assigned (``--direct``: the dispatcher's and the nodes' side of the protocol, not the
leader's loops), 10 nodes failed at once."""
from __future__ import annotations

import shutil

import pytest

from bench.swarm_scale import Simulation, parse

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("etcd"), reason="etcd (etcd-server) is not installed")]


def test_fifty_simulated_nodes_run_500_replicas_and_ten_failed_nodes_go_down():
    args = parse(["--nodes", "50", "--replicas", "500", "--services", "5", "--fail", "10", "--procs", "5",
                  "--direct", "--heartbeat", "1s", "--timeout", "90"])
    r = Simulation(args).run()
    assert "error" not in r, r
    assert r["converge_s"] < 30, r
    assert r["failed_nodes"] == 10 and r["down_s"] < 60, r
    assert all(mib < 500 for mib in r["manager_memory_mib"].values()), r
    assert r["leader_calls_per_s"] > 0 and r["etcd_db_bytes"], r
