"""Shared fixtures: an isolated core (own data root, exec root, socket) per test or module.

Every daemon a test starts is stopped by its PID (from the pid file it writes, or the process the
test spawned) and every directory removed — even when the test fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# the shared harness of core.testing: used here, not copied (``unmount_under`` is its name in
# the tests)
from core.testing import pid_alive
from core.testing import unmount_below as unmount_under
# tests and bench import these two from here
from tests.support.helpers import socket_answers as _answers, stop_pid  # noqa: F401

CORE = [sys.executable, "-m", "core"]
REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout=15.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")



def _kill_if_cmdline_has(pid: int, needle: str) -> None:
    """SIGKILL ``pid`` only if it is still the process we mean (its command line names ``needle``)."""
    try:
        if needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def purge_network_driver(data_root: Path, exec_root: Path, options: dict[str, str]) -> None:
    """Remove every endpoint and network the bridge driver of a data root has (bridges, nft
    tables, ports): what a daemon leaves on the host by design, gone when its test ends.

    When the driver's state is gone (a data root on a tmpfs already unmounted, say), the engine's
    nft tables and its default bridge are removed by name.
    """
    import hashlib

    import trio

    from core import plugins
    from core.testing.network import clear_network_driver

    context = plugins.context_for("network", "bridge", Path(data_root), Path(exec_root), options)
    # the user networks' bridges by name, known before the driver forgets them: what is removed
    # when the driver cannot clear its state (a failure there left bridges on hosts before)
    bridges = [f"br-{nid[:12]}" for nid in _engine_network_ids(Path(data_root))]
    table = options.get("nft-table")
    if table and table != "core":
        bridges.append("core" + hashlib.sha256(table.encode()).hexdigest()[:8])
    try:
        if (context.root / "bridge.db").exists():
            trio.run(clear_network_driver, plugins.load("network", "bridge").create(context))
    finally:
        if table and table != "core":
            for family, name in (("inet", table), ("ip", f"{table}-nat")):
                subprocess.run(["nft", "delete", "table", family, name], capture_output=True)
        for bridge in bridges:
            if Path("/sys/class/net", bridge).exists():
                subprocess.run(["ip", "link", "delete", bridge], capture_output=True)


def _engine_network_ids(data_root: Path) -> list[str]:
    """The IDs of the networks an engine's state database records (none when it has none)."""
    import sqlite3

    db = data_root / "state.db"
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return [row[0] for row in conn.execute("SELECT id FROM networks")]
    except sqlite3.Error:
        return []


def remove_containers_under(root: Path) -> None:
    """Kill the shims and containers an engine under ``root`` left running, and their cgroups."""
    from core.shim import cgroups

    # the built-in executor's containers, and those of executors extending it (examples/: runc)
    states = [*root.glob("run/executor/container/*"), *root.glob("run/executor/*/containers/*")]
    for state in states:
        try:
            _kill_if_cmdline_has(int((state / "shim.pid").read_text()), str(state))
        except (OSError, ValueError):
            pass
        cg = cgroups.Cgroup.load(str(state / "cgroup"))  # removing it kills what runs in it
        if cg is not None:
            try:
                cg.remove()
            except OSError:
                pass


def _nft_table(root: Path) -> str:
    return "ct" + root.name.removeprefix("core-t-").replace("_", "")[:12]


