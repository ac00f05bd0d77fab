"""Resources stay flat: hundreds of operations against one daemon leave its open files and its
memory where they were after a warm-up (issue: two netlink sockets leaked per operation once the
worker thread that made them went idle; memory grew by megabytes per round).

The operations are the everyday ones — networks created and removed, containers run with a
published port on them, inspected, listed, stopped and removed, through the Docker SDK — with
pauses long enough for trio's idle worker threads to exit (the leak's trigger).
"""
from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.conftest import CoreEnv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network tests make namespaces: run as root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed"),
]

ROUNDS = int(os.environ.get("CORE_SOAK_ROUNDS", "24"))
FD_TOLERANCE = 4          # open files: a few may come and go (a log rotation, a cached socket)
RSS_TOLERANCE_MB = 12.0   # resident memory after the warm-up, over all the rounds


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    kinds: dict[str, int] = {}
    netlink = set()
    try:
        with open(f"/proc/{pid}/net/netlink") as f:
            netlink = {line.split()[-1] for line in f.readlines()[1:]}
    except OSError:
        pass
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            kind = "netlink" if target[8:-1] in netlink else "socket"
        elif target.startswith("anon_inode:"):
            kind = target
        elif target.startswith("pipe:"):
            kind = "pipe"
        else:
            kind = "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def soak_env(test_images):
    env = CoreEnv()
    try:
        ref = test_images["busybox:latest"].reference
        proc = env.run("pull", ref, timeout=300)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        env.bb = ref
        yield env
    finally:
        env.cleanup()


def one_round(client, image: str, n: int) -> int:
    """One round of everyday operations; returns how many API calls it made."""
    calls = 0
    net = client.networks.create(f"soak{n}")
    calls += 1
    try:
        c = client.containers.run(image, ["sleep", "600"], name=f"soak{n}", detach=True,
                                  network=net.name, ports={"80/tcp": None})
        calls += 3
        c.reload()
        client.containers.list()
        client.networks.list()
        net.reload()
        calls += 4
        extra = client.containers.run(image, ["true"], name=f"soakx{n}", detach=True)
        extra.wait(timeout=30)
        extra.remove()
        calls += 4
        c.stop(timeout=0)
        c.remove()
        calls += 2
    finally:
        net.remove()
        calls += 1
    return calls


def test_fds_and_rss_stay_flat(soak_env):
    env = soak_env
    client = env.docker_client()
    try:
        client.ping()
        pid = int((env.exec_root / "core.pid").read_text())
        calls = 0
        for n in range(4):  # warm-up: caches, thread pools, imported modules
            calls += one_round(client, env.bb, n)
        time.sleep(11)  # trio's idle worker threads exit after 10 s: the leak's trigger
        fds0, rss0, kinds0 = fd_count(pid), rss_mb(pid), fd_kinds(pid)
        samples = []
        started = time.monotonic()
        for n in range(4, 4 + ROUNDS):
            calls += one_round(client, env.bb, n)
            if n % 8 == 7:
                time.sleep(11)
            samples.append((fd_count(pid), rss_mb(pid)))
        time.sleep(11)
        fds1, rss1, kinds1 = fd_count(pid), rss_mb(pid), fd_kinds(pid)
        print(f"{calls} API calls in {time.monotonic() - started:.1f}s; fds {fds0} -> {fds1} "
              f"({kinds0} -> {kinds1}); RSS {rss0:.1f} -> {rss1:.1f} MB; samples {samples}")
        assert calls >= 200
        assert fds1 - fds0 <= FD_TOLERANCE, (kinds0, kinds1, samples)
        assert rss1 - rss0 <= RSS_TOLERANCE_MB, (rss0, rss1, samples)
    finally:
        client.close()
