"""Conformance: an executor driver keeps the executor contract (``core.contracts.executor``).

Run against an installed driver (as root: containers need namespaces, mounts and cgroups)::

    pytest --pyargs core.testing.executor --driver executor=mydriver

or subclass :class:`ExecutorSuite` in your own tests::

    from core.testing.executor import ExecutorSuite

    class TestMyExecutor(ExecutorSuite):
        name = "mydriver"

The suite builds its bundles itself: a root filesystem made of the host's static busybox
(Debian's ``busybox-static``, ``/bin/busybox``) with its applet links (:func:`make_rootfs`),
and a docker-like OCI ``config.json`` (:func:`make_spec`: namespaces, docker's mounts, default
capabilities, masked and read-only paths).  Containers report what they see on their stdout and
the suite compares it with the spec:

1. **What the process sees is the spec** (hypothesis): args, env, cwd and user (uid, gid,
   additional groups) read back from ``/proc/1/{cmdline,environ,cwd,status}``.
2. **Exit codes** 0-255 propagate; death by signal N is 128+N (an exec killing itself: a PID
   namespace's init ignores signals it has no handler for); SIGKILL of the init is 137.
3. **stdio is byte-exact**: hypothesis binary data through ``cat`` (stdout) and ``cat >&2``
   (stderr), separately, and through the json-file log (lines, 16 KiB splits, docker's time
   format); a terminal merges the streams, takes input and follows ``resize``; several
   attachers see the same output; ``stdin_once``.
4. **Stopping**: SIGTERM reaches a shell that traps it; a PID 1 without a handler survives
   SIGTERM and dies of SIGKILL (docker stop's two steps); ``kill(all_processes=True)``.
5. **exec** into a running container (same namespaces, its own stdio and exit code), wait on a
   stopped container returns at once, a stopped container created and started again.
6. **Errors**: ``NotFound`` for unknown ids and missing executables (docker's message),
   ``Forbidden`` for a directory, ``Conflict`` for start twice / exec, attach or kill of a
   stopped container / delete of a running one, ``AlreadyExists``, ``InvalidArgument``.

Every container a test creates is killed and deleted (through the contract) even when the test
fails, and the driver must then list none.  The test's directory and its container ids carry
the test process's pid (``/tmp/core-ct-<pid>-*``, ``ct-<pid>-*``), so that what a run killed
halfway left behind can be told apart and swept by a later one.  Examples are few and small:
the whole suite runs in well under a minute.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contracts.executor import ContainerState, ExitStatus, IOConfig
from core.errors import (AlreadyExists, Conflict, CoreError, Forbidden, InvalidArgument, NotFound, ProgramNotFound,
                         ProgramNotRunnable)
from core.testing import TrioThread, close_driver, make_driver, options_from_env

__all__ = ["ExecutorSuite", "Harness", "Result", "make_rootfs", "make_spec", "BUSYBOX",
           "DEFAULT_CAPS", "DEFAULT_PATH"]

BUSYBOX = Path("/bin/busybox")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# docker's default capabilities (moby oci/caps/defaults.go)
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
CALL_TIMEOUT = 30.0


# =========================================================================== bundles
def make_rootfs(root: Path) -> Path:
    """A root filesystem of the host's static busybox and its applet links, ``/etc/passwd``
    (root, nobody, a user ``u1000``), ``/etc/group``, ``/tmp`` (1777) and the mount points."""
    if not BUSYBOX.exists():
        pytest.skip("the executor suite needs /bin/busybox (Debian's busybox-static)")
    root.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root",
              "home/u1000", "var", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = root / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "u1000:x:1000:1000:u1000:/home/u1000:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\ntty:x:5:\nu1000:x:1000:\nnogroup:x:65534:\n")
    os.chown(root / "home" / "u1000", 1000, 1000)
    return root


def make_spec(rootfs: Path | str, args: list[str], *, env: list[str] | None = None,
              cwd: str = "/", uid: int = 0, gid: int = 0, additional_gids: list[int] | None = None,
              terminal: bool = False, hostname: str = "ctr", readonly: bool = False,
              capabilities: list[str] | None = None, no_new_privileges: bool = False,
              memory: int | None = None, cpus: float | None = None, pids: int | None = None,
              cgroups_path: str | None = None, seccomp: dict[str, Any] | None = None,
              rlimits: list[dict[str, Any]] | None = None, oom_score_adj: int | None = None,
              network_ns: str | None = None, mounts: list[dict[str, Any]] | None = None,
              sysctl: dict[str, str] | None = None) -> dict[str, Any]:
    """A docker-like OCI runtime spec (what dockerd would hand its runtime for ``docker run``).

    ``env`` defaults to ``PATH`` + ``HOSTNAME``; ``capabilities`` to docker's defaults;
    ``memory`` is a limit in bytes, ``cpus`` becomes a CFS quota over a 100 ms period,
    ``pids`` a pids limit; ``network_ns`` is a namespace path to join (else a new, empty one);
    ``mounts`` are appended to docker's standard ones.
    """
    caps = list(DEFAULT_CAPS if capabilities is None else capabilities)
    env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] if env is None else list(env)
    resources: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"},
                    *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
                      for ma, mi in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1),
                                     (5, 2), (136, -1), (10, 200)))],
    }
    if memory is not None:
        resources["memory"] = {"limit": int(memory)}
    if cpus is not None:
        resources["cpu"] = {"quota": int(cpus * 100000), "period": 100000}
    if pids is not None:
        resources["pids"] = {"limit": int(pids)}
    namespaces = [{"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"},
                  {"type": "ipc"}, {"type": "cgroup"}]
    if network_ns:
        namespaces[1] = {"type": "network", "path": network_ns}
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": uid, "gid": gid, "additionalGids": list(additional_gids or [])},
            "args": list(args),
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": no_new_privileges,
        },
        "root": {"path": str(rootfs), "readonly": readonly},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
            *(mounts or []),
        ],
        "linux": {
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if rlimits is not None:
        spec["process"]["rlimits"] = rlimits
    if oom_score_adj is not None:
        spec["process"]["oomScoreAdj"] = oom_score_adj
    if cgroups_path:
        spec["linux"]["cgroupsPath"] = cgroups_path
    if seccomp is not None:
        spec["linux"]["seccomp"] = seccomp
    if sysctl:
        spec["linux"]["sysctl"] = dict(sysctl)
    return spec


# =========================================================================== harness
class Result(NamedTuple):
    """What one container run produced."""

    status: ExitStatus
    stdout: bytes
    stderr: bytes
    log: list[dict[str, Any]]     # the json-file log lines

    @property
    def code(self) -> int:
        return self.status.code


class Harness:
    """The driver under test in a fresh root, a busybox rootfs, and synchronous helpers.

    ``close`` kills and deletes (through the contract) every container created here, closes
    the driver and removes the directories; it fails if the driver still lists a container.
    """

    def __init__(self, kind: str, name: str, root: Path | None = None,
                 options: dict[str, str] | None = None) -> None:
        if os.geteuid() != 0:
            pytest.skip("the executor conformance suite runs containers: run it as root")
        self.kind, self.name = kind, name
        # named after this process, as the container ids: a later run can sweep what a run
        # killed halfway left behind.  ``root``: a directory of the caller's (removed at close)
        if root is None:
            root = Path(tempfile.mkdtemp(prefix=f"core-ct-{os.getpid()}-", dir="/tmp"))
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.ids: list[str] = []
        self._bundles = itertools.count()
        self._loop = TrioThread(timeout=CALL_TIMEOUT, name="core-testing-executor")
        self.driver: Any = None
        try:
            self.loaded, self.context, self.driver = self._loop.run_sync(
                make_driver, kind, name, self.root, options)
            self.rootfs = make_rootfs(self.root / "rootfs")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ driver calls
    def call(self, method: Callable[..., Any], *args: Any, timeout: float = CALL_TIMEOUT,
             **kwargs: Any) -> Any:
        return self._loop.run(functools.partial(method, *args, **kwargs), timeout=timeout)

    def new_id(self) -> str:
        """``ct-<pid of this test process>-<random>``: a later run can tell (and sweep) what a
        run that was killed halfway left behind."""
        cid = f"ct-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def bundle(self, args: list[str], spec: dict[str, Any] | None = None, **kw: Any) -> Path:
        """A bundle directory whose config.json is ``spec`` (else ``make_spec(rootfs, args,
        **kw)``), sharing the harness's rootfs."""
        path = self.root / f"bundle-{next(self._bundles)}"
        path.mkdir()
        (path / "config.json").write_text(json.dumps(
            spec if spec is not None else make_spec(self.rootfs, args, **kw)))
        return path

    def create(self, args: list[str], io: IOConfig | None = None, cid: str | None = None,
               **kw: Any) -> str:
        cid = cid or self.new_id()
        bundle = self.bundle(args, **kw)
        io = io or IOConfig(log_path=self.root / f"{cid}.log")
        self.call(self.driver.create, cid, bundle, io)
        return cid

    def run(self, args: list[str], stdin: bytes | None = None, terminal: bool = False,
            timeout: float = CALL_TIMEOUT, **kw: Any) -> Result:
        """create, attach, start, feed ``stdin`` (then EOF), collect the output, wait, delete."""
        cid = self.new_id()
        log = self.root / f"{cid}.log"
        io = IOConfig(terminal=terminal, stdin=stdin is not None, log_path=log)
        bundle = self.bundle(args, terminal=terminal, **kw)
        ex = self.driver

        async def go() -> Result:
            await ex.create(cid, bundle, io)
            stream = await ex.attach(cid)
            out = {1: bytearray(), 2: bytearray()}
            try:
                await ex.start(cid)
                async with trio.open_nursery() as nursery:
                    if stdin is not None:
                        async def feed() -> None:
                            await stream.send_stdin(stdin)
                            await stream.close_stdin()
                        nursery.start_soon(feed)
                    while (got := await stream.receive()) is not None:
                        out[got[0]] += got[1]
                status = await ex.wait(cid)
            finally:
                await stream.aclose()
            await ex.delete(cid)
            return Result(status, bytes(out[1]), bytes(out[2]), read_log(log))

        return self._loop.run(go, timeout=timeout)

    def exec(self, cid: str, args: list[str], stdin: bytes | None = None, terminal: bool = False,
             **process: Any) -> tuple[int, bytes, bytes]:
        """Run ``args`` in the running container ``cid``: (exit code, stdout, stderr)."""
        exec_id = f"ex-{uuid.uuid4().hex[:8]}"
        proc = {"args": args, "env": [f"PATH={DEFAULT_PATH}"], "cwd": "/",
                "user": {"uid": 0, "gid": 0},
                "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective",
                                                                  "permitted")},
                **process}
        ex = self.driver

        async def go() -> tuple[int, bytes, bytes]:
            await ex.exec(cid, exec_id, proc, IOConfig(terminal=terminal, stdin=stdin is not None))
            stream = await ex.attach(cid, exec_id)
            out = {1: bytearray(), 2: bytearray()}
            try:
                async with trio.open_nursery() as nursery:
                    if stdin is not None:
                        async def feed() -> None:
                            await stream.send_stdin(stdin)
                            await stream.close_stdin()
                        nursery.start_soon(feed)
                    while (got := await stream.receive()) is not None:
                        out[got[0]] += got[1]
            finally:
                await stream.aclose()
            code = await ex.wait_exec(cid, exec_id)
            return code, bytes(out[1]), bytes(out[2])

        return self._loop.run(go)

    def state(self, cid: str) -> ContainerState:
        return self.call(self.driver.state, cid)

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> ContainerState:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st.status == status or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def destroy(self, cid: str) -> None:
        """Kill (everything) and delete ``cid`` through the contract; unknown is fine."""
        try:
            st = self.call(self.driver.state, cid)
        except NotFound:
            return
        if st.status == "paused":
            with contextlib.suppress(CoreError):
                self.call(self.driver.resume, cid)
        if st.status in ("running", "paused"):
            with contextlib.suppress(CoreError):
                self.call(self.driver.kill, cid, signal.SIGKILL, True)
            with contextlib.suppress(CoreError, trio.TooSlowError):
                self.call(self.driver.wait, cid, timeout=15)
        self.call(self.driver.delete, cid)

    def close(self) -> None:
        errors = []
        try:
            if self.driver is not None:
                for cid in self.ids:
                    try:
                        self.destroy(cid)
                    except BaseException as exc:   # go on: clean up the others
                        errors.append(f"{cid}: {type(exc).__name__}: {exc}")
                left = [s.id for s in self.call(self.driver.list)]
                if left:
                    errors.append(f"the driver still lists {left} after deleting them")
                self.call(close_driver, self.driver)
        finally:
            self._loop.close()
            shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise AssertionError("cleaning up: " + "; ".join(errors))


