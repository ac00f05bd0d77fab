"""``docker update``: resources of a running container changed in its cgroup, stored in its
HostConfig (inspect, next start), restart policy, docker's errors; through the Docker SDK, the
core CLI and the docker CLI, against a real daemon and executor with busybox from the test
registry on loopback."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.containers.test_containers_api import reaped_core
from tests.support.helpers import pull

docker = pytest.importorskip("docker")

MB = 1024 * 1024
DOCKER = "/usr/local/bin/docker"


@pytest.fixture(scope="module")
def env(test_images):
    with reaped_core() as e:
        e.start_daemon()
        pull(e, test_images["busybox:latest"].reference)
        yield e


@pytest.fixture(scope="module")
def client(env):
    c = env.docker_client()
    yield c
    c.close()


@pytest.fixture
def image(test_images):
    return test_images["busybox:latest"].reference


@pytest.fixture
def running(client, image):
    c = client.containers.run(image, ["sleep", "300"], detach=True)
    try:
        yield c
    finally:
        c.remove(force=True)


def cgroup_file(env, cid: str, controller: str, name: str) -> str:
    """The container's cgroup file ``name`` on the host, as the executor recorded its cgroup."""
    state = (env.exec_root / "executor" / "container" / cid / "cgroup").read_text().splitlines()
    version = int(state[0].split()[1])
    for line in state[1:]:
        hierarchy, _, path = line.partition(" ")
        if version == 2 or controller in hierarchy.split(","):
            return (Path(path) / name).read_text().strip()
    raise AssertionError(f"no {controller} hierarchy in {state}")


def post_update(client, cid: str, body: dict) -> dict:
    """The raw ``POST /containers/{id}/update`` (the SDK has no ``PidsLimit``/``NanoCpus``)."""
    resp = client.api._post_json(client.api._url("/containers/{0}/update", cid), data=body)
    return client.api._result(resp, json=True)


def v2(env, cid: str) -> bool:
    return (env.exec_root / "executor" / "container" / cid / "cgroup").read_text().startswith("version 2")


def test_update_running_memory_pids_cpus(env, client, running):
    cid = running.id
    assert running.update(mem_limit="64m", memswap_limit="128m", cpu_shares=512,
                          mem_reservation="32m", blkio_weight=300) == {"Warnings": []}
    assert post_update(client, cid, {"PidsLimit": 50, "NanoCpus": 500_000_000}) == {"Warnings": []}
    if v2(env, cid):
        assert cgroup_file(env, cid, "memory", "memory.max") == str(64 * MB)
        assert cgroup_file(env, cid, "memory", "memory.low") == str(32 * MB)
        assert cgroup_file(env, cid, "cpu", "cpu.max") == "50000 100000"
    else:
        assert cgroup_file(env, cid, "memory", "memory.limit_in_bytes") == str(64 * MB)
        assert cgroup_file(env, cid, "memory", "memory.soft_limit_in_bytes") == str(32 * MB)
        assert cgroup_file(env, cid, "cpu", "cpu.cfs_quota_us") == "50000"
        assert cgroup_file(env, cid, "cpu", "cpu.cfs_period_us") == "100000"
        assert cgroup_file(env, cid, "cpu", "cpu.shares") == "512"
    assert cgroup_file(env, cid, "pids", "pids.max") == "50"
    running.reload()
    hc = running.attrs["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["MemoryReservation"]) == (64 * MB, 128 * MB, 32 * MB)
    assert (hc["PidsLimit"], hc["NanoCpus"], hc["CpuShares"], hc["BlkioWeight"]) == (50, 500_000_000, 512, 300)
    # a second update changes only what it names; -1: unlimited pids
    post_update(client, cid, {"PidsLimit": -1})
    assert cgroup_file(env, cid, "pids", "pids.max") == "max"
    running.reload()
    assert running.attrs["HostConfig"]["Memory"] == 64 * MB
    assert running.attrs["HostConfig"]["PidsLimit"] in (0, None)
    # the update event
    events = client.api.events(since=0, until=int(__import__("time").time()) + 1, decode=True,
                               filters={"container": cid, "event": "update"})
    assert [e["Action"] for e in events] == ["update", "update", "update"]


def test_memory_below_usage_is_a_conflict(env, client, image):
    c = client.containers.run(image, ["sh", "-c", "head -c 20m /dev/zero | tail > /dev/null; "
                                      "dd if=/dev/zero of=/dev/shm/fill bs=1M count=20; sleep 300"],
                              detach=True, mem_limit="64m", memswap_limit="64m")
    try:
        import time
        deadline = time.time() + 20
        while not Path(f"/proc/{c.attrs['State']['Pid'] or 1}").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        with pytest.raises(docker.errors.APIError) as exc:
            c.update(mem_limit="8m", memswap_limit="8m")
        assert exc.value.status_code == 409, exc.value.explanation
        assert "Device or resource busy" in exc.value.explanation
        c.reload()
        assert c.attrs["HostConfig"]["Memory"] == 64 * MB   # unchanged
    finally:
        c.remove(force=True)


def test_restart_policy(client, running):
    running.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
    running.reload()
    assert running.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    # docker's CLI sends an empty policy with every update: unchanged
    post_update(client, running.id, {"Memory": 0, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}})
    running.reload()
    assert running.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"


