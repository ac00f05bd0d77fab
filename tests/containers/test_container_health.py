"""Healthchecks and friends, end to end: the Docker SDK for Python and the docker CLI against a
real daemon, the real executor and busybox images pulled from the test registry on loopback.

Health: ``--health-*`` and an image's ``HEALTHCHECK``, ``State.Health`` (status, streak, the
last 5 results, output cut at 4096 bytes, timeouts, start period), ``(healthy)`` in ``ps``, the
``health`` filter and ``health_status`` events."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest

from tests.conftest import CoreEnv, wait_for
from tests.support import images as im
from tests.containers.test_containers_api import pull, reap

docker = pytest.importorskip("docker")

MS = 1_000_000


@pytest.fixture(scope="module")
def health_image(registry):
    """busybox with a HEALTHCHECK (``test -e /tmp/ok``, every 200ms, 2 retries)."""
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="core-health-img-"))
    try:
        im.build_image(d, [im.busybox_rootfs_layer()],
                       {"Env": im.DEFAULT_ENV, "Cmd": ["sleep", "600"],
                        "Healthcheck": {"Test": ["CMD-SHELL", "test -e /tmp/ok && echo fine"],
                                        "Interval": 200 * MS, "Retries": 2}},
                       media="docker", tag="latest")
        res = im.push(d, "healthy:latest", registry, src_tag="latest")
        yield res.reference
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def env(test_images, health_image):
    e = CoreEnv()
    try:
        e.start_daemon()
        pull(e, test_images["busybox:latest"].reference)
        pull(e, health_image)
        yield e
    finally:
        reap(e)
        e.cleanup()


def run(client, made, image, cmd="sleep 600", **kw):
    c = client.containers.run(image, cmd, detach=True, **kw)
    made.append(c)
    return c


def health(c) -> dict:
    c.reload()
    return c.attrs["State"].get("Health")


def wait_health(c, status, timeout=15):
    wait_for(lambda: (health(c) or {}).get("Status") == status, timeout=timeout, what=f"health {status}")
    return health(c)


# ------------------------------------------------------------------------------------------ health
def test_health_cmd_starting_then_healthy_in_ps_and_events(client, made, image):
    since = time.time() - 1
    c = run(client, made, image, healthcheck={"test": ["CMD-SHELL", "echo ok; echo err >&2"],
                                              "interval": 300 * MS, "retries": 2})
    h = health(c)
    assert h == {"Status": "starting", "FailingStreak": 0, "Log": []}
    listed = client.api.containers(filters={"id": c.id})[0]
    assert listed["Status"].endswith("(health: starting)"), listed["Status"]
    h = wait_health(c, "healthy")
    assert h["FailingStreak"] == 0
    entry = h["Log"][-1]
    assert entry["ExitCode"] == 0
    assert entry["Output"] == "ok\nerr\n"
    assert entry["Start"] <= entry["End"]
    listed = client.api.containers(filters={"id": c.id})[0]
    assert listed["Status"].startswith("Up ") and listed["Status"].endswith("(healthy)"), listed["Status"]
    assert [x["Id"] for x in client.api.containers(filters={"health": "healthy"})] == [c.id]
    assert c.id not in [x["Id"] for x in client.api.containers(filters={"health": "none"})]
    events = client.api.events(since=since, until=time.time() + 1, decode=True,
                               filters={"container": c.id, "event": "health_status"})
    actions = [e["Action"] for e in events]
    assert actions[:1] == ["health_status: healthy"], actions
    # the log keeps the last 5 results
    wait_for(lambda: len(health(c)["Log"]) == 5, timeout=15, what="5 results")
    time.sleep(0.7)
    assert len(health(c)["Log"]) == 5
    # stopped: the last health stays, ps shows no health
    c.kill()
    c.reload()
    assert c.status == "exited"
    assert c.attrs["State"]["Health"]["Status"] == "healthy"
    listed = client.api.containers(all=True, filters={"id": c.id})[0]
    assert "health" not in listed["Status"]


def test_health_unhealthy_after_retries_with_output_and_events(client, made, image):
    since = time.time() - 1
    c = run(client, made, image, healthcheck={"test": ["CMD", "sh", "-c", "echo no; exit 3"],
                                              "interval": 200 * MS, "retries": 3})
    h = wait_health(c, "unhealthy")
    assert h["FailingStreak"] >= 3
    assert all(e["ExitCode"] == 3 and e["Output"] == "no\n" for e in h["Log"])
    assert [x["Id"] for x in client.api.containers(filters={"health": "unhealthy"})] == [c.id]
    listed = client.api.containers(filters={"id": c.id})[0]
    assert listed["Status"].endswith("(unhealthy)")
    events = client.api.events(since=since, until=time.time() + 1, decode=True,
                               filters={"container": c.id, "event": "health_status"})
    assert [e["Action"] for e in events] == ["health_status: unhealthy"]
    # recovers: healthy again, streak reset
    c.exec_run(["sh", "-c", "true"])   # exec still works beside the probes
    c2 = run(client, made, image, healthcheck={"test": ["CMD-SHELL", "test -e /tmp/ok"],
                                               "interval": 200 * MS, "retries": 1})
    wait_health(c2, "unhealthy")
    c2.exec_run(["touch", "/tmp/ok"])
    h2 = wait_health(c2, "healthy")
    assert h2["FailingStreak"] == 0


def test_health_output_cut_at_4096_bytes(client, made, image):
    c = run(client, made, image, healthcheck={"test": ["CMD-SHELL", "head -c 10000 /dev/zero | tr '\\0' x"],
                                              "interval": 200 * MS})
    h = wait_health(c, "healthy")
    out = h["Log"][-1]["Output"]
    assert out == "x" * 4096 + "..."


def test_health_timeout_kills_probe(client, made, image):
    c = run(client, made, image, healthcheck={"test": ["CMD-SHELL", "echo slow; sleep 30"],
                                              "interval": 200 * MS, "timeout": 300 * MS, "retries": 1})
    t0 = time.monotonic()
    h = wait_health(c, "unhealthy")
    assert time.monotonic() - t0 < 10
    entry = h["Log"][-1]
    assert entry["ExitCode"] == -1
    assert entry["Output"] == "Health check exceeded timeout (300ms): slow\n"


def test_health_missing_program_is_a_failure(client, made, image):
    c = run(client, made, image, healthcheck={"test": ["CMD", "/no/such/probe"], "interval": 200 * MS,
                                              "retries": 1})
    h = wait_health(c, "unhealthy")
    assert h["Log"][-1]["ExitCode"] == -1
    assert "/no/such/probe" in h["Log"][-1]["Output"]


def test_health_start_period_does_not_count_failures(client, made, image):
    c = run(client, made, image, healthcheck={"test": ["CMD-SHELL", "exit 1"], "interval": 200 * MS,
                                              "retries": 1, "start_period": 30_000 * MS,
                                              "start_interval": 200 * MS})
    wait_for(lambda: len((health(c) or {}).get("Log") or []) >= 2, timeout=15, what="2 probes")
    h = health(c)
    assert h["Status"] == "starting" and h["FailingStreak"] == 0


def test_image_healthcheck_and_no_healthcheck(client, made, health_image):
    c = run(client, made, health_image, cmd=None)
    assert c.attrs["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "test -e /tmp/ok && echo fine"]
    wait_health(c, "unhealthy")
    c.exec_run(["touch", "/tmp/ok"])
    assert wait_health(c, "healthy")["Log"][-1]["Output"] == "fine\n"
    # a request's fields override the image's, the rest is inherited
    c2 = run(client, made, health_image, cmd=None, healthcheck={"retries": 7})
    hc = c2.attrs["Config"]["Healthcheck"]
    assert hc["Retries"] == 7 and hc["Interval"] == 200 * MS and hc["Test"][0] == "CMD-SHELL"
    # --no-healthcheck
    c3 = run(client, made, health_image, cmd=None, healthcheck={"test": ["NONE"]})
    time.sleep(0.5)
    c3.reload()
    assert "Health" not in c3.attrs["State"]
    assert c3.id in [x["Id"] for x in client.api.containers(filters={"health": "none"})]


def test_health_restart_resets_to_starting_and_pause_stops_probes(client, made, image):
    c = run(client, made, image, healthcheck={"test": ["CMD-SHELL", "true"], "interval": 200 * MS})
    wait_health(c, "healthy")
    c.pause()
    n = len(health(c)["Log"])
    first = health(c)["Log"][-1]["Start"]
    time.sleep(0.8)
    assert health(c)["Log"][-1]["Start"] == first and len(health(c)["Log"]) == n
    c.unpause()
    wait_for(lambda: health(c)["Log"][-1]["Start"] != first, timeout=10, what="probes after unpause")
    c.restart(timeout=0)
    h = health(c)
    assert h["Status"] == "starting" and h["FailingStreak"] == 0
    wait_health(c, "healthy")


@pytest.mark.parametrize("hc, message", [
    ({"Test": ["CMD", "true"], "Interval": 5}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Timeout": 10}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["CMD", "true"], "StartPeriod": 3}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"Test": ["BOGUS", "true"]}, "unknown healthcheck type"),
    ({"Test": "true"}, "Healthcheck.Test"),
])
def test_invalid_healthcheck_is_400(client, image, hc, message):
    res = client.api._post_json(client.api._url("/containers/create"),
                                data={"Image": image, "Cmd": ["true"], "Healthcheck": hc})
    assert res.status_code == 400, res.text
    assert message in res.json()["message"]


def test_health_filter_value_checked(client):
    with pytest.raises(docker.errors.APIError) as err:
        client.api.containers(filters={"health": "sick"})
    assert err.value.status_code == 400
    assert "Unrecognised filter value for health: sick" in str(err.value)


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_health_flags_ps_and_events(env, made, client, image):
    events: list[str] = []
    proc = subprocess.Popen(["docker", "events", "--filter", "event=health_status", "--format", "{{.Action}}"],
                            env=env.env, stdout=subprocess.PIPE, text=True)
    reader = threading.Thread(target=lambda: events.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        time.sleep(0.3)
        out = subprocess.run(["docker", "run", "-d", "--health-cmd", "true", "--health-interval", "200ms",
                              "--health-retries", "2", "--health-timeout", "2s", image, "sleep", "600"],
                             env=env.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        cid = out.stdout.strip()
        made.append(client.containers.get(cid))
        wait_for(lambda: "(healthy)" in subprocess.run(
            ["docker", "ps", "--filter", f"id={cid}", "--format", "{{.Status}}"], env=env.env,
            capture_output=True, text=True).stdout, timeout=15, what="(healthy) in docker ps")
        inspect = json.loads(subprocess.run(["docker", "inspect", cid], env=env.env, capture_output=True,
                                            text=True).stdout)[0]
        assert inspect["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 200 * MS,
                                                    "Timeout": 2000 * MS, "Retries": 2}
        assert inspect["State"]["Health"]["Status"] == "healthy"
        ours = env.run("ps", "--filter", "health=healthy", "--format", "{{.ID}} {{.Status}}")
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout.startswith(cid[:12]) and ours.stdout.rstrip().endswith("(healthy)"), ours.stdout
        wait_for(lambda: "health_status: healthy\n" in events, timeout=10, what="the health_status event")
        out = subprocess.run(["docker", "run", "-d", "--no-healthcheck", image, "sleep", "600"],
                             env=env.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        made.append(client.containers.get(out.stdout.strip()))
        assert client.containers.get(out.stdout.strip()).attrs["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------ exec Tty
def test_exec_tty_comes_from_exec_create(client, made, image):
    c = run(client, made, image)
    # created with a tty, started detached (the SDK sends "Tty": false): the process has a tty
    exec_id = client.api.exec_create(c.id, ["sh", "-c", "if test -t 2; then echo tty; else echo none; fi > /tmp/t"],
                                     tty=True)["Id"]
    client.api.exec_start(exec_id, detach=True, tty=False)
    wait_for(lambda: client.api.exec_inspect(exec_id)["ExitCode"] == 0, what="detached exec")
    assert client.api.exec_inspect(exec_id)["ProcessConfig"]["tty"] is True
    assert c.exec_run(["cat", "/tmp/t"]).output == b"tty\n"
    # created without one, started with "Tty": true: no tty, the stream is raw
    exec_id = client.api.exec_create(c.id, ["sh", "-c", "if test -t 1; then echo tty; else echo none; fi"])["Id"]
    out = client.api.exec_start(exec_id, tty=True)
    assert out == b"none\n"
    # created with one, started without: a tty, its output framed as stdout
    exec_id = client.api.exec_create(c.id, ["sh", "-c", "if test -t 1; then echo tty; else echo none; fi"],
                                     tty=True)["Id"]
    out = client.api.exec_start(exec_id, tty=False, demux=True)
    assert out == (b"tty\r\n", None)


# ------------------------------------------------------------------------------- recursive read-only
@pytest.fixture
def tree_with_submount(tmp_path):
    """A directory with a tmpfs mounted below it (unmounted afterwards)."""
    top = tmp_path / "tree"
    (top / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(top / "sub")], check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(top / "sub")], check=False)


def test_read_only_bind_is_read_only_all_the_way_down(client, made, image, tree_with_submount):
    top = str(tree_with_submount)
    script = "touch /host/sub/x 2>/dev/null && echo sub-writable || echo sub-ro; " \
             "touch /host/y 2>/dev/null && echo top-writable || echo top-ro"
    c = client.containers.run(image, ["sh", "-c", script], volumes={top: {"bind": "/host", "mode": "ro"}},
                              detach=True)
    made.append(c)
    c.wait(timeout=30)
    assert c.logs() == b"sub-ro\ntop-ro\n"
    # ReadOnlyNonRecursive: only the top is read-only (docker 20.10's behaviour, on request)
    mount = docker.types.Mount("/host", top, type="bind", read_only=True)
    mount["BindOptions"] = {"ReadOnlyNonRecursive": True}
    c2 = client.containers.run(image, ["sh", "-c", script], mounts=[mount], detach=True)
    made.append(c2)
    c2.wait(timeout=30)
    assert c2.logs() == b"sub-writable\ntop-ro\n"


# ------------------------------------------------------------------------------------------ --runtime
from tests.drivers.test_runc_example import RUNC, _cleanup_runc, runc_driver  # noqa: E402,F401 - a fixture


@pytest.mark.skipif(RUNC is None, reason="runc is not installed (apt-get install runc)")
def test_runtime_runc_runs_on_the_runc_executor(env, client, made, image, runc_driver):
    try:
        c = client.containers.run(image, ["sh", "-c", "echo on runc; sleep 600"], runtime="runc", detach=True)
        made.append(c)
        wait_for(lambda: c.logs() == b"on runc\n", timeout=30, what="the container's output")
        c.reload()
        assert c.attrs["HostConfig"]["Runtime"] == "runc"
        # the runc executor holds it, the built-in one does not
        assert (env.exec_root / "executor" / "runc").exists()
        assert not (env.exec_root / "executor" / "container" / c.id).exists()
        assert c.exec_run(["echo", "exec"]).output == b"exec\n"
        c.kill()
        c.reload()
        assert c.status == "exited"
        c.remove()
        made.remove(c)
        info = client.info()
        assert "runc" in info["Runtimes"] and "core" in info["Runtimes"]
    finally:
        for c in list(made):
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass
        made.clear()
        _cleanup_runc(env)


def test_runtime_default_and_unknown(client, made, image):
    c = run(client, made, image)
    assert c.attrs["HostConfig"]["Runtime"] == "core"
    c2 = run(client, made, image, runtime="container")
    assert c2.attrs["HostConfig"]["Runtime"] == "container"
    assert c2.exec_run(["true"]).exit_code == 0
    with pytest.raises(docker.errors.APIError) as err:
        client.containers.create(image, "true", runtime="nope")
    assert err.value.status_code == 400
    assert "unknown or invalid runtime name: nope" in str(err.value)


# ------------------------------------------------------------------------------ --device-cgroup-rule
def test_device_cgroup_rule_allows_a_device(client, made, image):
    script = "mknod /tmp/fuse c 10 229; dd if=/tmp/fuse of=/dev/null count=0 2>&1; true"
    c = client.containers.run(image, ["sh", "-c", script], detach=True)
    made.append(c)
    c.wait(timeout=30)
    assert b"Operation not permitted" in c.logs()
    c2 = client.containers.run(image, ["sh", "-c", script], detach=True, device_cgroup_rules=["c 10:229 rwm"])
    made.append(c2)
    c2.wait(timeout=30)
    assert b"Operation not permitted" not in c2.logs(), c2.logs()
    assert c2.attrs["HostConfig"]["DeviceCgroupRules"] == ["c 10:229 rwm"]
    with pytest.raises(docker.errors.APIError) as err:
        client.containers.create(image, "true", device_cgroup_rules=["c 10-229 rwm"])
    assert err.value.status_code == 400
    assert "invalid device cgroup rule format: 'c 10-229 rwm'" in str(err.value)


def test_cli_device_cgroup_rule_flag(env, image):
    bad = env.run("create", "--device-cgroup-rule", "x 1:2 r", image, "true")
    assert bad.returncode != 0 and "invalid device cgroup format 'x 1:2 r'" in bad.stderr
    ok = env.run("create", "--device-cgroup-rule", "c *:* m", "--device-cgroup-rule", "b 7:0 rw", image, "true")
    assert ok.returncode == 0, ok.stderr
    cid = ok.stdout.strip()
    out = env.run("inspect", "-f", "{{json .HostConfig.DeviceCgroupRules}}", cid)
    assert json.loads(out.stdout) == ["c *:* m", "b 7:0 rw"]
    env.run("rm", cid)


# ------------------------------------------------------------------------- cp into a created container
def _tar(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cp_into_anonymous_volume_of_a_never_started_container(client, made, image):
    c = client.containers.create(image, ["cat", "/data/hello"], volumes=["/data"])
    made.append(c)
    assert c.put_archive("/data", _tar("hello", b"into the volume\n"))
    bits, stat = c.get_archive("/data/hello")
    assert stat["size"] == len(b"into the volume\n")
    c.start()
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs() == b"into the volume\n"
    # it went into the volume, not under it in the container's layer
    vol = next(m for m in c.attrs["Mounts"] if m["Destination"] == "/data")
    assert client.volumes.get(vol["Name"]).attrs["Mountpoint"]


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_cp_into_created_container_volume(env, client, made, image, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("via docker cp\n")
    out = subprocess.run(["docker", "create", "-v", "/vol", image, "cat", "/vol/f.txt"], env=env.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    made.append(client.containers.get(cid))
    cp = subprocess.run(["docker", "cp", str(src), f"{cid}:/vol/f.txt"], env=env.env, capture_output=True,
                        text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    start = subprocess.run(["docker", "start", "-a", cid], env=env.env, capture_output=True, text=True, timeout=60)
    assert start.stdout == "via docker cp\n", start.stderr


# --------------------------------------------------------------------------------- daemon restart
def test_health_after_a_daemon_restart(test_images, image):
    """A running container's health is watched again by the next daemon (starting, then healthy);
    an exited one keeps its last health."""
    e = CoreEnv()
    try:
        e.start_daemon()
        pull(e, image)
        cl = e.docker_client()
        try:
            c = cl.containers.run(image, "sleep 600", detach=True,
                                  healthcheck={"test": ["CMD-SHELL", "true"], "interval": 200 * MS})
            wait_health(c, "healthy")
            gone = cl.containers.run(image, "sleep 600", detach=True,
                                     healthcheck={"test": ["CMD-SHELL", "exit 1"], "interval": 200 * MS,
                                                  "retries": 1})
            wait_health(gone, "unhealthy")
            gone.kill()
        finally:
            cl.close()
        e.stop_daemons()
        e.start_daemon()
        cl = e.docker_client()
        try:
            c = cl.containers.get(c.id)
            assert c.attrs["State"]["Health"]["Status"] in ("starting", "healthy")
            wait_health(c, "healthy")
            assert cl.containers.get(gone.id).attrs["State"]["Health"]["Status"] == "unhealthy"
        finally:
            cl.close()
    finally:
        reap(e)
        e.cleanup()
