"""Service discovery on swarm networks: services' virtual IPs and the names the nodes' embedded
DNS answer (swarmkit's allocator for ``Endpoint.VirtualIPs``, libnetwork's service records).

- :func:`allocate_vips` is a leader loop: every service in ``vip`` mode (``EndpointSpec.Mode``,
  the default) gets one address per network it is on — owner ``vip:<service ID>`` in the
  allocator, so asking again gives the same one and the address reaper frees it when the
  service goes — recorded in the service's ``Endpoint.VirtualIPs`` (``[{"NetworkID", "Addr":
  "ip/prefix"}]``, docker's shape); ``dnsrr`` services have none (a VIP they had is given back).
  A service publishing ports in ingress mode is on the ``ingress`` network too.
- :func:`service_records` is what a node's DNS answers on one network for the services there:
  ``<service>`` -> the VIP (``dnsrr``: the tasks' addresses), ``tasks.<service>`` -> the
  addresses of its tasks, and :func:`backends` the VIP load balancing's set (``{vip: [task
  addresses]}``).  A task counts while it is ``running`` and wanted running: a task being
  stopped (``DesiredState`` past running) leaves the set before its container stops.
"""
from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

import trio

from core import errors
from core.engine.swarm.store import NETWORKS, PREFIX, SERVICES, TASKS, Store

log = logging.getLogger("core.engine.swarm.vip")

PERIOD = 1.0
VIPS = PREFIX + "ipam/vips/"   # <service ID>: its VIPs, [{"NetworkID", "Addr"}]


def endpoint_mode(svc: dict[str, Any]) -> str:
    return ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Mode") or "vip"


def publishes_ingress(svc: dict[str, Any]) -> bool:
    ports = ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or []
    return any((p.get("PublishMode") or "ingress") == "ingress" and p.get("PublishedPort")
               for p in ports if isinstance(p, dict))


def service_network_ids(svc: dict[str, Any], nets: list[dict[str, Any]]) -> list[str]:
    """The IDs of the swarm networks a service is on (its spec's, by ID, name or prefix; the
    ingress network first when it publishes ports in ingress mode)."""
    from core.engine.swarm.networks import find, service_networks

    out: list[str] = []
    if publishes_ingress(svc):
        out += [n["ID"] for n in nets if n.get("Ingress")]
    for ref in sorted(service_networks(svc)):
        try:
            nid = find(nets, ref)["ID"]
        except errors.CoreError:
            continue
        if nid not in out:
            out.append(nid)
    return out


async def vips_once(store: Store) -> None:
    """One pass of :func:`allocate_vips`."""
    from core.engine.swarm.networks import AddressAllocator

    nets = [n for n, _v in await store.objects(NETWORKS)]
    alloc = AddressAllocator(store)
    vips = await virtual_ips(store)
    for svc, _version in await store.objects(SERVICES):
        owner = f"vip:{svc['ID']}"
        wanted: list[dict[str, str]] = []
        if endpoint_mode(svc) == "vip":
            for nid in service_network_ids(svc, nets):
                try:
                    wanted.append({"NetworkID": nid, "Addr": await alloc.allocate(nid, owner)})
                except errors.CoreError as exc:
                    log.warning("service %s: no virtual IP on network %s: %s", svc["ID"], nid, exc)
        have = vips.pop(svc["ID"], [])
        if have == wanted:
            continue
        for old in have:
            if old not in wanted and old.get("NetworkID"):
                await alloc.release(old["NetworkID"], old.get("Addr", ""), owner)
        if wanted:
            await store.etcd.put(VIPS + svc["ID"], json.dumps(wanted))
        else:
            await store.etcd.delete(VIPS + svc["ID"])
    for gone in vips:  # services removed: their record goes (the reaper frees the addresses)
        await store.etcd.delete(VIPS + gone)


async def virtual_ips(store: Store) -> dict[str, list[dict[str, str]]]:
    """Every service's VIPs: ``{service ID: [{"NetworkID", "Addr"}]}`` (what the API shows as
    ``Endpoint.VirtualIPs``)."""
    out = {}
    for kv in await store.etcd.get_prefix(VIPS):
        try:
            out[kv.key[len(VIPS):]] = list(json.loads(kv.value))
        except ValueError:
            continue
    return out


