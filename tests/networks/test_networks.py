"""Networks of the daemon: records, the API, the CLI, containers' sandboxes, ports and DNS.

Two kinds of tests:

- Through a real daemon (``CoreEnv``): the ``/networks`` API with raw requests and the Docker SDK,
  and the ``core network`` commands.
- In-process, with the :class:`core.engine.networks.service.NetworkManager` serving on a trio loop of its own, the
  real bridge driver, and ``sleep`` processes put in the sandboxes ``prepare`` makes (``nsenter
  --net=<sandbox>``) standing in for containers: ``prepare/attach/detach/restore``, published
  ports, ``connect/disconnect``, and the embedded DNS answering between "containers" and
  forwarding to a fake upstream resolver on 127.0.0.1.

Every daemon and harness has its own nft tables (``coretest-<pid>-<n>``) and so its own
default bridge (``core<hash>``); everything a test made — networks, bridges, tables,
namespaces, processes — is removed at its end, even when it fails, and what a killed run left
is removed by the next (``_reap_stale``).
"""
from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import trio

from core import netns
from core.engine.networks import dns
from core.errors import Conflict, Forbidden, InvalidArgument, NotFound
from tests.conftest import CoreEnv, _answers, purge_network_driver, unmount_under, wait_for
from tests.support.helpers import pid_exists, recv_all

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network tests make namespaces: run as root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter is not installed"),
]

TABLE_PREFIX = f"coretest-{os.getpid()}-"
ROOT_PREFIX = f"core-nmt-{os.getpid()}-"
_tables = itertools.count()
REPO = Path(__file__).resolve().parents[2]


def next_table() -> str:
    return f"{TABLE_PREFIX}{next(_tables)}"


# =========================================================================== cleanup
def _reap_stale() -> None:
    """What killed runs of this module left: their roots (drivers cleared) and nft tables."""
    pattern = re.compile(r"^core-nmt-(\d+)-")
    for root in Path("/tmp").glob("core-nmt-*"):
        m = pattern.match(root.name)
        if not m or pid_exists(int(m.group(1))):
            continue
        try:
            options = json.loads((root / "options.json").read_text())
            purge_network_driver(root / "data", root / "run", options)
        except (OSError, ValueError, Exception):  # noqa: BLE001 - best effort
            pass
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
    for root in Path("/tmp").glob("core-t-*"):
        try:
            config = json.loads((root / "daemon.json").read_text())
            table = config["driver-opts"]["network"]["nft-table"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        m = re.match(r"^coretest-(\d+)-", table)
        if not m or pid_exists(int(m.group(1))):
            continue
        try:
            purge_network_driver(root / "data", root / "run", {"nft-table": table})
        except Exception:  # noqa: BLE001 - best effort
            pass
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True).stdout
    try:
        tables = [o["table"] for o in json.loads(out or "{}").get("nftables", []) if "table" in o]
    except ValueError:
        tables = []
    for t in tables:
        m = re.match(r"^coretest-(\d+)-", t["name"])
        if m and not pid_exists(int(m.group(1))):
            subprocess.run(["nft", "delete", "table", t["family"], t["name"]], capture_output=True)


@pytest.fixture(scope="module", autouse=True)
def _stale() -> None:
    if os.geteuid() == 0:
        _reap_stale()


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    return {link["ifname"] for link in json.loads(out or "[]")}


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True).stdout
    return {o["table"]["name"] for o in json.loads(out or "{}").get("nftables", []) if "table" in o}


# =========================================================================== raw DNS (the test's own)
def dns_query_bytes(name: str, qtype: int = 1, ident: int | None = None) -> bytes:
    ident = random.randrange(65536) if ident is None else ident
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".") if p) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


