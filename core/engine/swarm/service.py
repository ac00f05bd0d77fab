"""The swarm service: this engine as a node of a swarm (moby's ``daemon/cluster``, on etcd).

One :class:`SwarmService` per daemon, started with ``await nursery.start(swarm.serve)``.  Its
operations are the Engine API's swarm and node endpoints (:mod:`core.api.swarm`).

What runs where
---------------
Every node runs the **agent** (:class:`core.engine.swarm.dispatcher.Agent`): a session with
some manager, heartbeats, certificate renewal (:meth:`ManagerClient.keep_renewed`), and the
**task runner** (:class:`core.engine.swarm.worker.Worker`, given the local containers, images
and events through the constructor): it runs the tasks the session assigns to the node.  A
**manager** also runs:

- its etcd member (:class:`core.engine.swarm.etcd_member.EtcdMember`): peers on ``<advertise
  IP>:2380`` with mutual TLS from the node's own certificate and key (shown with the
  cross-signed roots of past CA rotations, ``etcd-peer.crt``: etcd reads its trusted CA only
  when it starts), Raft timing from ``Spec.Raft`` (ticks of :data:`RAFT_TICK_ENV`), the client
  endpoint a unix socket under ``<data-root>/swarm/`` (local only);
- the swarm channel on the listen address (default ``0.0.0.0:2377``,
  :class:`core.engine.swarm.transport.Server`) with the CA calls (backed by the store: any
  manager signs, with the CA the store holds), the dispatcher (sessions, the node protocol's
  assignments, task states and logs: :meth:`logs`), and ``etcd.join`` (a joining
  manager is added to the etcd cluster by a manager it dials);
- the cluster's events (:mod:`core.engine.swarm.events`): services, nodes and swarm networks
  created, updated, removed, in the daemon's ``GET /events`` (scope ``swarm``);
- the leadership loop: the manager whose etcd member is the Raft leader (the swarm's Leader)
  runs the node-health checks (:meth:`Dispatcher.check_nodes`) and finishes root rotations.

The swarm's networks (overlay, ingress) are :attr:`SwarmService.networks`
(:class:`core.engine.swarm.networks.SwarmNetworks`): ``swarm init`` stores the ``ingress``
network, a manager's channel answers a worker's ``networks.node`` call, ``swarm leave`` forgets
the node's copies.

The cluster's state is in etcd (:mod:`core.engine.swarm.store`).  The node's own state is in
``<data-root>/swarm/``::

    state.json        node ID, role, cluster ID, listen, advertise (and data path) addresses,
                      managers
    certificates/     swarm-node.crt, swarm-node.key (0600), swarm-root-ca.crt, etcd-peer.crt
    etcd/ etcd.json   a manager's etcd member and its settings (etcd.sock:0, etcd.log, etcd.pid)

A daemon restart re-attaches: the member starts again on its data, the agent opens a session
with the managers it last knew.  Promotion and demotion take effect when the node's certificate
renews with its new role (at once: the heartbeat answers tell the node): a promoted node asks a
manager to add it to the etcd cluster and starts the manager's parts; a demoted one leaves the
etcd cluster and stops them.

Errors are docker's (moby's ``daemon/cluster/errors.go``, swarmkit's ``controlapi``): not in a
swarm, not a manager, already in a swarm, no leader (quorum lost: :class:`NoLeader`), stale
versions (``update out of sequence``), last-manager refusals.  The API decodes the requests
against moby's types first (:mod:`core.api.validate`); :func:`normalize_spec` then checks the
cluster spec as swarmkit does and against what core runs on (``Spec.Raft``'s ticks as etcd
takes them, a heartbeat period of :data:`MIN_HEARTBEAT_PERIOD` to :data:`MAX_HEARTBEAT_PERIOD`),
so nothing the API accepts can leave a spec the nodes cannot run with.  A join tries its
managers for :data:`JOIN_TIMEOUT` at most, however many addresses the request names.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

import attrs
import trio
from cryptography.hazmat.primitives import serialization

from core import errors
from core.engine.swarm import ca as swarm_ca
from core.engine.swarm import leader as swarm_leader
from core.engine.swarm import nodes as swarm_nodes
from core.engine.swarm import tokens as swarm_tokens
from core.engine.swarm import transport
from core.engine.swarm.ca import MANAGER_ROLE, WORKER_ROLE, ClusterCA, NodeCredentials
from core.engine.interfaces import EventSink, EventSource, ImagePuller, TaskContainers
from core.engine.swarm.dispatcher import Agent, Dispatcher, bundle_digest, check_interval
from core.engine.swarm.etcd import EtcdClient, Member, NoLeader, SequenceConflict
from core.engine.swarm.etcd_member import Bootstrap, EtcdMember, EtcdSettings, PeerTLS
from core.engine.swarm.networks import SwarmNetworks, reap_addresses
from core.engine.swarm.vip import allocate_vips
from core.engine.swarm.store import NODES, ClusterRecord, Decoded, Store, now_text
from core.engine.swarm.worker import Worker, remove_task_containers

log = logging.getLogger("core.swarm")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per etcd request otherwise

# moby's daemon/cluster/errors.go, word for word
ERR_NO_SWARM = "This node is not part of a swarm"
ERR_SWARM_EXISTS = ('This node is already part of a swarm. Use "docker swarm leave" to leave this '
                    "swarm and join another one.")
ERR_NOT_MANAGER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify "
                   "cluster state. Please run this command on a manager node or promote the current "
                   "node to a manager.")
ERR_NO_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                  "to connect this node to swarm and try again.")
ERR_JOIN_TIMEOUT = ('Timeout was reached before node joined. The attempt to join the swarm will '
                    'continue in the background. Use the "docker info" command to see the current '
                    "swarm status of your node.")
AUTOLOCK_UNSUPPORTED = ("autolock is not supported by core: manager keys are not encrypted at rest, "
                        "so there is no unlock key (use filesystem encryption for <data-root>/swarm)")
EXTERNAL_CA_UNSUPPORTED = "external CAs are not supported by core: the swarm runs its own root CA"

#: the Raft tick in seconds: etcd's heartbeat is ``Spec.Raft.HeartbeatTick`` ticks, its election
#: timeout ``ElectionTick`` ticks.  swarmkit ticks once a second; core's 0.1 s makes docker's
#: default ticks (1 and 10) etcd's own defaults (heartbeat 100 ms, election 1 s, made for LANs):
#: a new leader within about 2 s of losing one, a first leader within 1 s of ``swarm init``.
#: Managers far apart (RTTs of tens of ms) want a longer tick: set this variable for the daemon.
RAFT_TICK_ENV = "CORE_SWARM_RAFT_TICK"
DEFAULT_RAFT_TICK = 0.1
DEFAULT_LISTEN = "0.0.0.0:2377"
PEER_CHAIN = "etcd-peer.crt"  # beside the node's certificate: what etcd's peers are shown
PEER_PORT = 2380
JOIN_TIMEOUT = 20.0  # moby's swarmConnectTimeout
NS = 10**9

DEFAULT_SPEC: dict[str, Any] = {
    "Name": "default",
    "Labels": {},
    "Orchestration": {"TaskHistoryRetentionLimit": 5},
    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
             "ElectionTick": 10, "HeartbeatTick": 1},
    "Dispatcher": {"HeartbeatPeriod": 5 * NS},
    "CAConfig": {"NodeCertExpiry": 90 * 24 * 3600 * NS},
    "TaskDefaults": {},
    "EncryptionConfig": {"AutoLockManagers": False},
}


# -- the spec --------------------------------------------------------------------------------------

def _section(spec: dict[str, Any], name: str) -> dict[str, Any]:
    value = spec.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidArgument(f"invalid swarm spec: {name} must be an object")
    return value


INT64_MAX = 2**63 - 1
#: etcd's bounds on its timing (its ``--election-timeout`` at most 50 s and at least five
#: ``--heartbeat-interval``s), which ``Spec.Raft``'s ticks become
ETCD_MAX_ELECTION_MS = 50_000
#: the dispatcher's heartbeat period core runs with: a period shorter than a Raft tick would
#: have every node beat in a busy loop, one longer than a day outlives etcd's leases
MIN_HEARTBEAT_PERIOD = int(DEFAULT_RAFT_TICK * NS)
MAX_HEARTBEAT_PERIOD = 24 * 3600 * NS


def _spec_int(value: Any, what: str, *, low: int = -(2**63), high: int = INT64_MAX) -> int:
    """A whole number of the spec (Go's int64 or uint64), as moby's decoder takes it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidArgument(f"invalid {what}: expected an integer, not {value!r:.40}")
    if not low <= value <= high:
        raise errors.InvalidArgument(f"invalid {what}: {value} is out of range")
    return value


def normalize_spec(given: Any, current: dict[str, Any] | None = None, *,
                   raft_tick: float = DEFAULT_RAFT_TICK) -> dict[str, Any]:
    """A full cluster spec from what the API sent: docker's defaults where a value is missing,
    null or zero; checked as moby and swarmkit check it, and the Raft ticks against what etcd
    takes at ``raft_tick`` seconds a tick."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise errors.InvalidArgument("invalid swarm spec: expected a JSON object")
    name = given.get("Name") or "default"
    if name != "default":
        raise errors.InvalidArgument('swarm spec must be named "default"')
    spec = json.loads(json.dumps(DEFAULT_SPEC))
    labels = given.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise errors.InvalidArgument("invalid swarm spec: Labels must map strings to strings")
    spec["Labels"] = labels
    orch = _section(given, "Orchestration")
    if orch.get("TaskHistoryRetentionLimit") is not None:
        spec["Orchestration"]["TaskHistoryRetentionLimit"] = _spec_int(
            orch["TaskHistoryRetentionLimit"], "TaskHistoryRetentionLimit")
    for key, value in _section(given, "Raft").items():
        if key in spec["Raft"] and value:
            spec["Raft"][key] = _spec_int(value, f"Raft.{key}", low=0, high=2**64 - 1)
    heartbeat, election = spec["Raft"]["HeartbeatTick"], spec["Raft"]["ElectionTick"]
    if election < 5 * heartbeat:
        raise errors.InvalidArgument(f"invalid Raft ticks: ElectionTick ({election}) must be at least five "
                                     f"times HeartbeatTick ({heartbeat}), as etcd's election timeout")
    if election * raft_tick * 1000 > ETCD_MAX_ELECTION_MS:
        raise errors.InvalidArgument(f"invalid Raft.ElectionTick {election}: etcd's election timeout is at "
                                     f"most {ETCD_MAX_ELECTION_MS // 1000} s ({int(ETCD_MAX_ELECTION_MS / 1000 / raft_tick)} "
                                     f"ticks of {raft_tick:g} s)")
    disp = _section(given, "Dispatcher")
    period = disp.get("HeartbeatPeriod")
    if period:
        if not isinstance(period, int) or isinstance(period, bool):
            raise errors.InvalidArgument("invalid HeartbeatPeriod: expected nanoseconds")
        if period < 0:
            raise errors.InvalidArgument("heartbeat time period cannot be a negative duration")
        if not MIN_HEARTBEAT_PERIOD <= period <= MAX_HEARTBEAT_PERIOD:
            raise errors.InvalidArgument(f"invalid heartbeat period {period / NS:g}s: core's dispatcher "
                                         f"takes {MIN_HEARTBEAT_PERIOD / NS:g}s to "
                                         f"{MAX_HEARTBEAT_PERIOD // NS // 3600}h")
        spec["Dispatcher"]["HeartbeatPeriod"] = period
    ca_config = _section(given, "CAConfig")
    expiry = ca_config.get("NodeCertExpiry")
    if expiry:
        _spec_int(expiry, "NodeCertExpiry")
        swarm_ca.validate_node_cert_expiry(dt.timedelta(microseconds=expiry / 1000))
        spec["CAConfig"]["NodeCertExpiry"] = expiry
    if ca_config.get("ExternalCAs"):
        raise errors.InvalidArgument(EXTERNAL_CA_UNSUPPORTED)
    if ca_config.get("SigningCACert") or ca_config.get("SigningCAKey"):
        raise errors.InvalidArgument("a root CA certificate and key of your own are not supported "
                                     "by core: rotate with `swarm ca --rotate` instead")
    force = ca_config.get("ForceRotate")
    if force:
        spec["CAConfig"]["ForceRotate"] = _spec_int(force, "CAConfig.ForceRotate", low=0, high=2**64 - 1)
    elif current is not None and current.get("CAConfig", {}).get("ForceRotate"):
        spec["CAConfig"]["ForceRotate"] = current["CAConfig"]["ForceRotate"]
    if _section(given, "EncryptionConfig").get("AutoLockManagers"):
        raise errors.InvalidArgument(AUTOLOCK_UNSUPPORTED)
    task_defaults = _section(given, "TaskDefaults")
    if task_defaults:
        log_driver = task_defaults.get("LogDriver")
        if log_driver is not None and not (
                isinstance(log_driver, dict) and isinstance(log_driver.get("Name", ""), str)
                and all(isinstance(v, str) for v in (log_driver.get("Options") or {}).values())):
            raise errors.InvalidArgument("invalid TaskDefaults.LogDriver: expected a name and string options")
        spec["TaskDefaults"] = task_defaults
    return spec


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_info(ca: ClusterCA) -> dict[str, str]:
    """docker's TLSInfo of the cluster: the bundle, and the signing root's subject and key."""
    return {
        "TrustRoot": ca.trust_pem.decode(),
        "CertIssuerSubject": _b64(ca.signer_cert.subject.public_bytes()),
        "CertIssuerPublicKey": _b64(ca.signer_cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
    }


def parse_pool(pool: Any, subnet_size: Any) -> tuple[list[str], int]:
    if pool in (None, []):
        pool = ["10.0.0.0/8"]
    if not isinstance(pool, list):
        raise errors.InvalidArgument("invalid DefaultAddrPool: expected a list of CIDRs")
    out = []
    for cidr in pool:
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise errors.InvalidArgument(f"invalid default address pool {cidr!r}: not a CIDR") from None
        if network.version != 4:
            raise errors.InvalidArgument(f"invalid default address pool {cidr!r}: core's overlay networks "
                                         "are IPv4 only")
        out.append(str(network))
    if isinstance(subnet_size, bool) or not isinstance(subnet_size, (int, type(None))):
        raise errors.InvalidArgument(f"invalid SubnetSize {subnet_size!r:.40}: expected a prefix length")
    size = int(subnet_size or 24)
    for cidr in out:
        if size > 32 or size < ipaddress.ip_network(cidr).prefixlen:
            raise errors.InvalidArgument(f"invalid subnet size {size} for pool {cidr}")
    return out, size


# -- addresses -------------------------------------------------------------------------------------

def split_addr(text: Any, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``:port`` (moby's ``validateAddr`` keeps what it cannot parse)."""
    if not isinstance(text, str) or not text.strip():
        raise errors.InvalidArgument("invalid empty address")
    text = text.strip().removeprefix("tcp://")
    if text.startswith(":"):
        text = "0.0.0.0" + text
    return transport.parse_address(text, default_port)


def _listen_addr(req: dict[str, Any]) -> tuple[str, int]:
    """The request's ``ListenAddr`` (default ``0.0.0.0:2377``) as a host IP and a port."""
    listen_text = req.get("ListenAddr") or DEFAULT_LISTEN
    try:
        listen_host, listen_port = split_addr(listen_text, transport.DEFAULT_PORT)
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"invalid ListenAddr {listen_text!r}: {exc}") from None
    return _resolve_host(listen_host), listen_port


