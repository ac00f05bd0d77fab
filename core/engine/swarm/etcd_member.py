"""The etcd member a manager's daemon runs and supervises (Debian's ``etcd-server``, 3.4).

Every manager's daemon runs one member and talks to it only through its unix socket, with
:class:`core.engine.swarm.etcd.EtcdClient`.

Files, under the directory above its data directory (``<data-root>/swarm/``, mode 0700)::

    swarm/etcd/          etcd's --data-dir (``member/`` inside once it has started once)
    swarm/etcd.sock:0    the client endpoint: a unix socket, so only the local daemon reaches it
                         (etcd 3.4 takes ``unix://NAME:PORT`` and binds NAME:PORT relative to
                         its working directory, hence the odd name)
    swarm/etcd.log       etcd's log (moved to etcd.log.1 past 1 MiB at each start)
    swarm/etcd.pid       the running etcd's pid: a member a killed daemon left behind is stopped
                         (only if its command line names this data directory) before a new one
    swarm/etcd.json      the member's settings (:meth:`EtcdSettings.save`), so a restarted daemon
                         finds its member again (:meth:`EtcdMember.reattach`)

Peers talk on ``https://<advertise-addr>:2380`` (:attr:`EtcdSettings.peer_port`) with mutual TLS
given the node's certificate, key and the swarm's root CA (:class:`PeerTLS`; certificates must be
valid for the node's address and allow both server and client auth).  Without TLS (tests only)
the peer URL is plain ``http``.

Life cycle: a member starts either a **new** cluster (``Bootstrap.new``), or **joins** one after
an existing member added it (``EtcdClient.member_add`` on a manager, then
``Bootstrap.from_members`` on the joiner: ``--initial-cluster-state existing``), or -- when its
data directory already holds a member -- just **re-attaches** (daemon restart: no bootstrap
needed; ``EtcdMember.reattach(data_root)`` builds it from the saved settings).  :meth:`EtcdMember.serve` runs it as a trio task: it reports readiness with
``task_status.started()`` once the client socket answers, restarts etcd if it dies (backing off
up to 10 s), and stops it (SIGTERM, then SIGKILL after 10 s) when cancelled or on :meth:`stop`.
:meth:`EtcdMember.leave` removes the member from its cluster and deletes its data.

Timing: :attr:`EtcdSettings.heartbeat_ms`/``election_ms`` (etcd's ``--heartbeat-interval`` and
``--election-timeout``) are docker's ``Spec.Raft.HeartbeatTick``/``ElectionTick`` (1 and 10 by
default) times the Raft tick (0.1 s, :data:`core.engine.swarm.service.RAFT_TICK_ENV`): etcd's own
defaults, 100 ms and 1000 ms.  A fresh single member elects itself after 1 to 10 heartbeats
(etcd fast-forwards all but one of its election ticks), so ``swarm init`` waits at most one
election timeout.  Members run with ``--pre-vote``, so one cut off and back does not depose a
leader, and with ``--strict-reconfig-check=false``: etcd's own check refuses a new member until
every member has been connected for 5 s, which made each manager join wait that long;
:meth:`EtcdClient.member_add` checks instead that the cluster has a leader and that every member
has started and is connected now.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable, Literal

import attrs
import httpx
import trio

from core.engine.swarm.etcd import EtcdClient, Member
from core.errors import Conflict, CoreError, InvalidArgument, NotFound, Unavailable

log = logging.getLogger("core.swarm.etcd")

DEFAULT_PEER_PORT = 2380
CLIENT_SOCKET_NAME = "etcd.sock:0"
LOG_ROTATE_BYTES = 1 << 20


def member_data_dir(data_root: Path) -> Path:
    """Where a node's etcd member keeps its data: ``<data-root>/swarm/etcd``."""
    return Path(data_root) / "swarm" / "etcd"


@attrs.frozen
class PeerTLS:
    """The node's certificate and key and the swarm's root CA, for etcd's peer mutual TLS."""

    cert_file: Path
    key_file: Path
    ca_file: Path


