"""Containers end to end: the Docker SDK for Python (and raw HTTP for the hijacked streams)
against a real daemon, the real executor and storage drivers, and busybox images pulled from
the test registry on loopback."""
from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CoreEnv, wait_for
from tests.support.helpers import pull, recv_all

docker = pytest.importorskip("docker")


def reap(env: CoreEnv) -> None:
    """Remove every container of ``env`` (through the API while a daemon answers), then kill
    what shims and container processes are left, by pid: containers outlive daemons by design,
    tests must not leave them behind."""
    try:
        c = env.docker_client()
        try:
            for ctr in c.containers.list(all=True):
                try:
                    ctr.remove(force=True, v=True)
                except docker.errors.APIError:
                    pass
        finally:
            c.close()
    except Exception:
        pass
    state = env.exec_root / "executor" / "container"
    for d in state.glob("*") if state.exists() else []:
        for name in ("init.pid", "shim.pid"):
            try:
                os.kill(int((d / name).read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


@contextlib.contextmanager
def reaped_core() -> Iterator[CoreEnv]:
    """An isolated core, reaped and cleaned up when the block ends."""
    e = CoreEnv()
    try:
        yield e
    finally:
        reap(e)
        e.cleanup()


@pytest.fixture
def core_env():
    """An isolated core of a test's own, reaped and cleaned up afterwards."""
    with reaped_core() as e:
        yield e


@pytest.fixture(scope="module")
def env(test_images):
    with reaped_core() as e:
        e.start_daemon()
        pull(e, test_images["busybox:latest"].reference)
        yield e


# ``client``, ``image`` and ``made`` are tests/containers/conftest.py's


@pytest.fixture
def cleanup(made):
    """The containers a test made (``made``: removed, forcefully, whatever happens)."""
    return made


def tar_of(name: str, data: bytes = b"", **fields: Any) -> bytes:
    """An uncompressed tar of one entry ``name`` holding ``data``; ``fields`` are other
    ``TarInfo`` attributes (``uid``, ``mode``, ``type``, ``linkname``...)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        for field, value in fields.items():
            setattr(info, field, value)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_bg(client, image, cleanup, cmd, **kw):
    c = client.containers.run(image, cmd, detach=True, **kw)
    cleanup.append(c)
    return c


def create_raw(client, body, name=None):
    """POST /containers/create with exactly this body (for fields the SDK does not know)."""
    res = client.api._post_json(client.api._url("/containers/create"), data=body,
                                params={"name": name} if name else None)
    return client.api._result(res, True)


def wait_status(c, status, timeout=15):
    wait_for(lambda: (c.reload(), c.status)[1] == status, timeout=timeout, what=f"status {status}")


# --------------------------------------------------------------------------------------- raw HTTP
class Raw:
    """A raw HTTP/1.1 connection to the daemon's socket, for hijacked streams."""

    def __init__(self, env: CoreEnv) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(env.socket))
        self.sock.settimeout(15)
        self.buf = b""

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict, bytes]:
        hdrs = {"Host": "docker", "Content-Length": str(len(body)), **(headers or {})}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers_out = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers_out, b""

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed with {len(self.buf)} of {n} bytes")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        kind, size = struct.unpack(">BxxxL", self.recv_exact(8))
        return kind, self.recv_exact(size)

    def payloads_until_closed(self) -> bytes:
        """The payloads of the stream's frames up to the end of the connection, joined."""
        out = b""
        try:
            while True:
                out += self.frame()[1]
        except EOFError:
            return out

    def read_until_closed(self) -> bytes:
        out = self.buf
        self.buf = b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return out
            out += data

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------------- run
def test_run_returns_output_and_removes(client, image):
    out = client.containers.run(image, ["echo", "hello", "world"], remove=True)
    assert out == b"hello world\n"