def _skip_name(data: bytes, off: int) -> int:
    while True:
        n = data[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += n + 1


def _name_at(data: bytes, off: int) -> str:
    labels = []
    while True:
        n = data[off]
        if n & 0xC0 == 0xC0:
            off = ((n & 0x3F) << 8) | data[off + 1]
            continue
        if n == 0:
            return ".".join(labels)
        labels.append(data[off + 1:off + 1 + n].decode())
        off += n + 1


def parse_answer(data: bytes) -> dict[str, Any]:
    """rcode, flags and the answers ((type, value)) of a DNS response."""
    ident, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    answers = []
    for _ in range(an):
        off = _skip_name(data, off)
        rtype, _rclass, ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        rdata = data[off:off + rdlen]
        if rtype == 1:
            answers.append(("A", str(ipaddress.IPv4Address(rdata))))
        elif rtype == 12:
            answers.append(("PTR", _name_at(data, off)))
        else:
            answers.append((rtype, rdata))
        off += rdlen
    return {"id": ident, "rcode": flags & 0xF, "tc": bool(flags & 0x200), "answers": answers,
            "qr": bool(flags & 0x8000)}


def ask(netns_path: str, name: str, qtype: int = 1, tcp: bool = False,
        server: tuple[str, int] = ("127.0.0.11", 53), timeout: float = 5.0) -> dict[str, Any]:
    """One query from inside a namespace (a socket made there), parsed."""
    query = dns_query_bytes(name, qtype)

    def go() -> bytes:
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.settimeout(timeout)
            if tcp:
                s.connect(server)
                s.sendall(struct.pack("!H", len(query)) + query)
                head = b""
                while len(head) < 2:
                    head += s.recv(2 - len(head))
                (length,) = struct.unpack("!H", head)
                body = b""
                while len(body) < length:
                    body += s.recv(length - len(body))
                return body
            s.sendto(query, server)
            return s.recv(65535)

    reply = netns.run_in(netns_path, go)
    assert reply[:2] == query[:2]
    return parse_answer(reply)


def addresses(answer: dict[str, Any]) -> list[str]:
    return sorted(v for t, v in answer["answers"] if t == "A")


class FakeUpstream:
    """A resolver on 127.0.0.1 (UDP and TCP, one port): ``upstream.example`` is 192.0.2.123,
    every other name NXDOMAIN.  Records the names it was asked."""

    ADDRESS = "192.0.2.123"

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        self.asked: list[str] = []
        self._stop = False
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def reply(self, data: bytes) -> bytes:
        ident, flags = struct.unpack("!HH", data[:4])
        end = _skip_name(data, 12)
        name = _name_at(data, 12).lower()
        self.asked.append(name)
        question = data[12:end + 4]
        qtype = struct.unpack("!H", data[end:end + 2])[0]
        if name == "upstream.example" and qtype == 1:
            answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(self.ADDRESS)
            return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + answer
        return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question

    def _serve_udp(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop:
            try:
                data, addr = self.udp.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            self.udp.sendto(self.reply(data), addr)

    def _serve_tcp(self) -> None:
        self.tcp.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(2)
                    (length,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < length:
                        data += conn.recv(length - len(data))
                    reply = self.reply(data)
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass

    def close(self) -> None:
        self._stop = True
        for t in self.threads:
            t.join(timeout=2)
        self.udp.close()
        self.tcp.close()


# =========================================================================== in-process harness
class TrioLoop:
    """A trio loop in a thread, with a nursery for the manager's DNS servers."""

    def __init__(self) -> None:
        ready = threading.Event()
        self.token: Any = None
        self.nursery: Any = None
        self._stop: Any = None

        async def serve() -> None:
            self.token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        self.thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
        self.thread.start()
        ready.wait()

    def run(self, afn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return await afn(*args, **kwargs)

        return trio.from_thread.run(call, trio_token=self.token)

    def start(self, serve: Callable[..., Any]) -> Callable[[], None]:
        """Run the service ``serve`` in the loop's nursery (``nursery.start``, as the daemon
        does); returns a function that cancels it and waits for its end."""
        scope = trio.CancelScope()
        done = threading.Event()

        async def service(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await serve(task_status=task_status)
            finally:
                done.set()

        self.run(self.nursery.start, service)

        def stop() -> None:
            trio.from_thread.run_sync(scope.cancel, trio_token=self.token)
            done.wait(30)

        return stop

    def close(self) -> None:
        if self.thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
            self.thread.join(10)


class Directory:
    """The harness's :class:`core.engine.interfaces.ContainerDirectory`: its "containers", and
    the ids whose networks changed (``changed``)."""

    def __init__(self, harness: "Harness") -> None:
        self.harness = harness
        self.changed: list[str] = []

    async def lookup(self, ref: str) -> Any:
        from core.engine.interfaces import ContainerRef

        return ContainerRef(*self.harness.lookup(ref))

    async def network_changed(self, container_id: str, hosts: str, resolv_conf: str) -> None:
        self.changed.append(container_id)


class Harness:
    """A NetworkManager as the daemon would have it (own state, own driver tables), serving in
    a trio loop of its own, with helpers to run "containers": a ``sleep`` in the sandbox
    ``prepare`` returned."""

    def __init__(self, root: Path | None = None, table: str | None = None) -> None:
        from core.daemon.config import DaemonConfig
        from core.daemon.drivers import DriverSet
        from core.api.events import Events
        from core.engine.networks.service import NetworkManager
        from core.daemon.app import MIGRATIONS
        from core.engine.state import State

        self.root = root or Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/tmp"))
        self.table = table or next_table()
        self.options = {"nft-table": self.table}
        (self.root / "options.json").write_text(json.dumps(self.options))
        (self.root / "data").mkdir(exist_ok=True)
        self.config = DaemonConfig(data_root=self.root / "data", exec_root=self.root / "run",
                                   driver_opts={"network": dict(self.options)})
        self.config.exec_root.mkdir(exist_ok=True)
        self.state = State(self.root / "data" / "state.db", MIGRATIONS)
        self.events = Events()
        self.drivers = DriverSet(self.config)
        self.directory = Directory(self)
        self.loop = TrioLoop()
        self.procs: dict[str, subprocess.Popen] = {}
        self.containers: dict[str, dict[str, Any]] = {}  # name -> {"id", "pid", "running"}
        self.manager = NetworkManager(self.state, self.drivers, exec_root=self.config.exec_root,
                                      containers=self.directory, events=self.events,
                                      dns_timeout=1.0)
        self.bridge_device = self.drivers.get("network", "bridge").default_device()
        self.stop_manager = self.loop.start(self.manager.serve)

    def lookup(self, ref: str) -> tuple[str, int, bool]:
        for name, c in self.containers.items():
            if ref in (name, c["id"]) or (len(ref) >= 3 and c["id"].startswith(ref)):
                proc = self.procs.get(c["id"])
                running = proc is not None and proc.poll() is None
                return c["id"], proc.pid if running else 0, running
        raise NotFound(f"No such container: {ref}")

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.loop.run(method, *args, **kwargs)

    # "containers"
    def run(self, name: str, host_config: dict[str, Any] | None = None,
            networking: dict[str, Any] | None = None, exposed: list[str] | None = None,
            command: list[str] | None = None, hostname: str = "") -> dict[str, Any]:
        """create (check) + start (prepare, a process in the sandbox, attach)."""
        cid = self.containers.get(name, {}).get("id")
        if cid is None:
            cid = secrets.token_hex(32)
            self.containers[name] = {"id": cid}
            self.call(self.manager.check, cid, host_config or {}, networking or {},
                      exposed_ports=exposed or [])
            assert not os.path.exists(self.manager.sandbox_path(cid))  # nothing made at create
        path = self.call(self.manager.prepare, cid, host_config or {}, networking or {},
                         exposed_ports=exposed or [])
        self.start_process(cid, path, command)
        info = self.call(self.manager.attach, cid, name, hostname, self.procs[cid].pid)
        self.containers[name].update(info=info, path=path)
        return self.containers[name]

    def start_process(self, cid: str, path: str | None, command: list[str] | None = None) -> None:
        argv = command or ["sleep", "600"]
        full = (["nsenter", f"--net={path}"] + argv) if path else argv
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        self.procs[cid] = proc
        if path:  # as executor.create returns: the process is in its sandbox
            wait_for(lambda: netns.same_namespace(path, f"/proc/{proc.pid}/ns/net")
                     or proc.poll() is not None, timeout=10, what="the process in its sandbox")

    def kill(self, name: str) -> None:
        proc = self.procs.get(self.containers[name]["id"])
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def stop(self, name: str) -> None:
        self.kill(name)
        self.call(self.manager.detach, self.containers[name]["id"])

    def reopen(self) -> None:
        """A daemon restart: DNS servers and driver closed, a new manager on the same state."""
        from core.daemon.drivers import DriverSet
        from core.engine.networks.service import NetworkManager

        self.stop_manager()
        self.call(self.drivers.aclose)
        self.drivers = DriverSet(self.config)
        self.manager = NetworkManager(self.state, self.drivers, exec_root=self.config.exec_root,
                                      containers=self.directory, events=self.events,
                                      dns_timeout=1.0, dns_upstreams=self.manager.dns_upstreams)
        self.stop_manager = self.loop.start(self.manager.serve)

    def close(self) -> None:
        try:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
            try:
                for c in list(self.containers.values()):
                    self.call(self.manager.forget, c["id"])
                self.stop_manager()
            finally:
                self.call(self.drivers.aclose)
        finally:
            self.loop.close()
            try:
                purge_network_driver(self.config.data_root, self.config.exec_root, self.options)
            finally:
                self.state.close()
                unmount_under(self.root)
                shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def h() -> Any:
    tables = nft_tables()
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()
    # nothing of the test is left on the host
    assert not {t for t in nft_tables() - tables if t.startswith(harness.table)}
    assert harness.bridge_device not in host_links()
    assert not harness.root.exists()


@pytest.fixture
def upstream() -> Any:
    with contextlib.closing(FakeUpstream()) as server:
        yield server


def free_port() -> int:
    while True:
        port = random.randrange(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port


def subnet_for_test() -> str:
    """A /24 of 10.0.0.0/8 no route of the host (or another test) uses."""
    routes = subprocess.run(["ip", "-j", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    taken = []
    for r in json.loads(routes or "[]"):
        try:
            taken.append(ipaddress.ip_network(r.get("dst", ""), strict=False))
        except ValueError:
            continue
    while True:
        candidate = ipaddress.ip_network(f"10.{random.randrange(64, 250)}.{random.randrange(256)}.0/24")
        if not any(candidate.overlaps(t) for t in taken if t.version == 4 and t.prefixlen > 0):
            return str(candidate)


# =========================================================================== unit: netns
def test_netns_create_is_idempotent_and_delete_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "netns" / "sandbox"
    assert netns.create(path) == str(path)
    assert netns.exists(path)
    first = os.stat(path).st_ino
    netns.create(path)  # kept as it is
    assert os.stat(path).st_ino == first
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link", "show"],
                         capture_output=True, text=True, check=True).stdout
    assert out.count(": ") and "lo:" in out and ",UP" in out and "eth0" not in out
    assert not netns.same_namespace(path, "/proc/self/ns/net")
    netns.delete(path)
    assert not path.exists()
    netns.delete(path)  # again: fine
    # a run that died half-way left a plain file: it is reused
    path.write_text("")
    netns.create(path)
    assert netns.exists(path)
    netns.delete(path)
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


def test_netns_run_in_makes_sockets_in_the_namespace(tmp_path: Path) -> None:
    path = str(tmp_path / "ns")
    netns.create(path)
    try:
        sock = netns.run_in(path, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind(("127.0.0.11", 0))  # only a namespace of our own lets us bind it freely
            port = sock.getsockname()[1]
            ss = subprocess.run(["nsenter", f"--net={path}", "ss", "-lun"], capture_output=True,
                                text=True).stdout
            assert f"127.0.0.11:{port}" in ss
        with pytest.raises(FileNotFoundError):
            netns.run_in(str(tmp_path / "missing"), lambda: None)
    finally:
        netns.delete(path)


# =========================================================================== unit: DNS messages
def test_dns_messages_parse_and_build() -> None:
    raw = dns_query_bytes("Web.Example.", 1, ident=0x4242)
    q = dns.parse_query(raw)
    assert (q.id, q.name, q.qtype, q.qclass, q.edns_size) == (0x4242, "web.example", 1, 1, None)
    reply = dns.build_response(q, dns.NOERROR, [dns.a_record("10.0.0.7"), dns.a_record("10.0.0.8")])
    parsed = parse_answer(reply)
    assert parsed["id"] == 0x4242 and parsed["qr"] and parsed["rcode"] == 0
    assert addresses(parsed) == ["10.0.0.7", "10.0.0.8"]
    # the question is echoed as received
    assert reply[12:12 + len(q.question)] == raw[12:]
    # PTR answers carry a name
    ptr = parse_answer(dns.build_response(q, dns.NOERROR, [dns.ptr_record("c1.n1")]))
    assert ptr["answers"] == [("PTR", "c1.n1")]
    # UDP answers that do not fit are truncated, with TC
    many = [dns.a_record(f"10.0.{i // 250}.{i % 250 + 1}") for i in range(100)]
    small = parse_answer(dns.build_response(q, dns.NOERROR, many, limit=512))
    assert small["tc"] and 0 < len(small["answers"]) < 100
    assert len(dns.build_response(q, dns.NOERROR, many, limit=512)) <= 512
    # EDNS: the requestor's size is read from the OPT record
    opt = raw[:11] + b"\x01" + raw[12:] + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    assert dns.parse_query(opt).edns_size == 1232
    assert dns.reverse_address("4.3.2.10.in-addr.arpa") == "10.2.3.4"
    assert dns.reverse_address("example.com") is None


def test_dns_rejects_malformed_messages() -> None:
    with pytest.raises(dns.FormatError):
        dns.parse_query(b"\x00\x01")
    loop = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    with pytest.raises(dns.FormatError):
        dns.parse_query(loop)  # a pointer to itself
    response = bytearray(dns_query_bytes("x"))
    response[2] |= 0x80
    with pytest.raises(dns.FormatError):
        dns.parse_query(bytes(response))
    two = bytearray(dns_query_bytes("x"))
    two[5] = 2
    with pytest.raises(dns.FormatError):
        dns.parse_query(bytes(two))
    assert parse_answer(dns.error_for(bytes(two), dns.FORMERR))["rcode"] == dns.FORMERR
    assert dns.error_for(bytes(response), dns.FORMERR) is None


# =========================================================================== unit: helpers
def test_port_bindings_parse_docker_forms() -> None:
    from core.engine.networks.ports import parse_port_bindings

    got = parse_port_bindings({"8080/tcp": [{"HostIp": "", "HostPort": "80"}],
                               "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                               "9000/tcp": [{"HostPort": "9000-9010"}],
                               "7000-7001/tcp": [{"HostPort": "17000-17001"}],
                               "6000/tcp": [{"HostIp": "::", "HostPort": "6000"}],
                               "5000/tcp": None},
                              publish_all=True, exposed=["5000/tcp", "8080/tcp", "4000"])
    assert [str(b) for b in got] == [
        "0.0.0.0:80->8080/tcp", "127.0.0.1:0->53/udp", "0.0.0.0:9000-9010->9000/tcp",
        "0.0.0.0:17000->7000/tcp", "0.0.0.0:17001->7001/tcp", "[::]:6000->6000/tcp",
        "0.0.0.0:0->4000/tcp"]
    # an empty HostIp asks for IPv6 too (docker's 0.0.0.0 and :: bindings); a given one does not
    assert [b.ipv6 for b in got] == [True, False, True, True, True, False, True]
    (v4,) = parse_port_bindings({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]})
    (v6,) = parse_port_bindings({"80/tcp": [{"HostIp": "[::1]", "HostPort": "80"}]})
    assert not v4.ipv6 and str(v6) == "[::1]:80->80/tcp"
    for bad, message in (({"80/sctp": []}, "not supported"), ({"eighty": []}, "invalid port"),
                         ({"80/tcp": [{"HostPort": "x"}]}, "invalid hostPort: x"),
                         ({"80/tcp": [{"HostPort": "70000"}]}, "invalid hostPort"),
                         ({"80/tcp": [{"HostIp": "300.1.1.1"}]}, "invalid")):
        with pytest.raises(InvalidArgument, match=message):
            parse_port_bindings(bad)


def test_list_filters_as_docker_applies_them() -> None:
    from core.engine.filters import label_match, matches, until

    labels = {"env": "prod", "tier": ""}
    assert label_match(labels, "env") and label_match(labels, "env=prod")
    assert label_match(labels, "tier=") and not label_match(labels, "env=dev")
    assert not label_match(labels, "team")
    assert matches("^we", "web") and matches("eb", "web") and not matches("^eb", "web")
    assert matches("a[", "xa[y")  # not a regular expression: a substring
    assert until("1700000000") == 1_700_000_000 * 10**9
    assert until("2023-11-14T22:13:20Z") == 1_700_000_000 * 10**9
    assert abs(until("1h30m") - (time.time() - 5400) * 1e9) < 5e9
    with pytest.raises(InvalidArgument, match="^invalid filter 'until=soon'$"):
        until("soon")


def test_hosts_and_resolv_conf_formats() -> None:
    from core.engine.networks.files import HOSTS_DEFAULT, build_hosts, build_resolv_conf, parse_extra_host

    hosts = build_hosts(hostname="abc", addresses=["172.18.0.2"],
                        extra_hosts=[parse_extra_host("db:10.0.0.5"), parse_extra_host("x=::1")])
    assert hosts == HOSTS_DEFAULT + "10.0.0.5\tdb\n::1\tx\n172.18.0.2\tabc\n"
    assert hosts.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    with pytest.raises(InvalidArgument, match="bad format for add-host"):
        parse_extra_host("nocolon")
    with pytest.raises(InvalidArgument, match="invalid IP address"):
        parse_extra_host("h:1.2.3.400")
    host = "nameserver 127.0.0.53\nnameserver 10.9.9.9\nsearch corp.example\noptions edns0\n"
    user = build_resolv_conf(host, internal_resolver=True)
    lines = [ln for ln in user.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["nameserver 127.0.0.11", "search corp.example", "options edns0 ndots:0"]
    legacy = build_resolv_conf(host, internal_resolver=False)
    lines = [ln for ln in legacy.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["nameserver 10.9.9.9", "search corp.example", "options edns0"]
    only_loopback = build_resolv_conf("nameserver 127.0.0.53\n", internal_resolver=False)
    assert "nameserver 8.8.8.8\nnameserver 8.8.4.4\n" in only_loopback
    wins = build_resolv_conf(host, internal_resolver=False, dns_servers=["1.1.1.1"],
                             dns_search=["a.example"], dns_options=["ndots:2"])
    lines = [ln for ln in wins.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["nameserver 1.1.1.1", "search a.example", "options ndots:2"]


def test_port_command_output(capsys: Any) -> None:
    from core.cli import cmd_container as cmd_network  # `core port` lives with the container commands
    from core.cli.client import CLIError

    ports = {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}],
             "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
             "10000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "10000"}], "9000/tcp": None}
    asked: list[str] = []

    def get_json(path: str, params: Any = None) -> dict[str, Any]:
        asked.append(path)
        return {"NetworkSettings": {"Ports": ports}}

    ctx = SimpleNamespace(client=SimpleNamespace(get_json=get_json))
    assert cmd_network.port(ctx, ["web"], prog="core port") == 0
    assert capsys.readouterr().out == ("53/udp -> 127.0.0.1:5353\n8080/tcp -> 0.0.0.0:80\n"
                                       "10000/tcp -> 0.0.0.0:10000\n")
    assert asked == ["/containers/web/json"]
    assert cmd_network.port(ctx, ["web", "8080"], prog="core port") == 0
    assert capsys.readouterr().out == "0.0.0.0:80\n"
    assert cmd_network.port(ctx, ["web", "53/udp"], prog="core port") == 0
    assert capsys.readouterr().out == "127.0.0.1:5353\n"
    with pytest.raises(CLIError, match="^Error: No public port '9000/tcp' published for web$"):
        cmd_network.port(ctx, ["web", "9000/tcp"], prog="core port")
    with pytest.raises(CLIError, match="invalid port"):
        cmd_network.port(ctx, ["web", "http"], prog="core port")
    with pytest.raises(CLIError, match="requires at least 1 and at most 2 arguments"):
        cmd_network.port(ctx, [], prog="core port")


# =========================================================================== manager: containers
def test_prepare_validates_like_docker(h: Harness) -> None:
    m = h.manager
    cid = secrets.token_hex(32)
    with pytest.raises(NotFound, match="^network nope not found$"):
        h.call(m.check, cid, {"NetworkMode": "nope"}, {})
    with pytest.raises(NotFound, match="^network nope not found$"):
        h.call(m.prepare, cid, {"NetworkMode": "nope"}, {})
    with pytest.raises(NotFound, match="^network other not found$"):
        h.call(m.prepare, cid, {}, {"EndpointsConfig": {"other": {}}})
    h.call(m.create_network, {"Name": "auto"})
    with pytest.raises(InvalidArgument, match="^user specified IP address is supported only when "
                                              "connecting to networks with user configured subnets$"):
        h.call(m.prepare, cid, {"NetworkMode": "auto"},
               {"EndpointsConfig": {"auto": {"IPAMConfig": {"IPv4Address": "172.30.0.9"}}}})
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        h.call(m.prepare, cid, {}, {"EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}}})
    with pytest.raises(InvalidArgument, match="network-scoped alias is supported only"):
        h.call(m.prepare, cid, {}, {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}})
    subnet = subnet_for_test()
    h.call(m.create_network, {"Name": "fixed", "IPAM": {"Config": [{"Subnet": subnet}]}})
    with pytest.raises(InvalidArgument, match="^no configured subnet or ip-range contain the IP address 192.0.2.9$"):
        h.call(m.prepare, cid, {"NetworkMode": "fixed"},
               {"EndpointsConfig": {"fixed": {"IPAMConfig": {"IPv4Address": "192.0.2.9"}}}})
    with pytest.raises(InvalidArgument, match="invalid port specification"):
        h.call(m.prepare, cid, {"PortBindings": {"80/tcpx": []}}, {})
    with pytest.raises(InvalidArgument, match="invalid hostPort"):
        h.call(m.prepare, cid, {"PortBindings": {"80/tcp": [{"HostPort": "abc"}]}}, {})
    with pytest.raises(InvalidArgument, match="bad format for add-host"):
        h.call(m.prepare, cid, {"ExtraHosts": ["bad"]}, {})
    with pytest.raises(InvalidArgument, match="private \\(none\\) mode"):
        h.call(m.prepare, cid, {"NetworkMode": "none"}, {"EndpointsConfig": {"fixed": {}}})
    with pytest.raises(NotFound, match="No such container: ghost"):
        h.call(m.prepare, cid, {"NetworkMode": "container:ghost"}, {})
    # nothing was made for the refused requests
    assert not (h.config.exec_root / "netns").exists() or \
        not list((h.config.exec_root / "netns").iterdir())
    # host: no sandbox
    assert h.call(m.prepare, cid, {"NetworkMode": "host"}, {}) is None
    h.call(m.forget, cid)


def test_default_bridge_run_with_published_port(h: Harness) -> None:
    m = h.manager
    port = free_port()
    server = textwrap.dedent("""
        import socket, sys
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 8080)); s.listen(4)
        print("ready", flush=True)
        while True:
            c, addr = s.accept(); c.sendall(b"hello from " + addr[0].encode()); c.close()
    """)
    c = h.run("web", {"PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": str(port)}]},
                      "ExtraHosts": ["db:10.1.2.3"]},
              exposed=["8080/tcp", "9090/tcp"], command=[sys.executable, "-c", server])
    assert h.procs[c["id"]].stdout.readline().strip() == b"ready"
    settings = c["info"]["NetworkSettings"]
    bridge = h.call(m.inspect_network, "bridge")
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    net = settings["Networks"]["bridge"]
    assert net["NetworkID"] == bridge["Id"] and len(net["EndpointID"]) == 64
    assert net["Gateway"] == gateway and net["IPPrefixLen"] == int(bridge["IPAM"]["Config"][0]["Subnet"].split("/")[1])
    assert ipaddress.ip_address(net["IPAddress"]) in ipaddress.ip_network(bridge["IPAM"]["Config"][0]["Subnet"])
    assert net["MacAddress"] == "02:42:" + ":".join(f"{int(b):02x}" for b in net["IPAddress"].split("."))
    assert net["Aliases"] is None and net["DNSNames"] is None  # the default bridge: no DNS by name
    assert (settings["IPAddress"], settings["Gateway"], settings["EndpointID"]) == \
        (net["IPAddress"], gateway, net["EndpointID"])
    assert settings["Ports"] == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)},
                                              {"HostIp": "::", "HostPort": str(port)}],
                                 "9090/tcp": None}
    assert settings["SandboxKey"] == c["path"] == str(h.config.exec_root / "netns" / c["id"][:12])
    assert h.call(m.ps_ports, c["id"]) == [{"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": port, "Type": "tcp"},
                                   {"IP": "::", "PrivatePort": 8080, "PublicPort": port, "Type": "tcp"},
                                   {"PrivatePort": 9090, "Type": "tcp"}]
    # the files the container gets
    hosts = c["info"]["HostsFile"]
    assert hosts.endswith(f"10.1.2.3\tdb\n{net['IPAddress']}\t{c['id'][:12]}\n")
    resolv = c["info"]["ResolvConf"]
    assert "127.0.0.11" not in resolv and "nameserver" in resolv
    # the published port answers on the host, forwarded into the sandbox
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(100).startswith(b"hello from")
    # the bridge's Containers map shows it
    members = h.call(m.inspect_network, "bridge")["Containers"]
    assert members[c["id"]]["Name"] == "web"
    assert members[c["id"]]["IPv4Address"] == f"{net['IPAddress']}/{net['IPPrefixLen']}"
    # a second container cannot take the same host port
    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{port} failed: port is already allocated"):
        h.run("web2", {"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}})
    # and its failed attach left nothing: it can run without the port
    other = h.containers["web2"]["id"]
    assert not any(e["EndpointID"] for e in h.call(m.settings, other)["Networks"].values())
    h.kill("web2")
    h.call(m.forget, other)
    del h.containers["web2"]
    # stop: endpoint, port and sandbox go; twice is fine
    h.stop("web")
    h.call(m.detach, c["id"])
    assert not os.path.exists(c["path"])
    assert h.call(m.inspect_network, "bridge")["Containers"] == {}
    after = h.call(m.settings, c["id"])
    assert after["Ports"] == {} and after["SandboxKey"] == "" and after["Networks"]["bridge"]["IPAddress"] == ""
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # and it starts again, with a fresh sandbox and the same request
    again = h.run("web", command=[sys.executable, "-c", server])
    assert again["info"]["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"] == str(port)


def test_dns_between_containers_on_user_networks(h: Harness, upstream: FakeUpstream) -> None:
    m = h.manager
    m.dns_upstreams = [("127.0.0.1", upstream.port)]
    h.call(m.create_network, {"Name": "n1"})
    h.call(m.create_network, {"Name": "n2"})
    h.call(m.create_network, {"Name": "quiet", "Internal": True})
    c1 = h.run("c1", {"NetworkMode": "n1"}, {"EndpointsConfig": {"n1": {"Aliases": ["web", "www"]}}})
    c2 = h.run("c2", {"NetworkMode": "n1"})
    c3 = h.run("c3", {"NetworkMode": "n2"}, hostname="third")
    c4 = h.run("c4", {"NetworkMode": "quiet"})
    ip1 = c1["info"]["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
    ip2 = c2["info"]["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
    ip3 = c3["info"]["NetworkSettings"]["Networks"]["n2"]["IPAddress"]
    assert c1["info"]["NetworkSettings"]["Networks"]["n1"]["DNSNames"] == ["c1", "web", "www", c1["id"][:12]]
    assert c3["info"]["NetworkSettings"]["Networks"]["n2"]["DNSNames"] == ["c3", c3["id"][:12], "third"]
    resolv = c2["info"]["ResolvConf"]
    assert "nameserver 127.0.0.11\n" in resolv and re.search(r"^options .*ndots:0$", resolv, re.M)
    # names, aliases, short IDs and name.network resolve on a shared network (UDP and TCP)
    for name in ("c1", "web", "WWW", c1["id"][:12], "c1.n1", "c1."):
        assert addresses(ask(c2["path"], name)) == [ip1], name
    assert addresses(ask(c2["path"], "web", tcp=True)) == [ip1]
    assert addresses(ask(c1["path"], "c2")) == [ip2]
    assert addresses(ask(c1["path"], "c1")) == [ip1]  # itself
    assert addresses(ask(c3["path"], "third")) == [ip3]
    # an IPv4-only name: AAAA is answered with no records, not forwarded
    aaaa = ask(c2["path"], "c1", qtype=28)
    assert aaaa["rcode"] == 0 and aaaa["answers"] == []
    # reverse lookups of members
    rev = ".".join(reversed(ip1.split("."))) + ".in-addr.arpa"
    assert ask(c2["path"], rev, qtype=12)["answers"] == [("PTR", "c1.n1")]
    # not across networks: c3 (n2) does not see c1 (n1) — the name goes upstream, which says no
    upstream.asked.clear()
    answer = ask(c3["path"], "c1")
    assert answer["rcode"] == dns.NXDOMAIN and answer["answers"] == []
    assert upstream.asked == ["c1"]
    assert ask(c1["path"], "c3")["rcode"] == dns.NXDOMAIN
    # everything else is forwarded to the upstream, over UDP and TCP
    assert addresses(ask(c1["path"], "upstream.example")) == [FakeUpstream.ADDRESS]
    assert addresses(ask(c1["path"], "upstream.example", tcp=True)) == [FakeUpstream.ADDRESS]
    # an internal network has no way out: SERVFAIL, upstream never asked
    upstream.asked.clear()
    assert ask(c4["path"], "upstream.example")["rcode"] == dns.SERVFAIL
    assert upstream.asked == []
    # glibc's resolver in the "container", with the resolv.conf it gets, finds its peers
    conf = h.root / "c2-resolv.conf"
    conf.write_text(c2["info"]["ResolvConf"])
    out = subprocess.run(["nsenter", f"--net={c2['path']}", "unshare", "-m", "sh", "-c",
                          f"mount --bind {conf} /etc/resolv.conf && getent ahostsv4 web"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and out.stdout.split()[0] == ip1, out.stderr
    # a container that stops is no longer known
    h.stop("c1")
    assert ask(c2["path"], "web")["rcode"] == dns.NXDOMAIN


def test_dns_forwards_to_an_unreachable_upstream_with_servfail(h: Harness) -> None:
    m = h.manager
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        silent = s.getsockname()[1]  # bound, never answers
        m.dns_upstreams = [("127.0.0.1", silent)]
        h.call(m.create_network, {"Name": "n1"})
        c = h.run("c", {"NetworkMode": "n1"})
        started = time.monotonic()
        assert ask(c["path"], "nowhere.example")["rcode"] == dns.SERVFAIL
        assert 0.9 < time.monotonic() - started < 4.0  # the 1 s timeout of the harness


def test_restore_reopens_dns_and_detaches_containers_that_died(h: Harness, upstream: FakeUpstream) -> None:
    m = h.manager
    m.dns_upstreams = [("127.0.0.1", upstream.port)]
    h.call(m.create_network, {"Name": "n1"})
    a = h.run("a", {"NetworkMode": "n1"})
    b = h.run("b", {"NetworkMode": "n1"})
    ip_a = a["info"]["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
    assert addresses(ask(b["path"], "a")) == [ip_a]
    h.reopen()  # the daemon goes away: a's DNS server with it ...
    with pytest.raises(OSError):
        ask(a["path"], "b", timeout=0.5)
    h.kill("b")  # ... and b dies meanwhile
    h.call(h.manager.restore, [(a["id"], h.procs[a["id"]].pid)])
    m = h.manager
    assert ask(a["path"], "b")["rcode"] == dns.NXDOMAIN  # b is gone from n1
    assert addresses(ask(a["path"], "a")) == [ip_a]
    assert not os.path.exists(b["path"])
    assert list(h.call(m.inspect_network, "n1")["Containers"]) == [a["id"]]
    driver = h.drivers.get("network", "bridge")
    n1 = m.lookup("n1").id
    assert len(h.call(driver.endpoints, n1)) == 1
    assert h.call(m.settings, b["id"])["Networks"]["n1"]["EndpointID"] == ""


def test_connect_and_disconnect(h: Harness, upstream: FakeUpstream) -> None:
    m = h.manager
    m.dns_upstreams = [("127.0.0.1", upstream.port)]
    changed = h.directory.changed
    subnet = subnet_for_test()
    h.call(m.create_network, {"Name": "n1"})
    h.call(m.create_network, {"Name": "n2", "IPAM": {"Config": [{"Subnet": subnet}]}})
    c = h.run("c", {"NetworkMode": "n1"})
    peer = h.run("peer", {"NetworkMode": "n2"})
    fixed = str(ipaddress.ip_network(subnet)[77])
    h.call(m.connect, "n2", "c", {"IPAMConfig": {"IPv4Address": fixed}, "Aliases": ["api"]})
    assert changed == [c["id"]]
    nets = h.call(m.settings, c["id"])["Networks"]
    assert set(nets) == {"n1", "n2"} and nets["n2"]["IPAddress"] == fixed
    assert nets["n2"]["IPAMConfig"] == {"IPv4Address": fixed}
    links = subprocess.run(["nsenter", f"--net={c['path']}", "ip", "-o", "-4", "addr"],
                           capture_output=True, text=True).stdout
    assert "eth1" in links and fixed in links
    assert f"{fixed}\t{c['id'][:12]}" in h.call(m.hosts_file, c["id"])
    assert addresses(ask(peer["path"], "api")) == [fixed]
    with pytest.raises(Forbidden, match="^endpoint with name c already exists in network n2$"):
        h.call(m.connect, "n2", "c")
    with pytest.raises(Forbidden, match="host network"):
        h.call(m.connect, "host", "c")
    with pytest.raises(NotFound, match="No such container: ghost"):
        h.call(m.connect, "n2", "ghost")
    h.call(m.disconnect, "n2", c["id"][:12])
    assert set(h.call(m.settings, c["id"])["Networks"]) == {"n1"}
    assert ask(peer["path"], "api")["rcode"] == dns.NXDOMAIN
    assert "eth1" not in subprocess.run(["nsenter", f"--net={c['path']}", "ip", "-o", "link"],
                                        capture_output=True, text=True).stdout
    with pytest.raises(Forbidden, match=f"^container {c['id']} is not connected to network n2$"):
        h.call(m.disconnect, "n2", "c")
    # a stopped container: connected at its next start, with its old network too
    h.stop("c")
    h.call(m.connect, "n2", "c", {"Aliases": ["later"]})
    again = h.run("c")  # prepare uses what was recorded, not the (empty) request
    assert set(again["info"]["NetworkSettings"]["Networks"]) == {"n1", "n2"}
    assert addresses(ask(peer["path"], "later")) == \
        [again["info"]["NetworkSettings"]["Networks"]["n2"]["IPAddress"]]
    # the first network gives the default route; when it goes, the next one does
    gateways = {n: again["info"]["NetworkSettings"]["Networks"][n]["Gateway"] for n in ("n1", "n2")}
    assert default_route(again["path"]) == (gateways["n1"], "eth0")
    h.call(m.disconnect, "n1", "c")
    assert default_route(again["path"]) == (gateways["n2"], "eth1")
    # a network in use cannot go; a pre-defined one never
    n2 = m.lookup("n2")
    with pytest.raises(Forbidden, match=f"^error while removing network: network n2 id {n2.id} "
                                        "has active endpoints$"):
        h.call(m.remove_network, "n2")
    with pytest.raises(Forbidden, match="^bridge is a pre-defined network and cannot be removed$"):
        h.call(m.remove_network, "bridge")


def default_route(path: str) -> tuple[str, str] | None:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "-4", "route", "show", "default"],
                         capture_output=True, text=True, check=True).stdout
    routes = json.loads(out or "[]")
    assert len(routes) <= 1, routes
    return (routes[0]["gateway"], routes[0]["dev"]) if routes else None


def test_several_networks_at_start(h: Harness, upstream: FakeUpstream) -> None:
    m = h.manager
    m.dns_upstreams = [("127.0.0.1", upstream.port)]
    h.call(m.create_network, {"Name": "front"})
    h.call(m.create_network, {"Name": "back", "Internal": True})
    h.call(m.create_network, {"Name": "side"})
    c = h.run("multi", {"NetworkMode": "back", "PortBindings": {"80/tcp": [{"HostPort": ""}]}},
              {"EndpointsConfig": {"back": {"Aliases": ["db"]}, "front": {}, "side": {}}})
    nets = c["info"]["NetworkSettings"]["Networks"]
    assert list(nets) == ["back", "front", "side"]
    addrs = subprocess.run(["nsenter", f"--net={c['path']}", "ip", "-j", "-4", "addr"],
                           capture_output=True, text=True, check=True).stdout
    by_if = {a["ifname"]: a["addr_info"][0]["local"] for a in json.loads(addrs) if a["ifname"] != "lo"}
    assert by_if == {"eth0": nets["back"]["IPAddress"], "eth1": nets["front"]["IPAddress"],
                     "eth2": nets["side"]["IPAddress"]}
    # the internal network has no gateway: the first external one routes, and publishes
    assert nets["back"]["Gateway"] == "" and default_route(c["path"]) == (nets["front"]["Gateway"], "eth1")
    published = c["info"]["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert published["HostIp"] == "0.0.0.0" and int(published["HostPort"]) > 0
    # DNS answers on every network it shares; forwarding works (one network is external)
    peer = h.run("peer", {"NetworkMode": "back"})
    assert addresses(ask(peer["path"], "db")) == [nets["back"]["IPAddress"]]
    assert ask(peer["path"], "upstream.example")["rcode"] == dns.SERVFAIL  # internal only
    assert addresses(ask(c["path"], "upstream.example")) == [FakeUpstream.ADDRESS]
    assert c["info"]["HostsFile"].endswith("".join(f"{nets[n]['IPAddress']}\t{c['id'][:12]}\n"
                                                   for n in ("back", "front", "side")))


def test_host_none_and_shared_namespaces(h: Harness) -> None:
    m = h.manager
    host = h.run("hostnet", {"NetworkMode": "host", "ExtraHosts": ["gw:host-gateway"]})
    assert host["path"] is None
    assert set(host["info"]["NetworkSettings"]["Networks"]) == {"host"}
    gateway = h.call(m.inspect_network, "bridge")["IPAM"]["Config"][0]["Gateway"]
    assert host["info"]["HostsFile"].endswith(f"{gateway}\tgw\n")
    assert host["id"] in h.call(m.inspect_network, "host")["Containers"]
    none = h.run("isolated", {"NetworkMode": "none"})
    links = subprocess.run(["nsenter", f"--net={none['path']}", "ip", "-o", "link"],
                           capture_output=True, text=True).stdout
    assert "lo:" in links and "eth0" not in links
    assert set(none["info"]["NetworkSettings"]["Networks"]) == {"none"}
    h.call(m.create_network, {"Name": "n1"})
    base = h.run("base", {"NetworkMode": "n1"})
    joined_path = h.call(m.prepare, "f" * 64, {"NetworkMode": "container:base"}, {})
    assert joined_path == base["path"]
    with pytest.raises(InvalidArgument, match="port publishing and the container type network mode"):
        h.call(m.prepare, "e" * 64, {"NetworkMode": "container:base",
                                     "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}, {})
    h.kill("base")
    h.call(m.check, "d" * 64, {"NetworkMode": "container:base"}, {})  # create: it must exist only
    with pytest.raises(Conflict, match="cannot join network of a non running container"):
        h.call(m.prepare, "d" * 64, {"NetworkMode": "container:base"}, {})
    h.containers["selfish"] = {"id": "c" * 64}
    with pytest.raises(InvalidArgument, match="^cannot join own network$"):
        h.call(m.check, "c" * 64, {"NetworkMode": "container:selfish"}, {})
    for cid in ("d" * 64, "f" * 64):
        h.call(m.forget, cid)


# =========================================================================== through the daemon
class NetEnv:
    """A CoreEnv whose daemon has its own nft tables."""

    def __init__(self, env: CoreEnv) -> None:
        self.env = env
        self.table = next_table()
        env.write_config({"driver-opts": {"network": {"nft-table": self.table}}})
        self.cmd = [sys.executable, "-m", "core"]

    def start(self) -> None:
        log = open(self.env.root / "daemon-net.log", "ab")
        proc = subprocess.Popen(self.cmd + ["daemon"], env=self.env.env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.env.procs.append(proc)
        wait_for(lambda: _answers(self.env.socket) or proc.poll() is not None, what="the daemon")
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {self.env.daemon_log()}")

    def core(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd + list(args), input=input, capture_output=True, text=True,
                              timeout=60, env=self.env.env)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A raw request on the socket: (status, decoded JSON or None)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(str(self.env.socket))
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} /v1.47{path} HTTP/1.1\r\nHost: core\r\nContent-Length: {len(data)}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n\r\n")
        s.sendall(head.encode() + data)
        raw = recv_all(s)
        s.close()
        header, _, payload = raw.partition(b"\r\n\r\n")
        status = int(header.split()[1])
        if b"chunked" in header.lower():
            out, rest = b"", payload
            while rest:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    break
                out, rest = out + rest[:size], rest[size + 2:]
            payload = out
        return status, json.loads(payload) if payload.strip() else None

    def close(self) -> None:
        self.env.stop_daemons()
        purge_network_driver(self.env.data_root, self.env.exec_root, {"nft-table": self.table})


@pytest.fixture
def net_env(core_env: CoreEnv) -> Any:
    ne = NetEnv(core_env)
    links = host_links()
    try:
        ne.start()
        yield ne
    finally:
        ne.close()
    assert not {t for t in nft_tables() if t.startswith(ne.table)}
    assert not {n for n in host_links() - links if n.startswith(("core", "br-"))
                and n in _links_of_table(ne.table)}


def _links_of_table(table: str) -> set[str]:
    import hashlib

    return {"core" + hashlib.sha256(table.encode()).hexdigest()[:8]}


def test_api_networks_with_docker_sdk(net_env: NetEnv) -> None:
    client = net_env.env.docker_client()
    try:
        listed = {n.name: n for n in client.networks.list()}
        assert set(listed) >= {"bridge", "host", "none"}
        assert {n: listed[n].attrs["Driver"] for n in ("bridge", "host", "none")} == \
            {"bridge": "bridge", "host": "host", "none": "null"}
        bridge = client.networks.get("bridge").attrs
        assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"
        device = bridge["Options"]["com.docker.network.bridge.name"]
        assert device == next(iter(_links_of_table(net_env.table)))
        assert device in host_links()  # the default bridge is on the host
        assert bridge["IPAM"]["Config"][0]["Gateway"]
        subnet = subnet_for_test()
        gateway = str(ipaddress.ip_network(subnet)[254])
        import docker

        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=gateway)])
        net = client.networks.create("sdknet", driver="bridge", ipam=ipam, labels={"team": "blue"},
                                     options={"com.docker.network.driver.mtu": "1400"})
        assert len(net.id) == 64
        got = client.networks.get("sdknet").attrs
        assert got["Id"] == net.id and got["Scope"] == "local" and got["Driver"] == "bridge"
        # the SDK sends no IPAM.Options: docker shows null (the docker CLI sends {}: {} shown)
        assert got["IPAM"] == {"Driver": "default", "Options": None,
                               "Config": [{"Subnet": subnet, "Gateway": gateway}]}
        assert got["Labels"] == {"team": "blue"} and got["Containers"] == {}
        assert got["Options"] == {"com.docker.network.driver.mtu": "1400"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", got["Created"])
        assert client.networks.get(net.id[:10]).id == net.id
        assert [n.name for n in client.networks.list(names=["sdknet"])] == ["sdknet"]
        assert [n.name for n in client.networks.list(filters={"label": "team=blue"})] == ["sdknet"]
        assert {n.name for n in client.networks.list(filters={"type": "custom"})} == {"sdknet"}
        assert "sdknet" not in {n.name for n in client.networks.list(filters={"driver": "null"})}
        with pytest.raises(docker.errors.APIError) as exc:
            client.networks.create("sdknet")
        assert exc.value.status_code == 409
        assert exc.value.explanation == "network with name sdknet already exists"
        net.remove()
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("sdknet")
        events = list(client.events(since=0, until=int(time.time()) + 1, decode=True,
                                    filters={"type": "network"}))
        assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in events
                if e["Actor"]["ID"] == net.id] == [("create", "sdknet"), ("destroy", "sdknet")]
    finally:
        client.close()


def test_api_errors_and_prune(net_env: NetEnv) -> None:
    api = net_env.api
    subnet = subnet_for_test()
    status, body = api("POST", "/networks/create", {"Name": "n1", "IPAM": {"Config": [{"Subnet": subnet}]}})
    assert status == 201 and set(body) == {"Id", "Warning"} and body["Warning"] == ""
    n1 = body["Id"]
    inner = str(ipaddress.ip_network(subnet).subnets(new_prefix=25).__next__())
    assert api("POST", "/networks/create", {"Name": "n2", "IPAM": {"Config": [{"Subnet": inner}]}}) == \
        (403, {"message": "invalid pool request: Pool overlaps with other one on this address space"})
    status, body = api("POST", "/networks/create", {"Name": "n3", "IPAM": {"Config": [{"Subnet": "10.0.0.300/24"}]}})
    assert status == 400 and body["message"] == ("invalid network config:\ninvalid subnet 10.0.0.300/24: "
                                                 "invalid CIDR address: 10.0.0.300/24")
    status, body = api("POST", "/networks/create", {"Name": "n3", "IPAM": {"Config": [{"Subnet": "10.9.9.1/24"}]}})
    assert (status, body["message"]) == (400, "invalid network config:\ninvalid subnet 10.9.9.1/24: "
                                              "it should be 10.9.9.0/24")
    assert api("POST", "/networks/create", {"Name": "n3", "Driver": "weave"}) == \
        (404, {"message": 'plugin "weave" not found'})
    status, body = api("POST", "/networks/create", {"Name": "n3", "Driver": "overlay"})
    assert status == 403 and "not a swarm manager" in body["message"]
    assert api("POST", "/networks/create", {"Name": "bridge"}) == \
        (409, {"message": "network with name bridge already exists"})
    assert api("DELETE", "/networks/host") == \
        (403, {"message": "host is a pre-defined network and cannot be removed"})
    assert api("DELETE", "/networks/nope") == (404, {"message": "network nope not found"})
    assert api("GET", "/networks/nope") == (404, {"message": "network nope not found"})
    assert api("GET", "/networks?filters=" + json.dumps({"bogus": ["x"]}).replace(" ", "")) == \
        (400, {"message": "invalid filter 'bogus'"})
    assert api("POST", f"/networks/{n1}/connect", {"Container": "ghost"}) == \
        (404, {"message": "No such container: ghost"})
    status, body = api("GET", "/networks/n1")
    assert status == 200 and body["Id"] == n1
    # prune: user networks without endpoints; the pre-defined stay
    status, body = api("POST", "/networks/create", {"Name": "keep", "Labels": {"keep": "1"}})
    assert status == 201
    status, body = api("POST", "/networks/prune?filters=" + json.dumps({"label!": ["keep"]}).replace(" ", ""))
    assert (status, body) == (200, {"NetworksDeleted": ["n1"]})
    status, names = api("GET", "/networks")
    assert sorted(n["Name"] for n in names) == ["bridge", "host", "keep", "none"]
    assert api("POST", "/networks/prune") == (200, {"NetworksDeleted": ["keep"]})
    assert api("POST", "/networks/prune") == (200, {"NetworksDeleted": None})


def test_cli_network_commands(net_env: NetEnv) -> None:
    core = net_env.core
    out = core("network", "ls")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"NETWORK ID\s+NAME\s+DRIVER\s+SCOPE", lines[0])
    rows = [ln.split() for ln in lines[1:]]
    assert [r[1:] for r in rows] == [["bridge", "bridge", "local"], ["host", "host", "local"],
                                     ["none", "null", "local"]]
    assert all(re.fullmatch(r"[0-9a-f]{12}", r[0]) for r in rows)
    subnet = subnet_for_test()
    gateway = str(ipaddress.ip_network(subnet)[1])
    created = core("network", "create", "--subnet", subnet, "--gateway", gateway, "--label", "a=b",
                   "-o", "com.docker.network.driver.mtu=1300", "front")
    assert created.returncode == 0, created.stderr
    nid = created.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", nid)
    assert core("network", "create", "--internal", "back").returncode == 0
    dup = core("network", "create", "front")
    assert (dup.returncode, dup.stderr) == (1, "Error response from daemon: network with name front already exists\n")
    bad = core("network", "create", "--gateway", "10.0.0.1", "x")
    assert (bad.returncode, bad.stderr) == (1, "every ip-range or gateway must have a corresponding subnet\n")
    assert core("network", "create").returncode == 1
    assert core("network", "ls", "-q", "--no-trunc", "-f", "name=front").stdout == nid + "\n"
    assert core("network", "ls", "--format", "{{.Name}} {{.Internal}} {{.Labels}}", "-f", "type=custom").stdout == \
        "back true \nfront false a=b\n"
    js = json.loads(core("network", "ls", "--format", "json", "-f", "name=front").stdout)
    assert js["Name"] == "front" and js["ID"] == nid[:12] and js["Driver"] == "bridge"
    inspect = core("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} "
                   "{{index .Options \"com.docker.network.driver.mtu\"}}", "front")
    assert inspect.stdout == f"{subnet} {gateway} 1300\n"
    full = json.loads(core("network", "inspect", "front", "bridge").stdout)
    assert [n["Name"] for n in full] == ["front", "bridge"]
    missing = core("network", "inspect", "front", "ghost")
    assert missing.returncode == 1 and missing.stderr == "Error response from daemon: network ghost not found\n"
    rm = core("network", "rm", "front", "ghost", "bridge")
    assert rm.returncode == 1 and rm.stdout == "front\n"
    assert rm.stderr == ("Error response from daemon: network ghost not found\n"
                         "Error response from daemon: bridge is a pre-defined network and cannot be removed\n")
    assert core("network", "rm", "-f", "ghost").returncode == 0
    disconnect = core("network", "disconnect", "back", "ghost")
    assert disconnect.returncode == 1 and "No such container: ghost" in disconnect.stderr
    pruned = core("network", "prune", "-f")
    assert pruned.stdout == "Deleted Networks:\nback\n\n"
    declined = core("network", "prune", input="n\n")
    assert declined.returncode == 0 and "Are you sure you want to continue? [y/N]" in declined.stdout
    assert core("network", "ls", "-q").stdout.count("\n") == 3
    help_ = core("network", "--help")
    assert help_.returncode == 0 and "connect" in help_.stdout and "prune" in help_.stdout


def test_an_engines_bridges_go_even_when_its_driver_cannot_clear_them(core_env):
    """The tests' cleanup (``purge_network_driver``) removes an engine's bridges and nft tables
    by name when the bridge driver cannot be rebuilt on its state (a corrupt database here):
    such failures used to leave ``br-*`` and ``core*`` bridges on the host."""
    from tests.conftest import purge_network_driver

    core_env.start_daemon()
    nid = core_env.run("network", "create", "leftover", check=True).stdout.strip()
    core_env.stop_daemons()
    bridge = Path("/sys/class/net") / f"br-{nid[:12]}"
    assert bridge.exists()
    for db in core_env.data_root.glob("network/bridge/bridge.db*"):
        db.write_bytes(b"not a database")
    with pytest.raises(Exception):
        purge_network_driver(core_env.data_root, core_env.exec_root, {"nft-table": core_env.nft_table})
    assert not bridge.exists()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert core_env.nft_table not in tables
    shutil.rmtree(core_env.data_root / "network")  # the corrupt state: the fixture's cleanup completes
