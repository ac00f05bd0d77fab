"""Networking on one host, end to end: real containers (the registry's busybox) through the CLI,
the daemon and the Docker SDK — published ports, user networks with DNS, connect/disconnect,
the host/none/container modes, a daemon restart, and nothing left on the host afterwards.

"Another host" is a network namespace this module makes (``ip netns add``), joined to the host
by a veth pair in a private /30 chosen here; the client's programs run in it through ``nsenter
--net=/var/run/netns/NAME``.  No traffic leaves the machine: everything goes to loopback, to
that namespace, or between the test engines' containers.  Every engine has its own nft tables
and default bridge (``CoreEnv``), removed with it even when a test fails.
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import CoreEnv, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network tests make namespaces: run as root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed"),
    pytest.mark.skipif(shutil.which("nsenter") is None or shutil.which("ip") is None,
                       reason="nsenter / ip are not installed"),
]

WEB = "echo hello-from-{tag} > /tmp/index.html; exec httpd -f -p 80 -h /tmp"


def nc_get(host: str, port: int) -> tuple[str, ...]:
    """An HTTP GET from inside a container (busybox's static ``wget`` crashes on Debian: nc)."""
    return ("sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port}")


# =========================================================================== helpers
def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def free_port() -> int:
    """A TCP port free on every address of the host (the kernel's pick for 0.0.0.0).  The
    issue's 8080/8081/8082 are replaced by such ports so that runs never clash with the host."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


_GET = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode(errors="replace"))
"""


def http_get(host: str, port: int, netns: str | None = None, timeout: float = 3.0) -> str | None:
    """The HTTP response of ``host:port`` (from the host, or from inside ``netns``); None when
    the connection fails."""
    cmd = [sys.executable, "-c", _GET, host, str(port), str(timeout)]
    if netns:
        cmd = ["nsenter", f"--net=/var/run/netns/{netns}", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
    return proc.stdout if proc.returncode == 0 else None


def wait_answer(host: str, port: int, expect: str, netns: str | None = None, timeout: float = 20) -> str:
    got: list[str | None] = [None]

    def answered() -> bool:
        got[0] = http_get(host, port, netns)
        return got[0] is not None and expect in got[0]

    wait_for(answered, timeout=timeout, interval=0.2, what=f"{expect!r} from {host}:{port} (netns {netns})")
    return got[0] or ""


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def inspect_field(env: CoreEnv, name: str, template: str) -> str:
    return ok(env.run("inspect", "-f", template, name)).strip()


def host_ips() -> list[ipaddress.IPv4Interface]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [ipaddress.IPv4Interface(line.split()[3]) for line in out.splitlines()]


def container_ip(env: CoreEnv, name: str, network: str) -> str:
    return inspect_field(env, name, "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % network)


# =========================================================================== fixtures
class Client:
    """Another host: a network namespace with a veth to the host in a private /30."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.netns = f"cnete2e{tag}"
        self.host_if = f"vh{tag}"
        self.peer_if = f"vc{tag}"
        used = host_ips()
        for _ in range(100):
            net = ipaddress.IPv4Network((f"10.{random.randint(200, 254)}.{random.randint(0, 255)}."
                                         f"{random.randint(0, 63) * 4}", 30))
            if not any(i.network.overlaps(net) for i in used):
                break
        else:
            raise RuntimeError("no free /30 for the client namespace")
        self.net = net
        self.host_ip, self.client_ip = (str(a) for a in net.hosts())

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def up(self) -> None:
        self._ip("netns", "add", self.netns)
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        self._ip("link", "set", self.peer_if, "netns", self.netns)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self._ip("link", "set", self.host_if, "up")
        self._ip("-n", self.netns, "addr", "add", f"{self.client_ip}/30", "dev", self.peer_if)
        self._ip("-n", self.netns, "link", "set", self.peer_if, "up")
        self._ip("-n", self.netns, "link", "set", "lo", "up")

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


@pytest.fixture(scope="module")
def client():
    c = Client()
    try:
        c.up()
        yield c
    finally:
        c.down()


@pytest.fixture(scope="module")
def eng(test_images):
    """One daemon for the module, busybox pulled from the test registry."""
    env = CoreEnv()
    try:
        ref = test_images["busybox:latest"].reference
        proc = env.run("pull", ref, timeout=300)
        assert proc.returncode == 0, (proc.stdout, proc.stderr, env.daemon_log()[-3000:])
        env.bb = ref
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def rm(eng):
    """Names of containers / networks to remove after the test, whatever happened."""
    made = {"containers": [], "networks": []}
    yield made
    if made["containers"]:
        eng.run("rm", "-f", *made["containers"], timeout=120)
    for n in made["networks"]:
        eng.run("network", "rm", n, timeout=60)


def run_d(eng: CoreEnv, rm: dict, name: str, *args: str, cmd: tuple[str, ...] = ("sleep", "3600")) -> str:
    rm["containers"].append(name)
    return ok(eng.run("run", "-d", "--name", name, *args, eng.bb, *cmd)).strip()


def web(tag: str) -> tuple[str, ...]:
    return ("sh", "-c", WEB.format(tag=tag))


# =========================================================================== published ports
def test_published_port_from_loopback_other_host_and_hairpin(eng, client, rm):
    port = free_port()
    run_d(eng, rm, "web", "-p", f"{port}:80", cmd=web("web"))
    assert "hello-from-web" in wait_answer("127.0.0.1", port, "hello-from-web")
    # another host, through the veth, at the host's address
    assert "hello-from-web" in wait_answer(client.host_ip, port, "hello-from-web", netns=client.netns)

    # on IPv6 too, as docker publishes a port with no host address: [::]:P, reached at [::1]
    assert "hello-from-web" in wait_answer("::1", port, "hello-from-web")
    assert ok(eng.run("ps", "--filter", "name=^web$", "--format", "{{.Ports}}")) == \
        f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp\n"
    table = ok(eng.run("ps", "--filter", "name=^web$"))
    assert f"0.0.0.0:{port}->80/tcp, [::]:{port}->80/tcp" in table
    assert ok(eng.run("port", "web")) == f"80/tcp -> 0.0.0.0:{port}\n80/tcp -> [::]:{port}\n"
    assert ok(eng.run("port", "web", "80")) == f"0.0.0.0:{port}\n[::]:{port}\n"
    assert ok(eng.run("port", "web", "80/tcp")) == f"0.0.0.0:{port}\n[::]:{port}\n"
    # the port is held while the container runs: a host program cannot take it
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        with socket.socket(family) as s, pytest.raises(OSError):
            s.bind((address, port))
    missing = eng.run("port", "web", "81")
    assert missing.returncode != 0 and "No public port '81' published for web" in missing.stderr, missing

    # hairpin: the container reaches its own published port at the host's address
    hp = eng.run("exec", "web", *nc_get(client.host_ip, port))
    assert hp.returncode == 0 and "hello-from-web" in hp.stdout, (hp.stdout, hp.stderr)
    # and another container on the default bridge reaches it too
    run_d(eng, rm, "peer")
    other = eng.run("exec", "peer", *nc_get(client.host_ip, port))
    assert other.returncode == 0 and "hello-from-web" in other.stdout, (other.stdout, other.stderr)

    # the port is taken now: docker's error, exit 125, nothing left of the failed container's start
    taken = eng.run("run", "-d", "--name", "web2", "-p", f"{port}:80", eng.bb, "sleep", "60")
    rm["containers"].append("web2")
    assert taken.returncode == 125, (taken.stdout, taken.stderr)
    assert "port is already allocated" in taken.stderr, taken.stderr
    assert f"0.0.0.0:{port}" in taken.stderr, taken.stderr
    # the first one still answers
    assert "hello-from-web" in wait_answer("127.0.0.1", port, "hello-from-web")


def test_port_taken_by_a_host_program(eng, rm):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = eng.run("run", "-d", "--name", "busyport", "-p", f"{port}:80", eng.bb, "sleep", "60")
        rm["containers"].append("busyport")
        assert proc.returncode == 125, (proc.stdout, proc.stderr)
        assert str(port) in proc.stderr and ("already" in proc.stderr or "in use" in proc.stderr), proc.stderr


def test_loopback_only_publication(eng, client, rm):
    port = free_port()
    run_d(eng, rm, "local", "-p", f"127.0.0.1:{port}:80", cmd=web("local"))
    assert "hello-from-local" in wait_answer("127.0.0.1", port, "hello-from-local")
    assert ok(eng.run("port", "local")) == f"80/tcp -> 127.0.0.1:{port}\n"
    assert ok(eng.run("ps", "--filter", "name=^local$", "--format", "{{.Ports}}")) == \
        f"127.0.0.1:{port}->80/tcp\n"
    # not from another host (nothing listens on the host's address for that port)
    assert http_get(client.host_ip, port, netns=client.netns, timeout=2) is None
    # 0.0.0.0 on the same port clashes with 127.0.0.1 (another specific address would not)
    clash = eng.run("run", "-d", "--name", "local2", "-p", f"{port}:80", eng.bb, "sleep", "60")
    rm["containers"].append("local2")
    assert clash.returncode == 125 and "port is already allocated" in clash.stderr, clash


def test_publish_all_exposed_ports(eng, client, rm):
    run_d(eng, rm, "all", "--expose", "80", "--expose", "8000-8001/udp", "-P", cmd=web("all"))
    lines = ok(eng.run("port", "all")).splitlines()
    mapping = {}
    for line in lines:
        m = re.fullmatch(r"(\d+/(?:tcp|udp)) -> (0\.0\.0\.0|\[::\]):(\d+)", line)
        assert m, lines
        assert mapping.setdefault(m.group(1), int(m.group(3))) == int(m.group(3)), lines
    assert len(lines) == 6, lines  # 0.0.0.0 and [::], the same port
    assert set(mapping) == {"80/tcp", "8000/udp", "8001/udp"}, lines
    low, high = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert all(low <= p <= high for p in mapping.values()), mapping
    port = mapping["80/tcp"]
    assert "hello-from-all" in wait_answer("127.0.0.1", port, "hello-from-all")
    assert "hello-from-all" in wait_answer(client.host_ip, port, "hello-from-all", netns=client.netns)
    ports = ok(eng.run("ps", "--filter", "name=^all$", "--format", "{{.Ports}}"))
    assert f"0.0.0.0:{port}->80/tcp" in ports, ports


# =========================================================================== user networks
def test_user_network_dns_alias_isolation_and_files(eng, rm):
    rm["networks"] += ["mynet", "othernet"]
    ok(eng.run("network", "create", "mynet"))
    ok(eng.run("network", "create", "othernet"))
    # docker's names have 2 characters at least ("a" is refused as by docker: [a-zA-Z0-9][a-zA-Z0-9_.-]+)
    assert eng.run("run", "-d", "--name", "a", eng.bb, "true").returncode == 125
    run_d(eng, rm, "ca", "--network", "mynet", "--network-alias", "alias-a", "--network-alias", "svc")
    run_d(eng, rm, "cb", "--network", "mynet", "--add-host", "x:1.2.3.4", "--add-host", "y.example:5.6.7.8")
    run_d(eng, rm, "cc", "--network", "othernet")
    a_ip = container_ip(eng, "ca", "mynet")
    assert ipaddress.IPv4Address(a_ip)

    for name in ("ca", "alias-a", "svc"):
        look = eng.run("exec", "cb", "nslookup", name)
        assert look.returncode == 0 and a_ip in look.stdout, (name, look.stdout, look.stderr)
        ping = eng.run("exec", "cb", "ping", "-c", "1", "-W", "3", name)
        assert ping.returncode == 0 and a_ip in ping.stdout, (name, ping.stdout, ping.stderr)

    # another user network: no name, no route
    look = eng.run("exec", "cc", "nslookup", "ca")
    assert look.returncode != 0 or a_ip not in look.stdout, look.stdout
    ping = eng.run("exec", "cc", "ping", "-c", "1", "-W", "2", a_ip)
    assert ping.returncode != 0, ping.stdout

    resolv = ok(eng.run("exec", "cb", "cat", "/etc/resolv.conf"))
    assert re.search(r"^nameserver 127\.0\.0\.11$", resolv, re.M), resolv
    assert len(re.findall(r"^nameserver", resolv, re.M)) == 1, resolv
    hosts = ok(eng.run("exec", "cb", "cat", "/etc/hosts"))
    assert re.search(r"^127\.0\.0\.1\s+localhost", hosts, re.M), hosts
    assert re.search(r"^1\.2\.3\.4\s+x$", hosts, re.M), hosts
    assert re.search(r"^5\.6\.7\.8\s+y\.example$", hosts, re.M), hosts
    b_ip = container_ip(eng, "cb", "mynet")
    b_host = ok(eng.run("exec", "cb", "hostname")).strip()
    assert re.search(rf"^{re.escape(b_ip)}\s+.*\b{re.escape(b_host)}\b", hosts, re.M), hosts
    ping = eng.run("exec", "cb", "ping", "-c", "1", "-W", "1", "x")
    assert "1.2.3.4" in ping.stdout + ping.stderr, ping


def test_dns_flag_and_default_bridge_resolv(eng, rm):
    run_d(eng, rm, "dnsflag", "--dns", "192.0.2.53", "--dns-search", "corp.example", "--dns-option", "ndots:2")
    resolv = ok(eng.run("exec", "dnsflag", "cat", "/etc/resolv.conf"))
    assert re.search(r"^nameserver 192\.0\.2\.53$", resolv, re.M), resolv
    assert "127.0.0.11" not in resolv, resolv
    assert re.search(r"^search corp\.example$", resolv, re.M), resolv
    assert re.search(r"^options .*ndots:2", resolv, re.M), resolv
    # on a user network the container sees the embedded server; --dns becomes its upstream
    rm["networks"].append("dnsnet")
    ok(eng.run("network", "create", "dnsnet"))
    run_d(eng, rm, "dnsuser", "--network", "dnsnet", "--dns", "192.0.2.53")
    resolv = ok(eng.run("exec", "dnsuser", "cat", "/etc/resolv.conf"))
    assert re.search(r"^nameserver 127\.0\.0\.11$", resolv, re.M), resolv
    assert re.findall(r"^nameserver\s+(\S+)", resolv, re.M) == ["127.0.0.11"], resolv


def test_static_ip(eng, rm):
    rm["networks"].append("staticnet")
    ok(eng.run("network", "create", "--subnet", "10.213.7.0/24", "staticnet"))
    run_d(eng, rm, "st", "--network", "staticnet", "--ip", "10.213.7.77")
    assert container_ip(eng, "st", "staticnet") == "10.213.7.77"
    addr = ok(eng.run("exec", "st", "ip", "-4", "-o", "addr", "show", "eth0"))
    assert "10.213.7.77/24" in addr, addr
    dup = eng.run("run", "-d", "--name", "st2", "--network", "staticnet", "--ip", "10.213.7.77", eng.bb, "true")
    rm["containers"].append("st2")
    assert dup.returncode == 125 and "Address already in use" in dup.stderr, dup
    # --ip on the default bridge is refused as docker does
    bad = eng.run("run", "--rm", "--ip", "172.17.0.99", eng.bb, "true")
    assert bad.returncode == 125, bad
    assert "user specified IP address is supported on user defined networks only" in bad.stderr, bad.stderr


def test_connect_disconnect_running_container(eng, rm):
    rm["networks"] += ["cnet"]
    ok(eng.run("network", "create", "cnet"))
    run_d(eng, rm, "srv", "--network", "cnet")
    run_d(eng, rm, "roamer")  # the default bridge
    assert eng.run("exec", "roamer", "ping", "-c", "1", "-W", "2", "srv").returncode != 0

    ok(eng.run("network", "connect", "--alias", "roamy", "cnet", "roamer"))
    nets = json.loads(inspect_field(eng, "roamer", "{{json .NetworkSettings.Networks}}"))
    assert set(nets) == {"bridge", "cnet"}, nets
    ifaces = ok(eng.run("exec", "roamer", "ip", "-o", "link"))
    assert "eth1" in ifaces, ifaces
    srv_ip = container_ip(eng, "srv", "cnet")
    ping = eng.run("exec", "roamer", "ping", "-c", "1", "-W", "3", srv_ip)
    assert ping.returncode == 0, (ping.stdout, ping.stderr)
    # its embedded DNS server runs from the connect on (resolv.conf: see the test below)
    look = eng.run("exec", "roamer", "nslookup", "srv", "127.0.0.11")
    assert look.returncode == 0 and srv_ip in look.stdout, (look.stdout, look.stderr)
    roamer_ip = container_ip(eng, "roamer", "cnet")
    look = eng.run("exec", "srv", "nslookup", "roamy")
    assert look.returncode == 0 and roamer_ip in look.stdout, look

    again = eng.run("network", "connect", "cnet", "roamer")
    assert again.returncode != 0 and "already exists in network cnet" in again.stderr, again
    members = json.loads(ok(eng.run("network", "inspect", "-f", "{{json .Containers}}", "cnet")))
    assert {c["Name"] for c in members.values()} == {"srv", "roamer"}, members

    ok(eng.run("network", "disconnect", "cnet", "roamer"))
    nets = json.loads(inspect_field(eng, "roamer", "{{json .NetworkSettings.Networks}}"))
    assert set(nets) == {"bridge"}, nets
    assert "eth1" not in ok(eng.run("exec", "roamer", "ip", "-o", "link"))
    assert eng.run("exec", "roamer", "ping", "-c", "1", "-W", "2", srv_ip).returncode != 0
    not_member = eng.run("network", "disconnect", "cnet", "roamer")
    assert not_member.returncode != 0 and "is not connected to network cnet" in not_member.stderr, not_member


def test_connect_from_default_bridge_resolves_names(eng, rm):
    rm["networks"] += ["rnet"]
    ok(eng.run("network", "create", "rnet"))
    run_d(eng, rm, "rsrv", "--network", "rnet")
    run_d(eng, rm, "rclient")  # the default bridge: the host's resolvers in resolv.conf
    ok(eng.run("network", "connect", "rnet", "rclient"))
    resolv = ok(eng.run("exec", "rclient", "cat", "/etc/resolv.conf"))
    assert re.search(r"^nameserver 127\.0\.0\.11$", resolv, re.M), resolv
    ping = eng.run("exec", "rclient", "ping", "-c", "1", "-W", "3", "rsrv")
    assert ping.returncode == 0 and container_ip(eng, "rsrv", "rnet") in ping.stdout, (ping.stdout, ping.stderr)


def test_network_rm_in_use_and_ls(eng, rm):
    rm["networks"].append("busynet")
    net_id = ok(eng.run("network", "create", "busynet")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", net_id), net_id
    run_d(eng, rm, "holder", "--network", "busynet")
    proc = eng.run("network", "rm", "busynet")
    assert proc.returncode != 0, proc
    assert "error while removing network: network busynet" in proc.stderr and "has active endpoints" in proc.stderr, \
        proc.stderr
    names = ok(eng.run("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")).splitlines()
    assert {"bridge bridge local", "host host local", "none null local", "busynet bridge local"} <= set(names), names
    table = ok(eng.run("network", "ls")).splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"], table
    for builtin in ("bridge", "host", "none"):
        refused = eng.run("network", "rm", builtin)
        assert refused.returncode != 0 and "pre-defined network and cannot be removed" in refused.stderr, refused
    ok(eng.run("rm", "-f", "holder"))
    assert ok(eng.run("network", "rm", "busynet")).strip() == "busynet"
    rm["networks"].remove("busynet")
    assert "busynet" not in ok(eng.run("network", "ls", "--format", "{{.Name}}")).split()


def test_host_none_and_container_modes(eng, client, rm):
    out = ok(eng.run("run", "--rm", "--network", "host", eng.bb, "sh", "-c", "ip -o link; ip -o -4 addr"))
    # the host's own interfaces: the client's veth end (made by this module) with its address
    assert re.search(rf"^\d+: {client.host_if}[@:]", out, re.M), out
    assert f"inet {client.host_ip}/30" in out, out
    assert client.peer_if not in out  # that one is in the client's namespace

    out = ok(eng.run("run", "--rm", "--network", "none", eng.bb, "ip", "-o", "link"))
    names = [line.split(":", 2)[1].strip() for line in out.splitlines()]
    assert names == ["lo"], out
    resolv_none = ok(eng.run("run", "--rm", "--network", "none", eng.bb, "cat", "/etc/resolv.conf"))
    assert "127.0.0.11" not in resolv_none

    run_d(eng, rm, "owner", cmd=web("owner"))
    guest = ok(eng.run("run", "--rm", "--network", "container:owner", eng.bb,
                       "sh", "-c", "ip -o -4 addr show eth0; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 127.0.0.1 80"))
    owner_ip = container_ip(eng, "owner", "bridge")
    assert f"{owner_ip}/" in guest and "hello-from-owner" in guest, guest
    mine = ok(eng.run("exec", "owner", "readlink", "/proc/self/ns/net")).strip()
    run_d(eng, rm, "guest", "--network", "container:owner")
    theirs = ok(eng.run("exec", "guest", "readlink", "/proc/self/ns/net")).strip()
    assert mine == theirs, (mine, theirs)
    bad = eng.run("run", "--rm", "--network", "container:nosuch", eng.bb, "true")
    assert bad.returncode == 125, bad


# =========================================================================== Docker SDK
def test_docker_sdk_networks_and_ports(eng, rm):
    pytest.importorskip("docker")
    import docker

    client = eng.docker_client()
    port = free_port()
    try:
        net = client.networks.create("sdknet", driver="bridge", labels={"t": "e2e"})
        rm["networks"].append("sdknet")
        assert client.networks.get("sdknet").id == net.id
        assert "sdknet" in {n.name for n in client.networks.list()}
        assert [n.name for n in client.networks.list(names=["sdknet"])] == ["sdknet"]
        assert {"bridge", "host", "none"} <= {n.name for n in client.networks.list()}

        c = client.containers.run(eng.bb, ["sh", "-c", WEB.format(tag="sdk")], name="sdkweb",
                                  ports={"80/tcp": port}, detach=True)
        rm["containers"].append("sdkweb")
        assert "hello-from-sdk" in wait_answer("127.0.0.1", port, "hello-from-sdk")
        c.reload()
        assert c.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)},
                                      {"HostIp": "::", "HostPort": str(port)}]}, c.ports

        net.connect(c, aliases=["sdkalias"])
        net.reload()
        assert [x.name for x in net.containers] == ["sdkweb"]
        c.reload()
        assert "sdknet" in c.attrs["NetworkSettings"]["Networks"]
        with pytest.raises(docker.errors.APIError):
            net.connect(c)
        net.disconnect(c)
        net.reload()
        assert net.containers == []
        with pytest.raises(docker.errors.APIError):
            net.disconnect(c)
        # the daemon's own check (the CLI refuses it earlier)
        with pytest.raises(docker.errors.APIError, match="network-scoped alias is supported only for containers "
                                                         "in user defined networks"):
            client.api.create_container(eng.bb, ["true"], name="sdkalias", networking_config=client.api.create_networking_config(
                {"bridge": client.api.create_endpoint_config(aliases=["nope"])}))
        rm["containers"].append("sdkalias")
        net.remove()
        rm["networks"].remove("sdknet")
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("sdknet")
    finally:
        client.close()


# =========================================================================== restart and cleanup
def test_ports_survive_daemon_sigkill_and_nothing_is_left(test_images, client):
    before = links()
    ours: set[str] = set()
    port = free_port()
    env = CoreEnv()
    try:
        ref = test_images["busybox:latest"].reference
        ok(env.run("pull", ref, timeout=300))
        ok(env.run("network", "create", "leftnet"))
        ok(env.run("run", "-d", "--name", "keep", "-p", f"{port}:80", eng_bb := ref, *web("keep")))
        ok(env.run("run", "-d", "--name", "onnet", "--network", "leftnet", eng_bb, "sleep", "3600"))
        wait_answer("127.0.0.1", port, "hello-from-keep")
        default_bridge = inspect_field(env, "bridge", '{{index .Options "com.docker.network.bridge.name"}}')
        bridges = {default_bridge, "br-" + inspect_field(env, "leftnet", "{{.Id}}")[:12]}
        assert bridges <= links(), (bridges, links() - before)
        pid = int((env.exec_root / "core.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0] == "Z", what="the daemon's death")
        # the NAT rules outlive the daemon
        assert "hello-from-keep" in wait_answer("127.0.0.1", port, "hello-from-keep")
        # a command starts it again; the port still answers, everywhere
        assert "keep" in ok(env.run("ps", "--format", "{{.Names}}")).split()
        assert ok(env.run("port", "keep")) == f"80/tcp -> 0.0.0.0:{port}\n80/tcp -> [::]:{port}\n"
        assert "hello-from-keep" in wait_answer("::1", port, "hello-from-keep")  # its proxy lives on
        assert "hello-from-keep" in wait_answer("127.0.0.1", port, "hello-from-keep")
        assert "hello-from-keep" in wait_answer(client.host_ip, port, "hello-from-keep", netns=client.netns)
        # and the DNS of user networks is back
        ok(env.run("run", "-d", "--name", "onnet2", "--network", "leftnet", eng_bb, "sleep", "3600"))
        look = env.run("exec", "onnet2", "nslookup", "onnet")
        assert look.returncode == 0 and container_ip(env, "onnet", "leftnet") in look.stdout, look
        look = env.run("exec", "onnet", "nslookup", "onnet2")
        assert look.returncode == 0 and container_ip(env, "onnet2", "leftnet") in look.stdout, look
        assert bridges <= links() - before
        ours = set(bridges)  # the engine's bridges and the veths on them
        for bridge in bridges:
            out = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True,
                                 check=True).stdout
            ours |= {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}
        assert len(ours) == len(bridges) + 3, ours  # keep, onnet, onnet2
    finally:
        env.cleanup()
    try:  # veths are deleted by the driver's reaper thread: give it a moment
        wait_for(lambda: not ours & links(), timeout=10, interval=0.1, what="the engine's links to go")
    except AssertionError:
        raise AssertionError(f"links left behind: {ours & links()}") from None
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert env.nft_table not in tables, tables
    assert http_get("127.0.0.1", port, timeout=1) is None
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(str(env.root) in line for line in ns.splitlines())


# =========================================================================== restarts and errors
def test_restart_keeps_names_ports_and_static_ip(eng, client, rm):
    rm["networks"].append("rsnet")
    ok(eng.run("network", "create", "--subnet", "10.214.9.0/24", "rsnet"))
    port = free_port()
    run_d(eng, rm, "rsweb", "--network", "rsnet", "--ip", "10.214.9.50", "-p", f"{port}:80", cmd=web("rs"))
    run_d(eng, rm, "rsq", "--network", "rsnet")
    wait_answer("127.0.0.1", port, "hello-from-rs")
    ok(eng.run("stop", "-t", "1", "rsweb"))
    assert "hello-from-rs" not in (http_get("127.0.0.1", port, timeout=1) or "")  # unpublished while stopped
    look = eng.run("exec", "rsq", "nslookup", "rsweb")
    assert "10.214.9.50" not in look.stdout, look.stdout  # a stopped container has no name
    ok(eng.run("start", "rsweb"))
    assert container_ip(eng, "rsweb", "rsnet") == "10.214.9.50"
    assert "hello-from-rs" in wait_answer("127.0.0.1", port, "hello-from-rs")
    assert "hello-from-rs" in wait_answer(client.host_ip, port, "hello-from-rs", netns=client.netns)
    look = eng.run("exec", "rsq", "nslookup", "rsweb")
    assert look.returncode == 0 and "10.214.9.50" in look.stdout, look
    ok(eng.run("restart", "-t", "1", "rsweb"))
    assert "hello-from-rs" in wait_answer("127.0.0.1", port, "hello-from-rs")
    assert ok(eng.run("port", "rsweb")) == f"80/tcp -> 0.0.0.0:{port}\n80/tcp -> [::]:{port}\n"
    # the container reaches the other by name, both ways
    ping = eng.run("exec", "rsweb", "ping", "-c", "1", "-W", "3", "rsq")
    assert ping.returncode == 0, (ping.stdout, ping.stderr)


def test_network_errors_like_docker(eng, rm):
    rm["networks"] += ["dupnet", "intnet"]
    ok(eng.run("network", "create", "dupnet"))
    dup = eng.run("network", "create", "dupnet")
    assert dup.returncode != 0 and "network with name dupnet already exists" in dup.stderr, dup
    alias = eng.run("run", "--rm", "--network-alias", "x1", eng.bb, "true")
    # docker's CLI refuses it before the daemon does (the daemon says "network-scoped alias is
    # supported only for containers in user defined networks")
    assert alias.returncode == 125 and "network-scoped aliases are only supported for user-defined networks" \
        in alias.stderr, alias
    nonet = eng.run("run", "--rm", "--network", "nosuchnet", eng.bb, "true")
    assert nonet.returncode == 125 and "network nosuchnet not found" in nonet.stderr, nonet
    missing = eng.run("network", "connect", "nosuchnet", "nosuchcontainer")
    assert missing.returncode != 0 and "not found" in missing.stderr.lower(), missing
    # an internal network: containers talk to each other, the host publishes nothing for them
    ok(eng.run("network", "create", "--internal", "intnet"))
    run_d(eng, rm, "in1", "--network", "intnet")
    run_d(eng, rm, "in2", "--network", "intnet")
    ping = eng.run("exec", "in2", "ping", "-c", "1", "-W", "3", "in1")
    assert ping.returncode == 0, (ping.stdout, ping.stderr)
    route = ok(eng.run("exec", "in1", "ip", "route"))
    assert "default" not in route, route
    info = json.loads(ok(eng.run("network", "inspect", "intnet")))[0]
    assert info["Internal"] is True and info["Driver"] == "bridge" and info["Scope"] == "local", info
    assert {c["Name"] for c in info["Containers"].values()} == {"in1", "in2"}, info["Containers"]
    subnet = info["IPAM"]["Config"][0]["Subnet"]
    assert ipaddress.IPv4Address(container_ip(eng, "in1", "intnet")) in ipaddress.IPv4Network(subnet)


_UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"echo:" + data, peer)
"""

_UDP_ASK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(2048)[0].decode())
"""


def test_udp_publication(eng, client, rm):
    """busybox has no UDP server: an echo server (the host's python) runs in the container's
    network namespace, entered through its PID."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    run_d(eng, rm, "udp", "-p", f"{port}:5353/udp")
    assert ok(eng.run("port", "udp")) == f"5353/udp -> 0.0.0.0:{port}\n5353/udp -> [::]:{port}\n"
    pid = inspect_field(eng, "udp", "{{.State.Pid}}")
    server = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", _UDP_ECHO, "5353"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "ready\n"
        for netns, host in ((None, "127.0.0.1"), (client.netns, client.host_ip)):
            cmd = [sys.executable, "-c", _UDP_ASK, host, str(port), f"hi-{netns}"]
            if netns:
                cmd = ["nsenter", f"--net=/var/run/netns/{netns}", *cmd]
            got = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            assert got.returncode == 0 and got.stdout == f"echo:hi-{netns}\n", (host, got.stdout, got.stderr)
    finally:
        server.kill()
        server.wait()


class _Upstream:
    """A resolver on the host's /30 address, port 53 (what ``--dns`` can name): the fake of
    tests/test_networks.py (``upstream.example`` is 192.0.2.123, every other name NXDOMAIN)."""

    def __init__(self, ip: str) -> None:
        import threading

        from tests.test_networks import FakeUpstream

        self.fake = FakeUpstream.__new__(FakeUpstream)
        f = self.fake
        f.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        f.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        f.tcp.bind((ip, 53))
        f.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        f.udp.bind((ip, 53))
        f.tcp.listen(8)
        f.port, f.asked, f._stop = 53, [], False
        f.threads = [threading.Thread(target=f._serve_udp, daemon=True),
                     threading.Thread(target=f._serve_tcp, daemon=True)]
        for t in f.threads:
            t.start()

    def close(self) -> None:
        self.fake.close()


def test_dns_forwards_to_the_dns_option(eng, client, rm):
    upstream = _Upstream(client.host_ip)
    try:
        rm["networks"].append("fwdnet")
        ok(eng.run("network", "create", "fwdnet"))
        run_d(eng, rm, "fwd", "--network", "fwdnet", "--dns", client.host_ip)
        run_d(eng, rm, "fwdpeer", "--network", "fwdnet")
        # the embedded server answers container names itself and forwards the rest upstream
        # (A queries only: the fake answers NXDOMAIN to AAAA, which busybox's nslookup reports)
        look = eng.run("exec", "fwd", "nslookup", "-type=a", "upstream.example")
        assert look.returncode == 0 and "192.0.2.123" in look.stdout, (look.stdout, look.stderr)
        assert "upstream.example" in upstream.fake.asked
        look = eng.run("exec", "fwd", "nslookup", "fwdpeer")
        assert look.returncode == 0 and container_ip(eng, "fwdpeer", "fwdnet") in look.stdout, look
        assert "fwdpeer" not in upstream.fake.asked
        nx = eng.run("exec", "fwd", "nslookup", "nosuch.example")
        assert nx.returncode != 0, nx.stdout
        # on the default bridge the container asks the server itself
        run_d(eng, rm, "fwdbridge", "--dns", client.host_ip)
        look = eng.run("exec", "fwdbridge", "nslookup", "-type=a", "upstream.example")
        assert look.returncode == 0 and "192.0.2.123" in look.stdout, (look.stdout, look.stderr)
        assert f"Server:\t\t{client.host_ip}" in look.stdout or client.host_ip in look.stdout.splitlines()[0], look
    finally:
        upstream.close()


def test_publication_on_one_address_and_ranges(eng, client, rm):
    # a range of two free consecutive ports
    for _ in range(50):
        low = free_port()
        try:
            with socket.socket() as s1:
                s1.bind(("0.0.0.0", low + 1))
            break
        except OSError:
            continue
    run_d(eng, rm, "ranged", "-p", f"{client.host_ip}:{low}-{low + 1}:80-81",
          cmd=("sh", "-c", "echo hello-from-ranged > /tmp/index.html; httpd -p 81 -h /tmp; "
                           "exec httpd -f -p 80 -h /tmp"))
    assert ok(eng.run("port", "ranged")) == \
        f"80/tcp -> {client.host_ip}:{low}\n81/tcp -> {client.host_ip}:{low + 1}\n"
    for port in (low, low + 1):
        assert "hello-from-ranged" in wait_answer(client.host_ip, port, "hello-from-ranged", netns=client.netns)
        assert "hello-from-ranged" in wait_answer(client.host_ip, port, "hello-from-ranged")  # from the host
        assert http_get("127.0.0.1", port, timeout=1) is None  # not on loopback


def test_a_default_bridge_left_on_the_host_is_adopted(test_images):
    """A bridge of the default network's name already on the host (a crash, a wiped data root)
    is taken over, as dockerd takes over docker0: the daemon starts and ``run`` works."""
    import hashlib

    env = CoreEnv()
    device = "core" + hashlib.sha256(env.nft_table.encode()).hexdigest()[:8]
    subprocess.run(["ip", "link", "add", device, "type", "bridge"], check=True, capture_output=True)
    try:
        ref = test_images["busybox:latest"].reference
        ok(env.run("pull", ref, timeout=300))
        assert inspect_field(env, "bridge", '{{index .Options "com.docker.network.bridge.name"}}') == device
        out = ok(env.run("run", "--rm", ref, "sh", "-c", "ip -4 -o addr show eth0"))
        subnet = inspect_field(env, "bridge", "{{(index .IPAM.Config 0).Subnet}}")
        assert ipaddress.IPv4Interface(out.split()[3]).ip in ipaddress.IPv4Network(subnet), out
    finally:
        env.cleanup()
        subprocess.run(["ip", "link", "del", device], capture_output=True)


def test_mac_address_link_local_ips_stats_and_ipam_options(eng, rm):
    """Docker SDK: the container-wide ``Config.MacAddress`` (the SDK's ``mac_address``),
    ``IPAMConfig.LinkLocalIPs``, per-interface counters in stats' ``networks``, and
    ``IPAM.Options`` null when not sent (the CLI sends ``{}``, and sees it)."""
    docker = pytest.importorskip("docker")
    client = eng.docker_client()
    try:
        mac = "02:42:0a:0b:0c:0d"
        c = client.containers.run(eng.bb, ["sleep", "600"], name="macc", mac_address=mac, detach=True)
        rm["containers"].append("macc")
        c.reload()
        assert c.attrs["NetworkSettings"]["MacAddress"] == mac
        assert c.attrs["NetworkSettings"]["Networks"]["bridge"]["MacAddress"] == mac
        assert ok(eng.run("exec", "macc", "cat", "/sys/class/net/eth0/address")).strip() == mac
        ok(eng.run("exec", "macc", "ping", "-c", "1", "-W", "2",
                   c.attrs["NetworkSettings"]["Gateway"]))  # some traffic to count
        stats = c.stats(stream=False)
        eth0 = stats["networks"]["eth0"]
        assert set(eth0) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                             "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"}, eth0
        assert eth0["tx_packets"] >= 1 and eth0["rx_bytes"] > 0 and "lo" not in stats["networks"]
        bad = eng.run("run", "--rm", "--network", "host", "--mac-address", mac, eng.bb, "true")
        assert bad.returncode == 125 and "conflicting options" in bad.stderr, bad

        net = client.networks.create("llnet")
        rm["networks"].append("llnet")
        assert client.networks.get("llnet").attrs["IPAM"]["Options"] is None
        rm["networks"].append("clinet")
        ok(eng.run("network", "create", "clinet"))
        assert inspect_field(eng, "clinet", "{{json .IPAM.Options}}") == "{}"
        api = client.api
        cfg = api.create_networking_config({"llnet": api.create_endpoint_config(
            link_local_ips=["169.254.10.10", "fe80::10"])})
        made = api.create_container(eng.bb, ["sleep", "600"], name="llc", networking_config=cfg,
                                    host_config=api.create_host_config(network_mode="llnet"))
        rm["containers"].append("llc")
        api.start(made["Id"])
        addrs = ok(eng.run("exec", "llc", "ip", "addr", "show", "eth0"))
        assert "169.254.10.10/16" in addrs and "fe80::10/64" in addrs, addrs
        ipam = api.inspect_container(made["Id"])["NetworkSettings"]["Networks"]["llnet"]["IPAMConfig"]
        assert ipam == {"LinkLocalIPs": ["169.254.10.10", "fe80::10"]}, ipam
        assert net.name == "llnet"
        with pytest.raises(docker.errors.APIError) as info:
            api.create_container(eng.bb, ["true"], name="llbad", networking_config=api.create_networking_config(
                {"llnet": api.create_endpoint_config(link_local_ips=["nonsense"])}),
                host_config=api.create_host_config(network_mode="llnet"))
        assert info.value.status_code == 400 and "invalid link-local IP address" in str(info.value)
        # the CLI's --link-local-ip
        out = ok(eng.run("run", "--rm", "--network", "llnet", "--link-local-ip", "169.254.7.7", eng.bb,
                         "ip", "-4", "addr", "show", "eth0"))
        assert "169.254.7.7/16" in out, out
    finally:
        client.close()


def test_legacy_links_env_hosts_dns_and_removal(eng, rm):
    """``--link`` on the default bridge: docker's variables and /etc/hosts line; on a
    user-defined network the alias answers in the embedded DNS; ``rm --link`` (docker CLI
    too) removes it; a child that is missing or stopped is docker's error."""
    run_d(eng, rm, "lk-db", "-e", "SECRET=s3", "--expose", "5432", "--expose", "53/udp")
    db_ip = container_ip(eng, "lk-db", "bridge")
    run_d(eng, rm, "lk-web", "--link", "lk-db:db")
    env = dict(line.split("=", 1) for line in ok(eng.run("exec", "lk-web", "env")).splitlines() if "=" in line)
    assert env["DB_PORT"] == f"udp://{db_ip}:53", env  # docker's: the lowest port number
    assert env["DB_PORT_5432_TCP"] == f"tcp://{db_ip}:5432"
    assert env["DB_PORT_5432_TCP_ADDR"] == db_ip and env["DB_PORT_5432_TCP_PORT"] == "5432"
    assert env["DB_PORT_5432_TCP_PROTO"] == "tcp" and env["DB_PORT_53_UDP"] == f"udp://{db_ip}:53"
    assert env["DB_NAME"] == "/lk-web/db" and env["DB_ENV_SECRET"] == "s3"
    hosts = ok(eng.run("exec", "lk-web", "cat", "/etc/hosts"))
    db_id = inspect_field(eng, "lk-db", "{{.Id}}")
    assert f"{db_ip}\tdb {db_id[:12]} lk-db\n" in hosts, hosts
    ping = eng.run("exec", "lk-web", "ping", "-c", "1", "-W", "2", "db")
    assert ping.returncode == 0, ping
    # a child that does not exist, or does not run
    missing = eng.run("run", "-d", "--name", "lk-bad", "--link", "nosuchthing:x", eng.bb, "true")
    rm["containers"].append("lk-bad")
    assert missing.returncode != 0 and "could not get container for nosuchthing" in missing.stderr, missing
    ok(eng.run("create", "--name", "lk-stopped", eng.bb, "sleep", "60"))
    rm["containers"].append("lk-stopped")
    stopped = eng.run("run", "-d", "--name", "lk-bad2", "--link", "lk-stopped:s", eng.bb, "true")
    rm["containers"].append("lk-bad2")
    assert stopped.returncode != 0 and "Cannot link to a non running container" in stopped.stderr, stopped
    # rm --link, through the docker CLI
    if shutil.which("docker"):
        out = subprocess.run(["docker", "rm", "--link", "/lk-web/db"], capture_output=True, text=True,
                             env={**os.environ, "DOCKER_HOST": eng.host}, timeout=60)
    else:
        out = eng.run("rm", "--link", "/lk-web/db")
    assert out.returncode == 0, (out.stdout, out.stderr)
    hosts = ok(eng.run("exec", "lk-web", "cat", "/etc/hosts"))
    assert "\tdb " not in hosts, hosts
    gone = eng.run("rm", "--link", "/lk-web/db")
    assert gone.returncode != 0 and "No such link" in gone.stderr, gone
    # on a user-defined network: the alias is a name in the linking container's DNS only
    rm["networks"].append("lknet")
    ok(eng.run("network", "create", "lknet"))
    run_d(eng, rm, "lk-child", "--network", "lknet")
    run_d(eng, rm, "lk-parent", "--network", "lknet", "--link", "lk-child:kid")
    child_ip = container_ip(eng, "lk-child", "lknet")
    look = eng.run("exec", "lk-parent", "nslookup", "kid")
    assert look.returncode == 0 and child_ip in look.stdout, look
    run_d(eng, rm, "lk-other", "--network", "lknet")
    look = eng.run("exec", "lk-other", "nslookup", "kid")
    assert child_ip not in look.stdout, look


def test_ipv6_networks_cli_and_sdk(eng, rm):
    """``network create --ipv6`` with an IPv6 ``--subnet`` (and, through the SDK, without one:
    a ULA /64), ``--ip6``, inspect's IPv6 fields, IPv6 between containers and AAAA answers of
    the embedded DNS."""
    docker = pytest.importorskip("docker")
    six = ipaddress.IPv6Network("fd00:c0de:%x::/64" % random.randint(0, 0xFFFF))
    rm["networks"].append("v6net")
    ok(eng.run("network", "create", "--ipv6", "--subnet", str(six), "v6net"))
    inspect = json.loads(ok(eng.run("network", "inspect", "v6net")))[0]
    assert inspect["EnableIPv6"] is True
    configs = inspect["IPAM"]["Config"]
    assert {"Subnet": str(six), "Gateway": str(six.network_address + 1)} in configs, configs
    assert any(":" not in c["Subnet"] for c in configs), configs  # and an IPv4 subnet
    fixed = six.network_address + 0x99
    run_d(eng, rm, "v6a", "--network", "v6net", "--ip6", str(fixed))
    run_d(eng, rm, "v6b", "--network", "v6net")
    assert inspect_field(eng, "v6a", '{{(index .NetworkSettings.Networks "v6net").GlobalIPv6Address}}') == str(fixed)
    b6 = inspect_field(eng, "v6b", '{{(index .NetworkSettings.Networks "v6net").GlobalIPv6Address}}')
    assert ipaddress.IPv6Address(b6) in six
    assert inspect_field(eng, "v6b", '{{(index .NetworkSettings.Networks "v6net").GlobalIPv6PrefixLen}}') == "64"
    assert inspect_field(eng, "v6b", '{{(index .NetworkSettings.Networks "v6net").IPv6Gateway}}') == \
        str(six.network_address + 1)
    members = json.loads(ok(eng.run("network", "inspect", "v6net")))[0]["Containers"]
    assert {m["IPv6Address"] for m in members.values()} == {f"{fixed}/64", f"{b6}/64"}
    ping = eng.run("exec", "v6b", "ping", "-6", "-c", "1", "-W", "3", str(fixed))
    assert ping.returncode == 0, (ping.stdout, ping.stderr)
    look = eng.run("exec", "v6b", "nslookup", "-type=AAAA", "v6a")
    assert look.returncode == 0 and str(fixed) in look.stdout, look
    bad = eng.run("run", "--rm", "--network", "v6net", "--ip6", "fd99::1", eng.bb, "true")
    assert bad.returncode == 125 and "no configured subnet" in bad.stderr, bad
    missing = eng.run("network", "create", "--subnet", "fd00:1::/64", "v6bad")
    assert missing.returncode != 0 and "IPv6 enabled" in missing.stderr, missing

    client = eng.docker_client()
    try:
        net = client.networks.create("v6auto", enable_ipv6=True)
        rm["networks"].append("v6auto")
        net.reload()
        assert net.attrs["EnableIPv6"] is True
        auto = [c for c in net.attrs["IPAM"]["Config"] if ":" in c["Subnet"]]
        assert len(auto) == 1 and auto[0]["Subnet"].startswith("fd") and auto[0]["Subnet"].endswith("::/64")
        with pytest.raises(docker.errors.APIError):
            client.networks.create("v6none", ipam=docker.types.IPAMConfig(
                pool_configs=[docker.types.IPAMPool(subnet="fd00:2::/64")]))
    finally:
        client.close()


def test_default_bridge_with_fixed_cidr_v6(test_images):
    """daemon.json ``"ipv6": true, "fixed-cidr-v6": ...``: the default bridge has that IPv6
    subnet and its containers addresses in it; a bad value is a clear error."""
    six = ipaddress.IPv6Network("fd00:b1d:%x::/64" % random.randint(0, 0xFFFF))
    env = CoreEnv()
    try:
        env.write_config({"ipv6": True, "fixed-cidr-v6": str(six)})
        ref = test_images["busybox:latest"].reference
        ok(env.run("pull", ref, timeout=300))
        bridge = json.loads(ok(env.run("network", "inspect", "bridge")))[0]
        assert bridge["EnableIPv6"] is True
        assert {"Subnet": str(six), "Gateway": str(six.network_address + 1)} in bridge["IPAM"]["Config"]
        ok(env.run("run", "-d", "--name", "b6", ref, "sleep", "600"))
        address = inspect_field(env, "b6", "{{.NetworkSettings.GlobalIPv6Address}}")
        assert ipaddress.IPv6Address(address) in six
        out = ok(env.run("exec", "b6", "ip", "-6", "addr", "show", "eth0"))
        assert f"{address}/64" in out, out
    finally:
        env.cleanup()
    bad = CoreEnv()
    try:
        bad.write_config({"fixed-cidr-v6": str(six)})
        proc = bad.run("version", timeout=60)
        assert proc.returncode != 0 and '"fixed-cidr-v6" needs "ipv6": true' in (proc.stderr + bad.daemon_log()), \
            (proc.stdout, proc.stderr)
    finally:
        bad.cleanup()