def with_vips(service: dict[str, Any], vips: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """A stored service with its ``Endpoint.VirtualIPs`` from ``vips`` (for rendering)."""
    if not vips.get(service.get("ID", "")):
        return service
    endpoint = dict(service.get("Endpoint") or {"Spec": {}})
    endpoint["VirtualIPs"] = vips[service["ID"]]
    return {**service, "Endpoint": endpoint}


async def allocate_vips(store: Store, *, period: float = PERIOD) -> None:
    """A leader loop: services' virtual IPs (see the module docstring), every ``period`` s."""
    while True:
        try:
            await vips_once(store)
        except errors.CoreError as exc:
            log.warning("virtual IPs: %s", exc)
        await trio.sleep(period)


def _serving(task: dict[str, Any]) -> bool:
    return (task.get("Status") or {}).get("State") == "running" and \
        (task.get("DesiredState") or "running") == "running"


def _task_address(task: dict[str, Any], network_id: str) -> str | None:
    for att in task.get("NetworksAttachments") or []:
        if (att.get("Network") or {}).get("ID") == network_id and att.get("Addresses"):
            return att["Addresses"][0].split("/", 1)[0]
    return None


def ingress_ports(svc: dict[str, Any]) -> list[dict[str, Any]]:
    """The ports a service publishes in ingress mode: ``[{"Protocol", "PublishedPort",
    "TargetPort"}]``."""
    ports = ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or []
    out = []
    for p in ports:
        if isinstance(p, dict) and (p.get("PublishMode") or "ingress") == "ingress" \
                and p.get("PublishedPort") and p.get("TargetPort"):
            out.append({"Protocol": p.get("Protocol") or "tcp",
                        "PublishedPort": int(p["PublishedPort"]), "TargetPort": int(p["TargetPort"])})
    return out


async def service_records(store: Store, network_id: str,
                          tasks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The services on a network: ``{"names": {name: [addresses]}, "backends": {vip:
    [addresses]}, "published": [...]}`` (see the module docstring; names in lower case).
    ``published``, on the ingress network only, is the routing mesh's table:
    ``[{"Protocol", "PublishedPort", "TargetPort", "ServiceID", "Backends": [task addresses]}]``.
    ``tasks``: the assigned tasks by ID when the caller has them (the dispatcher's index:
    a running task is assigned); else every task is read from the store."""
    found = await store.get(NETWORKS, network_id)
    ingress = bool(found and found[0].get("Ingress"))
    vips = await virtual_ips(store)
    services = {s["ID"]: with_vips(s, vips) for s, _v in await store.objects(SERVICES)}
    listed = tasks.values() if tasks is not None else [t for t, _v in await store.objects(TASKS)]
    by_service: dict[str, list[str]] = {}
    for task in listed:
        sid = task.get("ServiceID", "")
        address = _task_address(task, network_id)
        if sid in services and address and _serving(task):
            by_service.setdefault(sid, []).append(address)
    names: dict[str, list[str]] = {}
    backends: dict[str, list[str]] = {}
    published: list[dict[str, Any]] = []
    for sid, svc in services.items():
        addresses = sorted(by_service.get(sid, []), key=ipaddress.ip_address)
        if ingress:  # the mesh's table only: ingress has no names nor VIP balancing
            published += [{**p, "ServiceID": sid, "Backends": addresses} for p in ingress_ports(svc)]
            continue
        name = ((svc.get("Spec") or {}).get("Name") or "").lower()
        vip = next((v["Addr"].split("/", 1)[0]
                    for v in (svc.get("Endpoint") or {}).get("VirtualIPs") or []
                    if v.get("NetworkID") == network_id and v.get("Addr")), None)
        if not name or (vip is None and not addresses):
            continue
        names[f"tasks.{name}"] = addresses
        if endpoint_mode(svc) == "dnsrr":
            names[name] = addresses
        elif vip is not None:
            names[name] = [vip]
            backends[vip] = addresses
    return {"names": names, "backends": backends, "published": published}