@attrs.frozen
class EtcdSettings:
    """How to run a member.  ``name`` is the member's name in the cluster (the swarm node ID)."""

    name: str
    data_dir: Path  # <data-root>/swarm/etcd
    advertise_addr: str  # the node's address other managers reach it at
    peer_port: int = DEFAULT_PEER_PORT
    listen_addr: str | None = None  # default: advertise_addr
    tls: PeerTLS | None = None  # None: plain http between peers (tests only)
    heartbeat_ms: int = 100  # docker's HeartbeatTick 1 x the 0.1 s tick
    election_ms: int = 1000  # docker's ElectionTick 10 x the 0.1 s tick
    compaction_retention: str = "1h"  # periodic auto-compaction of old revisions
    binary: str = "etcd"
    #: an argv prefix to run etcd through (e.g. ``("nsenter", "--net=/run/netns/X")``)
    launcher: tuple[str, ...] = ()
    start_timeout: float = 60.0

    @staticmethod
    def _host(addr: str) -> str:
        return f"[{addr}]" if ":" in addr else addr

    @property
    def peer_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self._host(self.advertise_addr)}:{self.peer_port}"

    @property
    def listen_peer_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self._host(self.listen_addr or self.advertise_addr)}:{self.peer_port}"

    @property
    def run_dir(self) -> Path:
        return self.data_dir.parent

    @property
    def socket(self) -> Path:
        return self.run_dir / CLIENT_SOCKET_NAME

    @property
    def log_file(self) -> Path:
        return self.run_dir / "etcd.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "etcd.pid"

    @property
    def settings_file(self) -> Path:
        return self.run_dir / "etcd.json"

    def save(self, path: Path | None = None) -> Path:
        """Write the settings as JSON (default ``swarm/etcd.json``), for :meth:`load` after a
        daemon restart: a manager re-attaches its member knowing nothing else."""
        path = path or self.settings_file
        path.parent.mkdir(parents=True, exist_ok=True)
        data = attrs.asdict(self, value_serializer=lambda _i, _a, v: str(v) if isinstance(v, Path) else v)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> EtcdSettings:
        try:
            data = json.loads(Path(path).read_text())
            tls = data.pop("tls", None)
            data["data_dir"] = Path(data["data_dir"])
            data["launcher"] = tuple(data.get("launcher") or ())
            return cls(**data, tls=PeerTLS(*(Path(tls[k]) for k in ("cert_file", "key_file", "ca_file")))
                       if tls else None)
        except FileNotFoundError:
            raise NotFound(f"etcd: no member settings at {path}") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InvalidArgument(f"etcd: unreadable member settings {path}: {exc}") from exc