def test_run_failure_raises_container_error_with_stderr(client, image):
    with pytest.raises(docker.errors.ContainerError) as info:
        client.containers.run(image, ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
    assert info.value.exit_status == 3
    assert b"oops" in info.value.stderr


def test_create_inspect_shapes(client, image, cleanup, test_images):
    c = client.containers.create(image, ["sh", "-c", "sleep 30"], name="inspect-me", environment={"FOO": "bar"},
                                 labels={"com.example": "yes"}, working_dir="/tmp", hostname="box",
                                 user="app", stop_signal="SIGINT")
    cleanup.append(c)
    info = client.api.inspect_container(c.id)
    assert info["Id"] == c.id and len(c.id) == 64
    assert info["Name"] == "/inspect-me"
    assert info["Image"] == test_images["busybox:latest"].config_digest
    assert info["Path"] == "sh" and info["Args"] == ["-c", "sleep 30"]
    assert info["State"]["Status"] == "created" and info["State"]["Running"] is False
    assert info["State"]["StartedAt"] == "0001-01-01T00:00:00Z"
    assert info["Created"].endswith("Z") and "T" in info["Created"]
    cfg = info["Config"]
    assert cfg["Image"] == image and cfg["Hostname"] == "box" and cfg["User"] == "app"
    assert "FOO=bar" in cfg["Env"] and any(e.startswith("PATH=") for e in cfg["Env"])
    assert cfg["Labels"] == {"com.example": "yes"} and cfg["WorkingDir"] == "/tmp"
    assert cfg["StopSignal"] == "SIGINT"
    hc = info["HostConfig"]
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert hc["LogConfig"]["Type"] == "json-file"
    assert info["NetworkSettings"]["Networks"].keys() == {"bridge"} or info["NetworkSettings"]["Networks"]
    assert info["LogPath"].endswith(f"{c.id}-json.log")
    assert info["RestartCount"] == 0
    c.start()
    wait_status(c, "running")
    info = client.api.inspect_container("inspect-me")
    assert info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["State"]["StartedAt"] != "0001-01-01T00:00:00Z"
    uid = c.exec_run(["id", "-u"]).output.strip()
    assert uid == b"1000"
    assert c.exec_run(["hostname"]).output.strip() == b"box"
    assert c.exec_run(["pwd"]).output.strip() == b"/tmp"


def test_lookup_by_name_prefix_and_missing(client, image, cleanup):
    c = client.containers.create(image, ["true"], name="lookup-me")
    cleanup.append(c)
    assert client.containers.get("lookup-me").id == c.id
    assert client.containers.get(c.id[:10]).id == c.id
    with pytest.raises(docker.errors.NotFound) as info:
        client.containers.get("no-such-container")
    assert "No such container: no-such-container" in str(info.value)


def test_name_conflict_and_invalid_name(client, image, cleanup):
    c = client.containers.create(image, ["true"], name="taken")
    cleanup.append(c)
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.create(image, ["true"], name="taken")
    assert info.value.status_code == 409
    assert (f'Conflict. The container name "/taken" is already in use by container "{c.id}". You have to remove '
            "(or rename) that container to be able to reuse that name.") in str(info.value)
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.create(image, ["true"], name="bad name!")
    assert info.value.status_code == 400
    assert "Invalid container name (bad name!)" in str(info.value)


def test_generated_names(client, image, cleanup):
    c = client.containers.create(image, ["true"])
    cleanup.append(c)
    assert "_" in c.name and c.name.replace("_", "").isalnum()


def test_missing_image_is_404(client):
    with pytest.raises(docker.errors.ImageNotFound) as info:
        client.containers.create("127.0.0.1:1/nothing-here:latest", ["true"])
    assert info.value.status_code == 404
    assert "No such image" in str(info.value)


@pytest.mark.parametrize("command, messages, code", [
    ("no-such-program", ("failed to create task for container",
                         'exec: "no-such-program": executable file not found in $PATH'), 127),
    ("/etc/passwd", ("permission denied",), 126),
], ids=["not-found-127", "not-executable-126"])
def test_a_command_that_cannot_run_is_400_and_its_exit_code(client, image, cleanup, command, messages, code):
    c = client.containers.create(image, [command])
    cleanup.append(c)
    with pytest.raises(docker.errors.APIError) as info:
        c.start()
    assert info.value.status_code == 400
    for message in messages:
        assert message in str(info.value)
    c.reload()
    assert c.attrs["State"]["ExitCode"] == code
    assert c.status == "created"


# --------------------------------------------------------------------------------------- lifecycle
def test_stop_start_keeps_files(client, image, cleanup):
    """The book's "percy": write a file, stop, start, the file is still there."""
    c = run_bg(client, image, cleanup, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"], name="percy")
    wait_status(c, "running")
    assert c.exec_run(["sh", "-c", "echo 'sysadmins FTW' > /tmp/newfile"]).exit_code == 0
    t0 = time.monotonic()
    c.stop()
    assert time.monotonic() - t0 < 8
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 0
    assert c.attrs["State"]["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert client.api.stop(c.id) is None  # already stopped: 304, not an error
    c.start()
    wait_status(c, "running")
    assert c.exec_run(["cat", "/tmp/newfile"]).output == b"sysadmins FTW\n"


def test_stop_escalates_to_sigkill(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    wait_status(c, "running")
    t0 = time.monotonic()
    c.stop(timeout=1)
    elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 8
    c.reload()
    assert c.attrs["State"]["ExitCode"] == 137


def test_kill_with_signal_and_not_running(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "trap 'exit 42' USR1; while :; do sleep 0.1; done"])
    wait_status(c, "running")
    c.kill(signal="SIGUSR1")
    assert c.wait(timeout=10)["StatusCode"] == 42
    with pytest.raises(docker.errors.APIError) as info:
        c.kill()
    assert info.value.status_code == 409
    assert f"Container {c.id} is not running" in str(info.value)


def test_wait_conditions(client, image, cleanup):
    c = client.containers.create(image, ["sh", "-c", "exit 7"])
    cleanup.append(c)
    assert c.wait(condition="not-running")["StatusCode"] == 0  # created: at once
    c.start()
    assert c.wait(condition="not-running", timeout=10)["StatusCode"] == 7
    assert c.wait(timeout=10) == {"StatusCode": 7, "Error": None}


def test_wait_next_exit_registered_before_start(env, client, image, cleanup):
    c = client.containers.create(image, ["sh", "-c", "sleep 0.2; exit 5"])
    cleanup.append(c)
    raw = Raw(env)
    status, _, _ = raw.request("POST", f"/v1.47/containers/{c.id}/wait?condition=next-exit")
    assert status == 200  # headers come at once: the wait is registered
    c.start()
    raw.sock.settimeout(10)
    data = b""
    while b"StatusCode" not in data:
        data += raw.sock.recv(4096)
    raw.close()
    assert b'"StatusCode": 5' in data


def test_rm_running_needs_force(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sleep", "30"])
    wait_status(c, "running")
    with pytest.raises(docker.errors.APIError) as info:
        c.remove()
    assert info.value.status_code == 409
    assert (f"You cannot remove a running container {c.id}. Stop the container before attempting removal or "
            "force remove") in str(info.value)
    c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_pause_unpause(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sleep", "30"])
    wait_status(c, "running")
    c.pause()
    c.reload()
    assert c.status == "paused" and c.attrs["State"]["Paused"] and c.attrs["State"]["Running"]
    with pytest.raises(docker.errors.APIError) as info:
        c.exec_run(["true"])
    assert info.value.status_code == 409
    c.unpause()
    wait_status(c, "running")
    assert c.exec_run(["true"]).exit_code == 0


def test_restart_and_rename(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"],
               name="old-name")
    wait_status(c, "running")
    pid = client.api.inspect_container(c.id)["State"]["Pid"]
    c.restart(timeout=5)
    wait_status(c, "running")
    assert client.api.inspect_container(c.id)["State"]["Pid"] != pid
    c.rename("new-name")
    assert client.containers.get("new-name").id == c.id
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("old-name")


def test_auto_remove(client, image):
    c = client.containers.run(image, ["true"], detach=True, auto_remove=True)
    wait_for(lambda: not any(x.id == c.id for x in client.containers.list(all=True, ignore_removed=True)),
             what="auto removal")


def test_restart_policy_on_failure_counts(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "exit 3"], restart_policy={"Name": "on-failure",
                                                                               "MaximumRetryCount": 2})
    wait_for(lambda: (c.reload(), c.attrs["RestartCount"] == 2 and c.status == "exited")[1], timeout=20,
             what="two restarts")
    assert c.attrs["State"]["ExitCode"] == 3


def test_restart_policy_always_and_stop(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "sleep 0.3; exit 0"], restart_policy={"Name": "always"})
    wait_for(lambda: (c.reload(), c.attrs["RestartCount"] >= 2)[1], timeout=20, what="restarts")
    c.stop(timeout=2)
    c.reload()
    count = c.attrs["RestartCount"]
    assert c.status == "exited"
    time.sleep(1)
    c.reload()
    assert c.status == "exited" and c.attrs["RestartCount"] == count


def test_rm_refused_auto_remove_with_restart_policy(client, image):
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.create(image, ["true"], auto_remove=True, restart_policy={"Name": "always"})
    assert info.value.status_code == 400
    assert "can't create 'AutoRemove' container with restart policy" in str(info.value)


# --------------------------------------------------------------------------------------- logs
def test_logs_streams_timestamps_tail_since(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three"])
    assert c.wait(timeout=10)["StatusCode"] == 0
    assert c.logs() == b"one\ntwo\nthree\n"
    assert c.logs(stdout=True, stderr=False) == b"one\nthree\n"
    assert c.logs(stdout=False, stderr=True) == b"two\n"
    assert c.logs(tail=1) == b"three\n"
    assert c.logs(tail=0) == b""
    stamped = c.logs(timestamps=True).decode().splitlines()
    assert len(stamped) == 3
    ts, _, text = stamped[0].partition(" ")
    assert text == "one" and len(ts) == len("2024-01-01T00:00:00.000000000Z") and ts.endswith("Z")
    assert c.logs(since=int(time.time()) + 60) == b""
    assert c.logs(until=1) == b""


def test_logs_follow_until_exit(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"])
    got = b"".join(c.logs(stream=True, follow=True))
    assert got == b"line1\nline2\nline3\n"


def test_logs_tty_are_raw(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "echo hi"], tty=True)
    c.wait(timeout=10)
    assert c.logs() == b"hi\r\n"


# --------------------------------------------------------------------------------------- attach
def test_attach_multiplexed_stdin_and_detach(env, client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "while read l; do echo got:$l; echo err:$l >&2; done"],
               stdin_open=True)
    wait_status(c, "running")
    raw = Raw(env)
    status, headers, _ = raw.request(
        "POST", f"/v1.47/containers/{c.id}/attach?stream=1&stdin=1&stdout=1&stderr=1",
        headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert status == 101
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    raw.sock.sendall(b"hello\n")
    frames = {raw.frame(), raw.frame()}
    assert frames == {(1, b"got:hello\n"), (2, b"err:hello\n")}
    raw.sock.sendall(b"\x10")
    time.sleep(0.2)
    raw.sock.sendall(b"\x11")  # ctrl-p ctrl-q: detached, the connection closes
    assert raw.read_until_closed() == b""
    raw.close()
    c.reload()
    assert c.status == "running"
    assert c.exec_run(["true"]).exit_code == 0


def test_attach_before_start_sees_all_output(env, client, image, cleanup):
    c = client.containers.create(image, ["sh", "-c", "echo first; echo second"])
    cleanup.append(c)
    raw = Raw(env)
    status, _, _ = raw.request("POST", f"/v1.47/containers/{c.id}/attach?stream=1&stdout=1&stderr=1",
                               headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert status == 101
    c.start()
    out = b""
    try:
        while True:
            kind, data = raw.frame()
            assert kind == 1
            out += data
    except EOFError:
        pass
    raw.close()
    assert out == b"first\nsecond\n"


def test_attach_tty_is_raw_and_logs_replay(env, client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "echo ready; read x; echo bye:$x"], tty=True, stdin_open=True)
    wait_for(lambda: b"ready" in c.logs(), what="output")
    raw = Raw(env)
    status, headers, _ = raw.request(
        "POST", f"/v1.47/containers/{c.id}/attach?logs=1&stream=1&stdin=1&stdout=1&stderr=1",
        headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert status == 101 and headers["content-type"] == "application/vnd.docker.raw-stream"
    raw.sock.sendall(b"abc\r")
    out = raw.read_until_closed()
    raw.close()
    assert out.startswith(b"ready\r\n")
    assert b"bye:abc" in out


def test_attach_stdin_once_closes_stdin(env, client, image, cleanup):
    cid = create_raw(client, {"Image": image, "Cmd": ["cat"], "OpenStdin": True, "StdinOnce": True})["Id"]
    c = client.containers.get(cid)
    cleanup.append(c)
    raw = Raw(env)
    raw.request("POST", f"/v1.47/containers/{c.id}/attach?stream=1&stdin=1&stdout=1&stderr=1",
                headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    c.start()
    raw.sock.sendall(b"piped data\x10\x11 and more\n")  # in one read: not a detach without a tty
    raw.sock.shutdown(socket.SHUT_WR)
    out = raw.payloads_until_closed()
    raw.close()
    assert out == b"piped data\x10\x11 and more\n"
    assert c.wait(timeout=10)["StatusCode"] == 0


def test_docker_sdk_attach_socket(client, image, cleanup):
    # The output starts after the attach: docker-py reads an upgraded connection from below its
    # own buffer, so bytes that arrive together with the 101 head are lost to it (whatever the
    # daemon).  The replay of the log is checked on a raw connection below.
    c = run_bg(client, image, cleanup, ["sh", "-c", "sleep 2; for i in 1 2 3; do echo n$i; sleep 0.2; done"])
    out = b"".join(c.attach(stream=True, logs=True))
    assert out == b"n1\nn2\nn3\n"


def test_attach_replays_the_log_then_streams_live(env, client, image, cleanup):
    import socket as socketlib

    c = run_bg(client, image, cleanup, ["sh", "-c", "echo n1; echo e1 >&2; sleep 1; echo n2"])
    deadline = time.monotonic() + 10
    while b"e1" not in c.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    s = socketlib.socket(socketlib.AF_UNIX)
    s.settimeout(20)
    s.connect(str(env.socket))
    s.sendall(f"POST /v1.47/containers/{c.id}/attach?logs=1&stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
              "Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    frames = []
    while body:
        size = int.from_bytes(body[4:8], "big")
        frames.append((body[0], body[8:8 + size]))
        body = body[8 + size:]
    assert frames == [(1, b"n1\n"), (2, b"e1\n"), (1, b"n2\n")]


# --------------------------------------------------------------------------------------- exec
def test_exec_run_output_codes_env_user_workdir(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sleep", "60"], environment={"FROM_CTR": "1"})
    wait_status(c, "running")
    r = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r.exit_code == 3 and r.output == b"out\nerr\n"
    r = c.exec_run(["sh", "-c", "echo $FROM_CTR $EXTRA $HOME; id -u; pwd"], environment={"EXTRA": "x"},
                   user="app", workdir="/tmp")
    assert r.output.decode().split() == ["1", "x", "/home/app", "1000", "/tmp"]
    r = c.exec_run(["sh", "-c", "echo $TERM"], tty=True)
    assert r.output.strip() == b"xterm"
    out, err = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True).output
    assert out == b"o\n" and err == b"e\n"


def test_exec_errors_and_inspect(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    r = c.exec_run(["no-such-thing"])
    assert r.exit_code == 127
    assert b"executable file not found" in r.output
    r = c.exec_run(["/etc/passwd"])
    assert r.exit_code == 126
    exec_id = client.api.exec_create(c.id, ["sh", "-c", "exit 4"])["Id"]
    client.api.exec_start(exec_id)
    info = client.api.exec_inspect(exec_id)
    assert info["ExitCode"] == 4 and info["Running"] is False and info["ContainerID"] == c.id
    assert info["ProcessConfig"]["entrypoint"] == "sh"
    with pytest.raises(docker.errors.NotFound):
        client.api.exec_inspect("nope")
    created = client.containers.create(image, ["true"])
    cleanup.append(created)
    with pytest.raises(docker.errors.APIError) as info2:
        created.exec_run(["true"])
    assert info2.value.status_code == 409


def test_exec_detached_and_stdin(env, client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    exec_id = client.api.exec_create(c.id, ["sh", "-c", "echo detached > /tmp/d"])["Id"]
    client.api.exec_start(exec_id, detach=True)
    wait_for(lambda: client.api.exec_inspect(exec_id)["ExitCode"] == 0, what="detached exec")
    assert c.exec_run(["cat", "/tmp/d"]).output == b"detached\n"
    exec_id = client.api.exec_create(c.id, ["cat"], stdin=True)["Id"]
    raw = Raw(env)
    status, _, _ = raw.request("POST", f"/v1.47/exec/{exec_id}/start", body=b'{"Detach": false, "Tty": false}',
                               headers={"Connection": "Upgrade", "Upgrade": "tcp",
                                        "Content-Type": "application/json"})
    assert status == 101
    raw.sock.sendall(b"via exec\n")
    raw.sock.shutdown(socket.SHUT_WR)
    out = raw.payloads_until_closed()
    raw.close()
    assert out == b"via exec\n"


# --------------------------------------------------------------------------------------- ps
def test_ps_all_filters_limit(client, image, cleanup, test_images):
    a = run_bg(client, image, cleanup, ["sleep", "60"], name="ps-a", labels={"tier": "web"})
    b = client.containers.create(image, ["true"], name="ps-b", labels={"tier": "db"})
    cleanup.append(b)
    d = run_bg(client, image, cleanup, ["sh", "-c", "exit 9"], name="ps-d")
    d.wait(timeout=10)
    wait_status(a, "running")
    running = {c.name for c in client.containers.list()}
    assert "ps-a" in running and "ps-b" not in running and "ps-d" not in running
    every = {c.name for c in client.containers.list(all=True)}
    assert {"ps-a", "ps-b", "ps-d"} <= every
    assert [c.name for c in client.containers.list(filters={"name": "ps-b"}, all=True)] == ["ps-b"]
    assert [c.name for c in client.containers.list(filters={"label": "tier=web"})] == ["ps-a"]
    assert {c.name for c in client.containers.list(filters={"label": "tier"}, all=True)} == {"ps-a", "ps-b"}
    assert [c.name for c in client.containers.list(filters={"status": "created", "name": "ps-"})] == ["ps-b"]
    assert [c.name for c in client.containers.list(filters={"exited": "9", "name": "ps-"})] == ["ps-d"]
    assert [c.name for c in client.containers.list(filters={"id": a.id[:12]})] == ["ps-a"]
    ancestor = {c.name for c in client.containers.list(all=True, filters={"ancestor": image})}
    assert {"ps-a", "ps-b", "ps-d"} <= ancestor
    assert client.containers.list(all=True, filters={"ancestor": "sha256:" + "0" * 64}) == []
    assert [c.name for c in client.containers.list(limit=1)] == ["ps-d"]
    since = {c.name for c in client.containers.list(all=True, filters={"since": "ps-a"})}
    assert {"ps-b", "ps-d"} <= since and "ps-a" not in since
    before = {c.name for c in client.containers.list(all=True, filters={"before": "ps-b"})}
    assert "ps-a" in before and "ps-b" not in before and "ps-d" not in before
    rows = client.api.containers(all=True, filters={"name": "ps-"}, size=True)
    by_name = {r["Names"][0]: r for r in rows}
    assert by_name["/ps-a"]["State"] == "running" and by_name["/ps-a"]["Status"].startswith("Up ")
    assert by_name["/ps-b"]["Status"] == "Created"
    assert by_name["/ps-d"]["Status"].startswith("Exited (9) ")
    assert by_name["/ps-a"]["Image"] == image and by_name["/ps-a"]["ImageID"] == test_images["busybox:latest"].config_digest
    assert by_name["/ps-a"]["Command"] == "sleep 60"
    assert "SizeRw" in by_name["/ps-a"]
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.list(filters={"bogus": "x"})
    assert info.value.status_code == 400


def test_info_counters(client, image, cleanup):
    run = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(run, "running")
    info = client.info()
    assert info["Containers"] >= 1 and info["ContainersRunning"] >= 1
    assert info["Containers"] == info["ContainersRunning"] + info["ContainersPaused"] + info["ContainersStopped"]


def test_top_and_stats(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "sleep 60 & wait"])
    wait_status(c, "running")
    wait_for(lambda: len(c.top()["Processes"]) == 2, what="two processes")
    top = c.top()
    assert top["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    cmds = sorted(p[-1] for p in top["Processes"])
    assert cmds == ["sh -c sleep 60 & wait", "sleep 60"]
    assert all(p[0] == "root" for p in top["Processes"])
    aux = c.top(ps_args="aux")
    assert "PID" in aux["Titles"] and len(aux["Processes"]) == 2
    stats = c.stats(stream=False)
    assert stats["id"] == c.id and stats["name"] == "/" + c.name
    assert stats["memory_stats"].get("usage", 0) > 0
    assert stats["pids_stats"].get("current") == 2
    assert stats["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    stream = c.stats(stream=True, decode=True)
    first = next(stream)
    assert first["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    stream.close()


# --------------------------------------------------------------------------------------- volumes
def test_named_volume_outlives_containers(env, client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "echo kept > /data/file"], volumes={"keepme": {"bind": "/data"}})
    assert c.wait(timeout=10)["StatusCode"] == 0
    info = client.api.inspect_container(c.id)
    mount = info["Mounts"][0]
    assert mount["Type"] == "volume" and mount["Name"] == "keepme" and mount["Destination"] == "/data"
    assert mount["Source"] == str(env.data_root / "volumes" / "keepme" / "_data") and mount["RW"] is True
    c.remove(v=True)
    vol = client.volumes.get("keepme")
    assert vol.attrs["Mountpoint"] == str(env.data_root / "volumes" / "keepme" / "_data")
    out = client.containers.run(image, ["cat", "/data/file"], volumes={"keepme": {"bind": "/data", "mode": "ro"}},
                                remove=True)
    assert out == b"kept\n"
    user = run_bg(client, image, cleanup, ["sleep", "60"], volumes={"keepme": {"bind": "/data"}})
    with pytest.raises(docker.errors.APIError) as info2:
        vol.remove()
    assert info2.value.status_code == 409
    assert f"remove keepme: volume is in use - [{user.id}]" in str(info2.value)
    user.remove(force=True)
    vol.remove()
    with pytest.raises(docker.errors.NotFound) as info3:
        client.volumes.get("keepme")
    assert "get keepme: no such volume" in str(info3.value)


def test_volume_read_only_and_copy_up(client, image, cleanup):
    out = client.containers.run(image, ["sh", "-c", "ls /data; touch /data/x || echo refused"],
                                volumes={"copyup": {"bind": "/data", "mode": "ro"}}, remove=True)
    assert out == b"refused\n"
    out = client.containers.run(image, ["ls", "/etc-copy"], volumes={"etcvol": {"bind": "/etc"}}, remove=True,
                                entrypoint=["sh", "-c", "ls /etc"])
    assert b"passwd" in out  # the image's /etc was copied into the new, empty volume
    client.volumes.get("etcvol").remove()
    client.volumes.get("copyup").remove()


def test_anonymous_volume_removed_with_rm_v(client, image, cleanup):
    c = client.containers.create(image, ["true"], volumes=["/scratch"])
    info = client.api.inspect_container(c.id)
    name = info["Mounts"][0]["Name"]
    assert len(name) == 64 and info["Mounts"][0]["Destination"] == "/scratch"
    vol = client.volumes.get(name)
    assert "com.docker.volume.anonymous" in vol.attrs["Labels"]
    c.remove(v=True)
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(name)


def test_bind_mounts_tmpfs_read_only_rootfs(client, image, cleanup, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    out = client.containers.run(image, ["sh", "-c", "cat /h/in.txt; echo out > /h/out.txt; touch /ro/x || echo ro-refused"],
                                volumes={str(tmp_path): {"bind": "/h", "mode": "rw"},
                                         str(tmp_path / "ro"): {"bind": "/ro", "mode": "ro"}}, remove=True)
    assert out == b"from host\nro-refused\n"
    assert (tmp_path / "out.txt").read_text() == "out\n"
    assert (tmp_path / "ro").is_dir()  # -v creates a missing host directory
    out = client.containers.run(image, ["sh", "-c", "grep ' /run ' /proc/mounts; touch /etc/x || echo rofs; touch /run/ok && echo tmpfs-ok"],
                                tmpfs={"/run": "size=1m"}, read_only=True, remove=True)
    assert b"tmpfs /run tmpfs" in out and b"rofs" in out and b"tmpfs-ok" in out
    mount = docker.types.Mount("/m", str(tmp_path), type="bind", read_only=True)
    out = client.containers.run(image, ["cat", "/m/in.txt"], mounts=[mount], remove=True)
    assert out == b"from host\n"
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.create(image, ["true"], mounts=[docker.types.Mount("/m", "/no/such/dir", type="bind")])
    assert info.value.status_code == 400
    assert "bind source path does not exist: /no/such/dir" in str(info.value)
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.create(image, ["true"], volumes={"bad/name": {"bind": "/x"}})
    assert info.value.status_code == 400


def test_volume_api(client, image, cleanup):
    v = client.volumes.create("apivol", labels={"team": "a"})
    assert v.attrs["Driver"] == "local" and v.attrs["Labels"] == {"team": "a"} and v.attrs["Scope"] == "local"
    assert client.volumes.create("apivol").id == "apivol"  # idempotent
    assert "apivol" in [x.name for x in client.volumes.list()]
    assert [x.name for x in client.volumes.list(filters={"label": "team=a"})] == ["apivol"]
    assert [x.name for x in client.volumes.list(filters={"name": "apivo"})] == ["apivol"]
    with pytest.raises(docker.errors.APIError) as info:
        client.volumes.create("bad/name")
    assert info.value.status_code == 400
    anon = client.volumes.create()
    assert len(anon.name) == 64
    assert "apivol" in [x.name for x in client.volumes.list(filters={"dangling": "true"})]
    pruned = client.volumes.prune()
    assert anon.name in (pruned["VolumesDeleted"] or []) and "apivol" not in (pruned["VolumesDeleted"] or [])
    pruned = client.volumes.prune(filters={"all": "true", "label": "team=a"})
    assert pruned["VolumesDeleted"] == ["apivol"]


# --------------------------------------------------------------------------------------- cp
def test_archive_round_trip_and_stat(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    archive = tar_of("dir/file.txt", b"copied in\n", uid=1000, gid=1000, mode=0o640)
    assert c.put_archive("/tmp", archive)
    r = c.exec_run(["stat", "-c", "%u:%g %a %s", "/tmp/dir/file.txt"])
    assert r.output.strip() == b"1000:1000 640 10"
    stream, st = c.get_archive("/tmp/dir/file.txt")
    assert st["name"] == "file.txt" and st["size"] == 10 and st["mode"] == 0o640
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    assert tar.getnames() == ["file.txt"] and tar.extractfile("file.txt").read() == b"copied in\n"
    stream, st = c.get_archive("/tmp/dir")
    assert st["mode"] & (1 << 31)  # Go's ModeDir
    names = tarfile.open(fileobj=io.BytesIO(b"".join(stream))).getnames()
    assert names == ["dir", "dir/file.txt"]
    with pytest.raises(docker.errors.NotFound) as info:
        c.get_archive("/no/such/path")
    assert f"Could not find the file /no/such/path in container {c.name}" in str(info.value)
    with pytest.raises(docker.errors.APIError) as info:
        c.put_archive("/etc/passwd", archive)
    assert info.value.status_code == 400 and "not a directory" in str(info.value)


def test_detach_keys_are_read_as_docker_reads_them(client, image, cleanup):
    """core.detachkeys, as moby/term: lower-case ``ctrl-<key>``, single characters, ``DEL``; no
    spaces, no ``Ctrl-P`` — refused with docker's 400 at exec create, attach and start."""
    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    url = client.api._url("/containers/{0}/exec", c.id)
    assert client.api._post_json(url, data={"Cmd": ["true"], "DetachKeys": "ctrl-a,x,DEL"}).status_code == 201
    for bad in ("ctrl-P", " ctrl-p", "Ctrl-p,ctrl-q"):
        res = client.api._post_json(url, data={"Cmd": ["true"], "DetachKeys": bad})
        assert res.status_code == 400 and f"Invalid detach keys ({bad}) provided" in res.json()["message"]
    res = client.api._post(client.api._url("/containers/{0}/attach", c.id),
                           params={"stream": 0, "stdout": 1, "detachKeys": "CTRL-Q"})
    assert res.status_code == 400 and "Invalid detach keys (CTRL-Q) provided" in res.json()["message"]


def test_archive_upload_of_any_size_streams(client, image, cleanup):
    """PUT /archive reads the body as it arrives: over the 16 MiB other requests may have, with
    Content-Length (the SDK given bytes) or chunked (given a generator, as docker cp sends)."""
    import hashlib

    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    payload = hashlib.sha256(b"seed").digest() * (40 * 1024 * 1024 // 32)   # 40 MiB
    data = tar_of("big.bin", payload)
    want = hashlib.md5(payload).hexdigest()
    assert c.put_archive("/tmp", data)
    assert c.exec_run(["md5sum", "/tmp/big.bin"]).output.split()[0].decode() == want
    assert c.put_archive("/", (data[i:i + 1_000_003] for i in range(0, len(data), 1_000_003)))
    assert c.exec_run(["md5sum", "/big.bin"]).output.split()[0].decode() == want
    # refused before it is read (no such path): the answer still arrives, the daemon goes on
    with pytest.raises(docker.errors.NotFound):
        c.put_archive("/no/such/dir", data)
    assert client.ping()


def test_refused_upload_leaves_the_connection_usable(env, client, image, cleanup):
    """Refused before its body was read (a hostile entry first): the rest is drained and the
    same keep-alive connection serves the next request (the SDK reuses it at once)."""
    import socket as socketlib

    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    body = tar_of("../escape")
    s = socketlib.socket(socketlib.AF_UNIX)
    s.settimeout(20)
    s.connect(str(env.socket))
    s.sendall(f"PUT /v1.47/containers/{c.id}/archive?path=/tmp HTTP/1.1\r\nHost: x\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    first = b""
    while b"\r\n\r\n" not in first:
        first += s.recv(65536)
    assert first.startswith(b"HTTP/1.1 400") and b"connection: close" not in first.lower(), first
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    second = b""
    while b"OK" not in second:
        chunk = s.recv(65536)
        assert chunk, (first, second)
        second += chunk
    s.close()
    assert b"HTTP/1.1 200" in second


def test_archive_upload_cut_short(env, client, image, cleanup):
    """A client that goes away in the middle of an upload: a clear error for it, the daemon
    carries on, what arrived is extracted no further."""
    import socket as socketlib

    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    s = socketlib.socket(socketlib.AF_UNIX)
    s.settimeout(20)
    s.connect(str(env.socket))
    head = tarfile.TarInfo("partial.bin")
    head.size = 5_000_000
    s.sendall(f"PUT /v1.47/containers/{c.id}/archive?path=/tmp HTTP/1.1\r\nHost: x\r\n"
              "Content-Length: 10000000\r\n\r\n".encode() + head.tobuf() + b"x" * 100_000)
    s.shutdown(socketlib.SHUT_WR)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 400") and b"ended early" in answer, answer[:300]
    assert client.ping() and c.exec_run(["true"]).exit_code == 0


def test_archive_symlinks_stay_inside(client, image, cleanup, tmp_path):
    c = run_bg(client, image, cleanup, ["sleep", "60"])
    wait_status(c, "running")
    assert c.exec_run(["sh", "-c", "ln -s / /tmp/rootlink; ln -s ../../../../../../etc /tmp/up; "
                                   "echo inside > /etc/marker"]).exit_code == 0
    # a symlink on the way resolves inside the container, never to the host's files
    stream, st = c.get_archive("/tmp/up/marker")
    data = tarfile.open(fileobj=io.BytesIO(b"".join(stream))).extractfile("marker").read()
    assert data == b"inside\n"
    stream, st = c.get_archive("/tmp/rootlink")  # the link itself, not what it points to
    assert st["linkTarget"] == "/" and st["mode"] & (1 << 27)
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    assert tar.getmember("rootlink").issym()
    # extraction through a symlinked directory lands inside the container
    assert c.put_archive("/tmp/up", tar_of("planted", b"abc"))
    assert c.exec_run(["cat", "/etc/planted"]).output == b"abc"
    assert not Path("/etc/planted").exists()
    # hostile archive entries are refused
    for name, kind, link in (("../escape", tarfile.REGTYPE, ""), ("/abs", tarfile.REGTYPE, ""),
                             ("rootlink/etc/evil", tarfile.REGTYPE, "")):
        with pytest.raises(docker.errors.APIError):
            c.put_archive("/tmp", tar_of(name, type=kind, linkname=link))
    assert not Path("/etc/evil").exists()


def test_archive_of_stopped_container_and_export(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "echo stopped > /made-here"])
    c.wait(timeout=10)
    stream, st = c.get_archive("/made-here")
    assert tarfile.open(fileobj=io.BytesIO(b"".join(stream))).extractfile("made-here").read() == b"stopped\n"
    assert c.put_archive("/", tar_of("into-stopped", b"ok"))
    names = tarfile.open(fileobj=io.BytesIO(b"".join(c.export()))).getnames()
    assert "made-here" in names and "into-stopped" in names and "bin/busybox" in names
    c.start()
    c.wait(timeout=10)
    stream, _ = c.get_archive("/into-stopped")  # what was put while it was stopped is still there
    assert tarfile.open(fileobj=io.BytesIO(b"".join(stream))).extractfile("into-stopped").read() == b"ok"


# --------------------------------------------------------------------------------------- events, images
def test_events_of_a_lifecycle(client, image):
    since = time.time() - 1
    c = client.containers.create(image, ["sh", "-c", "exit 2"], name="evented")
    c.start()
    c.wait(timeout=10)
    c.rename("evented2")
    c.remove()
    until = time.time() + 1
    events = [e for e in client.events(since=since, until=until, decode=True,
                                       filters={"type": "container"}) if e["Actor"]["ID"] == c.id]
    actions = [e["Action"] for e in events]
    assert actions[:2] == ["create", "start"] and "die" in actions and actions[-1] == "destroy"
    die = next(e for e in events if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "2" and die["Actor"]["Attributes"]["image"] == image
    rename = next(e for e in events if e["Action"] == "rename")
    assert rename["Actor"]["Attributes"]["oldName"] == "/evented"


def test_rmi_refuses_an_image_in_use(client, image, cleanup, test_images):
    c = client.containers.create(image, ["true"])
    cleanup.append(c)
    short = test_images["busybox:latest"].config_digest.split(":")[1][:12]
    with pytest.raises(docker.errors.APIError) as info:
        client.images.remove(short)
    assert info.value.status_code == 409
    assert f"image is being used by stopped container {c.id[:12]}" in str(info.value)


# --------------------------------------------------------------------------------------- persistence
def _kill_daemon(env: CoreEnv) -> None:
    pid = int((env.exec_root / "core.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    for proc in env.procs:
        if proc.pid == pid:
            proc.wait(timeout=10)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or
             Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z", what="daemon gone")
    env.pids.discard(pid)


def test_daemon_sigkill_keeps_containers_running(core_env, test_images):
    env = core_env
    env.start_daemon()
    pull(env, test_images["busybox:latest"].reference)
    image = test_images["busybox:latest"].reference
    client = env.docker_client()
    ticker = client.containers.run(image, ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.05; done"],
                                   detach=True, name="ticker")
    cat = client.containers.run(image, ["cat"], detach=True, stdin_open=True, name="catter")
    client.containers.create(image, ["true"], name="never-started")
    wait_status(ticker, "running")
    wait_status(cat, "running")
    pid = client.api.inspect_container(ticker.id)["State"]["Pid"]
    client.close()
    _kill_daemon(env)
    time.sleep(0.5)  # the container keeps writing its log meanwhile
    assert Path(f"/proc/{pid}").exists()
    env.start_daemon()
    client = env.docker_client()
    try:
        by_name = {c.name: c for c in client.containers.list(all=True)}
        assert by_name["ticker"].status == "running" and by_name["catter"].status == "running"
        assert by_name["never-started"].status == "created"
        assert client.api.inspect_container("ticker")["State"]["Pid"] == pid
        # no log line lost: the shim wrote them while no daemon ran
        lines = client.containers.get("ticker").logs().decode().split()
        numbers = [int(x[4:]) for x in lines]
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 10
        follow = client.api.logs("ticker", stream=True, follow=True, tail=1)
        first = next(iter(follow))
        assert first.startswith(b"tick")
        follow.close()
        # exec, attach and stop work on the re-adopted containers
        assert client.containers.get("ticker").exec_run(["echo", "still here"]).output == b"still here\n"
        raw = Raw(env)
        raw.request("POST", "/v1.47/containers/catter/attach?stream=1&stdin=1&stdout=1",
                    headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        raw.sock.sendall(b"ping\n")
        assert raw.frame() == (1, b"ping\n")
        raw.close()
        t0 = time.monotonic()
        client.containers.get("ticker").stop(timeout=2)
        assert time.monotonic() - t0 < 8
        info = client.api.inspect_container("ticker")
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] in (137, 143)
        client.containers.get("catter").remove(force=True)
        client.containers.get("ticker").remove()
        client.containers.get("never-started").remove()
    finally:
        client.close()


def test_exit_while_daemon_is_down_is_recorded(core_env, test_images):
    env = core_env
    env.start_daemon()
    image = test_images["busybox:latest"].reference
    pull(env, image)
    client = env.docker_client()
    c = client.containers.run(image, ["sh", "-c", "sleep 1; exit 6"], detach=True)
    wait_status(c, "running")
    client.close()
    _kill_daemon(env)
    time.sleep(2)
    env.start_daemon()
    client = env.docker_client()
    try:
        info = client.api.inspect_container(c.id)
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 6
        assert info["State"]["FinishedAt"] != "0001-01-01T00:00:00Z"
        client.containers.get(c.id).remove()
    finally:
        client.close()


def _simulate_reboot(env: CoreEnv) -> None:
    """What a reboot does to core's containers: every shim and container process gone, the
    runtime directory (the exec root, a tmpfs on a real host) empty, no mounts."""
    from tests.conftest import unmount_under

    _kill_daemon(env)
    state = env.exec_root / "executor" / "container"
    pids = []
    for d in state.glob("*"):
        for name in ("shim.pid", "init.pid"):
            try:
                pids.append(int((d / name).read_text()))
            except (OSError, ValueError):
                pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: all(not Path(f"/proc/{p}").exists() or
                         Path(f"/proc/{p}/stat").read_text().split(") ")[1][0] == "Z" for p in pids),
             what="container processes gone")
    time.sleep(0.3)
    unmount_under(env.data_root / "containers")
    import shutil

    shutil.rmtree(env.exec_root / "executor", ignore_errors=True)


def test_restart_policies_after_reboot(core_env, test_images):
    env = core_env
    env.start_daemon()
    image = test_images["busybox:latest"].reference
    pull(env, image)
    client = env.docker_client()
    cmd = ["sleep", "300"]
    always = client.containers.run(image, cmd, detach=True, name="always", restart_policy={"Name": "always"})
    unless = client.containers.run(image, cmd, detach=True, name="unless", restart_policy={"Name": "unless-stopped"})
    unless_stopped = client.containers.run(image, cmd, detach=True, name="unless-stopped-by-hand",
                                           restart_policy={"Name": "unless-stopped"})
    plain = client.containers.run(image, cmd, detach=True, name="plain")
    for c in (always, unless, unless_stopped, plain):
        wait_status(c, "running")
    unless_stopped.stop(timeout=1)
    client.close()
    _simulate_reboot(env)
    env.start_daemon()
    client = env.docker_client()
    try:
        wait_for(lambda: {c.name for c in client.containers.list()} == {"always", "unless"}, timeout=20,
                 what="always and unless-stopped back")
        plain_info = client.api.inspect_container("plain")
        assert plain_info["State"]["Status"] == "exited" and plain_info["State"]["ExitCode"] == 255
        assert client.containers.get("always").exec_run(["true"]).exit_code == 0
        for c in client.containers.list(all=True):
            c.remove(force=True)
    finally:
        client.close()


def test_vfs_storage_driver(core_env, test_images):
    env = core_env
    env.start_daemon("--driver", "storage=vfs")
    image = test_images["busybox:latest"].reference
    pull(env, image)
    client = env.docker_client()
    try:
        c = client.containers.run(image, ["sh", "-c", "echo vfs > /f; cat /f"], detach=True)
        assert c.wait(timeout=15)["StatusCode"] == 0
        assert c.logs() == b"vfs\n"
        assert client.api.inspect_container(c.id)["Driver"] == "vfs"
        c.start()
        c.wait(timeout=15)
        assert c.logs() == b"vfs\nvfs\n"
        c.remove()
        assert not list((env.data_root / "containers").iterdir())
    finally:
        client.close()


# --------------------------------------------------------------------------------------- docker CLI
DOCKER = "/usr/local/bin/docker"


@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="the docker CLI is not installed")
def test_docker_cli(env, image):
    def docker_cli(*args, input=None):
        return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=60, input=input,
                              env={**env.env, "DOCKER_CONFIG": str(env.root / "docker-cli")})

    p = docker_cli("run", "--rm", image, "echo", "from the docker cli")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "from the docker cli\n"
    p = docker_cli("run", "--rm", "-i", image, "cat", input="piped through\n")
    assert p.returncode == 0 and p.stdout == "piped through\n", p.stderr
    p = docker_cli("run", "--rm", image, "sh", "-c", "exit 13")
    assert p.returncode == 13
    p = docker_cli("run", "--rm", image, "no-such-binary")
    assert p.returncode == 127, (p.stdout, p.stderr)
    assert "executable file not found" in p.stderr
    p = docker_cli("run", "--rm", image, "/etc/passwd")
    assert p.returncode == 126, (p.stdout, p.stderr)
    p = docker_cli("run", "-d", "--name", "cli-box", image, "sleep", "60")
    assert p.returncode == 0, p.stderr
    try:
        cid = p.stdout.strip()
        ps = docker_cli("ps", "--filter", "name=cli-box", "--format", "{{.ID}} {{.Names}} {{.Status}}")
        assert ps.stdout.split()[:3] == [cid[:12], "cli-box", "Up"], ps.stdout
        p = docker_cli("exec", "cli-box", "sh", "-c", "echo exec ok; exit 3")
        assert p.returncode == 3 and p.stdout == "exec ok\n"
        p = docker_cli("exec", "cli-box", "nope")
        assert p.returncode == 127
        p = docker_cli("inspect", "--format", "{{.State.Status}} {{.Name}}", "cli-box")
        assert p.stdout.strip() == "running /cli-box"
        p = docker_cli("cp", "cli-box:/etc/passwd", str(env.root / "passwd-copy"))
        assert p.returncode == 0, p.stderr
        assert "root:" in (env.root / "passwd-copy").read_text()
        (env.root / "to-copy.txt").write_text("cp in\n")
        p = docker_cli("cp", str(env.root / "to-copy.txt"), "cli-box:/tmp/")
        assert p.returncode == 0, p.stderr
        assert docker_cli("exec", "cli-box", "cat", "/tmp/to-copy.txt").stdout == "cp in\n"
        big = env.root / "big.bin"   # past any request-size limit, streamed by the docker CLI
        with open(big, "wb") as f:
            for i in range(24):
                f.write(bytes([i]) * (1 << 20))
        p = docker_cli("cp", str(big), "cli-box:/tmp/")
        assert p.returncode == 0, p.stderr
        import hashlib

        want = hashlib.md5(big.read_bytes()).hexdigest()
        assert docker_cli("exec", "cli-box", "md5sum", "/tmp/big.bin").stdout.split()[0] == want
        p = docker_cli("top", "cli-box")
        assert "sleep 60" in p.stdout
        p = docker_cli("rm", "cli-box")
        assert p.returncode != 0 and "You cannot remove a running container" in p.stderr
        p = docker_cli("stop", "-t", "1", "cli-box")
        assert p.returncode == 0 and p.stdout.strip() == "cli-box"
        p = docker_cli("ps", "-a", "--filter", "name=cli-box", "--format", "{{.Status}}")
        assert p.stdout.startswith("Exited (")
    finally:
        docker_cli("rm", "-f", "cli-box")


@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="the docker CLI is not installed")
def test_docker_cli_interactive_tty_detach_exec_attach(env, client, image):
    pexpect = pytest.importorskip("pexpect")
    cli_env = {**env.env, "DOCKER_CONFIG": str(env.root / "docker-cli"), "TERM": "xterm"}
    child = pexpect.spawn(DOCKER, ["run", "-it", "--name", "tty-box", image, "sh"], env=cli_env, timeout=20)
    try:
        child.expect(r"/ # ")
        child.sendline("echo $((6*7)) $TERM")
        child.expect("42 xterm")
        child.send("\x10")
        time.sleep(0.1)
        child.send("\x11")  # ctrl-p ctrl-q: back on the host, the container runs on
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert client.containers.get("tty-box").status == "running"
        ex = pexpect.spawn(DOCKER, ["exec", "-it", "tty-box", "sh"], env=cli_env, timeout=20)
        ex.expect(r"/ # ")
        ex.sendline("hostname; exit 5")
        ex.expect(client.containers.get("tty-box").id[:12])
        ex.expect(pexpect.EOF)
        ex.close()
        assert ex.exitstatus == 5
        at = pexpect.spawn(DOCKER, ["attach", "tty-box"], env=cli_env, timeout=20)
        time.sleep(0.5)
        at.sendline("echo attached-again")
        at.expect("attached-again")
        at.sendline("exit 0")
        at.expect(pexpect.EOF)
        at.close()
        assert client.containers.get("tty-box").wait(timeout=10)["StatusCode"] == 0
    finally:
        try:
            client.containers.get("tty-box").remove(force=True)
        except docker.errors.NotFound:
            pass


# --------------------------------------------------------------------------------------- runtime options
def test_network_modes(client, image):
    out = client.containers.run(image, ["hostname"], network_mode="host", remove=True)
    assert out.decode().strip() == socket.gethostname()
    out = client.containers.run(image, ["sh", "-c", "ip -o link | cut -d: -f2 | tr -d ' '"], network_mode="none",
                                remove=True)
    assert out == b"lo\n"
    info_c = client.containers.create(image, ["true"], network_mode="none")
    try:
        nets = client.api.inspect_container(info_c.id)["NetworkSettings"]["Networks"]
        assert list(nets) == ["none"] and nets["none"]["IPAddress"] == ""
    finally:
        info_c.remove()
    out = client.containers.run(image, ["cat", "/etc/hosts", "/etc/resolv.conf"], remove=True,
                                extra_hosts={"db": "10.1.2.3"}, dns=["9.9.9.9"])
    assert b"127.0.0.1\tlocalhost" in out and b"10.1.2.3\tdb" in out and b"nameserver 9.9.9.9" in out


def test_resource_limits_and_oom(client, image, cleanup):
    out = client.containers.run(
        image, ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us; ulimit -n"],
        mem_limit="64m", pids_limit=20, nano_cpus=500_000_000,
        ulimits=[docker.types.Ulimit(name="nofile", soft=512, hard=1024)], remove=True)
    assert out.split() == [b"67108864", b"20", b"50000", b"512"]
    since = time.time()
    c = run_bg(client, image, cleanup, ["sh", "-c", "x=a; while :; do x=$x$x$x$x; done"], mem_limit="8m")
    assert c.wait(timeout=30)["StatusCode"] == 137
    c.reload()
    assert c.attrs["State"]["OOMKilled"] is True
    events = client.events(since=since, until=time.time() + 1, decode=True, filters={"container": c.id})
    assert "oom" in [e["Action"] for e in events]
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.create(image, ["true"], mem_limit="1m")
    assert info.value.status_code == 400 and "Minimum memory limit allowed is 6MB" in str(info.value)


def test_security_options(client, image):
    def status(**kw):
        out = client.containers.run(image, ["grep", "-E", "^(CapEff|NoNewPrivs|Seccomp):", "/proc/self/status"],
                                    remove=True, **kw).decode()
        return dict(line.split(":\t") for line in out.splitlines())

    default = status()
    assert default["Seccomp"] == "2" and default["NoNewPrivs"] == "0"
    assert int(default["CapEff"], 16) == 0xa80425fb  # docker's 14 default capabilities
    assert status(security_opt=["no-new-privileges"])["NoNewPrivs"] == "1"
    assert status(security_opt=["seccomp=unconfined"])["Seccomp"] == "0"
    assert int(status(cap_drop=["ALL"], cap_add=["NET_ADMIN"])["CapEff"], 16) == 1 << 12
    privileged = status(privileged=True)
    assert privileged["Seccomp"] == "0" and int(privileged["CapEff"], 16) & (1 << 21)  # CAP_SYS_ADMIN
    out = client.containers.run(image, ["sh", "-c", "mount -t tmpfs t /mnt && echo mounted || echo denied"],
                                remove=True)
    assert out == b"denied\n"
    masked = next(p for p in ("/proc/timer_list", "/proc/keys", "/proc/kcore") if os.path.exists(p))
    out = client.containers.run(image, ["sh", "-c", f"wc -c < {masked}; echo x > /proc/sys/kernel/domainname || echo ro"],
                                remove=True)
    assert out.split() == [b"0", b"ro"]  # masked, and /proc/sys read-only


def test_local_volume_with_mount_options(client, image):
    client.volumes.create("tmpfsvol", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    try:
        out = client.containers.run(image, ["sh", "-c", "grep ' /data ' /proc/mounts"],
                                    volumes={"tmpfsvol": {"bind": "/data"}}, remove=True)
        assert out.startswith(b"tmpfs /data tmpfs") and b"size=1024k" in out
    finally:
        client.volumes.get("tmpfsvol").remove()


def test_changes(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sh", "-c", "echo x > /new; rm /etc/group; chmod 600 /etc/passwd; "
                                                    "mkdir -p /d/e; touch /d/e/f; sleep 60"])
    wait_for(lambda: c.exec_run(["test", "-f", "/d/e/f"]).exit_code == 0, what="changes made")
    expected = [{"Path": "/d", "Kind": 1}, {"Path": "/d/e", "Kind": 1}, {"Path": "/d/e/f", "Kind": 1},
                {"Path": "/etc", "Kind": 0}, {"Path": "/etc/group", "Kind": 2}, {"Path": "/etc/passwd", "Kind": 0},
                {"Path": "/new", "Kind": 1}]
    assert c.diff() == expected
    c.kill()
    c.wait(timeout=10)
    assert c.diff() == expected  # a stopped container's snapshot, mounted privately


def test_prune_resize_stop_signal_wait_removed(env, client, image, cleanup):
    keep = run_bg(client, image, cleanup, ["sleep", "60"], labels={"prune": "no"})
    gone = client.containers.create(image, ["true"], labels={"prune": "yes"})
    kept_by_label = client.containers.create(image, ["true"], labels={"prune": "no"})
    cleanup += [gone, kept_by_label]
    wait_status(keep, "running")
    result = client.containers.prune(filters={"label": "prune=yes"})
    assert result["ContainersDeleted"] == [gone.id]
    assert {c.id for c in client.containers.list(all=True)} >= {keep.id, kept_by_label.id}
    # resize the pty of a container and of an exec
    tty = run_bg(client, image, cleanup, ["sh", "-c", "sleep 60"], tty=True)
    wait_status(tty, "running")
    tty.resize(height=33, width=111)
    exec_id = client.api.exec_create(tty.id, ["sh", "-c", "sleep 0.5; stty size"], tty=True)["Id"]
    sock = client.api.exec_start(exec_id, socket=True, tty=True)
    client.api.exec_resize(exec_id, height=44, width=123)
    raw_sock = getattr(sock, "_sock", sock)
    raw_sock.settimeout(10)
    out = recv_all(raw_sock)
    sock.close()
    assert b"44 123" in out
    # stop with a signal of the caller's choice
    sig = run_bg(client, image, cleanup, ["sh", "-c", "trap 'exit 21' USR2; while :; do sleep 0.1; done"])
    wait_status(sig, "running")
    res = client.api._post(client.api._url(f"/containers/{sig.id}/stop"), params={"signal": "SIGUSR2", "t": 5})
    assert res.status_code == 204
    assert sig.wait(timeout=10)["StatusCode"] == 21
    # wait for removal
    rm = client.containers.run(image, ["sh", "-c", "sleep 0.3; exit 4"], detach=True, auto_remove=True)
    assert rm.wait(condition="removed", timeout=15)["StatusCode"] == 4


def test_storage_driver_chosen_per_request(env, client, image):
    """``--driver storage=vfs`` on one request: the image is unpacked into vfs for it."""
    res = client.api._post_json(client.api._url("/containers/create"), data={"Image": image, "Cmd": ["cat", "/etc/hostname"]},
                                headers={"X-Core-Driver": "storage=vfs"})
    cid = client.api._result(res, True)["Id"]
    try:
        assert client.api.inspect_container(cid)["Driver"] == "vfs"
        client.api.start(cid)
        assert client.api.wait(cid, timeout=15)["StatusCode"] == 0
        assert client.api.logs(cid) == cid[:12].encode() + b"\n"  # /etc/hostname is the container's
    finally:
        client.api.remove_container(cid, force=True)


# --------------------------------------------------------------------------------------- with networking
def test_containers_on_networks_when_wired(test_images):
    """The container service awaits its ``ContainerNetworks`` (core.engine.networks.service, wired in
    ``Daemon.open``): prepare/attach/detach/forget at the right moments — an address on the default
    bridge, DNS by name on a user network, published ports."""
    from core import plugins

    import trio

    env = CoreEnv()
    table = f"coretest-{os.getpid()}-c{int(time.time() * 1000) % 100000}"
    env.write_config({"driver-opts": {"network": {"nft-table": table}}})
    try:
        proc = env.start_daemon()
        assert proc.poll() is None, env.daemon_log()
        image = test_images["busybox:latest"].reference
        pull(env, image)
        client = env.docker_client()
        try:
            net = client.networks.create("appnet")
            web = client.containers.run(image, ["sleep", "60"], detach=True, name="web", network="appnet")
            out = client.containers.run(image, ["ping", "-c1", "-W2", "web"], network="appnet", remove=True)
            address = client.api.inspect_container("web")["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
            assert f"bytes from {address}".encode() in out
            plain = client.containers.run(image, ["sleep", "60"], detach=True, ports={"80/tcp": None})
            info = client.api.inspect_container(plain.id)
            ip = info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
            assert ip and info["NetworkSettings"]["IPAddress"] == ip
            assert f"{ip}\t{plain.id[:12]}".encode() in plain.exec_run(["cat", "/etc/hosts"]).output
            ports = client.api.containers(filters={"id": plain.id})[0]["Ports"]
            assert ports and ports[0]["PrivatePort"] == 80 and ports[0]["PublicPort"] > 0
            plain.stop(timeout=1)
            assert client.api.inspect_container(plain.id)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
            plain.remove()
            web.remove(force=True)
            net.remove()
        finally:
            client.close()
    finally:
        reap(env)
        env.stop_daemons()
        context = plugins.context_for("network", "bridge", env.data_root, env.exec_root, {"nft-table": table})
        if (context.root / "bridge.db").exists():
            async def clear() -> None:
                driver = plugins.load("network", "bridge").create(context)
                try:
                    for n in await driver.networks():
                        for ep in await driver.endpoints(n.id):
                            await driver.leave(n.id, ep.endpoint_id)
                        await driver.delete_network(n.id)
                finally:
                    await driver.aclose()

            trio.run(clear)
        for family in ("inet", "ip", "ip6"):
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
        env.cleanup()



# --------------------------------------------------------------------------------------- --init
def _init_available() -> bool:
    from core.engine.containers import oci

    return os.access(oci.INIT_BINARY, os.X_OK)


@pytest.mark.skipif(not _init_available(), reason="tini (tini-static) is not installed")
def test_run_init_is_a_reaping_pid_1(env, client, image, cleanup):
    p = env.run("run", "--rm", "--init", image, "sh", "-c", "echo $$; ps")
    assert p.returncode == 0, (p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert lines[0].strip() != "1"  # the shell is not PID 1 ...
    pid1 = [line for line in lines[1:] if line.split()[:1] == ["1"]]
    assert pid1 and "/sbin/docker-init -- sh -c" in pid1[0], p.stdout  # ... docker-init is
    # an orphan reparented to PID 1 is reaped: no zombie left behind
    script = ("(sleep 0.1 &); sleep 1; for f in /proc/[0-9]*/stat; do read l < $f && echo \"$l\"; done "
              "2>/dev/null | grep -c ') Z ' || true")
    p = env.run("run", "--rm", "--init", image, "sh", "-c", script)
    assert p.returncode == 0 and p.stdout.strip() == "0", (p.stdout, p.stderr)
    # the API: HostConfig.Init as docker's SDK sends it; the binary is read-only in the container
    out = client.containers.run(image, ["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                                        "echo x > /sbin/docker-init || echo read-only"], init=True, remove=True)
    assert out.decode().splitlines() == ["/sbin/docker-init -- sh -c " + "cat /proc/1/cmdline | tr '\\0' ' '; "
                                         "echo; echo x > /sbin/docker-init || echo read-only ", "read-only"]
    c = client.containers.create(image, ["true"], init=True)
    cleanup.append(c)
    assert c.attrs["HostConfig"]["Init"] is True
    # the exit status and signals go through the init
    p = env.run("run", "--rm", "--init", image, "sh", "-c", "exit 7")
    assert p.returncode == 7


def test_init_binary_missing_names_the_package():
    from core.engine.containers import oci
    from core.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="install the Debian package 'tini'"):
        oci.init_binary("/nonexistent/tini-static")
    hc = {"Init": True}
    kw = dict(config={"Cmd": ["sh"], "Hostname": "h"}, host_config=hc, rootfs=Path("/r"),
              user=oci.ExecUser(0, 0, (), "/root"), hostname="h", mounts=[], namespaces=oci.namespaces_for(hc),
              cgroups_path="/core/x")
    with pytest.raises(InvalidArgument, match="tini"):
        oci.build_spec(**kw, init="/nonexistent/tini-static")
    spec = oci.build_spec(**kw, init=sys.executable)  # any executable file stands in for tini here
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert {"destination": "/sbin/docker-init", "type": "bind", "source": sys.executable,
            "options": ["bind", "ro", "nosuid", "nodev", "rprivate"]} in spec["mounts"]
    assert oci.build_spec(**{**kw, "host_config": {}})["process"]["args"] == ["sh"]


# --------------------------------------------------------------------------------------- stats
def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def test_stats_memory_limit_is_host_memory_without_a_limit(env, client, image, cleanup):
    free = run_bg(client, image, cleanup, ["sleep", "60"])
    limited = run_bg(client, image, cleanup, ["sleep", "60"], mem_limit="64m")
    wait_status(free, "running")
    wait_status(limited, "running")
    assert free.stats(stream=False)["memory_stats"]["limit"] == _mem_total()
    assert limited.stats(stream=False)["memory_stats"]["limit"] == 64 << 20
    p = env.run("stats", "--no-stream", "--format", "{{.MemUsage}}", free.id)
    assert p.returncode == 0, p.stderr
    assert "EiB" not in p.stdout and "PiB" not in p.stdout, p.stdout


# --------------------------------------------------------------------------------------- rmi conflicts (CLI)
def test_rmi_of_an_image_in_use_cli(core_env, test_images):
    env = core_env
    env.start_daemon()
    ref = test_images["busybox:latest"].reference
    pull(env, ref)
    img12 = test_images["busybox:latest"].config_digest.split(":")[1][:12]
    stopped = env.run("create", ref, "true", check=True).stdout.strip()
    p = env.run("rmi", ref)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert (f'conflict: unable to remove repository reference "{ref}" (must force) - container {stopped[:12]} '
            f"is using its referenced image {img12}") in p.stderr
    running = env.run("run", "-d", ref, "sleep", "60", check=True).stdout.strip()
    p = env.run("rmi", img12)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert (f"conflict: unable to delete {img12} (cannot be forced) - image is being used by running container "
            f"{running[:12]}") in p.stderr
    p = env.run("rmi", "-f", img12)
    assert p.returncode == 1 and "(cannot be forced)" in p.stderr, (p.stdout, p.stderr)
    p = env.run("rmi", "-f", ref)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert f"Untagged: {ref}" in p.stdout.splitlines()
    assert env.run("image", "inspect", img12).returncode == 0  # still used: kept, untagged
    assert env.run("image", "inspect", ref).returncode == 1
    env.run("rm", "-f", running, check=True)
    # only a stopped container uses it now: forced, docker deletes the image; the container
    # keeps its layers (and runs), which go when it goes
    env.run("tag", img12, ref, check=True)
    p = env.run("rmi", "-f", ref)
    assert p.returncode == 0, (p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert f"Untagged: {ref}" in lines and test_images["busybox:latest"].config_digest in " ".join(lines)
    assert env.run("image", "inspect", img12).returncode == 1
    assert env.run("start", "-a", stopped).returncode == 0
    snapshots = env.data_root / "storage" / "overlay" / "snapshots"
    assert len(list(snapshots.iterdir())) == 2   # the container's and the image's one layer
    env.run("rm", stopped, check=True)
    assert list(snapshots.iterdir()) == []


# --------------------------------------------------------------------------------------- exec exit codes
def test_exec_exit_code_is_recorded_before_the_stream_closes(client, image, cleanup):
    c = run_bg(client, image, cleanup, ["sleep", "120"])
    wait_status(c, "running")
    for i in range(20):
        exec_id = client.api.exec_create(c.id, ["sh", "-c", "exit 3"])["Id"]
        client.api.exec_start(exec_id)
        info = client.api.exec_inspect(exec_id)
        assert (info["Running"], info["ExitCode"]) == (False, 3), (i, info)


# --------------------------------------------------------------------------------------- create exit codes
@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="the docker CLI is not installed")
def test_create_daemon_errors_exit_as_docker_cli(env, image):
    """docker 28's CLI: ``create`` of an image it cannot pull and a name conflict exit 1 with
    "Error response from daemon: ..." (no usage hint, unlike ``run``'s 125)."""
    def docker_cli(*args):
        return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=60,
                              env={**env.env, "DOCKER_CONFIG": str(env.root / "docker-cli")})

    def both(*args):
        return docker_cli(*args), env.run(*args)

    try:
        want, got = both("create", "127.0.0.1:1/nope:latest")  # not here, and cannot be pulled
        assert (want.returncode, got.returncode) == (1, 1), (want.stderr, got.stderr)
        assert got.stderr == want.stderr and got.stdout == want.stdout == ""
        assert env.run("create", "--name", "dup-create", image, "true").returncode == 0
        want, got = both("create", "--name", "dup-create", image, "true")  # a name conflict
        assert (want.returncode, got.returncode) == (1, 1), (want.stderr, got.stderr)
        assert got.stderr == want.stderr
        assert got.stderr.startswith('Error response from daemon: Conflict. The container name "/dup-create" is '
                                     "already in use")
    finally:
        env.run("rm", "-f", "dup-create")
