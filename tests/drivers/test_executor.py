"""Executor: the built-in "container" driver through the conformance suite (via its entry
point), what only it does, and side by side with Debian's runc.

- the conformance suite (``core.testing.executor``) for ``executor=container``;
- the seccomp compiler against a BPF interpreter and a model of the OCI semantics (hypothesis),
  and docker's default profile on known system calls;
- daemon independence: a driver in a subprocess starts a container and is SIGKILLed with its
  process group; the container runs on and a new driver re-adopts it (list/attach/wait/delete);
- the same bundles under ``runc`` and under the executor: what the process observes
  (capabilities, no_new_privs, seccomp, mounts, hostname, ids, rlimits, cgroup limits, devices,
  loopback, the effect of seccomp rules) must be equal after normalising mount ids;
- OOM kills (exit 137, ``oom_killed``), pause/resume freezing for real, cgroups on the host
  (limits applied, removed on delete), stats/top, exec output replay, long state paths;
- the memory of idle containers: PSS of every shim, printed;
- the executor kit (``core.shim``): the contract's typed values, and executors (the built-in one,
  the runc example) that use only its public API.

Every test kills what it starts and removes cgroups and directories, even when it fails; a
session fixture first sweeps what a run killed halfway left (names carry the test process's pid).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.contracts.executor import (BlkioEntry, BlkioStats, ContainerState, ContainerStats, ContainerStatus,
                                     CpuStats, CpuUsage, IOConfig, MemoryStats, PidsStats, Preparer, Throttling,
                                     docker_stats)
from core.errors import Conflict
from core.testing.executor import (DEFAULT_CAPS, ExecutorSuite, Harness, log_bytes, make_spec,
                                   read_log)
from core.shim import cgroups
from tests.conftest import _kill_if_cmdline_has
from core.shim.client import request as shim_request
from core.shim.executor import ShimExecutor, pid_alive
from drivers.executor_container import seccomp
from drivers.executor_container.syscall_table import TABLES

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

REFERENCE_PROFILE = Path("/work/shared/reference/seccomp-default-profile.json")
TEST_CGROUP = "core-test-exec"      # parent of the cgroups the comparison tests name
MACHINE = os.uname().machine


# =========================================================================== stale state
def _remove_cgroup_dirs(rel: str) -> None:
    version, mounts = cgroups.hierarchies()
    cg = cgroups.Cgroup(version, {n: os.path.join(p, rel.lstrip("/")) for n, p in mounts.items()})
    with contextlib.suppress(OSError):
        cg.remove()


def sweep_stale(ours: bool = False) -> None:
    """Remove what an earlier run of these tests, killed halfway, left: containers named
    ``ct-<pid>-*`` (and the comparison's ``<pid>-*`` cgroups) whose test process is gone —
    or, with ``ours``, whatever this process left (the last resort when a test's own cleanup
    failed)."""
    def stale(name: str) -> bool:
        m = re.match(r"(?:ct-)?(\d+)-", name)
        if not m:
            return False
        pid = int(m.group(1))
        return pid == os.getpid() if ours else pid != os.getpid() and not pid_alive(pid)

    for root in Path("/tmp").glob("core-ct-*"):
        if not stale(root.name.removeprefix("core-ct-")):
            continue
        for state in root.glob("**/run/executor/container/*"):
            with contextlib.suppress(OSError, ValueError):   # the shim names its state dir
                _kill_if_cmdline_has(int((state / "shim.pid").read_text()), str(state))
            cg = cgroups.Cgroup.load(str(state / "cgroup"))   # removing it kills the container
            if cg is not None:
                with contextlib.suppress(OSError):
                    cg.remove()
        shutil.rmtree(root, ignore_errors=True)
    version, mounts = cgroups.hierarchies()
    for point in mounts.values():
        for parent in (Path(point) / "core", Path(point) / TEST_CGROUP):
            for d in parent.glob("*") if parent.is_dir() else []:
                if d.is_dir() and stale(d.name):
                    _remove_cgroup_dirs(str(d.relative_to(point)))
    for d in Path("/tmp").glob("core-runc-*"):
        if stale(d.name.removeprefix("core-runc-")):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _sweep():
    sweep_stale()
    yield
    sweep_stale(ours=True)
    for point in cgroups.hierarchies()[1].values():
        with contextlib.suppress(OSError):
            os.rmdir(Path(point) / TEST_CGROUP)


# =========================================================================== conformance
class TestContainerConformance(ExecutorSuite):
    name = "container"


# =========================================================================== seccomp
def run_bpf(program: bytes, nr: int, arch: int, args: tuple[int, ...]) -> int:
    """A classic BPF interpreter for seccomp programs (what the kernel runs)."""
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    data = struct.pack("=iIQ6Q", nr if nr < 2**31 else nr - 2**32, arch, 0, *args)
    acc = pc = 0
    for _ in range(100_000):
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x54:
            acc &= k
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x25:
            pc += jt if acc > k else jf
        elif code == 0x35:
            pc += jt if acc >= k else jf
        elif code == 0x45:
            pc += jt if acc & k else jf
        elif code == 0x05:
            pc += k
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
    raise AssertionError("the program loops")


def model(profile: dict, arch: str, name: str, args: tuple[int, ...]) -> int:
    """The OCI semantics the compiler implements: a system call's rules with conditions first
    (conditions ANDed, rules ORed, in profile order), then its first unconditional rule."""
    def holds(c: dict) -> bool:
        a, v, two = args[c["index"]], c["value"], c.get("valueTwo", 0)
        return {"SCMP_CMP_EQ": a == v, "SCMP_CMP_NE": a != v, "SCMP_CMP_LT": a < v,
                "SCMP_CMP_LE": a <= v, "SCMP_CMP_GT": a > v, "SCMP_CMP_GE": a >= v,
                "SCMP_CMP_MASKED_EQ": a & v == two}[c["op"]]

    default = seccomp.action_value(profile["defaultAction"], profile.get("defaultErrnoRet"))
    rules = [r for r in profile["syscalls"] if name in r["names"]]
    actions = [(r, seccomp.action_value(r["action"], r.get("errnoRet"))) for r in rules]
    for r, action in actions:
        if r.get("args") and action != default and all(holds(c) for c in r["args"]):
            return action
    for r, action in actions:
        if not r.get("args") and action != default:
            return action
    return default


_NAMES = ["read", "write", "openat", "clone", "personality", "socket", "mkdirat", "getpid"]
_EDGES = [0, 1, 2, 7, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**32, 2**32 + 1, 2**63, 2**64 - 1]
_values = st.one_of(st.sampled_from(_EDGES), st.integers(0, 2**64 - 1), st.integers(0, 64))
_ACTIONS = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_TRAP", "SCMP_ACT_LOG",
            "SCMP_ACT_KILL_PROCESS"]
_OPS = ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE",
        "SCMP_CMP_MASKED_EQ"]
_cond = st.fixed_dictionaries({"index": st.integers(0, 2), "value": _values,
                               "op": st.sampled_from(_OPS)},
                              optional={"valueTwo": _values})
_rule = st.fixed_dictionaries({"names": st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3,
                                                  unique=True),
                               "action": st.sampled_from(_ACTIONS)},
                              optional={"args": st.lists(_cond, max_size=3),
                                        "errnoRet": st.integers(1, 200)})
_profile = st.fixed_dictionaries({"defaultAction": st.sampled_from(_ACTIONS),
                                  "syscalls": st.lists(_rule, max_size=8)},
                                 optional={"defaultErrnoRet": st.integers(1, 200)})


@settings(max_examples=300, deadline=None)
@given(profile=_profile, name=st.sampled_from(_NAMES + ["close"]),
       args=st.tuples(_values, _values, _values), data=st.data())
def test_seccomp_compiler_matches_the_model(profile, name, args, data):
    program, _flags = seccomp.compile_profile(profile, "x86_64")
    table = TABLES["SCMP_ARCH_X86_64"]
    got = run_bpf(program, table[name], seccomp.AUDIT_ARCH["SCMP_ARCH_X86_64"], args + (0, 0, 0))
    assert got == model(profile, "SCMP_ARCH_X86_64", name, args)
    program, _ = seccomp.compile_profile(profile, "aarch64")
    nr = TABLES["SCMP_ARCH_AARCH64"][name if name in TABLES["SCMP_ARCH_AARCH64"] else "close"]
    aname = name if name in TABLES["SCMP_ARCH_AARCH64"] else "close"
    assert run_bpf(program, nr, seccomp.AUDIT_ARCH["SCMP_ARCH_AARCH64"], args + (0, 0, 0)) == \
        model(profile, "SCMP_ARCH_AARCH64", aname, args)


@pytest.mark.skipif(not REFERENCE_PROFILE.exists(), reason="no reference seccomp profile")
def test_docker_default_profile_on_known_calls():
    profile = seccomp.from_docker_profile(json.loads(REFERENCE_PROFILE.read_text()), DEFAULT_CAPS,
                                          machine="x86_64", kernel=(6, 1))
    program, _ = seccomp.compile_profile(profile, "x86_64")
    assert len(program) // 8 <= seccomp.MAX_INSNS
    x64, x86 = seccomp.AUDIT_ARCH["SCMP_ARCH_X86_64"], seccomp.AUDIT_ARCH["SCMP_ARCH_X86"]
    t = TABLES["SCMP_ARCH_X86_64"]
    allow, eperm = seccomp.RET_ALLOW, seccomp.RET_ERRNO | 1

    def run(name: str, *args: int, arch: int = x64, table: dict = t) -> int:
        return run_bpf(program, table[name], arch, tuple(args) + (0,) * (6 - len(args)))

    assert run("read") == allow and run("execve") == allow
    assert run("clone", 0x11) == allow                      # a fork
    assert run("clone", 0x10000000) == eperm                # CLONE_NEWUSER
    assert run("clone3") == seccomp.RET_ERRNO | 38          # ENOSYS: glibc falls back to clone
    assert run("unshare") == eperm and run("mount") == eperm and run("bpf") == eperm
    assert run("personality", 0) == allow and run("personality", 1) == eperm
    assert run("personality", 0xFFFFFFFF) == allow
    assert run("socket", 2) == allow and run("socket", 40) == eperm   # AF_VSOCK
    assert run("socket", 41) == allow and run("socket", 39) == allow
    assert run("arch_prctl") == allow
    assert run_bpf(program, 0x40000000 + 0, x64, (0,) * 6) == allow     # x32 read
    assert run("read", arch=x86, table=TABLES["SCMP_ARCH_X86"]) == allow
    assert run_bpf(program, 3, 0xC00000B7, (0,) * 6) == seccomp.RET_KILL_THREAD  # not listed
    # with CAP_SYS_ADMIN, clone is unconditional and unshare allowed
    admin = seccomp.from_docker_profile(json.loads(REFERENCE_PROFILE.read_text()),
                                        DEFAULT_CAPS + ["CAP_SYS_ADMIN"], machine="x86_64",
                                        kernel=(6, 1))
    program, _ = seccomp.compile_profile(admin, "x86_64")
    assert run("clone", 0x10000000) == allow and run("unshare") == allow


def test_unknown_syscall_names_are_skipped_and_bad_profiles_refused():
    program, _ = seccomp.compile_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_call", "getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]}, "x86_64")
    t = TABLES["SCMP_ARCH_X86_64"]
    assert run_bpf(program, t["getpid"], 0xC000003E, (0,) * 6) == seccomp.RET_ERRNO | 5
    for bad in ({"defaultAction": "SCMP_ACT_NOTIFY"},
                {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
                {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}):
        with pytest.raises(seccomp.SeccompError):
            seccomp.compile_profile(bad, "x86_64")


def test_compiled_filters_are_cached_per_profile(tmp_path):
    profile = seccomp.from_docker_profile(json.loads(REFERENCE_PROFILE.read_text()), DEFAULT_CAPS,
                                          machine=os.uname().machine, kernel=(6, 1))
    cache = tmp_path / ".seccomp"
    first = seccomp.compile_cached(profile, str(cache))
    assert first == seccomp.compile_profile(profile)
    (entry,) = cache.iterdir()
    assert seccomp.compile_cached(profile, str(cache)) == first       # read back
    other = {**profile, "defaultAction": "SCMP_ACT_KILL"}
    assert seccomp.compile_cached(other, str(cache)) == seccomp.compile_profile(other)
    assert len(list(cache.iterdir())) == 2                              # one file per profile
    entry.write_bytes(b"\x00" * 7)                                      # damaged: compiled again
    assert seccomp.compile_cached(profile, str(cache)) == first
    assert entry.read_bytes()[4:] == first[0]
    with pytest.raises(seccomp.SeccompError):                           # errors are not cached
        seccomp.compile_cached({"defaultAction": "SCMP_ACT_NOTIFY"}, str(cache))
    assert len(list(cache.iterdir())) == 2


# =========================================================================== harness
@pytest.fixture
def h():
    harness = Harness("executor", "container")
    try:
        yield harness
    finally:
        harness.close()


def _shim_pid(h: Harness, cid: str) -> int:
    return int((h.context.exec_root / cid / "shim.pid").read_text())


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise AssertionError("no Pss")


# =========================================================================== daemon independence
DRIVER_SCRIPT = textwrap.dedent("""
    import json, sys, time, trio
    from pathlib import Path
    from core.testing import make_driver
    from core.contracts.executor import IOConfig

    root, bundle, cid = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    async def main():
        _loaded, _ctx, ex = make_driver("executor", "container", root)
        await ex.create(cid, bundle, IOConfig(stdin=True, log_path=root / "indep.log"))
        pid = await ex.start(cid)
        print("started", pid, flush=True)
        await trio.sleep_forever()

    trio.run(main)
""")


def test_containers_survive_the_daemon_and_are_re_adopted(h):
    cid = h.new_id()
    bundle = h.bundle(["sh", "-c", 'while read l; do echo "got $l"; done; echo bye'])
    daemon = subprocess.Popen([sys.executable, "-c", DRIVER_SCRIPT, str(h.root), str(bundle), cid],
                              stdout=subprocess.PIPE, start_new_session=True)
    try:
        line = daemon.stdout.readline().decode()
        assert line.startswith("started"), line
        init = int(line.split()[1])
        shim = _shim_pid(h, cid)
        os.killpg(daemon.pid, signal.SIGKILL)        # the daemon and its whole process group
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
    time.sleep(0.2)
    assert pid_alive(shim) and pid_alive(init)
    # a new driver object (a new daemon) finds it and carries on
    h.call(h.driver.aclose)
    h.driver = h.loaded.create(h.context)
    listed = {s.id: s for s in h.call(h.driver.list)}
    assert listed[cid].status == "running" and listed[cid].pid == init

    async def talk() -> bytes:
        stream = await h.driver.attach(cid)
        await stream.send_stdin(b"hello\n")
        got = b""
        while b"got hello\n" not in got:
            got += (await stream.receive())[1]
        await stream.close_stdin()
        while (more := await stream.receive()) is not None:
            got += more[1]
        await stream.aclose()
        return got

    assert h.call(talk) == b"got hello\nbye\n"
    assert h.call(h.driver.wait, cid).code == 0
    assert log_bytes(read_log(h.root / "indep.log"), "stdout") == b"got hello\nbye\n"
    h.call(h.driver.delete, cid)
    deadline = time.monotonic() + 5
    while pid_alive(shim) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(shim)


def test_a_killed_shim_leaves_a_container_that_can_still_be_stopped(h):
    cid = h.create(["sleep", "1000"])
    init = h.call(h.driver.start, cid)
    os.kill(_shim_pid(h, cid), signal.SIGKILL)
    time.sleep(0.2)
    st = h.state(cid)
    assert st.status == "running" and st.pid == init
    h.call(h.driver.kill, cid, signal.SIGKILL, True)
    deadline = time.monotonic() + 5
    while pid_alive(init) and time.monotonic() < deadline:
        time.sleep(0.02)
    status = h.call(h.driver.wait, cid)
    assert status.code == 255                 # nobody was there to reap it: unknown
    h.call(h.driver.delete, cid)


# =========================================================================== what only it does
def test_cgroup_limits_on_the_host_and_removed_on_delete(h):
    cid = h.create(["sleep", "1000"], memory=48 << 20, pids=64, cpus=1.5)
    h.call(h.driver.start, cid)
    cg = cgroups.Cgroup.load(str(h.context.exec_root / cid / "cgroup"))
    assert cg is not None
    paths = dict(cg.paths)
    if cg.version == 1:
        mem = next(p for n, p in paths.items() if "memory" in n.split(","))
        cpu = next(p for n, p in paths.items() if "cpu" in n.split(","))
        pids = next(p for n, p in paths.items() if "pids" in n.split(","))
        assert Path(mem, "memory.limit_in_bytes").read_text().strip() == str(48 << 20)
        assert Path(cpu, "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert Path(cpu, "cpu.cfs_period_us").read_text().strip() == "100000"
        assert Path(pids, "pids.max").read_text().strip() == "64"
        assert mem.endswith(f"/core/{cid}")
    else:
        base = paths[""]
        assert Path(base, "memory.max").read_text().strip() == str(48 << 20)
        assert Path(base, "cpu.max").read_text().split() == ["150000", "100000"]
        assert Path(base, "pids.max").read_text().strip() == "64"
    top = h.call(h.driver.top, cid)
    assert h.state(cid).pid in top
    stats = docker_stats(h.call(h.driver.stats, cid))
    assert stats["memory_stats"]["limit"] == 48 << 20 and stats["memory_stats"]["usage"] > 0
    assert stats["pids_stats"]["current"] >= 1
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    h.destroy(cid)
    assert not any(os.path.exists(p) for p in paths.values())


def test_cgroup_v2_freezer_and_processes_on_the_unified_hierarchy():
    """This host is cgroup v1 (hybrid): the v2 code paths that need no controller (create,
    join, freeze/thaw through cgroup.freeze, pids, remove) run on the hybrid cgroup2 mount."""
    unified = cgroups.hierarchies()[1].get("")
    if not unified or not os.path.exists(os.path.join(unified, "cgroup.procs")):
        pytest.skip("no cgroup2 hierarchy here")
    path = os.path.join(unified, TEST_CGROUP, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    cg = cgroups.Cgroup(2, {"": path})
    proc = subprocess.Popen(["sleep", "100"])
    try:
        cg.create()
        cg.join(proc.pid)
        assert cg.pids() == [proc.pid]
        cg.freeze()
        assert cg.frozen()
        cg.thaw()
        assert not cg.frozen()
    finally:
        cg.remove()
        proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))
    assert proc.returncode == -signal.SIGKILL and not os.path.exists(path)


def test_oom_kill_is_137_and_reported(h):
    r = h.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], memory=16 << 20)
    assert r.code == 137 and r.status.oom_killed
    r = h.run(["sh", "-c", "exit 0"], memory=16 << 20)
    assert r.code == 0 and not r.status.oom_killed


def test_pause_freezes_every_process(h):
    cid = h.create(["sh", "-c", "while :; do echo tick >> /tmp/tick-$$; done"])
    h.call(h.driver.start, cid)
    tick = h.rootfs / "tmp" / "tick-1"

    def value() -> int:
        return tick.stat().st_size

    deadline = time.monotonic() + 5
    while not tick.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    h.call(h.driver.pause, cid)
    frozen = value()
    time.sleep(0.3)
    assert value() == frozen and h.state(cid).status == "paused"
    with pytest.raises(Conflict):
        h.call(h.driver.exec, cid, "e1", {"args": ["true"], "cwd": "/"}, IOConfig())
    h.call(h.driver.resume, cid)
    time.sleep(0.3)
    assert value() > frozen
    # SIGKILL of a paused container thaws it so that it dies
    h.call(h.driver.pause, cid)
    h.call(h.driver.kill, cid, signal.SIGKILL)
    assert h.call(h.driver.wait, cid).code == 137
    tick.unlink()
    h.destroy(cid)


def test_exec_output_before_attach_is_replayed(h):
    cid = h.create(["sleep", "1000"])
    h.call(h.driver.start, cid)
    proc = {"args": ["sh", "-c", "echo early; echo err >&2"], "cwd": "/",
            "env": ["PATH=/bin:/usr/bin"]}
    h.call(h.driver.exec, cid, "early", proc, IOConfig())
    assert h.call(h.driver.wait_exec, cid, "early") == 0

    async def collect() -> dict[int, bytes]:
        stream = await h.driver.attach(cid, "early")
        out = {1: b"", 2: b""}
        while (got := await stream.receive()) is not None:
            out[got[0]] += got[1]
        await stream.aclose()
        return out

    assert h.call(collect) == {1: b"early\n", 2: b"err\n"}
    h.destroy(cid)


def test_the_shim_forgets_finished_execs_and_connections(h):
    cid = h.create(["sleep", "1000"])
    h.call(h.driver.start, cid)
    for _ in range(10):
        assert h.exec(cid, ["sh", "-c", "echo x"])[:2] == (0, b"x\n")
    debug = h.call(shim_request, h.context.exec_root / cid / "sock", "debug")
    assert debug["execs"] == 0 and debug["conns"] == 1 and debug["helpers"] == 0, debug
    h.destroy(cid)


def test_long_state_paths_use_a_short_socket_address():
    root = Path(tempfile.mkdtemp(prefix=f"core-ct-{os.getpid()}-", dir="/tmp"))
    try:
        harness = Harness("executor", "container", root=root / ("d" * 60) / ("e" * 60))
        try:
            r = harness.run(["cat"], stdin=b"long path\n")
            assert r.code == 0 and r.stdout == b"long path\n"
            assert len(str(harness.context.exec_root / "ct-x" / "sock")) > 108
        finally:
            harness.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_memory_per_idle_container(h, capsys):
    """The issue's budget: <= 10 MiB of host memory of all core processes per idle running
    container.  The daemon's share is per daemon, not per container: what a container adds is
    its shim (the container's own processes are the user's)."""
    ids = [h.create(["sleep", "1000"]) for _ in range(5)]
    for cid in ids:
        h.call(h.driver.start, cid)
    time.sleep(0.5)
    shims = [_shim_pid(h, cid) for cid in ids]
    pss = [_pss_kib(p) for p in shims]
    with capsys.disabled():
        print(f"\n[executor] PSS of the shims of 5 idle containers (KiB): {pss}; "
              f"mean {sum(pss) / len(pss):.0f} KiB")
    assert max(pss) < 10 * 1024
    for cid in ids:
        h.destroy(cid)
    assert not any(pid_alive(p) for p in shims)


def test_exec_that_fails_before_it_runs_has_an_exit_code(h):
    from core.errors import InvalidArgument
    cid = h.create(["sleep", "1000"])
    h.call(h.driver.start, cid)
    bad = {"args": ["true"], "cwd": "/", "rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1,
                                                      "hard": 1}]}
    with pytest.raises(InvalidArgument):
        h.call(h.driver.exec, cid, "bad", bad, IOConfig())
    assert h.call(h.driver.wait_exec, cid, "bad") == 126
    h.destroy(cid)


def test_user_namespaces_and_malformed_specs_are_refused(h):
    spec = make_spec(h.rootfs, ["true"])
    spec["linux"]["namespaces"].append({"type": "user"})
    from core.errors import InvalidArgument
    with pytest.raises(InvalidArgument):
        h.call(h.driver.create, h.new_id(), h.bundle([], spec=spec), IOConfig())
    spec = make_spec(h.rootfs, ["true"], seccomp={"defaultAction": "SCMP_ACT_NOTIFY"})
    with pytest.raises(InvalidArgument):
        h.call(h.driver.create, h.new_id(), h.bundle([], spec=spec), IOConfig())
    missing = f"/tmp/core-ct-{os.getpid()}-missing-{uuid.uuid4().hex}"
    spec = make_spec(h.rootfs, ["true"], mounts=[{"destination": "/x", "type": "bind",
                                                  "source": missing, "options": ["rbind"]}])
    from core.errors import NotFound
    with pytest.raises(NotFound):
        h.call(h.driver.create, h.new_id(), h.bundle([], spec=spec), IOConfig())
    assert not os.path.exists(missing)
    assert h.call(h.driver.list) == []


def test_bind_mount_options_and_volumes(h):
    vol = h.root / "vol"
    vol.mkdir()
    (vol / "f").write_text("from the host\n")
    mounts = [{"destination": "/ro", "type": "bind", "source": str(vol),
               "options": ["rbind", "ro", "nosuid", "nodev"]},
              {"destination": "/rw/deep", "type": "bind", "source": str(vol), "options": ["bind"]},
              {"destination": "/etc/hostfile", "type": "bind", "source": str(vol / "f"),
               "options": ["bind", "ro"]},
              {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "size=1m", "mode=700"]}]
    r = h.run(["sh", "-c", "cat /ro/f /etc/hostfile; touch /ro/x 2>/dev/null || echo ro-refused; "
               "echo written > /rw/deep/new; stat -c %a /scratch; grep -E ' /(ro|scratch) ' "
               "/proc/self/mountinfo | cut -d' ' -f5,6"], mounts=mounts)
    lines = r.stdout.decode().splitlines()
    assert lines[:4] == ["from the host", "from the host", "ro-refused", "700"], lines
    assert "/ro ro,nosuid,nodev,relatime" in lines and any(l.startswith("/scratch rw,nosuid")
                                                           for l in lines), lines
    assert (vol / "new").read_text() == "written\n"


def test_mount_destinations_cannot_escape_the_rootfs_through_symlinks(h):
    outside = h.root / "outside"
    outside.mkdir()
    (h.rootfs / "evil").symlink_to(f"/../../../..{outside}")      # absolute, with ..s
    (h.rootfs / "evil2").symlink_to(f"../../../../../..{outside}")  # relative
    mounts = [{"destination": "/evil/a", "type": "tmpfs", "source": "tmpfs", "options": []},
              {"destination": "/evil2/b", "type": "tmpfs", "source": "tmpfs", "options": []}]
    try:
        r = h.run(["sh", "-c", f"grep -c tmpfs /proc/self/mountinfo; ls -d {outside}/a {outside}/b"],
                  mounts=mounts)
        assert r.code == 0, r
        assert list(outside.iterdir()) == []     # nothing created (or mounted) outside
        assert (h.rootfs / outside.relative_to("/") / "a").is_dir()
    finally:
        (h.rootfs / "evil").unlink()
        (h.rootfs / "evil2").unlink()


def test_joins_a_given_network_namespace(h):
    name = f"core-ct-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["nsenter", f"--net=/var/run/netns/{name}", "ip", "addr", "add",
                        "10.123.45.6/32", "dev", "lo"], check=True)
        r = h.run(["ip", "-o", "addr"], network_ns=f"/var/run/netns/{name}")
        assert r.code == 0 and "10.123.45.6/32" in r.stdout.decode()
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


# =========================================================================== runc comparison
OBSERVE = r"""
echo "== status"; grep -E "^(Cap|NoNewPrivs|Seccomp)" /proc/self/status
echo "== mounts"; cat /proc/self/mountinfo
echo "== hostname"; hostname
echo "== id"; id
echo "== limits"; cat /proc/self/limits
echo "== cgroup"; cat /proc/self/cgroup
for f in memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us \
         memory.max pids.max cpu.max; do
  [ -e /sys/fs/cgroup/$f ] && echo "$f $(cat /sys/fs/cgroup/$f)"
done
echo "== oom"; cat /proc/self/oom_score_adj
echo "== umask"; umask
echo "== cwd"; pwd
echo "== dev"; for f in /dev/* /dev/pts/*; do stat -c '%n %F %a %u %g %t:%T' $f; done
echo "== sys"; ls /sys/fs/cgroup
echo "== net"; ip -o link | cut -d' ' -f2,3
echo "== sysctl"; cat /proc/sys/net/ipv4/ip_unprivileged_port_start
echo "== probes"
unshare -U true 2>&1; echo "unshare rc=$?"
mkdir /tmp/probe-dir 2>&1; echo "mkdir rc=$?"
touch /tmp/probe-f 2>&1; chmod 700 /tmp/probe-f 2>&1; echo "chmod700 rc=$?"
chmod 755 /tmp/probe-f 2>&1; echo "chmod755 rc=$?"; rm -rf /tmp/probe-f /tmp/probe-dir
touch /probe-root 2>&1; echo "touch-root rc=$?"; rm -f /probe-root
echo "== ns"; for n in mnt pid net uts ipc cgroup; do readlink /proc/self/ns/$n; done
"""


def normalise(out: str) -> tuple[dict[str, str], list[str]]:
    """Sections of OBSERVE's output; mount ids and anonymous device numbers dropped."""
    sections: dict[str, str] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("== "):
            current = line[3:]
            sections[current] = ""
            continue
        if current == "mounts":
            fields = line.split()
            fields = fields[2:]
            if fields[0].startswith("0:"):
                fields[0] = "0:*"
            line = " ".join(fields)
        if current is not None:
            sections[current] += line + "\n"
    ns = sections.pop("ns", "").split()
    return sections, ns


CUSTOM_SECCOMP = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 1, "value": 0o777, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 2, "value": 0o777, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["getrandom"], "action": "SCMP_ACT_LOG"},
    ],
}


def _variants() -> dict[str, dict]:
    docker = None
    if REFERENCE_PROFILE.exists():
        docker = seccomp.from_docker_profile(json.loads(REFERENCE_PROFILE.read_text()),
                                             DEFAULT_CAPS)
    return {
        "docker-defaults": dict(memory=64 << 20, pids=100, cpus=0.5, oom_score_adj=100,
                                rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}],
                                seccomp=docker, sysctl={"net.ipv4.ip_unprivileged_port_start": "0"}),
        "user-and-groups": dict(uid=1000, gid=1000, additional_gids=[10, 20], cwd="/tmp",
                                seccomp=docker),
        "hardened": dict(readonly=True, no_new_privileges=True, seccomp=docker,
                         capabilities=["CAP_NET_BIND_SERVICE", "CAP_KILL"]),
        "custom-seccomp": dict(seccomp=CUSTOM_SECCOMP),
        "all-caps-no-seccomp": dict(capabilities=sorted(
            c for c in __import__("drivers.executor_container.linux", fromlist=["x"]).CAPABILITIES
            if c != "CAP_SYS_RESOURCE")),   # (this host's bounding set lacks CAP_SYS_RESOURCE)
    }


@pytest.fixture
def runc():
    binary = shutil.which("runc")
    if binary is None:
        pytest.skip("runc is not installed (apt-get install runc)")
    state = Path(f"/tmp/core-runc-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    state.mkdir()
    started: list[str] = []

    def run(bundle: Path) -> tuple[int, str, str]:
        cid = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        started.append(cid)
        p = subprocess.run([binary, "--root", str(state), "run", "--bundle", str(bundle), cid],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    try:
        yield run
    finally:
        for cid in started:
            subprocess.run([binary, "--root", str(state), "delete", "--force", cid],
                           capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("variant", list(_variants()))
def test_same_bundle_under_runc_and_the_executor(h, runc, variant):
    kw = _variants()[variant]
    if "seccomp" in kw and kw["seccomp"] is None:
        pytest.skip("no reference seccomp profile")
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    paths = {who: f"/{TEST_CGROUP}/{tag}-{who}" for who in ("runc", "core")}
    try:
        bundle = h.bundle([], spec=make_spec(h.rootfs, ["sh", "-c", OBSERVE],
                                             cgroups_path=paths["runc"], **kw))
        code, theirs, err = runc(bundle)
        assert code == 0, err
        r = h.run(["sh", "-c", OBSERVE], cgroups_path=paths["core"], **kw)
        assert r.code == 0, r
        ours = r.stdout.decode()
    finally:
        for path in paths.values():
            _remove_cgroup_dirs(path)
    a, ns_a = normalise(theirs)
    b, ns_b = normalise(ours)
    assert list(a) == list(b)
    for section in a:
        assert b[section] == a[section], f"{variant}: {section} differs:\nrunc:\n{a[section]}\n" \
                                         f"core:\n{b[section]}"
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "pid", "net", "uts", "ipc", "cgroup")]
    assert all(x != y for x, y in zip(ns_a, host)) and all(x != y for x, y in zip(ns_b, host))


# =========================================================================== the contract, the kit
def test_container_status_is_a_string_enum():
    st = ContainerState(id="x", status="running")
    assert st.status is ContainerStatus.RUNNING and st.status == "running" and f"{st.status}" == "running"
    with pytest.raises(ValueError):
        ContainerState(id="x", status="sleeping")


def test_docker_stats_renders_the_typed_stats():
    assert docker_stats(ContainerStats()) == {"memory_stats": {}, "cpu_stats": {}, "pids_stats": {},
                                              "blkio_stats": {}}
    stats = ContainerStats(
        memory=MemoryStats(usage=10, limit=20, max_usage=15, failcnt=1, stats={"cache": 3}),
        cpu=CpuStats(usage=CpuUsage(total=9, user=5, kernel=4, percpu=[4, 5]),
                     throttling=Throttling(periods=2, throttled_periods=1, throttled_time=7),
                     system_usage=100, online_cpus=2),
        pids=PidsStats(current=3, limit=64),
        blkio=BlkioStats(service_bytes=[BlkioEntry(major=8, minor=0, op="read", value=512)]))
    assert docker_stats(stats) == {
        "memory_stats": {"usage": 10, "max_usage": 15, "limit": 20, "failcnt": 1, "stats": {"cache": 3}},
        "cpu_stats": {"cpu_usage": {"total_usage": 9, "percpu_usage": [4, 5], "usage_in_usermode": 5,
                                    "usage_in_kernelmode": 4},
                      "throttling_data": {"periods": 2, "throttled_periods": 1, "throttled_time": 7},
                      "system_cpu_usage": 100, "online_cpus": 2},
        "pids_stats": {"current": 3, "limit": 64},
        "blkio_stats": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "read", "value": 512}],
                        "io_serviced_recursive": None}}
    v2 = ContainerStats(memory=MemoryStats(usage=1, limit=2), cpu=CpuStats(online_cpus=1),
                        pids=PidsStats(current=1), blkio=BlkioStats())
    assert docker_stats(v2) == {
        "memory_stats": {"usage": 1, "limit": 2, "stats": {}},
        "cpu_stats": {"cpu_usage": {}, "throttling_data": {}, "online_cpus": 1},
        "pids_stats": {"current": 1},
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None}}


def test_the_built_in_executor_is_a_shim_executor_and_a_preparer(h):
    assert isinstance(h.driver, ShimExecutor) and isinstance(h.driver, Preparer)


def _private_uses(package: Path, own: str) -> list[str]:
    """What the modules of ``package`` (dotted name ``own``) use of other packages that is not
    public: imports from ``drivers`` (but its own), imported names with a leading underscore,
    private attributes of :class:`ShimExecutor` on ``self`` or ``super()``."""
    import ast

    private = {n for n in vars(ShimExecutor) if n.startswith("_") and not n.startswith("__")}
    found = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith(own):
                if node.module.split(".")[0] == "drivers":
                    found.append(f"{path.name}: from {node.module}")
                found += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names
                          if a.name.split(".")[0] == "drivers" and not a.name.startswith(own)]
            elif isinstance(node, ast.Attribute) and node.attr in private and node.attr not in defined:
                on = node.value
                if (isinstance(on, ast.Name) and on.id == "self") or (
                        isinstance(on, ast.Call) and isinstance(on.func, ast.Name) and on.func.id == "super"):
                    found.append(f"{path.name}: .{node.attr}")
    return found


def test_executors_use_only_the_public_kit():
    repo = Path(__file__).resolve().parents[2]
    example = repo / "examples" / "core-runc-executor" / "core_runc_executor"
    assert _private_uses(example, "core_runc_executor") == []
    assert _private_uses(repo / "drivers" / "executor_container", "drivers.executor_container") == []