def read_log(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().split("\n") if line]
    except FileNotFoundError:
        return []


def log_bytes(log: list[dict[str, Any]], stream: str) -> bytes:
    return "".join(e["log"] for e in log if e["stream"] == stream).encode()


# =========================================================================== strategies
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=20)
_args = st.lists(_text, max_size=6)
_env = st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
                       .filter(lambda k: k not in ("PATH", "HOME")),
                       _text, max_size=6)
_segment = st.from_regex(r"[a-z0-9_][a-z0-9_. -]{0,10}", fullmatch=True).filter(
    lambda s: s not in (".", "..") and s.strip() == s)
_cwd = st.lists(_segment, min_size=0, max_size=3).map(lambda parts: "/" + "/".join(parts))
_ids = st.integers(0, 70000)

# A shell that prints what it sees, from /proc/1 (itself: PID 1 of the container).
REPORT = ('cat /proc/$$/cmdline; printf "\\n@@\\n"; cat /proc/$$/environ; printf "\\n@@\\n"; '
          'readlink /proc/$$/cwd; printf "@@\\n"; grep -E "^(Uid|Gid|Groups):" /proc/$$/status')


def parse_report(out: bytes) -> dict[str, Any]:
    cmdline, environ, cwd, status = out.split(b"\n@@\n")
    fields = {}
    for line in status.decode().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return {"args": [a.decode() for a in cmdline.split(b"\0")[:-1]],
            "env": [e.decode() for e in environ.split(b"\0")[:-1]],
            "cwd": cwd.decode().strip(), "uid": fields["Uid"], "gid": fields["Gid"],
            "groups": sorted(int(g) for g in fields.get("Groups", []))}