def _advertise_addr(req: dict[str, Any], listen_host: str, listen_port: int,
                    fallback: Callable[[], str]) -> tuple[str, int]:
    """The request's ``AdvertiseAddr``; without one, the listen address, or ``fallback()`` when
    that is a wildcard (the port is the listen port where the request gives none)."""
    adv_text = req.get("AdvertiseAddr") or ""
    if adv_text:
        adv_host, adv_port = split_addr(adv_text, listen_port)
        return _resolve_host(adv_host), adv_port
    return (listen_host if listen_host not in ("0.0.0.0", "::") else fallback()), listen_port


ERR_BAD_DATA_PATH_ADDR = ("data path address must be a non-zero IP address or network interface "
                          "(without a port number)")


def _resolve_host(host: str) -> str:
    """An IP as is; an interface name to its first IPv4 address."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=host)
            if links:
                for msg in ipr.get_addr(index=links[0], family=socket.AF_INET):
                    return msg.get_attr("IFA_ADDRESS")
    except Exception:  # noqa: BLE001 - pyroute2 missing or the interface gone: say so below
        pass
    raise errors.InvalidArgument(f"failed to resolve address {host!r}: not an IP address "
                                 "or an interface with an IPv4 address")


def _data_path_addr(req: dict[str, Any]) -> str | None:
    """The request's ``DataPathAddr`` (``--data-path-addr``: an IP or an interface name, no
    port; moby's check and message) as an IP, None without one: the node's VXLAN underlay
    address instead of the advertise address."""
    text = req.get("DataPathAddr") or ""
    if not text:
        return None
    if not isinstance(text, str):
        raise errors.InvalidArgument(ERR_BAD_DATA_PATH_ADDR)
    try:
        host = _resolve_host(text.strip())
    except errors.InvalidArgument:
        raise errors.InvalidArgument(ERR_BAD_DATA_PATH_ADDR) from None
    if ipaddress.ip_address(host).is_unspecified:
        raise errors.InvalidArgument(ERR_BAD_DATA_PATH_ADDR)
    return host


def default_advertise_ip() -> str:
    """The address docker would pick: the one of the default route's interface, or the only
    address of the machine; several without a default route is docker's refusal."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # a route lookup; nothing is sent
            ip = s.getsockname()[0]
            if ip and not ip.startswith("127."):
                return ip
    except OSError:
        pass
    found: list[tuple[str, str]] = []
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for msg in ipr.get_addr(family=socket.AF_INET):
                ip = msg.get_attr("IFA_ADDRESS")
                if ip and not ip.startswith("127."):
                    found.append((ip, names.get(msg["index"], "?")))
    except Exception:  # noqa: BLE001
        pass
    if len(found) == 1:
        return found[0][0]
    if not found:
        raise errors.InvalidArgument("could not find the system's IP address")
    listed = " and ".join(f"{ip} on {name}" for ip, name in found[:2])
    # moby's words; docker's CLI (and core's) adds " - specify one with --advertise-addr"
    raise errors.InvalidArgument("could not choose an IP address to advertise since this system "
                                 f"has multiple addresses on different interfaces ({listed})")


