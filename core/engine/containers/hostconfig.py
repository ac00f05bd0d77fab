"""A container's ``HostConfig`` as docker fills and checks it at create."""
from __future__ import annotations

from typing import Any

from core.engine.containers import oci
from core.errors import InvalidArgument
from core.shim import cgroups


def normalize_host_config(hc: dict[str, Any]) -> dict[str, Any]:
    """The request's HostConfig with docker's defaults filled in (what inspect shows)."""
    if hc is not None and not isinstance(hc, dict):
        raise InvalidArgument("invalid HostConfig: expected a JSON object")
    out = dict(hc or {})
    if out.get("NetworkMode") in (None, "", "default"):
        out["NetworkMode"] = "bridge"
    policy = out.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise InvalidArgument("invalid RestartPolicy: expected an object")
    name = policy.get("Name") or "no"
    count = policy.get("MaximumRetryCount") or 0
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                              "'on-failure', or 'unless-stopped'")
    if not isinstance(count, int) or count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    out["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}
    if out.get("AutoRemove") and name != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    log_config = out.get("LogConfig") or {}
    log_type = log_config.get("Type") or "json-file"
    if log_type not in ("json-file", "none"):
        raise InvalidArgument(f'logger: no log driver named \'{log_type}\' is registered')
    out["LogConfig"] = {"Type": log_type, "Config": log_config.get("Config") or {}}
    out.setdefault("ShmSize", oci.DEFAULT_SHM_SIZE)
    if not out.get("ShmSize"):
        out["ShmSize"] = oci.DEFAULT_SHM_SIZE
    for key in ("Binds", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "Links",
                "SecurityOpt", "VolumesFrom", "Mounts", "Ulimits", "Devices", "DeviceCgroupRules", "DeviceRequests"):
        value = out.get(key)
        if value is not None and not isinstance(value, list):
            raise InvalidArgument(f"invalid HostConfig.{key}: expected a list")
    out.setdefault("PortBindings", {})
    for key, default in (("Privileged", False), ("ReadonlyRootfs", False), ("PublishAllPorts", False),
                         ("AutoRemove", False), ("IpcMode", "private"), ("PidMode", ""), ("UTSMode", ""),
                         ("UsernsMode", ""), ("CgroupnsMode", "private" if oci.cgroup_v2() else "host"),
                         ("OomScoreAdj", 0), ("Memory", 0), ("NanoCpus", 0), ("CpuShares", 0), ("CpuPeriod", 0),
                         ("CpuQuota", 0), ("CpusetCpus", ""), ("CpusetMems", ""), ("PidsLimit", None),
                         ("MemoryReservation", 0), ("MemorySwap", 0), ("BlkioWeight", 0), ("VolumeDriver", ""),
                         ("ContainerIDFile", ""), ("ConsoleSize", [0, 0]), ("Runtime", "core"),
                         ("Isolation", ""), ("CgroupParent", ""), ("Cgroup", "")):
        if out.get(key) is None and default is not None:
            out[key] = default
        out.setdefault(key, default)
    if out["Memory"] and not out["MemorySwap"] and cgroups.swap_limit():
        out["MemorySwap"] = 2 * out["Memory"]  # docker's default: as much swap as memory
    if not out.get("IpcMode"):
        out["IpcMode"] = "private"
    if out["IpcMode"] not in ("private", "shareable", "none", "host") and not str(out["IpcMode"]).startswith("container:"):
        raise InvalidArgument(f"invalid IPC mode: {out['IpcMode']}")
    for key in ("PidMode", "UTSMode"):
        value = out.get(key) or ""
        if value not in ("", "host") and not (key == "PidMode" and value.startswith("container:")):
            raise InvalidArgument(f"invalid {key.replace('Mode', '').upper()} mode: {value}")
    return out


def unsupported(hc: dict[str, Any]) -> None:
    """Options docker has and this engine cannot honour: refused, never silently ignored."""
    if hc.get("Init") is not None and not isinstance(hc.get("Init"), bool):
        raise InvalidArgument("invalid HostConfig.Init: expected a boolean")
    if hc.get("Init"):
        oci.init_binary()  # the package to install when the host lacks it
    if hc.get("DeviceRequests"):
        raise InvalidArgument('could not select device driver "" with capabilities: device requests (--gpus) '
                              "are not supported by this engine")
    if hc.get("StorageOpt"):
        raise InvalidArgument("--storage-opt is not supported by this engine's storage drivers")
    if hc.get("UsernsMode") not in (None, "", "host"):
        raise InvalidArgument(f"user namespaces (--userns={hc['UsernsMode']}) are not supported by this engine")
    if hc.get("Isolation") not in (None, "", "default"):
        raise InvalidArgument(f"invalid isolation '{hc['Isolation']}' on linux")


