"""The bridge driver's firewall: nftables tables of its own, and a foot in other tools' chains.

What the driver puts in the kernel (``T`` is the ``nft-table`` option, ``core`` by default)::

    table inet T                                   filtering
      set bridges        { type ifname }           every bridge of the driver
      map from-bridge    { ifname : verdict }      "br-x" : jump from-br-x
      map to-bridge      { ifname : verdict }      "br-x" : jump to-br-x
      chain raw-prerouting   hook prerouting, priority raw (-300), policy accept
          iifname != "lo" ip daddr 127.0.0.0/8 drop          (moby#45610, see below)
      chain forward          hook forward, priority filter (0), policy accept
          iifname vmap @from-bridge
          oifname vmap @to-bridge
      chain from-br-x        traffic leaving network x's bridge
          oifname "br-x" accept                             (within the network; "drop" if icc
                                                             is off)
          drop                                              (internal networks only)
          ct status dnat return                             (published ports of other networks)
          oifname @bridges drop                             (isolation: not into other networks)
      chain to-br-x          traffic entering network x's bridge from elsewhere
          ct state established,related accept
          ct status dnat accept                             (published ports; not if internal)
          drop                                              (nothing else gets in)

    table ip T-nat                                 address translation
      set bridges        { type ifname }
      set masq           { ipv4_addr, interval }            subnets masqueraded going out
      set hairpin        { ipv4_addr . ifname, interval }   subnet . its bridge
      map pub-tcp, pub-udp { ipv4_addr . inet_service : ipv4_addr . inet_service, interval }
                           host address (0.0.0.0/0 for any) . host port → container . port
      chain prerouting       hook prerouting, priority dstnat
          fib daddr type local ip daddr != 127.0.0.0/8 dnat to ip daddr . tcp dport map @pub-tcp
          (the same for udp)
      chain output           hook output, priority -100 (dstnat)
          fib daddr type local dnat to ip daddr . tcp dport map @pub-tcp      (and udp)
      chain postrouting      hook postrouting, priority srcnat
          ip saddr 127.0.0.0/8 oifname @bridges masquerade      (host's 127.0.0.1 → container)
          ct status dnat ip saddr . oifname @hairpin masquerade (hairpin)
          ip saddr @masq oifname != @bridges masquerade         (outbound NAT)

A network adds a pair of chains and set/map elements; an endpoint's publications are map
elements.  Everything is added in one ``nft -f -`` transaction per operation and removed
precisely (elements by key, chains by name), never by flushing; when the driver has no network
left it deletes both tables.  When an incremental change fails (someone deleted a table, the
kernel lost state over a reboot) the driver rebuilds both tables from its database in one
atomic transaction (``add table; delete table; table ... { ... }``), which is also what a
starting daemon does.

**Published ports on loopback.**  Locally generated traffic to ``127.0.0.1:port`` is DNAT-ed in
``output``; it leaves through the bridge with source 127.0.0.1, which the kernel allows only with
``net.ipv4.conf.<bridge>.route_localnet=1`` (set on each bridge; it goes with the device), and
``postrouting`` masquerades it to the gateway address so the reply comes back.  No userspace proxy:
nothing to restart with the daemon.  ``route_localnet`` would also let packets addressed to
127.0.0.0/8 in from the bridge (containers reaching the host's loopback-only services), and a
DNAT in ``prerouting`` for a 127.0.0.1 publication would let other hosts reach it (moby#45610).  So the prerouting DNAT never matches 127.0.0.0/8, and
``raw-prerouting`` drops every packet to 127.0.0.0/8 that did not arrive on ``lo`` (the kernel
treats those as martians anyway unless some interface has ``route_localnet``).

**Other firewalls.**  A packet is forwarded only if *every* base chain on the forward hook
accepts it: an accept in core's table does not override a drop elsewhere (docker's iptables
``FORWARD`` policy ``DROP``, or any nftables chain with policy drop).  :func:`foreign_plan`
finds every base chain of another table on the forward hook (families ``ip`` and ``inet``) with
policy drop and *inserts* at its top, per bridge::

    iifname "br-x" accept comment "T:br-x"
    oifname "br-x" accept comment "T:br-x"

These only say "not your business": core's own ``forward`` chain still decides (isolation,
internal networks, unpublished ports).  They are added idempotently (two rules with that
comment, or they are replaced), removed by handle with the network, and nothing else of the
other table is touched — not flushed, not reordered.  The same is done with ``iptables-legacy``
(``-I FORWARD -i br-x -m comment --comment T:br-x -j ACCEPT``, removed with ``-D``) when the
legacy ``filter`` table exists with policy DROP.  The check runs when a network is created or
deleted and when the driver starts; and on every ``join`` one netlink dump of the nftables
chains (no subprocess) notices a drop-policy forward chain that appeared or changed since, and
reconciles then.  (A legacy ``iptables -P FORWARD DROP`` issued later is not visible to that
dump: it is picked up by the next network creation or driver start.)
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from typing import Any

import trio

from core.errors import CoreError, InvalidArgument, Unavailable

from drivers.net_bridge.store import NetRecord, PortRecord

TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")

NFPROTO_INET, NFPROTO_IPV4 = 1, 2
NF_INET_FORWARD = 2
NF_DROP = 0


class NftError(CoreError):
    """``nft`` refused a script (``stderr`` has why)."""


def check_table_name(name: str) -> str:
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise InvalidArgument(f"invalid nft-table {name!r}: a letter, then up to 31 letters, "
                              "digits, '_' or '-'")
    return name


def _q(text: str) -> str:
    return json.dumps(text)  # an nft quoted string: names are checked, so no escapes needed


def _key(host_ip: Any) -> str:
    return "0.0.0.0/0" if str(host_ip) == "0.0.0.0" else str(host_ip)


class Ruleset:
    """Renders the scripts for one pair of tables.  Pure: no kernel, no subprocess."""

    def __init__(self, table: str = "core") -> None:
        self.table = check_table_name(table)
        self.nat = f"{table}-nat"
        self.comment_prefix = f"{table}:"

    # ----------------------------------------------------------------------- whole tables
    def base(self) -> str:
        t, n = self.table, self.nat
        return f"""table inet {t} {{
  set bridges {{ type ifname; }}
  map from-bridge {{ type ifname : verdict; }}
  map to-bridge {{ type ifname : verdict; }}
  chain raw-prerouting {{
    type filter hook prerouting priority raw; policy accept;
    iifname != "lo" ip daddr 127.0.0.0/8 drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname vmap @from-bridge
    oifname vmap @to-bridge
  }}
}}
table ip {n} {{
  set bridges {{ type ifname; }}
  set masq {{ type ipv4_addr; flags interval; }}
  set hairpin {{ type ipv4_addr . ifname; flags interval; }}
  map pub-tcp {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; flags interval; }}
  map pub-udp {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; flags interval; }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local ip daddr != 127.0.0.0/8 dnat to ip daddr . tcp dport map @pub-tcp
    fib daddr type local ip daddr != 127.0.0.0/8 dnat to ip daddr . udp dport map @pub-udp
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat to ip daddr . tcp dport map @pub-tcp
    fib daddr type local dnat to ip daddr . udp dport map @pub-udp
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 oifname @bridges masquerade
    ct status dnat ip saddr . oifname @hairpin masquerade
    ip saddr @masq oifname != @bridges masquerade
  }}
}}
"""

    def teardown(self) -> str:
        """Delete both tables, whether they exist or not."""
        return (f"add table inet {self.table}\ndelete table inet {self.table}\n"
                f"add table ip {self.nat}\ndelete table ip {self.nat}\n")

    def rebuild(self, networks: Iterable[NetRecord],
                ports: Iterable[tuple[PortRecord, str]]) -> str:
        """Both tables from scratch, in one transaction (``ports``: record and container IP)."""
        lines = [self.teardown(), self.base()]
        for net in networks:
            lines += self.add_network(net)
        lines += self.add_ports(ports)
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------------------------- networks
    def add_network(self, net: NetRecord) -> list[str]:
        t, n, br = self.table, self.nat, net.bridge
        qb = _q(br)
        out = [
            f"add element inet {t} bridges {{ {qb} }}",
            f"add chain inet {t} from-{br}",
            f"add rule inet {t} from-{br} oifname {qb} {'accept' if net.icc else 'drop'}",
        ]
        if net.internal:
            out.append(f"add rule inet {t} from-{br} drop")
        else:
            out += [f"add rule inet {t} from-{br} ct status dnat return",
                    f"add rule inet {t} from-{br} oifname @bridges drop"]
        out += [
            f"add chain inet {t} to-{br}",
            f"add rule inet {t} to-{br} ct state established,related accept",
        ]
        if not net.internal:
            out.append(f"add rule inet {t} to-{br} ct status dnat accept")
        out += [
            f"add rule inet {t} to-{br} drop",
            f"add element inet {t} from-bridge {{ {qb} : jump from-{br} }}",
            f"add element inet {t} to-bridge {{ {qb} : jump to-{br} }}",
            f"add element ip {n} bridges {{ {qb} }}",
        ]
        out += [f"add element {e}" for e in self._nat_elements(net)]
        return out

    def remove_network(self, net: NetRecord) -> list[str]:
        t, n, br = self.table, self.nat, net.bridge
        qb = _q(br)
        out = [
            f"delete element inet {t} from-bridge {{ {qb} }}",
            f"delete element inet {t} to-bridge {{ {qb} }}",
            f"delete chain inet {t} from-{br}",
            f"delete chain inet {t} to-{br}",
            f"delete element inet {t} bridges {{ {qb} }}",
            f"delete element ip {n} bridges {{ {qb} }}",
        ]
        out += [f"delete element {e}" for e in self._nat_elements(net)]
        return out

    def _nat_elements(self, net: NetRecord) -> list[str]:
        """A network's elements of the nat table's hairpin and masq sets (none when internal)."""
        if net.internal:
            return []
        out = [f"ip {self.nat} hairpin {{ {net.subnet} . {_q(net.bridge)} }}"]
        if net.masquerade:
            out.append(f"ip {self.nat} masq {{ {net.subnet} }}")
        return out

    # ----------------------------------------------------------------------- ports
    def add_ports(self, ports: Iterable[tuple[PortRecord, str]]) -> list[str]:
        """DNAT map elements of the IPv4 publications (IPv6 ones are the proxy's alone)."""
        return [f"add element ip {self.nat} pub-{p.protocol} "
                f"{{ {_key(p.host_ip)} . {p.host_port} : {ip} . {p.container_port} }}"
                for p, ip in ports if p.host_ip.version == 4]

    def remove_ports(self, ports: Iterable[PortRecord]) -> list[str]:
        return [f"delete element ip {self.nat} pub-{p.protocol} "
                f"{{ {_key(p.host_ip)} . {p.host_port} }}" for p in ports
                if p.host_ip.version == 4]

    # ----------------------------------------------------------------------- other tables
    def foreign_plan(self, chains: list[dict[str, Any]], rules: list[dict[str, Any]],
                     bridges: set[str]) -> list[dict[str, Any]]:
        """JSON commands that make every foreign drop-policy forward chain accept ``bridges``
        and remove this driver's rules for any other bridge.

        ``chains`` and ``rules`` are the ``chain``/``rule`` objects of ``nft -j list`` output
        for the base chains on the forward hook of tables other than the driver's own.
        """
        own = {("inet", self.table), ("ip", self.nat)}
        drop_chains = {
            (c["family"], c["table"], c["name"]) for c in chains
            if c.get("hook") == "forward" and c.get("type") == "filter"
            and c.get("policy") == "drop" and c["family"] in ("ip", "inet")
            and (c["family"], c["table"]) not in own
        }
        ours: dict[tuple[str, str, str], dict[str, list[int]]] = {}
        for r in rules:
            comment = r.get("comment") or ""
            if not comment.startswith(self.comment_prefix):
                continue
            where = (r["family"], r["table"], r["chain"])
            if where[:2] in own:
                continue
            ours.setdefault(where, {}).setdefault(comment[len(self.comment_prefix):], []).append(
                r["handle"])
        commands: list[dict[str, Any]] = []
        for where, by_bridge in sorted(ours.items()):
            for bridge, handles in sorted(by_bridge.items()):
                keep = where in drop_chains and bridge in bridges and len(handles) == 2
                if not keep:
                    commands += [{"delete": {"rule": {"family": where[0], "table": where[1],
                                                      "chain": where[2], "handle": h}}}
                                 for h in handles]
        for where in sorted(drop_chains):
            present = ours.get(where, {})
            for bridge in sorted(bridges):
                if len(present.get(bridge, [])) == 2:
                    continue
                for key in ("oifname", "iifname"):  # inserted at the top: iifname ends first
                    commands.append({"insert": {"rule": {
                        "family": where[0], "table": where[1], "chain": where[2],
                        "comment": f"{self.comment_prefix}{bridge}",
                        "expr": [{"match": {"op": "==", "left": {"meta": {"key": key}},
                                            "right": bridge}},
                                 {"accept": None}]}}})
        return commands

    def legacy_plan(self, forward_rules: str, bridges: set[str]) -> list[list[str]]:
        """``iptables-legacy`` argument lists for the legacy filter table's FORWARD chain,
        from its ``-S FORWARD`` listing: accept rules for ``bridges`` if the policy is DROP,
        and removal of this driver's rules for other bridges (or all, if the policy is not)."""
        drop = any(line.split() == ["-P", "FORWARD", "DROP"] for line in forward_rules.splitlines())
        pattern = re.compile(r'^-A FORWARD -([io]) (\S+) -m comment --comment "?'
                             + re.escape(self.comment_prefix) + r'([^"\s]+)"? -j ACCEPT$')
        present: dict[tuple[str, str], int] = {}
        for line in forward_rules.splitlines():
            m = pattern.match(line.strip())
            if m and m.group(2) == m.group(3):
                present[(m.group(1), m.group(2))] = present.get((m.group(1), m.group(2)), 0) + 1
        commands: list[list[str]] = []
        for (flag, bridge), count in sorted(present.items()):
            wanted = 1 if drop and bridge in bridges else 0
            commands += [self._legacy_rule("-D", flag, bridge)] * max(0, count - wanted)
        if drop:
            for bridge in sorted(bridges):
                for flag in ("o", "i"):
                    if (flag, bridge) not in present:
                        commands.append(self._legacy_rule("-I", flag, bridge))
        return commands

    def _legacy_rule(self, op: str, flag: str, bridge: str) -> list[str]:
        where = ["FORWARD", "1"] if op == "-I" else ["FORWARD"]
        return [op, *where, f"-{flag}", bridge, "-m", "comment", "--comment",
                f"{self.comment_prefix}{bridge}", "-j", "ACCEPT"]


# --------------------------------------------------------------------------- running nft
def nft_binary() -> str | None:
    return shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)


