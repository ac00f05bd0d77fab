"""docker's JSON of a container: ``inspect`` (``GET /containers/{id}/json``) and the summary
``ps`` lists (``GET /containers/json``).  Network settings come from the network service."""
from __future__ import annotations

from typing import Any

from core.engine.containers import archive, health
from core.engine.containers.context import Parts
from core.engine.containers.store import RUNNING, Container, status_text
from core.errors import CoreError


def state_json(c: Container) -> dict[str, Any]:
    st = c.state
    return {
        "Status": st.status,
        "Running": st.status in RUNNING,
        "Paused": st.status == "paused",
        "Restarting": st.status == "restarting",
        "OOMKilled": st.oom_killed,
        "Dead": st.status == "dead",
        "Pid": st.pid if st.status in ("running", "paused") else 0,
        "ExitCode": st.exit_code,
        "Error": st.error,
        "StartedAt": archive.rfc3339(st.started_at),
        "FinishedAt": archive.rfc3339(st.finished_at),
        **({"Health": health.state_json(st.health)} if st.health is not None else {}),
    }


def config_json(c: Container) -> dict[str, Any]:
    cfg = dict(c.config)
    out = {
        "Hostname": cfg.get("Hostname", ""), "Domainname": cfg.get("Domainname", ""), "User": cfg.get("User", ""),
        "AttachStdin": cfg.get("AttachStdin", False), "AttachStdout": cfg.get("AttachStdout", False),
        "AttachStderr": cfg.get("AttachStderr", False),
    }
    if cfg.get("ExposedPorts"):
        out["ExposedPorts"] = cfg["ExposedPorts"]
    out.update({
        "Tty": cfg.get("Tty", False), "OpenStdin": cfg.get("OpenStdin", False), "StdinOnce": cfg.get("StdinOnce", False),
        "Env": cfg.get("Env") or [], "Cmd": cfg.get("Cmd"), "Image": cfg.get("Image", ""),
        "Volumes": cfg.get("Volumes"), "WorkingDir": cfg.get("WorkingDir", ""), "Entrypoint": cfg.get("Entrypoint"),
        "OnBuild": cfg.get("OnBuild"), "Labels": cfg.get("Labels") or {},
    })
    for key in ("Healthcheck", "ArgsEscaped", "StopSignal", "StopTimeout", "Shell", "NetworkDisabled", "MacAddress"):
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    return out


async def inspect_json(parts: Parts, c: Container, sizes: tuple[int, int] | None = None) -> dict[str, Any]:
    args = c.args
    cdir = parts.files.dir(c)
    execs = [e.id for e in parts.execs.values() if e.container_id == c.id and e.running]
    out: dict[str, Any] = {
        "Id": c.id,
        "Created": archive.rfc3339(c.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": state_json(c),
        "Image": c.image_id,
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": str(parts.files.log_path(c)) if c.host_config["LogConfig"]["Type"] == "json-file" else "",
        "Name": "/" + c.name,
        "RestartCount": c.state.restart_count,
        "Driver": c.storage,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": execs or None,
        "HostConfig": c.host_config,
        "GraphDriver": {"Name": c.storage, "Data": None},
    }
    if sizes is not None:
        out["SizeRw"], out["SizeRootFs"] = sizes
    out["Mounts"] = [m.to_json() for m in c.mounts if m.listed]
    out["Config"] = config_json(c)
    out["NetworkSettings"] = await parts.networks.settings(c.id)
    return out


async def summary_json(parts: Parts, c: Container, sizes: tuple[int, int] | None = None) -> dict[str, Any]:
    image = c.config.get("Image") or c.image_id
    try:
        if parts.images.lookup(image).id != c.image_id:
            image = c.image_id
    except CoreError:
        image = c.image_id
    settings = await parts.networks.settings(c.id)
    out: dict[str, Any] = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": image,
        "ImageID": c.image_id,
        # moby's summary: arguments holding a space are single-quoted
        "Command": " ".join(f"'{a}'" if " " in a and i else a for i, a in enumerate(c.args)),
        "Created": c.created // 1_000_000_000,
        "Ports": await parts.networks.ps_ports(c.id),
        "Labels": c.config.get("Labels") or {},
        "State": c.status,
        "Status": status_text(c.state) + health.status_suffix(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "bridge"},
        "NetworkSettings": {"Networks": settings["Networks"]},
        "Mounts": [m.to_json() for m in c.mounts if m.listed],
    }
    if sizes is not None:
        out["SizeRw"], out["SizeRootFs"] = sizes
    return out
