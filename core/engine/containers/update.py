"""``docker update``: a container's resources and restart policy, changed in place.

:func:`merge` checks a request (docker's ``ContainerUpdate`` body: the resource fields of a
HostConfig and ``RestartPolicy``) against the container's HostConfig with docker's messages and
returns the new HostConfig; :func:`executor_resources` the typed
:class:`core.contracts.executor.Resources` an executor that is a
:class:`core.contracts.executor.ResourceUpdater` applies to a running container.  The service
(:meth:`core.engine.containers.service.Containers.update`) applies, then stores.
"""
from __future__ import annotations

from typing import Any

from core.contracts.executor import Resources
from core.engine.containers import oci
from core.engine.containers.hostconfig import normalize_host_config
from core.errors import Conflict, InvalidArgument

#: the HostConfig fields ``docker update`` changes (a zero, empty or absent one: unchanged)
FIELDS = ("Memory", "MemoryReservation", "MemorySwap", "NanoCpus", "CpuShares", "CpuPeriod",
          "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight")


def _conflict(cid: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"Cannot update container {cid}: {message}")


def requested(body: dict[str, Any]) -> dict[str, Any]:
    """The resource fields ``body`` changes: those set and not zero (``PidsLimit``: set)."""
    out = {}
    for key in FIELDS:
        value = body.get(key)
        if key == "PidsLimit":
            if value is not None:
                out[key] = value
        elif value not in (None, 0, ""):
            out[key] = value
    return out


def merge(cid: str, hc: dict[str, Any], body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(new HostConfig, the resource fields changed)`` of container ``cid``; raises ``InvalidArgument`` with
    docker's messages."""
    if not isinstance(body, dict):
        raise InvalidArgument("update: expected a JSON object")
    req = requested(body)
    for key, value in req.items():
        if key in ("CpusetCpus", "CpusetMems"):
            if not isinstance(value, str):
                raise InvalidArgument(f"invalid {key}: expected a string")
        elif not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"invalid {key}: expected an integer")
    # each value alone (its range, NanoCpus with a period), then the result as a whole below
    oci.check_resources({k: v for k, v in req.items() if k not in ("MemorySwap", "MemoryReservation")})
    new = dict(hc)
    mem = req.get("Memory")
    # as dockerd: even a container with no swap limit (0) needs one given with a new memory
    if mem is not None and mem > (hc.get("MemorySwap") or 0) and "MemorySwap" not in req:
        raise _conflict(cid, "Memory limit should be smaller than already set memoryswap limit, "
                        "update the memoryswap at the same time")
    if req.get("NanoCpus") and (hc.get("CpuPeriod") or hc.get("CpuQuota")) and \
            not ("CpuPeriod" in req or "CpuQuota" in req):
        raise _conflict(cid, "Conflicting options: Nano CPUs cannot be updated as CPU Period or "
                        "CPU Quota has already been set")
    if (req.get("CpuPeriod") or req.get("CpuQuota")) and hc.get("NanoCpus"):
        raise _conflict(cid, "Conflicting options: CPU Period or CPU Quota cannot be updated as "
                        "NanoCPUs has already been set")
    new.update(req)
    if "PidsLimit" in req and req["PidsLimit"] <= 0:
        new["PidsLimit"] = 0
    oci.check_resources(new)   # the result as a whole: swap >= memory, reservation <= memory
    policy = body.get("RestartPolicy")
    if policy is not None and not isinstance(policy, dict):
        raise InvalidArgument("invalid RestartPolicy: expected a JSON object")
    if policy and policy.get("Name"):
        if hc.get("AutoRemove") and policy["Name"] != "no":
            raise _conflict(cid, "Restart policy cannot be updated because AutoRemove is enabled "
                            "for the container")
        new["RestartPolicy"] = normalize_host_config({**hc, "RestartPolicy": policy})["RestartPolicy"]
    return new, req


def executor_resources(hc: dict[str, Any], req: dict[str, Any]) -> Resources:
    """What the executor changes: the requested fields, with their partners from the new
    HostConfig ``hc`` (the swap limit is docker's memory + swap; NanoCpus is a CFS quota)."""
    def pick(key: str) -> Any:
        return hc.get(key) if key in req else None

    period = quota = None
    if "NanoCpus" in req:
        period = oci.CPU_PERIOD
        quota = hc["NanoCpus"] * oci.CPU_PERIOD // 1_000_000_000
    elif "CpuPeriod" in req or "CpuQuota" in req:
        period, quota = hc.get("CpuPeriod") or None, hc.get("CpuQuota") or None
    pids = pick("PidsLimit")
    return Resources(memory=pick("Memory"), memory_reservation=pick("MemoryReservation"),
                     memory_swap=pick("MemorySwap") if "MemorySwap" in req else (
                         hc.get("MemorySwap") or None) if "Memory" in req else None,
                     cpu_shares=pick("CpuShares"), cpu_period=period, cpu_quota=quota,
                     cpuset_cpus=pick("CpusetCpus"), cpuset_mems=pick("CpusetMems"),
                     pids_limit=(pids if pids and pids > 0 else -1) if "PidsLimit" in req else None,
                     blkio_weight=pick("BlkioWeight"))