async def run_nft(script: str, *args: str) -> str:
    """Run ``nft [args] -f -`` with ``script`` (one atomic transaction); return its stdout."""
    binary = nft_binary()
    if binary is None:
        raise Unavailable("the bridge network driver needs nft (Debian's nftables package)")
    proc = await trio.run_process([binary, *args, "-f", "-"], stdin=script.encode(),
                                  capture_stdout=True, capture_stderr=True, check=False)
    if proc.returncode != 0:
        err = NftError(f"nft failed: {proc.stderr.decode(errors='replace').strip()}")
        err.script = script  # type: ignore[attr-defined]
        raise err
    return proc.stdout.decode()


async def nft_json(*command: str) -> list[dict[str, Any]]:
    """``nft -j <command>`` parsed: the list of objects (without ``metainfo``)."""
    binary = nft_binary()
    if binary is None:
        raise Unavailable("the bridge network driver needs nft (Debian's nftables package)")
    proc = await trio.run_process([binary, "-j", *command], capture_stdout=True,
                                  capture_stderr=True, check=False)
    if proc.returncode != 0:
        raise NftError(f"nft -j {' '.join(command)} failed: "
                       f"{proc.stderr.decode(errors='replace').strip()}")
    text = proc.stdout.decode()
    if not text.strip():
        return []
    return [o for o in json.loads(text).get("nftables", []) if "metainfo" not in o]