class CoreEnv:
    """One isolated core installation: roots, socket, environment, and the daemons it started.

    Each has its own nft tables (and so its own default bridge) through the network driver's
    ``nft-table`` option; :meth:`cleanup` removes its containers, shims, cgroups, bridges and
    tables, mounts and files, whatever state the test left them in.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="core-t-", dir="/tmp"))
        self.nft_table = _nft_table(self.root)
        self.data_root = self.root / "data"
        self.exec_root = self.root / "run"
        self.socket = self.exec_root / "core.sock"
        self.host = f"unix://{self.socket}"
        self.env = {
            **os.environ,
            "CORE_DATA_ROOT": str(self.data_root),
            "CORE_EXEC_ROOT": str(self.exec_root),
            "CORE_HOST": self.host,
            "CORE_CONFIG_FILE": str(self.root / "daemon.json"),
            "DOCKER_HOST": self.host,
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: list[subprocess.Popen] = []
        self.pids: set[int] = set()
        (self.root / "owner").write_text(f"{os.getpid()}\n")  # the test process: see sweep_stale_engines
        self.write_config({})

    def write_config(self, config: dict | str) -> Path:
        """The daemon's config file; this engine's own nft table is added unless given."""
        path = self.root / "daemon.json"
        if isinstance(config, dict):
            config = json.loads(json.dumps(config))
            config.setdefault("driver-opts", {}).setdefault("network", {}).setdefault("nft-table", self.nft_table)
            config = json.dumps(config)
        path.write_text(config)
        return path

    def run(self, *args: str, input: str | None = None, timeout: float = 60, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        """``core ARGS`` as a user types it; records the daemon it may auto-start."""
        proc = subprocess.run(CORE + list(args), input=input, capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})
        self._note_daemon()
        if check and proc.returncode != 0:
            raise AssertionError(f"core {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def _note_daemon(self) -> None:
        try:
            self.pids.add(int((self.exec_root / "core.pid").read_text()))
        except (OSError, ValueError):
            pass

    def start_daemon(self, *args: str, wait: bool = True) -> subprocess.Popen:
        """``core daemon ARGS`` in the foreground, as a service manager runs it."""
        log = open(self.root / f"daemon-{len(self.procs)}.log", "ab")
        proc = subprocess.Popen(CORE + ["daemon", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        if wait:
            wait_for(lambda: _answers(self.socket) or proc.poll() is not None, what="the daemon's socket")
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited {proc.returncode}: {self.daemon_log()}")
        return proc

    def daemon_log(self) -> str:
        parts = []
        for p in sorted(self.root.glob("daemon-*.log")) + [self.exec_root / "daemon.log"]:
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def docker_client(self):
        import docker

        return docker.DockerClient(base_url=self.host, version="1.47", timeout=60)

    def stop_daemons(self) -> None:
        self._note_daemon()
        for proc in self.procs:
            if proc.poll() is None:
                stop_pid(proc.pid)
            proc.wait(timeout=10)
        for pid in self.pids:
            stop_pid(pid)
        self.pids.clear()

    def cleanup(self) -> None:
        if _answers(self.socket):
            ids = self.run("ps", "-aq", env={"CORE_NO_AUTOSTART": "1"}, timeout=60).stdout.split()
            if ids:
                self.run("rm", "-f", "-v", *ids, env={"CORE_NO_AUTOSTART": "1"}, timeout=120)
        self.stop_daemons()
        remove_containers_under(self.root)
        try:
            purge_network_driver(self.data_root, self.exec_root, {"nft-table": self.nft_table})
        except Exception:  # noqa: BLE001 - the root stays, so the next session's sweep retries
            unmount_under(self.root)
            return
        unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def sweep_stale_engines() -> None:
    """What runs killed halfway left: engines under /tmp/core-t-* whose daemon is gone."""
    for root in Path("/tmp").glob("core-t-*"):
        try:
            if pid_alive(int((root / "owner").read_text())):
                continue  # its test process still runs: another session's engine
        except (OSError, ValueError):
            pass
        try:
            _kill_if_cmdline_has(int((root / "run" / "core.pid").read_text()), str(root))
        except (OSError, ValueError):
            pass
        remove_containers_under(root)
        try:
            purge_network_driver(root / "data", root / "run", {"nft-table": _nft_table(root)})
        except Exception:  # noqa: BLE001 - best effort
            pass
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


#: scratch directories of session fixtures, named ``<prefix><owner pid>-<random>``: they hold no
#: host state (no mounts, daemons or devices), only files a killed run could not remove
SCRATCH_PREFIXES = ("core-images-", "core-registry-", "core-test-api-")
#: directories a daemon holds for a moment only, without an owner in their name: the key pairs
#: of swarm TLS contexts as core made them before they moved to memory (core.engine.swarm.ca),
#: left behind by daemons killed at that moment
MOMENTARY_PREFIXES = ("core-swarm-tls-",)


def sweep_stale_scratch() -> None:
    """Remove the scratch directories of test processes that are gone."""
    for prefix in SCRATCH_PREFIXES:
        for path in Path("/tmp").glob(prefix + "*"):
            owner = path.name[len(prefix):].split("-", 1)[0]
            if owner.isdigit() and pid_alive(int(owner)):
                continue
            if not owner.isdigit() and time.time() - path.stat().st_mtime < 6 * 3600:
                continue  # an older run's name without its owner: only when surely stale
            shutil.rmtree(path, ignore_errors=True)
    for prefix in MOMENTARY_PREFIXES:
        for path in Path("/tmp").glob(prefix + "*"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > 60:
                    shutil.rmtree(path, ignore_errors=True)


# Skips CI may have: what the project's own files cannot install (the docker CLI ships with the
# machine image; Debian's docker.io would bring a whole engine).
# The machine's kernel likewise: this one has no IPsec ESP (CONFIG_INET_ESP), so the overlay's
# encrypted data path cannot run here (creating such a network is refused with that reason).
CI_ALLOWED_SKIPS = ("docker CLI", "this kernel cannot encrypt")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test fails the run: a missing install step must not pass quietly."""
    if not os.environ.get("CI") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [r for r in (reporter.stats.get("skipped", []) if reporter else [])
               if not any(allowed in str(r.longrepr) for allowed in CI_ALLOWED_SKIPS)]
    if skipped:
        for r in skipped:
            reporter.write_line(f"CI does not allow this skip: {r.nodeid}: {r.longrepr}", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_engines():
    sweep_stale_engines()
    sweep_stale_scratch()
    yield


@pytest.fixture
def core_env():
    env = CoreEnv()
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture(scope="module")
def shared_core():
    """One auto-started daemon for a whole test module (cheaper; tests must not disturb it)."""
    env = CoreEnv()
    try:
        env.run("version", check=True)
        yield env
    finally:
        env.cleanup()


# the real registry on loopback, its token server, the fault proxy and the standard test images
from tests.support.fixtures import *  # noqa: E402,F401,F403
# machines for multi-host tests: network namespaces on an underlay bridge, one engine each
from tests.support.hosts import cluster, machines  # noqa: E402,F401
