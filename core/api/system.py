"""System endpoints: ``/_ping``, ``/version``, ``/info`` (with the swarm service's ``Swarm``
section and ``Swarm`` ping header), ``/system/df``."""
from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from core import API_VERSION, MIN_API_VERSION, __version__
from core.api.http import Request, Response, json_response
from core.shim import cgroups

if TYPE_CHECKING:
    from core.daemon.config import DaemonConfig
    from core.daemon.drivers import DriverSet

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}
BUILD_TIME = "2026-11-27T00:00:00.000000000+00:00"


def ping_headers(swarm: str = "inactive") -> list[tuple[str, str]]:
    """``swarm``: moby's ``Swarm`` header, ``inactive``, ``pending``, ``error``,
    ``active/manager`` or ``active/worker``."""
    return [
        ("Api-Version", API_VERSION),
        ("Ostype", "linux"),
        ("Docker-Experimental", "false"),
        ("Swarm", swarm),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
    ]


def os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def version_info() -> dict[str, Any]:
    details = {
        "ApiVersion": API_VERSION,
        "Arch": GO_ARCH.get(platform.machine(), platform.machine()),
        "BuildTime": BUILD_TIME,
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "KernelVersion": os.uname().release,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    }
    return {
        "Platform": {"Name": f"core {__version__}"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": details["Arch"],
        "KernelVersion": details["KernelVersion"],
        "BuildTime": BUILD_TIME,
    }


class SystemServices(Protocol):
    """What the system routes use (the daemon provides it)."""

    config: DaemonConfig
    engine_id: str
    drivers: DriverSet
    info_counters: dict[str, Callable[[], int]]   # name -> what counts it (containers, images)
    image_service: Any              # core.engine.images.service.Images
    containers: Any                 # core.engine.containers.service.Containers
    volumes: Any                    # core.engine.volumes.VolumeStore
    swarm: SwarmStatus | None       # the swarm service (None: the Swarm section of a lone node)


class SwarmStatus(Protocol):
    """What ``/_ping`` and ``/info`` ask of the swarm service."""

    def status_text(self) -> str: ...
    async def info(self) -> dict[str, Any]: ...


async def ping(req: Request, services: SystemServices) -> Response:
    swarm = getattr(services, "swarm", None)
    headers = ping_headers(swarm.status_text() if swarm is not None else "inactive")
    return Response(status=200, body=b"OK", content_type="text/plain; charset=utf-8", headers=headers)


async def version(req: Request, services: SystemServices) -> Response:
    return json_response(version_info())


async def info(req: Request, services: SystemServices) -> Response:
    cfg = services.config
    counters = services.info_counters
    count = {k: fn() for k, fn in counters.items()}
    reports = services.drivers.reports()
    swarm = getattr(services, "swarm", None)
    swarm_info = await swarm.info() if swarm is not None else ENGINE_CONSTANTS["Swarm"]
    return json_response({
        "ID": services.engine_id,
        "Containers": count.get("Containers", 0),
        "ContainersRunning": count.get("ContainersRunning", 0),
        "ContainersPaused": count.get("ContainersPaused", 0),
        "ContainersStopped": count.get("ContainersStopped", 0),
        "Images": count.get("Images", 0),
        "Driver": req.drivers.get("storage", ""),
        "DriverStatus": [["Backing Filesystem", _backing_fs(cfg.data_root)]],
        "Plugins": {
            "Volume": ["local"],
            "Network": sorted({"host", "null"} | {r.name for r in reports if r.kind == "network"}),
            "Authorization": None,
            "Log": ["json-file"],
        },
        **HOST_LIMITS,
        "SwapLimit": cgroups.swap_limit(),
        "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward") == "1",
        "BridgeNfIptables": False,
        "BridgeNfIp6tables": False,
        "Debug": cfg.debug,
        **_host_facts(),
        "RegistryConfig": _registry_config(cfg),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": mem_total(),
        "GenericResources": None,
        "DockerRootDir": str(cfg.data_root),
        "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
        "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        # --runtime NAME: core (the request's executor) or any executor driver by name
        "Runtimes": {"core": {"path": req.drivers.get("executor", "")},
                     **{r.name: {"path": r.name} for r in reports if r.kind == "executor" and r.status == "ok"}},
        "DefaultRuntime": "core",
        **ENGINE_CONSTANTS,
        "Swarm": swarm_info,
        # core's own section: every driver found, how it fares, and which is in use
        "Drivers": [
            {**rep.to_json(), "Default": services.drivers.defaults.get(rep.kind) == rep.name,
             "Selected": req.drivers.get(rep.kind) == rep.name}
            for rep in reports
        ],
    })


DF_TYPES = ("container", "image", "volume", "build-cache")


async def disk_usage(req: Request, services: SystemServices) -> Response:
    """``GET /system/df``: images (with their shared size and users), containers (with their
    sizes), volumes (with their size and users), and no build cache (core has no builder)."""
    import trio

    from core.errors import InvalidArgument

    wanted = set(req.query.get("type") or DF_TYPES)
    for kind in wanted - set(DF_TYPES):
        raise InvalidArgument(f"unknown object type: {kind}")
    out: dict[str, Any] = {}
    if "image" in wanted:
        out["LayersSize"], out["Images"] = await services.image_service.disk_usage()
    if "container" in wanted:
        out["Containers"] = await services.containers.list({}, all_=True, size=True)
    if "volume" in wanted:
        volumes = []
        for vol in services.volumes.list():
            size = await trio.to_thread.run_sync(services.volumes.usage, vol)
            volumes.append(vol.to_json({"Size": size, "RefCount": len(await services.volumes.users.volume_users(vol.name))}))
        out["Volumes"] = volumes
    if "build-cache" in wanted:
        out["BuildCache"] = []
    return json_response(out)


# docker info's fields that are the same on every host core runs on
HOST_LIMITS = {
    "MemoryLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
    "CPUSet": True, "PidsLimit": True,
}
ENGINE_CONSTANTS = {
    "Swarm": {
        "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
        "Error": "", "RemoteManagers": None,
    },
    "LiveRestoreEnabled": True,
    "Isolation": "",
    "InitBinary": "",
    "ContainerdCommit": {"ID": ""},
    "RuncCommit": {"ID": ""},
    "InitCommit": {"ID": ""},
    "SecurityOptions": ["name=seccomp,profile=builtin"],
    "Warnings": [],
}


def _host_facts() -> dict[str, Any]:
    """docker info's fields about this process and this host, in docker's order."""
    return {
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": False,
        "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": os.uname().release,
        "OperatingSystem": os_release(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
    }


def _registry_config(cfg: DaemonConfig) -> dict[str, Any]:
    mirrors = list(cfg.registry_mirrors)
    insecure_cidrs = ["127.0.0.0/8"] + [r for r in cfg.insecure_registries if "/" in r]
    return {
        "AllowNondistributableArtifactsCIDRs": None,
        "AllowNondistributableArtifactsHostnames": None,
        "InsecureRegistryCIDRs": insecure_cidrs,
        "IndexConfigs": {
            "docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True, "Official": True},
        },
        "Mirrors": mirrors,
    }


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", disk_usage),
]



def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _backing_fs(path: Path) -> str:
    """The filesystem type under ``path``, from /proc/self/mountinfo (longest mount prefix)."""
    best, fstype = "", "unknown"
    target = str(path)
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            mount_point = left.split()[4]
            if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) >= len(best):
                best, fstype = mount_point, right.split()[0]
    except (OSError, IndexError):
        pass
    return {"ext4": "extfs", "ext3": "extfs"}.get(fstype, fstype)