async def foreign_forward_state(ruleset: Ruleset) -> tuple[list[dict], list[dict]]:
    """The forward-hook base chains of other tables, and their rules."""
    chains = [o["chain"] for o in await nft_json("list", "chains") if "chain" in o]
    own = {("inet", ruleset.table), ("ip", ruleset.nat)}
    forward = [c for c in chains if c.get("hook") == "forward" and c["family"] in ("ip", "inet")
               and (c["family"], c["table"]) not in own]
    rules: list[dict] = []
    for c in forward:
        try:
            listing = await nft_json("-a", "list", "chain", c["family"], c["table"], c["name"])
        except NftError:
            continue  # gone meanwhile
        rules += [o["rule"] for o in listing if "rule" in o]
    return forward, rules


def drop_chain_fingerprint(chains: Iterable[tuple[int, str, str, int | None, int | None]],
                           ruleset: Ruleset) -> frozenset:
    """What decides whether the foreign plan must run again: the drop-policy forward base chains
    of other tables, from a netlink dump ``(family, table, chain, hooknum, policy)``."""
    own = {(NFPROTO_INET, ruleset.table), (NFPROTO_IPV4, ruleset.nat)}
    return frozenset(
        (family, table, name) for family, table, name, hook, policy in chains
        if hook == NF_INET_FORWARD and policy == NF_DROP and family in (NFPROTO_INET, NFPROTO_IPV4)
        and (family, table) not in own)
