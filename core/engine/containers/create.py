"""``docker create``: resolve the image, check the request, unpack the image into the storage
driver, prepare the snapshot ``ctr-<id>``, make the volumes it names, record its networking,
write hostname/hosts/resolv.conf, store  -> "created".  Anything made is undone on failure."""
from __future__ import annotations

import shutil
import socket
import time
from typing import Any

import attrs
import trio

from core.engine.containers import oci, runtimes
from core.engine.containers.context import Parts
from core.engine.containers.hostconfig import normalize_host_config, unsupported
from core.engine.containers.lifecycle import prepare_executor
from core.engine.containers.store import Container, ContainerStateRecord, check_name, new_id
from core.engine.volumes import MountPoint, parse_mounts, prepare_sources
from core.errors import Conflict, CoreError, InvalidArgument, NotFound


@attrs.define
class Request:
    """A checked create request: the container's config (merged with its image's), host
    config, mounts, and docker's warnings."""

    id: str
    name: str | None
    image: Any
    config: dict[str, Any]
    host_config: dict[str, Any]
    networking: dict[str, Any]
    mounts: list[MountPoint]
    warnings: list[str]


def _platform_warnings(image: Any, image_ref: str, platform: str | None) -> list[str]:
    from core.types import Platform

    host = Platform.host()
    if platform:
        wanted = Platform.parse(platform)
        if not wanted.matches(image.config.platform):
            raise NotFound(f"image with reference {image_ref} was found but does not match the specified "
                           f"platform: wanted {wanted}, actual: {image.config.platform}")
    elif image.config.platform.os != host.os or image.config.platform.architecture != host.architecture:
        return [f"WARNING: The requested image's platform ({image.config.platform}) does not match the "
                f"detected host platform ({host}) and no specific platform was requested"]
    return []


def _check_host_config(body: dict[str, Any], config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    hc = normalize_host_config(body.get("HostConfig") or {})
    unsupported(hc)
    warnings = oci.check_resources(hc)
    oci.capabilities(hc.get("CapAdd"), hc.get("CapDrop"), bool(hc.get("Privileged")))  # validate
    oci.parse_security_opts(hc.get("SecurityOpt"))
    oci.rlimits(hc.get("Ulimits"))
    if hc.get("NetworkMode", "").startswith("container:") and config.get("Hostname"):
        raise InvalidArgument("conflicting options: hostname and the network mode")
    return hc, warnings


class Creator:
    """``docker create`` of containers in ``parts``."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def _check_name(self, name: str | None) -> str | None:
        if not name:
            return None
        name = check_name(name)
        other = self.parts.store.by_name(name)
        if other is not None:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                           f'"{other.id}". You have to remove (or rename) that container to be able to reuse '
                           "that name.")
        return name

    def _volumes_from(self, ref: str) -> list[MountPoint]:
        other = self.parts.store.lookup(ref)
        return [m for m in other.mounts if m.type in ("bind", "volume")]

    def check(self, cid: str, body: Any, name: str | None, platform: str | None) -> Request:
        """The request checked, with docker's messages, before anything is made."""
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        image_ref = body.get("Image")
        if not isinstance(image_ref, str) or not image_ref:
            raise InvalidArgument("no image specified: a container needs an image")
        name = self._check_name(name)
        image = self.parts.images.lookup(image_ref)
        warnings = _platform_warnings(image, image_ref, platform)
        user_config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        config = oci.merge_config(image.config.config, user_config)
        config["Image"] = image_ref
        oci.process_args(config)  # "no command specified"
        hc, more = _check_host_config(body, config)
        warnings += more
        config["Hostname"] = config.get("Hostname") or (socket.gethostname() if hc.get("NetworkMode") == "host"
                                                        else cid[:12])
        config.setdefault("Domainname", "")
        for key, default in (("AttachStdin", False), ("AttachStdout", False), ("AttachStderr", False),
                             ("Tty", False), ("OpenStdin", False), ("StdinOnce", False)):
            config[key] = bool(config.get(key, default))
        mounts = parse_mounts(hc, (config.get("Volumes") or {}).keys(), self._volumes_from)
        return Request(id=cid, name=name, image=image, config=config, host_config=hc,
                       networking=body.get("NetworkingConfig") or {}, mounts=mounts, warnings=warnings)

    async def create(self, body: Any, *, name: str | None, drivers: dict[str, str],
                     platform: str | None = None) -> tuple[Container, list[str]]:
        """``POST /containers/create``; returns the container and docker's warnings."""
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        cid = new_id()
        hc = body.get("HostConfig")
        runtime = hc.get("Runtime") if isinstance(hc, dict) else None
        try:   # first of all: docker run starts it next (a hint; nothing is made yet)
            hint = runtimes.executor_for(runtime, drivers["executor"], self.parts.drivers)
            await prepare_executor(self.parts.drivers.get("executor", hint), cid)
        except CoreError:
            pass   # the driver's loading error is reported below, in order
        req = self.check(cid, body, name, platform)
        # HostConfig.Runtime (--runtime NAME) picks the executor driver by name
        drivers = {**drivers, "executor": runtimes.executor_for(req.host_config.get("Runtime"), drivers["executor"],
                                                                self.parts.drivers)}
        snapshotter = self.parts.drivers.get("storage", drivers["storage"])
        self.parts.drivers.get("executor", drivers["executor"])  # fails now if it cannot load
        c = await self._make(req, snapshotter, drivers)
        self.parts.emit(c, "create")
        return c, req.warnings

    async def _make(self, req: Request, snapshotter: Any, drivers: dict[str, str]) -> Container:
        """Everything a container has on the host, then its record; undone on failure."""
        parts, cid = self.parts, req.id
        name = req.name or parts.store.unique_name()
        made_volumes: list[str] = []
        prepared = networked = False
        try:
            networked = True  # the request is checked (and recorded) before anything is made
            await parts.networks.check(cid, req.host_config, req.networking,
                                       exposed_ports=req.config.get("ExposedPorts"),
                                       mac_address=req.config.get("MacAddress"))
            cdir = parts.files.make(cid)
            from core.engine.images.pull import ensure_unpacked

            top = await ensure_unpacked(req.image, parts.images, parts.content, snapshotter)
            await snapshotter.prepare(f"ctr-{cid}", parent=top, labels={"core.container": cid})
            prepared = True
            made_volumes = prepare_sources(req.mounts, parts.volumes)
            parts.files.write_etc(cdir, req.config, req.host_config)
            c = Container(id=cid, name=name, created=time.time_ns(), image_id=req.image.id,
                          storage=drivers["storage"], executor=drivers["executor"], config=req.config,
                          host_config=req.host_config, networking=req.networking, mounts=req.mounts,
                          state=ContainerStateRecord())
            parts.store.insert(c)
            return c
        except BaseException:
            with trio.CancelScope(shield=True):
                for vol in made_volumes:
                    try:
                        await parts.volumes.remove(vol, force=True)
                    except CoreError:
                        pass
                if prepared:
                    try:
                        await snapshotter.remove(f"ctr-{cid}")
                    except CoreError:
                        pass
                if networked:
                    try:
                        await parts.networks.forget(cid)
                    except CoreError:
                        pass
                shutil.rmtree(parts.files.top / cid, ignore_errors=True)
            raise