_examples = settings(max_examples=8, deadline=None, derandomize=False,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


# =========================================================================== the suite
class ExecutorSuite:
    """The executor contract, for the driver under test (``name``, or ``--driver``)."""

    kind = "executor"
    name: str | None = None

    def driver_options(self) -> dict[str, str]:
        """``DriverContext.options`` of the driver under test (a fresh call per harness): by
        default the JSON object in ``$CORE_TESTING_DRIVER_OPTIONS``, if set."""
        return options_from_env()

    @pytest.fixture
    def h(self, driver_under_test):
        kind, name = driver_under_test
        harness = Harness(kind, name, options=self.driver_options())
        try:
            yield harness
        finally:
            harness.close()

    # ------------------------------------------------------------------ what it sees
    @_examples
    @given(args=_args, env=_env, cwd=_cwd)
    def test_process_sees_args_env_cwd(self, h, args, env, cwd):
        spec_args = ["sh", "-c", REPORT, *args]
        spec_env = [f"PATH={DEFAULT_PATH}", "HOME=/root", *(f"{k}={v}" for k, v in env.items())]
        r = h.run(spec_args, env=spec_env, cwd=cwd)
        assert r.code == 0, r
        seen = parse_report(r.stdout)
        assert seen["args"] == spec_args
        assert seen["env"] == spec_env
        assert seen["cwd"] == cwd

    @_examples
    @given(uid=_ids, gid=_ids, groups=st.lists(_ids, max_size=4, unique=True))
    def test_process_runs_as_the_spec_user(self, h, uid, gid, groups):
        r = h.run(["sh", "-c", REPORT], uid=uid, gid=gid, additional_gids=groups, cwd="/tmp")
        assert r.code == 0, r
        seen = parse_report(r.stdout)
        assert seen["uid"] == [str(uid)] * 4
        assert seen["gid"] == [str(gid)] * 4
        assert seen["groups"] == sorted(groups)

    def test_home_is_set_from_passwd_when_the_spec_has_none(self, h):
        r = h.run(["sh", "-c", 'echo "$HOME"'], env=[f"PATH={DEFAULT_PATH}"], uid=1000, gid=1000)
        assert r.stdout == b"/home/u1000\n"

    def test_namespaces_hostname_and_pid_1(self, h):
        r = h.run(["sh", "-c", "echo $$; hostname; readlink /proc/1/ns/mnt /proc/1/ns/pid "
                   "/proc/1/ns/net /proc/1/ns/uts /proc/1/ns/ipc"], hostname="h-42")
        lines = r.stdout.decode().split()
        assert lines[0] == "1" and lines[1] == "h-42"
        host = [os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "pid", "net", "uts", "ipc")]
        assert all(a != b for a, b in zip(lines[2:], host)), (lines, host)

    # ------------------------------------------------------------------ exit codes
    @_examples
    @given(code=st.integers(0, 255))
    def test_exit_code_propagates(self, h, code):
        r = h.run(["sh", "-c", f"exit {code}"])
        assert r.code == code and not r.status.oom_killed

    @pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGABRT,  # (ash ignores QUIT)
                                     signal.SIGUSR1, signal.SIGSEGV, signal.SIGPIPE,
                                     signal.SIGALRM, signal.SIGTERM])
    def test_death_by_signal_is_128_plus_n(self, h, sig):
        cid = h.create(["sleep", "60"])
        h.call(h.driver.start, cid)
        code, _out, _err = h.exec(cid, ["sh", "-c", f"kill -{int(sig)} $$; sleep 5"])
        assert code == 128 + int(sig)
        h.destroy(cid)

    def test_sigkill_of_pid_1_is_137(self, h):
        cid = h.create(["sleep", "60"])
        h.call(h.driver.start, cid)
        h.call(h.driver.kill, cid, signal.SIGKILL)
        status = h.call(h.driver.wait, cid)
        assert status.code == 137 and status.finished_at > 0
        h.destroy(cid)

    # ------------------------------------------------------------------ stdio
    @_examples
    @given(data=st.binary(max_size=200_000))
    def test_stdin_to_stdout_is_byte_exact(self, h, data):
        r = h.run(["cat"], stdin=data)
        assert r.code == 0
        assert r.stdout == data and r.stderr == b""
        assert log_bytes(r.log, "stdout") == data.decode("utf-8", "replace").encode()

    @_examples
    @given(data=st.binary(max_size=100_000))
    def test_stderr_is_separate_and_byte_exact(self, h, data):
        r = h.run(["sh", "-c", "cat >&2"], stdin=data)
        assert r.code == 0
        assert r.stderr == data and r.stdout == b""

    def test_json_file_log_lines(self, h):
        r = h.run(["sh", "-c", "echo one; echo two >&2; printf 'no newline'; "
                   "head -c 20000 /dev/zero | tr '\\0' x"])
        assert r.code == 0
        out = [e for e in r.log if e["stream"] == "stdout"]
        assert out[0]["log"] == "one\n"
        assert [e["log"] for e in r.log if e["stream"] == "stderr"] == ["two\n"]
        assert "".join(e["log"] for e in out[1:]) == "no newline" + "x" * 20000
        assert all(len(e["log"].encode()) <= 16384 for e in r.log)
        for e in r.log:   # docker's RFC3339NanoFixed, UTC
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", e["time"]), e

    def test_terminal_merges_output_and_is_a_tty(self, h):
        r = h.run(["sh", "-c", "tty; echo out; echo err >&2; stty size"], terminal=True)
        text = r.stdout.replace(b"\r\n", b"\n").decode()
        assert r.code == 0 and r.stderr == b""
        assert text.startswith("/dev/pts/") or text.startswith("/dev/console")
        assert "out\n" in text and "err\n" in text and "24 80" in text

    def test_terminal_input_and_resize(self, h):
        cid = h.create(["sh", "-c", "read line; echo got $line; stty size"], terminal=True,
                       io=IOConfig(terminal=True, stdin=True))
        ex = h.driver

        async def go() -> bytes:
            stream = await ex.attach(cid)
            await ex.start(cid)
            await ex.resize(cid, 100, 30)
            await stream.send_stdin(b"hi\n")
            out = b""
            while (got := await stream.receive()) is not None:
                assert got[0] == 1
                out += got[1]
            await stream.aclose()
            return out

        out = h.call(go).replace(b"\r\n", b"\n")
        assert b"got hi\n" in out and b"30 100\n" in out
        assert h.call(ex.wait, cid).code == 0
        h.destroy(cid)

    # ------------------------------------------------------------------ stop and kill
    def test_sigterm_reaches_a_shell_that_traps_it(self, h):
        cid = h.new_id()
        log = h.root / f"{cid}.log"
        h.create(["sh", "-c", 'trap "echo got TERM; exit 42" TERM; echo ready; '
                  'while :; do sleep 0.05; done'], cid=cid, io=IOConfig(log_path=log))
        h.call(h.driver.start, cid)
        _wait_for(lambda: b"ready" in log_bytes(read_log(log), "stdout"))
        h.call(h.driver.kill, cid, signal.SIGTERM)
        status = h.call(h.driver.wait, cid)
        assert status.code == 42
        assert b"got TERM" in log_bytes(read_log(log), "stdout")
        h.destroy(cid)

    def test_pid_1_without_handler_ignores_sigterm_then_dies_of_sigkill(self, h):
        cid = h.create(["sleep", "1000"])
        pid = h.call(h.driver.start, cid)
        assert pid > 0
        h.call(h.driver.kill, cid, signal.SIGTERM)
        time.sleep(0.3)
        assert h.state(cid).status == "running"
        h.call(h.driver.kill, cid, signal.SIGKILL)
        assert h.call(h.driver.wait, cid).code == 137
        assert h.state(cid).status == "stopped"
        h.destroy(cid)

    def test_kill_all_processes(self, h):
        cid = h.create(["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000 & wait"])
        h.call(h.driver.start, cid)
        _wait_for(lambda: len(h.call(h.driver.top, cid)) >= 3)
        h.call(h.driver.kill, cid, signal.SIGKILL, True)
        assert h.call(h.driver.wait, cid).code == 137
        h.destroy(cid)

    # ------------------------------------------------------------------ lifecycle
    def test_states_through_the_lifecycle(self, h):
        cid = h.create(["sleep", "1000"])
        st = h.state(cid)
        assert st.status == "created" and st.id == cid
        assert cid in [s.id for s in h.call(h.driver.list)]
        pid = h.call(h.driver.start, cid)
        st = h.state(cid)
        assert st.status == "running" and st.pid == pid and st.started_at > 0
        assert pid in h.call(h.driver.top, cid)
        h.call(h.driver.kill, cid, signal.SIGKILL)
        h.call(h.driver.wait, cid)
        st = h.state(cid)
        assert st.status == "stopped" and st.exit_code == 137 and st.finished_at >= st.started_at
        h.call(h.driver.delete, cid)
        with pytest.raises(NotFound):
            h.state(cid)
        assert cid not in [s.id for s in h.call(h.driver.list)]

    def test_wait_on_a_stopped_container_returns_at_once(self, h):
        cid = h.create(["sh", "-c", "exit 7"])
        h.call(h.driver.start, cid)
        assert h.call(h.driver.wait, cid).code == 7
        t0 = time.monotonic()
        for _ in range(3):
            assert h.call(h.driver.wait, cid).code == 7
        assert time.monotonic() - t0 < 1.0
        h.destroy(cid)

    def test_created_container_can_be_deleted(self, h):
        cid = h.create(["sleep", "1000"])
        h.call(h.driver.delete, cid)
        with pytest.raises(NotFound):
            h.state(cid)

    def test_run_again_after_it_stopped(self, h):
        cid = h.new_id()
        bundle = h.bundle(["sh", "-c", "echo x >> /tmp/runs; wc -l < /tmp/runs"])
        for expected in (b"1", b"2"):
            log = h.root / f"{cid}-{expected.decode()}.log"
            h.call(h.driver.create, cid, bundle, IOConfig(log_path=log))
            h.call(h.driver.start, cid)
            assert h.call(h.driver.wait, cid).code == 0
            assert log_bytes(read_log(log), "stdout").strip() == expected
        (h.rootfs / "tmp" / "runs").unlink()
        h.destroy(cid)

    def test_pause_and_resume(self, h):
        cid = h.create(["sleep", "1000"])
        h.call(h.driver.start, cid)
        h.call(h.driver.pause, cid)
        assert h.state(cid).status == "paused"
        with pytest.raises(Conflict):
            h.call(h.driver.pause, cid)
        h.call(h.driver.resume, cid)
        assert h.state(cid).status == "running"
        with pytest.raises(Conflict):
            h.call(h.driver.resume, cid)
        h.destroy(cid)

    # ------------------------------------------------------------------ exec
    def test_exec_joins_the_running_container(self, h):
        cid = h.create(["sh", "-c", "echo marker > /tmp/m-$$; sleep 1000"], hostname="exec-host")
        h.call(h.driver.start, cid)
        _wait_for(lambda: (h.rootfs / "tmp" / "m-1").exists())
        code, out, err = h.exec(cid, ["sh", "-c", "hostname; cat /tmp/m-1; ps -o pid,comm | "
                                      "grep -c sleep; echo e >&2; exit 3"])
        assert code == 3
        lines = out.decode().split()
        assert lines[0] == "exec-host" and lines[1] == "marker" and lines[2] == "1"
        assert err == b"e\n"
        code, out, _ = h.exec(cid, ["cat"], stdin=b"through exec\n")
        assert code == 0 and out == b"through exec\n"
        code, out, _ = h.exec(cid, ["sh", "-c", "id -u; pwd"], user={"uid": 1000, "gid": 1000},
                              cwd="/tmp")
        assert out == b"1000\n/tmp\n"
        (h.rootfs / "tmp" / "m-1").unlink()
        h.destroy(cid)

    def test_exec_with_a_terminal(self, h):
        cid = h.create(["sleep", "1000"])
        h.call(h.driver.start, cid)
        code, out, err = h.exec(cid, ["sh", "-c", "tty; stty size"], terminal=True)
        assert code == 0 and err == b""
        assert b"/dev/pts/" in out and b"24 80" in out
        h.destroy(cid)

    # ------------------------------------------------------------------ errors
    def test_unknown_ids_are_not_found(self, h):
        ex = h.driver
        for call in (ex.start, ex.state, ex.wait, ex.delete, ex.pause, ex.resume, ex.top,
                     ex.attach):
            with pytest.raises(NotFound):
                h.call(call, "no-such-container")
        with pytest.raises(NotFound):
            h.call(ex.kill, "no-such-container", signal.SIGTERM)
        with pytest.raises(NotFound):
            h.call(ex.exec, "no-such-container", "e1", {"args": ["true"], "cwd": "/"}, IOConfig())
        with pytest.raises(NotFound):
            h.call(ex.wait_exec, "no-such-container", "e1")

    def test_missing_executable_is_not_found_at_start(self, h):
        cid = h.create(["no-such-program", "arg"])
        with pytest.raises(ProgramNotFound) as info:
            h.call(h.driver.start, cid)
        assert 'exec: "no-such-program": executable file not found in $PATH' in str(info.value)
        assert h.call(h.driver.wait, cid).code == 127
        h.destroy(cid)

    def test_missing_path_is_not_found(self, h):
        cid = h.create(["/no/such/file"])
        with pytest.raises(ProgramNotFound):
            h.call(h.driver.start, cid)
        h.destroy(cid)

    @pytest.mark.parametrize("program", ["/etc", "/etc/passwd"])
    def test_unrunnable_program_is_forbidden(self, h, program):
        cid = h.create([program])
        with pytest.raises(ProgramNotRunnable) as info:
            h.call(h.driver.start, cid)
        assert f'exec: "{program}": ' in str(info.value)
        assert h.call(h.driver.wait, cid).code == 126
        h.destroy(cid)

    def test_exec_of_a_missing_program_is_not_found(self, h):
        cid = h.create(["sleep", "1000"])
        h.call(h.driver.start, cid)
        with pytest.raises(ProgramNotFound):
            h.call(h.driver.exec, cid, "e1", {"args": ["nope"], "cwd": "/",
                                              "env": [f"PATH={DEFAULT_PATH}"]}, IOConfig())
        h.destroy(cid)

    def test_conflicts(self, h):
        cid = h.create(["sh", "-c", "exit 0"])
        h.call(h.driver.start, cid)
        with pytest.raises(Conflict):
            h.call(h.driver.start, cid)
        h.call(h.driver.wait, cid)
        with pytest.raises(Conflict):
            h.call(h.driver.start, cid)
        with pytest.raises(Conflict):
            h.call(h.driver.exec, cid, "e1", {"args": ["true"], "cwd": "/"}, IOConfig())
        with pytest.raises(Conflict):
            h.call(h.driver.attach, cid)
        with pytest.raises(Conflict):
            h.call(h.driver.kill, cid, signal.SIGTERM)
        with pytest.raises(Conflict):
            h.call(h.driver.pause, cid)
        h.destroy(cid)
        running = h.create(["sleep", "1000"])
        h.call(h.driver.start, running)
        with pytest.raises(Conflict):
            h.call(h.driver.delete, running)
        with pytest.raises(AlreadyExists):
            h.call(h.driver.create, running, h.bundle(["true"]), IOConfig())
        h.destroy(running)

    def test_malformed_bundles_are_invalid(self, h):
        empty = h.root / "empty-bundle"
        empty.mkdir()
        with pytest.raises(InvalidArgument):
            h.call(h.driver.create, h.new_id(), empty, IOConfig())
        (empty / "config.json").write_text("{not json")
        with pytest.raises(InvalidArgument):
            h.call(h.driver.create, h.new_id(), empty, IOConfig())
        spec = make_spec(h.rootfs, [])
        with pytest.raises(InvalidArgument):
            h.call(h.driver.create, h.new_id(), h.bundle([], spec=spec), IOConfig())
        spec = make_spec(h.root / "no-rootfs", ["true"])
        with pytest.raises(InvalidArgument):
            h.call(h.driver.create, h.new_id(), h.bundle([], spec=spec), IOConfig())

    # ------------------------------------------------------------------ attach
    def test_several_attachers_see_the_same_output(self, h):
        cid = h.create(["sh", "-c", "read line; echo got $line"], io=IOConfig(stdin=True))
        ex = h.driver

        async def go() -> list[bytes]:
            a, b = await ex.attach(cid), await ex.attach(cid)
            await ex.start(cid)
            await a.send_stdin(b"hello\n")
            outs = []
            for s in (a, b):
                data = b""
                while (got := await s.receive()) is not None:
                    data += got[1]
                outs.append(data)
                await s.aclose()
            return outs

        assert h.call(go) == [b"got hello\n", b"got hello\n"]
        assert h.call(ex.wait, cid).code == 0
        h.destroy(cid)

    def test_stdin_once_closes_stdin_when_the_attacher_leaves(self, h):
        cid = h.create(["sh", "-c", "cat; echo done"],
                       io=IOConfig(stdin=True, stdin_once=True, log_path=h.root / "once.log"))
        ex = h.driver

        async def go() -> None:
            s = await ex.attach(cid)
            await ex.start(cid)
            await s.send_stdin(b"abc\n")
            await trio.sleep(0.2)
            await s.aclose()

        h.call(go)
        assert h.call(ex.wait, cid).code == 0
        assert log_bytes(read_log(h.root / "once.log"), "stdout") == b"abc\ndone\n"
        h.destroy(cid)


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


class TestExecutor(ExecutorSuite):
    """Collected when this module is run with ``--pyargs``; runs for every ``--driver``."""
