"""Machines for multi-host tests: network namespaces on one underlay bridge, each its own engine.

A :class:`Cluster` is a set of :class:`Host` objects.  Each host is a network namespace with one
interface ``eth0`` (an address of the cluster's 10.x.y.0/24) plugged into a bridge ``br0`` that
lives in a namespace of its own (the *underlay*): nothing is added to the machine's own network
namespace, so the host's firewall (a FORWARD DROP another engine set, br_netfilter) never sees
the traffic and two runs can never collide on links or addresses.  Each host runs its own
``core daemon`` (own data root, exec root, socket, nft tables) started with
``unshare --uts`` + ``nsenter --net`` and its hostname set to the host's name.

Everything lives under ``/tmp/core-hosts-<pid>x<n>/`` (the harness's directory)::

    state.json          owner pid, namespaces made, pids started: what the sweep undoes
    <host>/data, run    the host's data root and exec root (socket: run/core.sock)
    <host>/daemon.json  its config (own nft table)
    <host>/daemon.log   its output

Namespaces are named ``coreh<pid>x<n>-<host>`` (``-ul`` for the underlay).  :meth:`Cluster.close`
stops the daemons (and any process left in the hosts' namespaces), removes containers, shims,
mounts, namespaces and the directory, even after a failure; :func:`sweep` does the same for runs
whose owner process is dead (called once per test process, before the first cluster).  No process
is ever found by name: only pids the harness started, or that run inside its own namespaces.

Usage::

    with Cluster(managers=3, workers=2) as cluster:        # or the ``cluster`` fixture
        mgr1 = cluster["mgr1"]
        mgr1.core("info")                                   # CompletedProcess
        mgr1.docker().info()["Name"]                        # "mgr1"
        mgr1.exec("ping", "-c1", cluster["wrk1"].address)
        mgr1.cut(); mgr1.restore()                          # its underlay link down / up
        mgr1.stop(); mgr1.start()                           # its daemon
        cluster.forward_loopback(registry_port)             # 127.0.0.1:PORT of the test process
                                                            # answers inside every host too

A test module sets ``CLUSTER_SHAPE = (managers, workers)`` (default ``(3, 2)``) for the
module-scoped ``cluster`` fixture; tests of one module share that cluster.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from core.testing import pid_alive
from core.testing import unmount_below
from tests.support.helpers import socket_answers as _answers, stop_pid

HARNESS_DIR_PREFIX = "core-hosts-"
NETNS_PREFIX = "coreh"
NETNS_DIR = Path("/run/netns")
CORE = [sys.executable, "-m", "core"]
DEFAULT_SHAPE = (3, 2)

_seq = itertools.count()
_swept = False


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _terminate(pid: int, needle: str | None = None, timeout: float = 10.0) -> None:
    """SIGTERM ``pid`` (if its command line names ``needle``), SIGKILL after ``timeout``."""
    if needle is not None and needle.encode() not in _cmdline(pid):
        return
    stop_pid(pid, timeout)


def _netns_pids(netns: str) -> list[int]:
    proc = _ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()] if proc.returncode == 0 else []


def _remove_containers_under(root: Path) -> None:
    # the shared cleanup of tests/conftest.py (shims, container processes, cgroups)
    from tests.conftest import remove_containers_under

    remove_containers_under(root)


def _destroy(root: Path, netns: list[str], pids: dict[str, str]) -> None:
    """Undo one harness run: processes, containers, namespaces, mounts, files."""
    for pid, needle in pids.items():
        _terminate(int(pid), needle)
    for ns in netns:  # whatever else runs there (an etcd a killed daemon left, say): ours
        for pid in _netns_pids(ns):
            _terminate(pid, timeout=5.0)
    for pidfile in root.glob("*/data/swarm/etcd.pid"):
        with contextlib.suppress(OSError, ValueError):
            _terminate(int(pidfile.read_text()), str(pidfile.parent), timeout=5.0)
    if root.is_dir():
        for host_root in root.iterdir():  # each host's engine: its shims, containers, cgroups
            if (host_root / "run").is_dir():
                _remove_containers_under(host_root)
    for ns in netns:
        if (NETNS_DIR / ns).exists():
            _ip("netns", "delete", ns, check=False)
    unmount_below(root)
    shutil.rmtree(root, ignore_errors=True)


def sweep() -> None:
    """Remove what killed runs of the harness left: their directories, processes and namespaces
    (only those of runs whose owner process is gone)."""
    for root in Path("/tmp").glob(f"{HARNESS_DIR_PREFIX}*"):
        try:
            state = json.loads((root / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        owner = state.get("owner") or _owner_of(root.name.removeprefix(HARNESS_DIR_PREFIX))
        if owner and pid_alive(owner):
            continue
        _destroy(root, list(state.get("netns", [])), dict(state.get("pids", {})))
    if NETNS_DIR.is_dir():
        for path in NETNS_DIR.glob(f"{NETNS_PREFIX}*"):  # a namespace whose directory is gone
            owner = _owner_of(path.name.removeprefix(NETNS_PREFIX).split("-", 1)[0])
            if owner and not pid_alive(owner):
                for pid in _netns_pids(path.name):
                    _terminate(pid, timeout=5.0)
                _ip("netns", "delete", path.name, check=False)


def _owner_of(run_id: str) -> int | None:
    head = run_id.split("x", 1)[0]
    return int(head) if head.isdigit() else None


_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _listen_in_netns(netns_path: Path, port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` of another network namespace (made by a
    short-lived thread that enters it: the calling thread's namespace never changes)."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(target, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns_path}: {os.strerror(err)}")
            finally:
                os.close(target)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(64)
            out["sock"] = sock
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["error"] = exc
        # the thread ends here, inside the other namespace: nothing else runs on it

    t = threading.Thread(target=work, name=f"netns-listen-{port}")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


class _Forwarder:
    """Connections to 127.0.0.1:PORT inside a host's namespace, relayed to 127.0.0.1:PORT of
    the test process's own namespace (where the test registry listens)."""

    def __init__(self, netns_path: Path, port: int) -> None:
        self.port = port
        self.listener = _listen_in_netns(netns_path, port)
        self.conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name=f"forward-{port}").start()

    def _accept(self) -> None:
        while True:
            try:
                inner, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                outer = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                outer.settimeout(None)
            except OSError:
                inner.close()
                continue
            with self._lock:
                self.conns += [inner, outer]
            for a, b in ((inner, outer), (outer, inner)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.close()


class Host:
    """One machine of a :class:`Cluster`: a network namespace, an address, an engine."""

    def __init__(self, cluster: Cluster, name: str, role: str, index: int) -> None:
        self.cluster = cluster
        self.name = name
        self.role = role  # "manager" or "worker": what the swarm tests will make of it
        self.index = index
        self.address = f"{cluster.subnet_prefix}.{10 + index}"
        self.netns = f"{NETNS_PREFIX}{cluster.run_id}-{name}"
        self.netns_path = NETNS_DIR / self.netns
        self.link = f"h{index}"  # its port on the underlay bridge (inside the underlay namespace)
        self.root = cluster.root / name
        self.data_root = self.root / "data"
        self.exec_root = self.root / "run"
        self.socket = self.exec_root / "core.sock"
        self.url = f"unix://{self.socket}"
        self.nft_table = f"ch{cluster.run_id[-6:]}{index}"
        self.process: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "CORE_DATA_ROOT": str(self.data_root),
            "CORE_EXEC_ROOT": str(self.exec_root),
            "CORE_HOST": self.url,
            "CORE_CONFIG_FILE": str(self.root / "daemon.json"),
            "CORE_NO_AUTOSTART": "1",  # a CLI call must never start a daemon outside the namespace
            "DOCKER_HOST": self.url,
            "PYTHONUNBUFFERED": "1",
        }
        self._docker: Any = None
        self._forwarders: list[_Forwarder] = []

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.role} {self.address}>"

    # -- the machine --

    def _create(self) -> None:
        self.root.mkdir(parents=True)
        (self.root / "daemon.json").write_text(json.dumps({"driver-opts": {"network": {"nft-table": self.nft_table}}}))
        self.cluster._record(netns=self.netns)
        _ip("netns", "add", self.netns)
        ul = self.cluster.underlay
        _ip("-n", ul, "link", "add", self.link, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _ip("-n", ul, "link", "set", self.link, "master", "br0", "up")
        _ip("-n", self.netns, "link", "set", "lo", "up")
        _ip("-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _ip("-n", self.netns, "link", "set", "eth0", "up")

    @property
    def launcher(self) -> tuple[str, ...]:
        """An argv prefix that runs a command in this host's network namespace."""
        return ("nsenter", f"--net={self.netns_path}", "--")

    def exec(self, *argv: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
        """Run ``argv`` in this host's network namespace."""
        proc = subprocess.run([*self.launcher, *argv], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"[{self.name}] {' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def forward_loopback(self, port: int) -> None:
        """Make 127.0.0.1:``port`` of the test process (a registry, say) answer at 127.0.0.1:``port``
        inside this host too, so references like ``127.0.0.1:PORT/busybox`` pull the same here."""
        self._forwarders.append(_Forwarder(self.netns_path, port))

    def cut(self) -> None:
        """Unplug the host from the underlay (its link goes down: no carrier, packets dropped)."""
        _ip("-n", self.cluster.underlay, "link", "set", self.link, "down")

    def restore(self) -> None:
        """Plug it back in."""
        _ip("-n", self.cluster.underlay, "link", "set", self.link, "up")

    # -- the engine --

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def spawn(self) -> None:
        """Start the daemon without waiting for it (see :meth:`wait_ready`)."""
        if self.pid is not None:
            raise AssertionError(f"{self.name}: the daemon already runs (pid {self.pid})")
        log = open(self.root / "daemon.log", "ab")
        # unshare execs nsenter, which execs sh, which execs python: the pid is the daemon's
        argv = ["unshare", "--uts", "--", *self.launcher, "sh", "-c", 'hostname "$0" && exec "$@"', self.name,
                *CORE, "daemon"]
        self.process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.cluster._record(pid=self.process.pid, needle=str(self.root))

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise AssertionError(f"{self.name}: daemon exited "
                                     f"{self.process and self.process.returncode}:\n{self.log()}")
            if _answers(self.socket):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: the daemon did not answer within {timeout} s:\n{self.log()}")

    def start(self, timeout: float = 60.0) -> None:
        """Start the daemon and wait until it answers on its socket."""
        self.spawn()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the daemon gracefully (SIGTERM; SIGKILL after ``timeout``)."""
        if self.process is not None:
            _terminate(self.process.pid, timeout=timeout)
            self.process.wait(timeout=10)
        self.process = None
        self._close_docker()

    def kill(self) -> None:
        """SIGKILL the daemon (a crash)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        self._close_docker()

    def log(self) -> str:
        try:
            return (self.root / "daemon.log").read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def core(self, *args: str, input: str | None = None, timeout: float = 60,
             check: bool = False) -> subprocess.CompletedProcess:
        """``core ARGS`` typed on this host (in its network namespace, against its daemon)."""
        proc = subprocess.run([*self.launcher, *CORE, *args], input=input, capture_output=True, text=True,
                              timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"[{self.name}] core {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def docker(self) -> Any:
        """A Docker SDK client of this host's daemon (one per host, kept)."""
        if self._docker is None:
            import docker

            self._docker = docker.DockerClient(base_url=self.url, version="1.47", timeout=60)
        return self._docker

    def _close_docker(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None


class Cluster:
    """``managers`` + ``workers`` hosts named ``mgr1..`` and ``wrk1..`` (``daemons=False``: the
    machines only, for tests that run their own processes in them)."""

    def __init__(self, managers: int = 0, workers: int = 0, *, daemons: bool = True) -> None:
        global _swept
        if not _swept:
            sweep()
            _swept = True
        pid, n = os.getpid(), next(_seq)
        self.run_id = f"{pid}x{n}"
        # the addresses exist only inside this run's namespaces: any prefix would do, these
        # merely differ from run to run to keep logs readable
        self.subnet_prefix = f"10.{100 + n % 150}.{pid % 250}"
        self.subnet = f"{self.subnet_prefix}.0/24"
        self.root = Path("/tmp") / f"{HARNESS_DIR_PREFIX}{self.run_id}"
        self.underlay = f"{NETNS_PREFIX}{self.run_id}-ul"
        self.hosts: list[Host] = []
        self._forwarded: list[int] = []
        self._state: dict[str, Any] = {"owner": pid, "netns": [], "pids": {}}
        self.root.mkdir(mode=0o755)
        try:
            self._record(netns=self.underlay)
            _ip("netns", "add", self.underlay)
            _ip("-n", self.underlay, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.underlay, "link", "set", "br0", "up")
            for i in range(managers):
                self.add_host(f"mgr{i + 1}", "manager", start=False)
            for i in range(workers):
                self.add_host(f"wrk{i + 1}", "worker", start=False)
            if daemons:
                for host in self.hosts:
                    host.spawn()
                for host in self.hosts:
                    host.wait_ready()
        except BaseException:
            self.close()
            raise

    def _record(self, *, netns: str | None = None, pid: int | None = None, needle: str | None = None) -> None:
        if netns:
            self._state["netns"].append(netns)
        if pid:
            self._state["pids"][str(pid)] = needle
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps(self._state))
        tmp.replace(self.root / "state.json")

    def add_host(self, name: str, role: str = "worker", *, start: bool = True) -> Host:
        if any(h.name == name for h in self.hosts):
            raise ValueError(f"a host named {name} exists")
        host = Host(self, name, role, len(self.hosts) + 1)
        self.hosts.append(host)
        host._create()
        for port in self._forwarded:
            host.forward_loopback(port)
        if start:
            host.start()
        return host

    def forward_loopback(self, port: int) -> None:
        """:meth:`Host.forward_loopback` on every host, and on hosts added later."""
        self._forwarded.append(port)
        for host in self.hosts:
            host.forward_loopback(port)

    @property
    def managers(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "manager"]

    @property
    def workers(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "worker"]

    def __getitem__(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every daemon and undo every namespace, link, mount, process and file."""
        for host in self.hosts:
            if host.pid is not None and _answers(host.socket):
                with contextlib.suppress(Exception):
                    ids = host.core("ps", "-aq", timeout=60).stdout.split()
                    if ids:
                        host.core("rm", "-f", "-v", *ids, timeout=120)
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.stop()
            for fw in host._forwarders:
                fw.close()
        _destroy(self.root, list(self._state["netns"]), dict(self._state["pids"]))


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The hosts of a test module: ``CLUSTER_SHAPE = (managers, workers)`` in the module
    (default ``(3, 2)``), each running its own daemon; shared by the module's tests."""
    managers, workers = getattr(request.module, "CLUSTER_SHAPE", DEFAULT_SHAPE)
    c = Cluster(managers, workers)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def machines() -> Iterator[Any]:
    """A factory of daemon-less clusters for one test: ``machines(3)`` -> Cluster of mgr1..3."""
    made: list[Cluster] = []

    def make(managers: int = 0, workers: int = 0) -> Cluster:
        made.append(Cluster(managers, workers, daemons=False))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()