@attrs.frozen
class Bootstrap:
    """How a member without data joins the world: the cluster's members (name -> peer URL, this
    one included) and whether that cluster is ``new`` or ``existing``.  ``token`` (etcd's
    --initial-cluster-token) matters only to a new cluster: pass the swarm's cluster ID so two
    swarms never mistake each other's members."""

    members: dict[str, str]
    state: Literal["new", "existing"]
    token: str = "core-swarm"

    @classmethod
    def new(cls, settings: EtcdSettings, token: str = "core-swarm") -> Bootstrap:
        """A cluster of this one member (``swarm init``)."""
        return cls({settings.name: settings.peer_url}, "new", token)

    @classmethod
    def from_members(cls, settings: EtcdSettings, members: Iterable[Member], token: str = "core-swarm") -> Bootstrap:
        """Join an existing cluster, given its members as :meth:`EtcdClient.member_add` returned
        them (the added, not yet started member has no name: it is this one)."""
        table: dict[str, str] = {}
        for m in members:
            name = m.name or (settings.name if settings.peer_url in m.peer_urls else "")
            if not name:
                raise InvalidArgument(f"etcd: member {m.id:x} has no name and is not {settings.peer_url}")
            for url in m.peer_urls:
                table.setdefault(name, url)
        if table.get(settings.name) != settings.peer_url:
            raise InvalidArgument(f"etcd: {settings.peer_url} was not added to the cluster")
        return cls(table, "existing", token)

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{name}={url}" for name, url in self.members.items())


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class EtcdMember:
    """One etcd member, run and supervised by the daemon (see the module docstring).

    ``bootstrap`` is needed only when the data directory holds no member yet.
    """

    def __init__(self, settings: EtcdSettings, bootstrap: Bootstrap | None = None) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.process: trio.Process | None = None
        self.restarts = 0  # times etcd died and was started again
        self._scope: trio.CancelScope | None = None
        self._leaving = False
        self._stopped = trio.Event()

    @classmethod
    def reattach(cls, data_root: Path) -> EtcdMember | None:
        """The member an earlier run of the daemon left under ``data_root`` (its settings saved
        with :meth:`EtcdSettings.save` and its data directory holding a member), to serve again;
        None when this node runs no member."""
        path = member_data_dir(data_root).parent / "etcd.json"
        if not path.exists():
            return None
        member = cls(EtcdSettings.load(path))
        return member if member.initialized else None

    @property
    def initialized(self) -> bool:
        """The data directory holds a member: starting it needs no bootstrap."""
        return (self.settings.data_dir / "member").is_dir()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.returncode is None else None

    def client(self, timeout: float = 5.0) -> EtcdClient:
        return EtcdClient(self.settings.socket, timeout=timeout)

    def argv(self) -> list[str]:
        s = self.settings
        argv = [*s.launcher, s.binary, "--name", s.name, "--data-dir", str(s.data_dir),
                "--listen-client-urls", f"unix://{CLIENT_SOCKET_NAME}",
                "--advertise-client-urls", f"unix://{CLIENT_SOCKET_NAME}",
                "--listen-peer-urls", s.listen_peer_url, "--initial-advertise-peer-urls", s.peer_url,
                "--heartbeat-interval", str(s.heartbeat_ms), "--election-timeout", str(s.election_ms),
                "--auto-compaction-mode", "periodic", "--auto-compaction-retention", s.compaction_retention,
                "--pre-vote",  # a member cut off and back does not depose a working leader (3.5's default)
                "--strict-reconfig-check=false",  # EtcdClient.member_add/remove check without a 5 s wait
                "--enable-v2=false", "--logger", "zap", "--log-outputs", "stderr"]
        if not self.initialized:
            if self.bootstrap is None:
                raise InvalidArgument(f"etcd: {s.data_dir} holds no member and no cluster to start or join was given")
            argv += ["--initial-cluster", self.bootstrap.initial_cluster,
                     "--initial-cluster-state", self.bootstrap.state,
                     "--initial-cluster-token", self.bootstrap.token]
        if s.tls:
            argv += ["--peer-cert-file", str(s.tls.cert_file), "--peer-key-file", str(s.tls.key_file),
                     "--peer-trusted-ca-file", str(s.tls.ca_file), "--peer-client-cert-auth"]
        return argv

    def _stop_stale(self) -> None:
        """Stop an etcd a killed daemon left running on this data directory."""
        try:
            pid = int(self.settings.pid_file.read_text())
        except (OSError, ValueError):
            return
        needle = str(self.settings.data_dir).encode()
        if needle not in _cmdline(pid):
            return
        log.warning("stopping etcd (pid %d) left running on %s", pid, self.settings.data_dir)
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and needle in _cmdline(pid):
                time.sleep(0.05)
            if needle not in _cmdline(pid):
                return

    async def _spawn(self) -> trio.Process:
        s = self.settings
        s.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(s.run_dir, 0o700)
        await trio.to_thread.run_sync(self._stop_stale)
        with contextlib.suppress(FileNotFoundError):
            s.socket.unlink()
        with contextlib.suppress(OSError):
            if s.log_file.stat().st_size > LOG_ROTATE_BYTES:
                s.log_file.replace(s.log_file.with_name("etcd.log.1"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        with open(s.log_file, "ab") as logf:
            try:
                proc = await trio.lowlevel.open_process(self.argv(), cwd=str(s.run_dir), env=env,
                                                        stdin=subprocess.DEVNULL, stdout=logf,
                                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise Unavailable(f"cannot run etcd ({s.binary}: {exc.strerror}); swarm managers need "
                                  "Debian's etcd-server package") from exc
        s.pid_file.write_text(f"{proc.pid}\n")
        self.process = proc
        return proc

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.settings.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def _wait_ready(self, proc: trio.Process) -> None:
        deadline = trio.current_time() + self.settings.start_timeout
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.settings.socket)),
                                     base_url="http://etcd", timeout=2.0) as http:
            while True:
                if proc.returncode is not None or proc.poll() is not None:
                    raise Unavailable(f"etcd exited with status {proc.returncode} while starting:\n{self.log_tail()}")
                if self.settings.socket.exists():
                    try:
                        if (await http.get("/version")).status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                if trio.current_time() > deadline:
                    raise Unavailable(f"etcd did not start within {self.settings.start_timeout} s:\n{self.log_tail()}")
                await trio.sleep(0.05)

    async def _terminate(self, proc: trio.Process) -> None:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            with contextlib.suppress(FileNotFoundError):
                self.settings.pid_file.unlink()

    async def serve(self, *, task_status: trio.TaskStatus[EtcdMember] = trio.TASK_STATUS_IGNORED) -> None:
        """Run etcd until cancelled or :meth:`stop`; start it again whenever it dies.

        ``task_status.started(self)`` once the member answers on its socket.  Failing to start
        the first time raises :class:`~core.errors.Unavailable` (with etcd's last log lines);
        later deaths are logged and retried with a back-off of 0.5 s doubling to 10 s.
        """
        self.argv()  # refuses early when there is neither a member nor a bootstrap
        started = False
        backoff = 0.5
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._scope:
                while True:
                    proc = await self._spawn()
                    began = trio.current_time()
                    try:
                        await self._wait_ready(proc)
                        if not started:
                            started = True
                            task_status.started(self)
                        await proc.wait()
                    except Unavailable:
                        if not started:
                            raise
                    finally:
                        await self._terminate(proc)
                    if self._leaving:
                        return
                    self.restarts += 1
                    if trio.current_time() - began > 30:
                        backoff = 0.5
                    log.warning("etcd exited with status %s; starting it again in %.1f s:\n%s",
                                proc.returncode, backoff, self.log_tail(5))
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            self._scope = None
            self._stopped.set()

    async def stop(self) -> None:
        """Stop the member (``serve`` returns) and wait until etcd has exited."""
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()

    def kill(self) -> None:
        """SIGKILL etcd (tests: a crashed member); ``serve`` starts it again."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)

    async def _exits(self, within: float) -> bool:
        """Whether etcd exits (or has exited) within ``within`` seconds."""
        proc = self.process
        with trio.move_on_after(within):
            while proc is not None and proc.poll() is None:
                await trio.sleep(0.05)
            return True
        return False

    async def _remove(self, client: EtcdClient, me: int, wait: float = 20.0) -> None:
        """Remove this member (``me``) through ``client``.  A member asked through its own
        socket stops as it applies its own removal and may answer that ("server stopped"), or
        nothing; a leader that removes itself may answer "leader changed": each is checked
        (etcd exited, or the member is no longer listed) and the removal asked again if not."""
        deadline = trio.current_time() + wait
        own = client.endpoint == str(self.settings.socket)
        while True:
            try:
                await client.member_remove(me, wait=max(0.0, deadline - trio.current_time()))
                return
            except NotFound:
                return  # removed already
            except Unavailable:
                if own and await self._exits(1.0):
                    log.info("etcd member %s removed itself (it stopped before answering)", self.settings.name)
                    return
                with contextlib.suppress(CoreError):
                    if me not in {m.id for m in await client.members()}:
                        return
                if trio.current_time() > deadline:
                    raise
            await trio.sleep(0.2)

    async def leave(self, client: EtcdClient | None = None) -> None:
        """Remove this member from its cluster, stop it and delete its data.

        ``client`` talks to any member (default: this one's socket)."""
        own = client or self.client()
        try:
            me = (await own.status()).member_id if client is None else None
            if me is None:
                members = await own.members()
                me = next((m.id for m in members if m.name == self.settings.name), None)
            self._leaving = True
            if me is not None:
                await self._remove(own, me)
        finally:
            if client is None:
                await own.aclose()
        await self.stop()
        self.forget()

    def forget(self) -> None:
        """Delete the member's data (the member must be stopped)."""
        if self.pid is not None:
            raise Conflict("etcd: the member is still running")
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        for path in (self.settings.socket, self.settings.pid_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