def test_stopped_container_update_applies_at_next_start(env, client, image):
    c = client.containers.create(image, ["sleep", "300"])
    try:
        post_update(client, c.id, {"Memory": 48 * MB, "MemorySwap": -1, "PidsLimit": 20})
        c.reload()
        assert c.attrs["HostConfig"]["Memory"] == 48 * MB
        c.start()
        if v2(env, c.id):
            assert cgroup_file(env, c.id, "memory", "memory.max") == str(48 * MB)
        else:
            assert cgroup_file(env, c.id, "memory", "memory.limit_in_bytes") == str(48 * MB)
        assert cgroup_file(env, c.id, "pids", "pids.max") == "20"
    finally:
        c.remove(force=True)


@pytest.mark.parametrize("body, message", [
    ({"Memory": 1024 * 1024}, "Minimum memory limit allowed is 6MB"),
    ({"NanoCpus": 500_000_000, "CpuPeriod": 50000}, "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    ({"Memory": 64 * MB, "MemorySwap": 32 * MB}, "Minimum memoryswap limit should be larger than memory limit"),
    ({"MemorySwap": 32 * MB}, "You should always set the Memory limit when using Memoryswap limit"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"Memory": 64 * MB}, "Memory limit should be smaller than already set memoryswap limit, "
                          "update the memoryswap at the same time"),
    ({"CpuPeriod": 10}, "CPU cfs period can not be less than 1ms"),
    ({"Memory": "lots"}, "cannot unmarshal string into Go struct field Memory of type int64"),
])
def test_bad_values_are_400(client, running, body, message):
    with pytest.raises(docker.errors.APIError) as exc:
        post_update(client, running.id, body)
    assert exc.value.status_code == 400
    assert message in exc.value.explanation


def test_unknown_container_is_404(client):
    with pytest.raises(docker.errors.NotFound):
        client.api.update_container("no-such-container", mem_limit="64m")


def test_core_cli(env, running):
    p = env.run("update", "-m", "80m", "--memory-swap", "160m", "--pids-limit", "30", "--cpus", "0.5", "--restart",
                "unless-stopped", running.name)
    assert (p.returncode, p.stdout) == (0, running.name + "\n"), p.stderr
    assert cgroup_file(env, running.id, "pids", "pids.max") == "30"
    running.reload()
    hc = running.attrs["HostConfig"]
    assert (hc["Memory"], hc["NanoCpus"], hc["RestartPolicy"]["Name"]) == (80 * MB, 500_000_000, "unless-stopped")
    p = env.run("update", running.name)
    assert p.returncode == 1 and "you must provide one or more flags" in p.stderr
    p = env.run("update", "-m", "1m", running.name)
    assert p.returncode == 1 and "Minimum memory limit allowed is 6MB" in p.stderr
    p = env.run("update", "-m", "lots", running.name)
    assert p.returncode == 125 and 'invalid argument "lots" for "-m, --memory" flag' in p.stderr


@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="the docker CLI is not installed")
def test_docker_cli(env, running):
    def docker_cli(*args):
        return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=60,
                              env={**env.env, "DOCKER_CONFIG": str(env.root / "docker-cli")})

    p = docker_cli("update", "--memory", "96m", "--memory-swap", "-1", "--pids-limit", "40",
                   "--cpu-shares", "256", running.id[:12])
    assert (p.returncode, p.stdout) == (0, running.id[:12] + "\n"), p.stderr
    assert cgroup_file(env, running.id, "pids", "pids.max") == "40"
    p = docker_cli("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.CpuShares}} "
                   "{{.HostConfig.RestartPolicy.Name}}", running.id)
    assert p.stdout.split() == [str(96 * MB), "40", "256", "no"], p.stderr
    p = docker_cli("update", "--restart", "always", running.name)
    assert p.returncode == 0, p.stderr
    p = docker_cli("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}}", running.id)
    assert p.stdout.split() == ["always", str(96 * MB)]
    p = docker_cli("update", "-m", "2m", running.name)
    assert p.returncode != 0 and "Minimum memory limit allowed is 6MB" in p.stderr
