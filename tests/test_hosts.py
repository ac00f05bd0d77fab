"""The multi-host harness (tests/support/hosts.py): machines that reach each other over the
underlay, each with its own hostname and engine, and nothing left behind after teardown."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.support import hosts as hs
from tests.support.images import HOST_BUSYBOX

CLUSTER_SHAPE = (1, 1)


def _ping(a, b, wait: int = 2) -> subprocess.CompletedProcess:
    """``ping`` from host ``a`` to host ``b`` (busybox's: Debian's busybox-static is a test package)."""
    return a.exec(str(HOST_BUSYBOX), "ping", "-c", "1", "-W", str(wait), b.address)


def _netns_names() -> set[str]:
    return set(os.listdir(hs.NETNS_DIR)) if hs.NETNS_DIR.is_dir() else set()


def test_hosts_ping_each_other_over_the_underlay(cluster):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    assert [h.name for h in cluster.managers] == ["mgr1"] and [h.name for h in cluster.workers] == ["wrk1"]
    assert mgr1.address != wrk1.address
    for a, b in ((mgr1, wrk1), (wrk1, mgr1)):
        proc = _ping(a, b, 2)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # the addresses live only in the harness's namespaces, not in the machine's own
    assert mgr1.address not in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout


def test_each_host_has_its_own_hostname_and_engine(cluster):
    infos = {h.name: h.docker().info() for h in cluster}
    assert {name: info["Name"] for name, info in infos.items()} == {"mgr1": "mgr1", "wrk1": "wrk1"}
    assert len({info["ID"] for info in infos.values()}) == 2
    out = cluster["wrk1"].core("version", "--format", "{{.Server.Version}}", check=True)
    assert out.stdout.strip()
    assert cluster["mgr1"].exec("hostname").stdout.strip() != "mgr1"  # nsenter --net alone keeps the UTS


def test_cut_and_restore(cluster):
    mgr1, wrk1 = cluster["mgr1"], cluster["wrk1"]
    wrk1.cut()
    try:
        assert _ping(mgr1, wrk1, 1).returncode != 0
    finally:
        wrk1.restore()
    deadline = time.monotonic() + 10
    while _ping(mgr1, wrk1, 1).returncode != 0:
        assert time.monotonic() < deadline, "the link did not come back"


def test_stop_and_start_a_daemon(cluster):
    wrk1 = cluster["wrk1"]
    first = wrk1.pid
    wrk1.stop()
    assert wrk1.pid is None and wrk1.core("version").returncode != 0
    wrk1.start()
    assert wrk1.pid not in (None, first)
    assert wrk1.docker().info()["Name"] == "wrk1"


def test_teardown_leaves_nothing_behind():
    c = hs.Cluster(2, 0)
    root, pids = c.root, [h.pid for h in c]
    names = {h.netns for h in c} | {c.underlay}
    assert names <= _netns_names()
    c["mgr1"].stop()
    c["mgr1"].start()
    pids.append(c["mgr1"].pid)
    c.close()
    assert not root.exists()
    assert _netns_names() & names == set()
    assert not any(pid and Path(f"/proc/{pid}").exists() for pid in pids)
    assert str(root) not in Path("/proc/self/mountinfo").read_text()


def test_sweep_removes_what_a_killed_run_left():
    # a run whose owner died: a namespace, a process in it, a directory with its state file
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_id = f"{dead.pid}x0"
    root = Path("/tmp") / f"{hs.HARNESS_DIR_PREFIX}{run_id}"
    ns = f"{hs.NETNS_PREFIX}{run_id}-mgr1"
    root.mkdir()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    sleeper = subprocess.Popen(["nsenter", f"--net={hs.NETNS_DIR / ns}", "--", "sleep", "300"])
    try:
        (root / "state.json").write_text(json.dumps({"owner": dead.pid, "netns": [ns],
                                                     "pids": {str(sleeper.pid): "sleep"}}))
        hs.sweep()
        assert sleeper.wait(timeout=10) != 0
        assert not root.exists()
        assert ns not in _netns_names()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["rm", "-rf", str(root)])


def test_a_host_pulls_from_the_test_registry_and_runs_a_container(cluster, test_images):
    """The registry listens on the test process's loopback; forwarded, the same reference pulls
    on every host, and the host's engine runs containers."""
    ref = test_images["busybox:latest"].reference
    port = int(ref.split("/", 1)[0].rsplit(":", 1)[1])
    cluster.forward_loopback(port)
    wrk1 = cluster["wrk1"]
    wrk1.core("pull", ref, check=True, timeout=120)
    out = wrk1.core("run", "--rm", ref, "echo", "hello from wrk1", check=True, timeout=120)  # default bridge
    assert out.stdout.strip() == "hello from wrk1"
    assert [i.tags for i in cluster["mgr1"].docker().images.list()] == []  # engines are separate


def test_teardown_after_a_crash_removes_running_containers(test_images):
    """A host whose daemon was killed with a container running: close() still leaves no process."""
    ref = test_images["busybox:latest"].reference
    with hs.Cluster(0, 1) as c:
        wrk1 = c["wrk1"]
        wrk1.forward_loopback(int(ref.split("/", 1)[0].rsplit(":", 1)[1]))
        cid = wrk1.core("run", "-d", "--network", "none", ref, "sleep", "300", check=True, timeout=120).stdout.strip()
        pid = wrk1.docker().containers.get(cid).attrs["State"]["Pid"]
        assert pid and Path(f"/proc/{pid}").exists()
        wrk1.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the container outlived the harness"
        time.sleep(0.05)