def local_ip_towards(host: str, port: int) -> str:
    """The local address this machine uses to reach ``host`` (a joining node's default)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            return s.getsockname()[0]
    except OSError as exc:
        raise errors.InvalidArgument(f"could not find the local address to reach {host}: "
                                     f"{exc.strerror or exc} - specify one with --advertise-addr"
                                     ) from None


# -- the service -----------------------------------------------------------------------------------

class _StoreCA(transport.CAService):
    """The CA calls with the CA the store holds (any manager signs; rotations and token changes
    made on another manager apply at once)."""

    def __init__(self, svc: SwarmService) -> None:
        super().__init__(None, on_join=svc._on_join, role_of=svc._role_of, on_issue=svc._on_issue)  # type: ignore[arg-type]
        self.svc = svc

    async def _load(self) -> None:
        self.ca = (await self.svc._store().cluster()).ca
        self.svc._revoked = set(self.ca.revoked)

    async def root(self, peer, args):
        await self._load()
        return await super().root(peer, args)

    async def join(self, peer, args):
        await self._load()
        return await super().join(peer, args)

    async def renew(self, peer, args):
        await self._load()
        return await super().renew(peer, args)


class _ForceNewMember(EtcdMember):
    """``swarm init --force-new-cluster``: the member's first start makes it a cluster of itself
    (later restarts are plain: managers may have joined since)."""

    _spawned = False

    def argv(self) -> list[str]:
        return super().argv() + ([] if self._spawned else ["--force-new-cluster"])

    async def _spawn(self):  # type: ignore[override]
        proc = await super()._spawn()
        self._spawned = True
        return proc


@attrs.frozen
class LocalEngine:
    """The node's own engine services, as the swarm's task runner uses them."""

    containers: TaskContainers
    images: ImagePuller
    events: EventSource
    drivers: Callable[[], dict[str, str]] = dict  # the drivers in use (for the node's description)
    #: a task's networks (its ``NetworksAttachments``) made on the node: ``await
    #: networking(attachments)`` -> ``{"NetworkMode", "EndpointsConfig"}`` for container create
    #: (the network service's ``swarm.task_networking``); None: tasks get the default network
    networking: Callable[..., Awaitable[dict[str, Any]]] | None = None
    #: before a task's container starts: ``await published_check(attachments, service_id)``
    #: raises ``Conflict`` when a port the service publishes through the routing mesh is held
    #: on the node (the network service's ``swarm.check_published``); None: no check
    published_check: Callable[..., Awaitable[None]] | None = None


class SwarmService:
    """This daemon's part in a swarm (see the module docstring)."""

    def __init__(self, data_root: Path, *, hostname: Callable[[], str] = socket.gethostname,
                 engine_version: str = "", cpus: int = 1, memory: int = 0,
                 etcd_binary: str = "etcd",
                 local_engine: Callable[[], LocalEngine | None] = lambda: None,
                 events: EventSink | None = None) -> None:
        self.dir = Path(data_root) / "swarm"
        #: where a manager reports the cluster's events (:mod:`core.engine.swarm.events`)
        self.events = events
        #: the local engine the node's task runner uses, asked for when the node starts (the
        #: daemon builds it after this service: the network service needs the swarm's
        #: networks); None: this node runs no tasks
        self.local_engine = local_engine
        self.certs_dir = self.dir / "certificates"
        self.hostname = hostname
        self.engine_version = engine_version
        self.cpus, self.memory = cpus, memory
        self.etcd_binary = etcd_binary
        try:
            self.raft_tick = float(os.environ.get(RAFT_TICK_ENV) or DEFAULT_RAFT_TICK)
        except ValueError:
            raise errors.InvalidArgument(f"{RAFT_TICK_ENV} must be a number of seconds") from None
        self.local: dict[str, Any] | None = None  # state.json while in a swarm
        self.state = "inactive"  # inactive | pending | active | error
        self.error = ""
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._node_scope: trio.CancelScope | None = None
        self._node_nursery: trio.Nursery | None = None
        self._node_done: trio.Event | None = None
        self.credentials: NodeCredentials | None = None
        self.member: EtcdMember | None = None
        self.etcd: EtcdClient | None = None
        self.server: transport.Server | None = None
        self.dispatcher: Dispatcher | None = None
        self.agent: Agent | None = None
        self.client: transport.ManagerClient | None = None
        self.worker: Worker | None = None
        self._managers_cache: tuple[float, list[dict[str, str]]] | None = None
        self._node_records = Decoded(NODES)  # (decoded once per version)
        self._managers_lock = trio.Lock()
        self._revoked: set[str] = set()
        self._digest = ""
        self._is_leader = False
        self._manager_up = False
        self._join_availability: str | None = None
        self._crosses: list[str] = []  # the cross-signed roots of the swarm's CA rotations
        #: what the leader runs while it leads: ``await loop(store)``, cancelled when the
        #: leadership is lost (the orchestrator, the scheduler, the updater, the task reaper)
        self.leader_loops: list[Callable[[Store], Awaitable[None]]] = swarm_leader.loops()
        #: the swarm's networks (overlay, ingress) for the networks API, and their allocators
        self.networks = SwarmNetworks(self)
        self.leader_loops.append(reap_addresses)  # addresses whose owner is gone are freed
        self.leader_loops.append(allocate_vips)   # services' virtual IPs (core.engine.swarm.vip)

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def _save_local(self) -> None:
        assert self.local is not None
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state_file.with_name("state.json.tmp")
        tmp.write_text(json.dumps(self.local, indent=1))
        tmp.replace(self.state_file)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; a node that was in a swarm re-attaches in the background."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.state_file.exists():
                try:
                    self.local = json.loads(self.state_file.read_text())
                    self.credentials = NodeCredentials.load(self.certs_dir)
                except (OSError, ValueError, errors.CoreError) as exc:
                    self.state, self.error = "error", f"cannot re-attach to the swarm: {exc}"
                    log.error("%s", self.error)
                else:
                    self.state = "active"
                    nursery.start_soon(self._background, "re-attach", self._reattach)
            task_status.started()
            await trio.sleep_forever()

    async def _background(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """A task of the service's own nursery: its failure is logged and shown in ``/info``'s
        ``Error``, never let out (it would close the service's nursery, and stop the daemon)."""
        try:
            await fn(*args)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("swarm %s failed", name)
            self.error = f"{name} failed: {exc}"

    async def _reattach(self) -> None:
        try:
            await self._start_node(manager=self.local["Role"] == "manager", bootstrap=None,
                                   wait_agent=False)
        except errors.CoreError as exc:
            self.state, self.error = "error", f"cannot re-attach to the swarm: {exc}"
            log.error("%s", self.error)

    async def _guard(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run a component: errors before it is up go to whoever started it; later ones are
        logged (the component is down, the daemon goes on)."""
        started = False

        class _Status:
            @staticmethod
            def started(value: Any = None) -> None:
                nonlocal started
                started = True
                task_status.started(value)

        try:
            await fn(*args, task_status=_Status)
        except Exception:
            if not started:
                raise
            log.exception("swarm component %s failed", name)

    async def _node_task(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        done = trio.Event()
        self._node_done = done
        try:
            with trio.CancelScope() as scope:
                self._node_scope = scope
                async with trio.open_nursery() as nursery:
                    self._node_nursery = nursery
                    task_status.started()
                    await trio.sleep_forever()
        except Exception as exc:  # noqa: BLE001 - a component failed: this node's parts stop, the service goes on
            log.exception("swarm node stopped")
            self.error = f"the swarm node stopped: {exc}"
        finally:
            self._node_nursery = None
            if self.etcd is not None:
                with trio.CancelScope(shield=True):
                    await self.etcd.aclose()
            self.etcd = None
            done.set()

    async def _stop_node(self) -> None:
        if self._node_scope is not None:
            self._node_scope.cancel()
            if self._node_done is not None:
                await self._node_done.wait()
        self._node_scope = None
        self.member = self.server = self.dispatcher = self.agent = self.client = self.worker = None
        self._manager_up = self._is_leader = False

    @property
    def peer_chain_file(self) -> Path:
        return self.certs_dir / PEER_CHAIN

    def _write_peer_chain(self, crosses: list[str] | None = None) -> None:
        """The certificate etcd's peers see: the node's chain plus every cross-signed root of
        the swarm's CA rotations.  etcd reads its trusted CA file only when it starts, so a
        member started before a rotation trusts only the old root: the cross-signed roots let
        it verify certificates from the new keys without a restart."""
        if crosses is not None:
            self._crosses = list(crosses)
        if self.credentials is None:
            return
        chain = self.credentials.chain_pem
        extra = b"".join(c.encode() for c in self._crosses if c.encode() not in chain)
        swarm_ca._write(self.peer_chain_file, chain + extra, 0o644)

    def _etcd_settings(self, advertise_ip: str, raft: dict[str, Any] | None = None) -> EtcdSettings:
        """The member's settings: its address, peer TLS from the node's certificate files, and
        docker's Raft timing (``Spec.Raft`` ticks times the tick, :data:`RAFT_TICK_ENV`)."""
        raft = {**DEFAULT_SPEC["Raft"], **(raft or {})}
        tls = PeerTLS(self.peer_chain_file, self.certs_dir / swarm_ca.NODE_KEY,
                      self.certs_dir / swarm_ca.ROOT_CERT)
        tick_ms = self.raft_tick * 1000
        return EtcdSettings(name=self.local["NodeID"], data_dir=self.dir / "etcd",
                            advertise_addr=advertise_ip, peer_port=PEER_PORT, tls=tls,
                            binary=self.etcd_binary,
                            heartbeat_ms=max(1, round(raft["HeartbeatTick"] * tick_ms)),
                            election_ms=max(1, round(raft["ElectionTick"] * tick_ms)))

    async def _start_node(self, *, manager: bool, bootstrap: Bootstrap | None,
                          wait_agent: bool, force_new: bool = False,
                          after_etcd: Callable[[], Awaitable[None]] | None = None,
                          settings: EtcdSettings | None = None) -> None:
        """Start what this node runs, from ``self.local`` and ``self.credentials``."""
        assert self._nursery is not None and self.local is not None
        await self._nursery.start(self._node_task)
        if manager:
            await self._start_manager(bootstrap, force_new=force_new, after_etcd=after_etcd,
                                      settings=settings)
        await self._start_agent(wait=wait_agent)

    async def _start_manager(self, bootstrap: Bootstrap | None, *, force_new: bool = False,
                             after_etcd: Callable[[], Awaitable[None]] | None = None,
                             settings: EtcdSettings | None = None) -> None:
        n = self._node_nursery
        assert n is not None and self.local is not None and self.credentials is not None
        if settings is None:
            if bootstrap is None and (self.dir / "etcd.json").exists():
                settings = EtcdSettings.load(self.dir / "etcd.json")  # re-attaching
            else:
                adv_host, _ = transport.parse_address(self.local["AdvertiseAddr"])
                settings = self._etcd_settings(adv_host)
        settings.save()
        member_cls = _ForceNewMember if force_new else EtcdMember
        self.member = member_cls(settings, bootstrap)
        await n.start(self._guard, "etcd", self.member.serve)
        self.etcd = EtcdClient(settings.socket, timeout=5.0)
        if after_etcd is not None:
            await after_etcd()
        record = await self._store().cluster()
        self._apply_cluster(record)
        self.server = transport.Server(self.credentials, is_revoked=lambda nid: nid in self._revoked)
        _StoreCA(self).install(self.server)
        self.dispatcher = Dispatcher(self._store(), self.local["NodeID"], period=self._period(record),
                                     managers=self._managers, trust_digest=lambda: self._digest)
        self.dispatcher.install(self.server)
        self.dispatcher.logs.manager_client = self._manager_client
        from core.engine.swarm.transport import Access

        self.server.register("etcd.join", self._etcd_join, access=Access.MANAGER)
        self.networks.install(self.server)
        host, port = split_addr(self.local["ListenAddr"], transport.DEFAULT_PORT)
        await n.start(self._guard, "server", self.server.serve, host, port)
        n.start_soon(self._guard, "cluster-watch", self._watch_cluster)
        n.start_soon(self._guard, "dispatcher", self.dispatcher.serve)
        n.start_soon(self._guard, "leadership", self._leadership)
        if self.events is not None:
            from core.engine.swarm import events as swarm_events

            n.start_soon(self._guard, "cluster-events", swarm_events.report, self._store(), self.events.emit)
        self._manager_up = True

    async def _start_agent(self, *, wait: bool) -> None:
        n = self._node_nursery
        assert n is not None and self.local is not None and self.credentials is not None
        addrs = [m["Addr"] for m in self.local.get("RemoteManagers") or []] or [self.local["JoinAddr"]]
        if self.local["Role"] == "manager":  # its own channel first
            own = self.local["AdvertiseAddr"]
            addrs = [own] + [a for a in addrs if a != own]
        self.client = transport.ManagerClient(self.credentials, addrs)
        on_update = self._on_session_update
        engine = self.local_engine()
        if engine is not None:
            client = self.client
            self.worker = Worker(containers=engine.containers, images=engine.images,
                                 events=engine.events,
                                 call=lambda name, **args: client.call(name, **args),
                                 node=self._node_facts, drivers=engine.drivers,
                                 networking=engine.networking,
                                 published_check=engine.published_check)
            await n.start(self._guard, "worker", self.worker.run)
            worker = self.worker

            async def on_update(info: dict[str, Any]) -> None:
                await self._on_session_update(info)
                await worker.on_update(info)
        self.agent = Agent(self.client, description=self._description, on_update=on_update)
        n.start_soon(self._guard, "renewal", self._keep_renewed)
        if wait:
            with trio.move_on_after(JOIN_TIMEOUT) as scope:
                await n.start(self._guard, "agent", self.agent.run)
            if scope.cancelled_caught:
                raise errors.Unavailable(ERR_JOIN_TIMEOUT)
        else:
            n.start_soon(self._guard, "agent", self.agent.run)

    def _node_facts(self) -> dict[str, str]:
        """This node for the task templates (``{{.Node.ID}}``, ``{{.Node.Hostname}}``)."""
        import platform

        return {"ID": (self.local or {}).get("NodeID", ""), "Hostname": self.hostname(),
                "Architecture": platform.machine()}

    async def _manager_client(self, node_id: str) -> transport.ManagerClient | None:
        """A client of the swarm channel to another manager (the log relay)."""
        for m in await self._managers():
            if m["NodeID"] == node_id and self.credentials is not None:
                return transport.ManagerClient(self.credentials, [m["Addr"]])
        return None

    async def logs(self, task_ids: list[str], *, follow: bool = False, tail: int | None = None,
                   timestamps: bool = False, since: float = 0):
        """The tasks' logs gathered from the nodes that run them: ``(task ID, stream, time,
        data)`` (:meth:`core.engine.swarm.dispatcher.LogBroker.logs`); a manager's call."""
        self._require_manager()
        assert self.dispatcher is not None
        async for item in self.dispatcher.logs.logs(task_ids, follow=follow, tail=tail,
                                                    timestamps=timestamps, since=since):
            yield item

    def _description(self) -> dict[str, Any]:
        desc = swarm_nodes.local_description(self.hostname(), self.engine_version, self.cpus,
                                             self.memory)
        if self._join_availability is not None:  # swarm join --availability
            desc["JoinAvailability"] = self._join_availability
        if self.local is not None and self.local.get("DataPathAddr"):  # the VXLAN underlay end
            desc["DataPathAddr"] = self.local["DataPathAddr"]
        return desc

    async def _on_session_update(self, info: dict[str, Any]) -> None:
        if self.local is None or self.credentials is None:
            return
        port = info.get("data_port")  # the swarm's --data-path-port, for the node's VXLANs
        if isinstance(port, int) and port != self.local.get("DataPathPort", 4789):
            self.local["DataPathPort"] = port
            self._save_local()
        if "networks" in info or "session_id" in info:  # networks' state pushed (netpush.py)
            self.networks.pushed(info)
        managers = info.get("managers")
        if isinstance(managers, list) and managers:
            if managers != self.local.get("RemoteManagers"):
                self.local["RemoteManagers"] = managers
                self._save_local()
                if self.client is not None:
                    own = self.local["AdvertiseAddr"] if self.local["Role"] == "manager" else None
                    addrs = [m["Addr"] for m in managers]
                    if own in addrs:
                        addrs = [own] + [a for a in addrs if a != own]
                    current = self.agent.manager if self.agent else None
                    self.client.set_addresses(addrs)
                    if current in addrs:
                        self.client._current = addrs.index(current)
        wanted = info.get("role")
        have = "manager" if self.credentials.identity.is_manager else "worker"
        digest = info.get("digest")
        if self.client is not None and ((wanted in swarm_nodes.ROLES and wanted != have)
                                        or (digest and digest != bundle_digest(self.credentials.trust_pem))):
            self.client.request_renewal()

    async def _keep_renewed(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The renewal loop; a manager that answers it cannot sign now (its etcd restarting,
        no quorum) is asked again later.  Only a removed node (Forbidden) stops renewing."""
        assert self.client is not None
        task_status.started()
        while True:
            try:
                await self.client.keep_renewed(str(self.certs_dir), on_renewed=self._renewed)
            except errors.Forbidden as exc:
                log.error("certificate renewal refused: %s", exc)
                self.error = str(exc)
                return
            except errors.CoreError as exc:
                log.warning("certificate renewal failed, retrying: %s", exc)
                self.client.request_renewal()
            await trio.sleep(2.0)

    async def _renewed(self, creds: NodeCredentials) -> None:
        old_role = self.local["Role"] if self.local else None
        self.credentials = creds
        if self.member is not None:
            self._write_peer_chain()
        new_role = "manager" if creds.identity.is_manager else "worker"
        if self.server is not None and creds.identity.is_manager:
            self.server.update_credentials(creds)
        if self.local is not None and new_role != old_role:
            self.local["Role"] = new_role
            self._save_local()
            assert self._nursery is not None
            self._nursery.start_soon(self._background, "role change", self._change_role, new_role)

    async def _change_role(self, role: str) -> None:
        """A promotion or demotion took effect (the node's certificate changed role): start or
        stop the manager's parts, retrying (etcd may refuse a new member for a few seconds)."""
        delay = 1.0
        while self.local is not None and self.local["Role"] == role:
            async with self._lock:
                try:
                    if role == "manager":
                        if self._manager_up:
                            return
                        await self._promote_self()
                    else:
                        if not self._manager_up:
                            return
                        await self._demote_self()
                    self.error = ""
                    log.info("this node is now a %s", role)
                    return
                except errors.CoreError as exc:
                    log.warning("swarm role change to %s failed (retrying in %.0f s): %s",
                                role, delay, exc)
                    self.error = f"role change to {role} failed: {exc}"
            await trio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _promote_self(self) -> None:
        assert self.local is not None and self.credentials is not None
        adv_host, _ = transport.parse_address(self.local["AdvertiseAddr"])
        if self.credentials.identity.ip_addresses != (adv_host,) and self.client is not None:
            self.credentials = await self.client.renew(ip_addresses=[adv_host])
            self.credentials.save(self.certs_dir)
        bootstrap, settings = await self._ask_etcd_join(adv_host)
        await self._start_manager(bootstrap, settings=settings)

    async def _demote_self(self) -> None:
        if self.member is not None and self.etcd is not None:
            def drop(node: dict[str, Any]) -> None:
                node.pop("ManagerStatus", None)

            await self._store().update_node(self.local["NodeID"], drop)
            with contextlib.suppress(errors.CoreError):
                await self.member.leave(self.etcd)
            self.member.forget()
        # the whole node restarts as a worker (the agent keeps the same credentials)
        await self._stop_node()
        assert self.local is not None
        await self._start_node(manager=False, bootstrap=None, wait_agent=False)

    async def _ask_etcd_join(self, adv_host: str) -> tuple[Bootstrap, EtcdSettings]:
        """A new manager: a manager adds it to the etcd cluster; the members it answers are the
        bootstrap of this node's member."""
        assert self.local is not None and self.credentials is not None
        addrs = [m["Addr"] for m in self.local.get("RemoteManagers") or []] or [self.local["JoinAddr"]]
        own = self.local["AdvertiseAddr"]
        client = transport.ManagerClient(self.credentials, [a for a in addrs if a != own] or addrs,
                                         timeout=60.0)  # etcd may wait out its 5 s health rule
        settings = self._etcd_settings(adv_host)
        try:
            answer = await client.call("etcd.join", peer_url=settings.peer_url,
                                       addr=self.local["AdvertiseAddr"])
        finally:
            await client.aclose()
        settings = self._etcd_settings(adv_host, answer.get("raft"))
        self._write_peer_chain([str(c) for c in answer.get("cross_signed") or []])
        shutil.rmtree(settings.data_dir, ignore_errors=True)
        members = [Member(id=int(m["id"]), name=m["name"], peer_urls=tuple(m["peer_urls"]))
                   for m in answer["members"]]
        return Bootstrap.from_members(settings, members), settings

    # -- helpers -------------------------------------------------------------------------------

    def _store(self) -> Store:
        if self.etcd is None:
            raise errors.Unavailable(NoLeader().message)
        return Store(self.etcd)

    @staticmethod
    def _period(record: ClusterRecord) -> float:
        return record.cluster["Spec"]["Dispatcher"]["HeartbeatPeriod"] / NS

    def _apply_cluster(self, record: ClusterRecord) -> None:
        if record.cross_certs != self._crosses and self.member is not None:
            self._write_peer_chain(record.cross_certs)
        self._crosses = list(record.cross_certs)
        self._revoked = set(record.ca.revoked)
        self._digest = bundle_digest(record.ca.trust_pem)
        if self.dispatcher is not None:
            self.dispatcher.period = self._period(record)

    async def _watch_cluster(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep the cached CA facts (revocations, bundle digest, heartbeat period) current."""
        task_status.started()
        while True:
            try:
                record = await self._store().cluster()
                self._apply_cluster(record)
                if self.dispatcher is not None:
                    for node_id in list(self.dispatcher.sessions.nodes):
                        if node_id in self._revoked:
                            self.dispatcher.forget(node_id)
            except errors.CoreError as exc:
                log.debug("cluster refresh: %s", exc)
            await trio.sleep(1.0)

    async def _managers(self) -> list[dict[str, str]]:
        """The managers' addresses (every session and heartbeat answer carries them): read at
        most once a second, since reading them reads every node (a thousand, at scale), and by
        one caller at a time (the others answer the last read meanwhile, or wait for the first)."""
        cached = self._managers_cache
        if cached is not None and (trio.current_time() - cached[0] < 1.0 or self._managers_lock.locked()):
            return cached[1]  # (while one caller reads them again, the others answer the last read)
        async with self._managers_lock:
            cached = self._managers_cache
            if cached is not None and trio.current_time() - cached[0] < 1.0:
                return cached[1]
            out = []
            for node, _v in await self._node_records.objects(self._store()):
                ms = node.get("ManagerStatus")
                if ms and ms.get("Addr"):
                    out.append({"NodeID": node["ID"], "Addr": ms["Addr"]})
            self._managers_cache = (trio.current_time(), out)
            return out

    async def _leadership(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """While this manager's etcd member is the Raft leader (the swarm's Leader, as docker's
        is its Raft leader), run the leader's loops: node health, the end of a root rotation,
        and every loop of :attr:`leader_loops` (orchestration, scheduling...), started when
        the leadership is won and cancelled when it is lost.  A leader cut off from the others
        steps down when etcd does (its writes need a quorum anyway)."""
        task_status.started()
        assert self.dispatcher is not None
        leading = False
        loops: trio.CancelScope | None = None
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    status = await self._store().etcd.status(timeout=2.0)
                    if status.is_leader:
                        if not leading:
                            log.info("this manager leads the swarm")
                        leading = True
                        await self.dispatcher.check_nodes()
                        await self._leader_extra()
                    else:
                        leading = False
                except errors.CoreError as exc:
                    if leading:
                        log.info("leadership: %s", exc)
                    leading = False
                self._is_leader = leading
                if leading and loops is None:
                    loops = trio.CancelScope()
                    nursery.start_soon(self._lead, loops)
                elif not leading and loops is not None:
                    loops.cancel()
                    loops = None
                await trio.sleep(check_interval(self.dispatcher.period))

    async def _lead(self, scope: trio.CancelScope) -> None:
        """Run the leader's loops (each restarted a second after it fails) until ``scope`` is
        cancelled (the leadership is lost)."""
        async def keep(loop: Callable[[Store], Awaitable[None]]) -> None:
            while True:
                try:
                    await loop(self._store())
                except Exception:  # noqa: BLE001 - a loop's failure must not end the leadership
                    log.exception("leader loop %s failed", getattr(loop, "__qualname__", loop))
                await trio.sleep(1.0)

        with scope:
            async with trio.open_nursery() as nursery:
                for loop in self.leader_loops:
                    nursery.start_soon(keep, loop)

    async def _leader_extra(self) -> None:
        """Finish a root rotation once every node holds a certificate from the new key."""
        store = self._store()
        record = await store.cluster()
        if not record.ca.rotating:
            return
        ids = {n["ID"] for n, _v in await store.nodes()}
        if ids <= record.rotation_issued:
            record.ca.finish_rotation()
            record.rotation_issued = set()
            record.cluster["RootRotationInProgress"] = False
            record.cluster["TLSInfo"] = tls_info(record.ca)
            with contextlib.suppress(SequenceConflict):
                await store.update_cluster(record)
                log.info("root CA rotation finished")

    # -- CA call hooks (manager side) ----------------------------------------------------------

    async def _on_join(self, node_id: str, role: str) -> None:
        r = "manager" if role == MANAGER_ROLE else "worker"
        await self._store().put_node(swarm_nodes.new_record(node_id, r), 0)

    async def _role_of(self, node_id: str) -> str:
        found = await self._store().node(node_id)
        if found is None:
            raise errors.Forbidden(f"node {node_id} was removed from the swarm")
        return MANAGER_ROLE if found[0]["Spec"]["Role"] == "manager" else WORKER_ROLE

    async def _on_issue(self, node_id: str, chain: bytes) -> None:
        store = self._store()
        record = await store.cluster()
        info = tls_info(record.ca)

        def set_tls(node: dict[str, Any]) -> None:
            node["Description"]["TLSInfo"] = info

        await store.update_node(node_id, set_tls)
        if record.ca.rotating and record.ca.issued_by_current(chain) \
                and node_id not in record.rotation_issued:
            for _ in range(5):
                record.rotation_issued.add(node_id)
                try:
                    await store.update_cluster(record)
                    return
                except SequenceConflict:
                    record = await store.cluster()

    async def _etcd_join(self, peer: transport.Peer, args: dict) -> dict:
        """A manager that joined (or was promoted) asks to be added to the etcd cluster."""
        peer_url = transport._str_arg(args, "peer_url")
        addr = transport._str_arg(args, "addr")
        etcd = self._store().etcd

        def mark(node: dict[str, Any]) -> None:
            node["ManagerStatus"] = {"Addr": addr}

        # recorded first: until the new member runs, a small cluster may have no quorum
        await self._store().update_node(peer.identity.node_id, mark)
        record = await self._store().cluster()
        raft = record.cluster["Spec"]["Raft"]
        self._crosses = list(record.cross_certs)
        for m in await etcd.members():  # a member left behind by an earlier attempt
            if peer_url in m.peer_urls:
                await etcd.member_remove(m.id)
        _added, members = await etcd.member_add([peer_url])  # no quorum until it starts
        return {"raft": raft, "cross_signed": self._crosses,
                "members": [{"id": str(m.id), "name": m.name, "peer_urls": list(m.peer_urls)}
                            for m in members]}

    async def _read(self, fn: Callable[[Store], Awaitable[Any]], *, wait: float = 10.0) -> Any:
        """A read for the API: retried while the local etcd member is briefly away (restarting
        after a CA rotation); losing the quorum is answered at once (docker's words)."""
        store = self._require_manager()
        deadline = trio.current_time() + wait
        while True:
            try:
                return await fn(store)
            except NoLeader:
                if trio.current_time() > deadline - wait + 2.0:  # a leader change takes a moment
                    raise
            except errors.CoreError as exc:
                if type(exc) not in (errors.CoreError, errors.Unavailable):
                    raise
                if trio.current_time() > deadline:
                    raise errors.Unavailable(str(exc)) from None
            await trio.sleep(0.2)
            store = self._require_manager()

    # -- checks --------------------------------------------------------------------------------

    def _require_manager(self) -> Store:
        if self.state == "inactive" or self.local is None:
            raise errors.Unavailable(ERR_NO_MANAGER)
        if self.local["Role"] != "manager":
            raise errors.Unavailable(ERR_NOT_MANAGER)
        if self.etcd is None or not self._manager_up:
            raise errors.Unavailable("This node is not a swarm manager. Manager is being prepared "
                                     "or has trouble connecting to the cluster.")
        return self._store()

    # -- init / join / leave -------------------------------------------------------------------

    async def init(self, req: dict[str, Any]) -> str:
        """``POST /swarm/init``: this node becomes the first manager of a new swarm."""
        if not isinstance(req, dict):
            raise errors.InvalidArgument("invalid swarm init request: expected a JSON object")
        async with self._lock:
            if self.local is not None:
                if req.get("ForceNewCluster") and self.local.get("Role") == "manager":
                    return await self._force_new_cluster()
                raise errors.Unavailable(ERR_SWARM_EXISTS)
            listen_host, listen_port = _listen_addr(req)
            adv_host, adv_port = _advertise_addr(req, listen_host, listen_port, default_advertise_ip)
            if ipaddress.ip_address(adv_host).is_unspecified:
                raise errors.InvalidArgument(f"advertise address must be a non-zero IP address: "
                                             f"{adv_host}")
            data_addr = _data_path_addr(req)
            spec = normalize_spec(req.get("Spec"), raft_tick=self.raft_tick)
            pool, subnet_size = parse_pool(req.get("DefaultAddrPool"), req.get("SubnetSize"))
            data_port = req.get("DataPathPort") or 4789
            if isinstance(data_port, bool) or not isinstance(data_port, int) or not 1024 <= data_port <= 49151:
                raise errors.InvalidArgument(f"data path port {data_port} is out of the range "
                                             "1024-49151")
            expiry = dt.timedelta(microseconds=spec["CAConfig"]["NodeCertExpiry"] / 1000)
            ca = ClusterCA.create(node_cert_expiry=expiry)
            node_id = swarm_ca.new_id()
            creds = ca.issue(MANAGER_ROLE, node_id, ip_addresses=[adv_host])
            advertise = transport.format_address(adv_host, adv_port)
            t = now_text()
            cluster = {"ID": ca.cluster_id, "CreatedAt": t, "UpdatedAt": t, "Spec": spec,
                       "TLSInfo": tls_info(ca), "RootRotationInProgress": False,
                       "DefaultAddrPool": pool, "SubnetSize": subnet_size,
                       "DataPathPort": data_port}
            self.state = "pending"
            self.local = {"NodeID": node_id, "ClusterID": ca.cluster_id, "Role": "manager",
                          "ListenAddr": transport.format_address(listen_host, listen_port),
                          "AdvertiseAddr": advertise, "JoinAddr": advertise,
                          "RemoteManagers": [{"NodeID": node_id, "Addr": advertise}]}
            if data_addr:
                self.local["DataPathAddr"] = data_addr
            if data_port != 4789:
                self.local["DataPathPort"] = data_port
            self.credentials = creds
            try:
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                shutil.rmtree(self.dir / "etcd", ignore_errors=True)
                creds.save(self.certs_dir)
                self._write_peer_chain([])

                async def first_objects() -> None:
                    store = self._store()
                    await store.create_cluster(ClusterRecord(cluster, ca, set(), 0, []))
                    record = swarm_nodes.new_record(node_id, "manager")
                    record["ManagerStatus"] = {"Addr": advertise}
                    record["Description"].update(self._description())
                    record["Description"]["TLSInfo"] = tls_info(ca)
                    await store.put_node(record, 0)
                    await self.networks.create_ingress(store)

                settings = self._etcd_settings(adv_host, spec["Raft"])
                await self._start_node(manager=True, bootstrap=Bootstrap.new(settings, ca.cluster_id),
                                       wait_agent=True, after_etcd=first_objects, settings=settings)
                self._save_local()
            except BaseException:
                await self._undo_start()
                raise
            self.state = "active"
            return node_id

    async def _force_new_cluster(self) -> str:
        """``swarm init --force-new-cluster`` on a manager: its etcd member becomes a cluster of
        one (the other managers are dropped from it), keeping the swarm's state."""
        assert self.local is not None
        await self._stop_node()
        await self._start_node(manager=True, bootstrap=None, wait_agent=False, force_new=True)
        store = self._store()
        own = self.local["NodeID"]
        for node, _v in await store.nodes():
            if node["ID"] != own and node.get("ManagerStatus"):
                def drop(n: dict[str, Any]) -> None:
                    n.pop("ManagerStatus", None)
                    n["Spec"]["Role"] = "worker"
                await store.update_node(node["ID"], drop)
        return own

    async def join(self, req: dict[str, Any]) -> None:
        """``POST /swarm/join``: join the swarm of ``RemoteAddrs`` with ``JoinToken``."""
        if not isinstance(req, dict):
            raise errors.InvalidArgument("invalid swarm join request: expected a JSON object")
        async with self._lock:
            if self.local is not None:
                raise errors.Unavailable(ERR_SWARM_EXISTS)
            listen_host, listen_port = _listen_addr(req)
            remotes = req.get("RemoteAddrs") or []
            if not isinstance(remotes, list) or not remotes:
                raise errors.InvalidArgument("at least 1 RemoteAddr is required to join")
            parsed = []
            for r in remotes:
                try:
                    parsed.append(split_addr(r, transport.DEFAULT_PORT))
                except errors.InvalidArgument as exc:
                    raise errors.InvalidArgument(f"invalid remoteAddr {r!r}: {exc}") from None
            data_addr = _data_path_addr(req)
            token = req.get("JoinToken")
            swarm_tokens.parse_token(token)
            availability = req.get("Availability") or "active"
            if availability not in swarm_nodes.AVAILABILITIES:
                raise errors.InvalidArgument(f'invalid Availability: "{availability}"')
            adv_host, adv_port = _advertise_addr(req, listen_host, listen_port,
                                                 lambda: local_ip_towards(*parsed[0]))
            remote_texts = [transport.format_address(h, p) for h, p in parsed]
            self.state = "pending"
            self._join_availability = availability  # told with the first session
            try:
                # however many addresses the request lists: the join holds the node's lock
                with trio.move_on_after(JOIN_TIMEOUT) as joining:
                    creds = await transport.join(remote_texts, token)
                if joining.cancelled_caught:
                    raise errors.Unavailable(f"no manager could be reached within {JOIN_TIMEOUT:g} s "
                                             f"(of the {len(remote_texts)} addresses given)")
                self.credentials = creds
                identity = creds.identity
                role = "manager" if identity.is_manager else "worker"
                advertise = transport.format_address(adv_host, adv_port)
                self.local = {"NodeID": identity.node_id, "ClusterID": identity.cluster_id,
                              "Role": role,
                              "ListenAddr": transport.format_address(listen_host, listen_port),
                              "AdvertiseAddr": advertise, "JoinAddr": remote_texts[0],
                              "RemoteManagers": []}
                if data_addr:
                    self.local["DataPathAddr"] = data_addr
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                shutil.rmtree(self.dir / "etcd", ignore_errors=True)
                creds.save(self.certs_dir)
                if role == "manager":
                    client = transport.ManagerClient(creds, remote_texts)
                    try:  # a manager's certificate carries its address (etcd's peers check it)
                        self.credentials = creds = await client.renew(ip_addresses=[adv_host])
                    finally:
                        await client.aclose()
                    creds.save(self.certs_dir)
                    bootstrap, settings = await self._ask_etcd_join(adv_host)
                    await self._start_node(manager=True, bootstrap=bootstrap, wait_agent=True,
                                           settings=settings)
                else:
                    await self._start_node(manager=False, bootstrap=None, wait_agent=True)
                self._save_local()
            except BaseException:
                await self._undo_start()
                raise
            finally:
                self._join_availability = None
            self.state = "active"

    async def _undo_start(self) -> None:
        """What a failed (or cancelled) init or join leaves undone: the node stopped, its local
        state forgotten, shielded from the cancellation."""
        with trio.CancelScope(shield=True):
            await self._stop_node()
            self._forget_local()

    def _forget_local(self) -> None:
        self.local = None
        self.credentials = None
        self.state = "inactive"
        self.error = ""
        shutil.rmtree(self.dir, ignore_errors=True)

    async def leave(self, force: bool) -> None:
        """``POST /swarm/leave``: moby's refusals for managers unless ``force``."""
        async with self._lock:
            if self.local is None:
                raise errors.Unavailable(ERR_NO_SWARM)
            if self.local["Role"] == "manager" and not force:
                msg = "You are attempting to leave the swarm on a node that is participating as a manager. "
                try:
                    reachable, unreachable = await self._manager_counts()
                except errors.CoreError:
                    msg += "Doing so may lose the consensus of your cluster. "
                else:
                    if reachable - 1 <= (reachable + unreachable) // 2:  # losing quorum
                        if reachable + unreachable <= 1:
                            raise errors.Unavailable(
                                msg + "Removing the last manager erases all current state of the "
                                "swarm. Use `--force` to ignore this message. ")
                        msg += (f"Removing this node leaves {reachable - 1} managers out of "
                                f"{reachable + unreachable}. Without a Raft quorum your swarm "
                                "will be inaccessible. ")
                msg += ("The only way to restore a swarm that has lost consensus is to reinitialize "
                        "it with `--force-new-cluster`. Use `--force` to suppress this message.")
                raise errors.Unavailable(msg)
            if self.local["Role"] == "manager" and self.member is not None and self.etcd is not None:
                with trio.move_on_after(30), contextlib.suppress(errors.CoreError):
                    if len(await self.etcd.members()) > 1:
                        def drop(node: dict[str, Any]) -> None:
                            node.pop("ManagerStatus", None)
                        with contextlib.suppress(errors.CoreError):
                            await self._store().update_node(self.local["NodeID"], drop)
                        await self.member.leave(self.etcd)
            node_id = self.local["NodeID"]
            await self.networks.run_leave_hooks()  # the node's overlays go while it can still say so
            await self._stop_node()
            self.networks.forget_local()
            engine = self.local_engine()
            if engine is not None:  # docker removes the node's task containers
                await remove_task_containers(engine.containers, node_id)
            self._forget_local()

    async def _manager_counts(self) -> tuple[int, int]:
        store = self._store()
        nodes = await store.nodes()
        sessions = await store.sessions()
        leader = await store.leader()
        reachable = unreachable = 0
        for node, _v in nodes:
            if node.get("ManagerStatus"):
                if node["ID"] in sessions or node["ID"] == leader:
                    reachable += 1
                else:
                    unreachable += 1
        return reachable, unreachable

    # -- the cluster ---------------------------------------------------------------------------

    async def inspect(self) -> dict[str, Any]:
        """``GET /swarm``."""
        record = await self._read(lambda store: store.cluster())
        out = {"ID": record.cluster["ID"], "Version": {"Index": record.version}}
        out.update((k, v) for k, v in record.cluster.items() if k != "ID")
        out["JoinTokens"] = {"Worker": record.ca.join_token("worker"),
                             "Manager": record.ca.join_token("manager")}
        return out

    async def update(self, version: int | None, spec: Any, *, rotate_worker: bool = False,
                     rotate_manager: bool = False, rotate_unlock: bool = False) -> None:
        """``POST /swarm/update``."""
        store = self._require_manager()
        if version is None:
            raise errors.InvalidArgument("invalid swarm version: the version query parameter is "
                                         "required")
        if rotate_unlock:
            raise errors.InvalidArgument(AUTOLOCK_UNSUPPORTED)
        record = await store.cluster()
        if record.version != version:
            raise SequenceConflict()
        old_spec = record.cluster["Spec"]
        new_spec = normalize_spec(spec, old_spec, raft_tick=self.raft_tick)
        if new_spec["CAConfig"]["NodeCertExpiry"] != old_spec["CAConfig"]["NodeCertExpiry"]:
            record.ca.node_cert_expiry = dt.timedelta(
                microseconds=new_spec["CAConfig"]["NodeCertExpiry"] / 1000)
        if new_spec["CAConfig"].get("ForceRotate", 0) != old_spec["CAConfig"].get("ForceRotate", 0):
            if record.ca.rotating:
                record.ca.finish_rotation()
            record.ca.start_rotation()
            record.cross_certs.append(swarm_ca.cert_pem(record.ca.intermediates[0]).decode())
            record.rotation_issued = set()
            record.cluster["RootRotationInProgress"] = True
            record.cluster["TLSInfo"] = tls_info(record.ca)
        record.cluster["Spec"] = new_spec
        if rotate_worker:
            record.ca.rotate_token("worker")
        if rotate_manager:
            record.ca.rotate_token("manager")
        await store.update_cluster(record, version)
        self._apply_cluster(record)

    async def unlock_key(self) -> dict[str, str]:
        """``GET /swarm/unlockkey``: autolock is not supported, so there is no key."""
        self._require_manager()
        return {"UnlockKey": ""}

    # -- nodes ---------------------------------------------------------------------------------

    async def _rendered(self, store: Store) -> list[dict[str, Any]]:
        nodes = await store.nodes()
        sessions = await store.sessions()
        leader = await store.leader()
        return [swarm_nodes.render(n, v, leader=leader, sessions=sessions) for n, v in nodes]

    async def list_nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        return [n for n in await self._read(self._rendered) if swarm_nodes.matches(n, filters)]

    async def get_node(self, ref: str) -> dict[str, Any]:
        rendered = await self._read(self._rendered)
        node, _v = swarm_nodes.find([(n, n["Version"]["Index"]) for n in rendered], ref)
        return node

    async def update_node(self, ref: str, version: int | None, spec: Any) -> None:
        store = self._require_manager()
        if version is None:
            raise errors.InvalidArgument("invalid node version: the version query parameter is "
                                         "required")
        new_spec = swarm_nodes.parse_spec(spec)
        node, current = swarm_nodes.find(await store.nodes(), ref)
        if current != version:
            raise SequenceConflict()
        old_role = node["Spec"]["Role"]
        if old_role == "manager" and new_spec["Role"] == "worker":
            managers = [n for n, _v in await store.nodes()
                        if n["Spec"]["Role"] == "manager" and n.get("ManagerStatus")]
            if len(managers) <= 1:
                raise errors.Conflict("attempting to demote the last manager of the swarm")
            reachable, unreachable = await self._manager_counts()
            is_reachable = node["ID"] in await store.sessions()
            if (reachable - (1 if is_reachable else 0)) <= (reachable + unreachable - 1) // 2:
                raise errors.Conflict("can't remove member from the raft: this would result in a "
                                      "loss of quorum")
        node["Spec"] = {**new_spec}
        await store.put_node(node, version)
        if old_role != new_spec["Role"]:
            log.info("node %s: role %s -> %s (takes effect at its next renewal)", node["ID"],
                     old_role, new_spec["Role"])

    async def remove_node(self, ref: str, force: bool) -> None:
        store = self._require_manager()
        node, version = swarm_nodes.find(await store.nodes(), ref)
        node_id = node["ID"]
        if node["Spec"]["Role"] == "manager" and node.get("ManagerStatus"):
            raise errors.Conflict(f"node {node_id} is a cluster manager and is a member of the raft "
                                  "cluster. It must be demoted to worker before removal")
        if not force and node["Status"]["State"] == "ready":
            raise errors.Conflict(f"node {node_id} is not down and can't be removed")
        for _ in range(5):
            record = await store.cluster()
            record.ca.revoke(node_id)
            try:
                await store.update_cluster(record)
                break
            except SequenceConflict:
                continue
        await store.delete_node(node_id, version)
        self._revoked.add(node_id)
        if self.dispatcher is not None:
            self.dispatcher.forget(node_id)

    # -- what /info and /_ping show --------------------------------------------------------------

    def status_text(self) -> str:
        """The ``Swarm`` header of ``/_ping``: ``inactive``, ``pending``, ``error``,
        ``active/manager`` or ``active/worker``."""
        if self.state == "active" and self.local is not None:
            return f"active/{self.local['Role']}"
        return self.state

    async def info(self) -> dict[str, Any]:
        """docker's ``Swarm`` section of ``/info``."""
        if self.local is None:
            return {"NodeID": "", "NodeAddr": "", "LocalNodeState": self.state,
                    "ControlAvailable": False, "Error": self.error, "RemoteManagers": None}
        out: dict[str, Any] = {
            "NodeID": self.local["NodeID"],
            "NodeAddr": transport.parse_address(self.local["AdvertiseAddr"])[0],
            "LocalNodeState": self.state,
            "ControlAvailable": False,
            "Error": self.error or (self.agent.error if self.agent is not None else ""),
            "RemoteManagers": [dict(m) for m in self.local.get("RemoteManagers") or []] or None,
        }
        if self.local["Role"] == "manager" and self._manager_up:
            out["ControlAvailable"] = True
            try:
                with trio.fail_after(5):
                    swarm = await self.inspect()
                    out["Cluster"] = {k: v for k, v in swarm.items() if k != "JoinTokens"}
                    nodes = await self._read(lambda store: store.nodes(), wait=3.0)
                    out["Nodes"] = len(nodes)
                    out["Managers"] = sum(1 for n, _v in nodes if n.get("ManagerStatus"))
            except (errors.CoreError, trio.TooSlowError) as exc:
                out["Error"] = str(exc) if not isinstance(exc, trio.TooSlowError) else NoLeader().message
        return out

    async def aclose(self) -> None:
        await self._stop_node()
