"""Container and exec endpoints of the Engine API: ``/containers/*`` and ``/exec/*``.

The lifecycle lives in :mod:`core.engine.containers.service`; this module is the HTTP side: request parsing,
docker's JSON shapes (inspect, ps), and the streams —

- ``attach`` and ``exec start`` hijack the connection (``101 UPGRADED``, then raw bytes both
  ways): output framed in docker's 8-byte headers (``[stream, 0, 0, 0, size]``) without a TTY,
  raw with one; stdin forwarded to the process until the client half-closes (with
  ``StdinOnce`` that closes the process's stdin) or types the detach keys (default
  ctrl-p ctrl-q: the client is detached, the container runs on);
- ``logs`` reads the json-file log the executor's shim writes (``follow`` polls it until the
  container stops), with ``since``/``until``/``tail``/``timestamps``;
- ``wait`` answers its headers at once and its body when the condition is met, so a client can
  register it before starting the container (docker's CLI does);
- ``archive`` (``docker cp``) and ``export`` stream tars made in a worker thread from the
  container's root (see :mod:`core.engine.containers.archive`); ``changes`` (``docker diff``) compares that root
  with a read-only view of the image's top layer.

Not served: ``attach/ws`` (501), resource changes through ``update`` (501; the restart policy
can be changed).
"""
from __future__ import annotations

import calendar
import collections
import decimal
import io
import json
import logging
import os
import pwd
import re
import signal as _signal
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

import trio

from core.engine.containers import archive
from core.engine.containers import health  # p10ctr: healthchecks
from core.engine.containers import oci
from core.engine.containers.service import RUNNING, Container, NotModified, status_text
from core.api.http import Request, Response, json_response, no_content
from core.contracts.executor import docker_stats
from core.errors import Conflict, CoreError, InvalidArgument, NotImplemented_

if TYPE_CHECKING:
    from core.daemon.app import Daemon

log = logging.getLogger("core.engine.containers.service.api")

RAW = "application/vnd.docker.raw-stream"
MUX = "application/vnd.docker.multiplexed-stream"
DEFAULT_DETACH_KEYS = b"\x10\x11"
LOG_POLL = 0.1
STATS_INTERVAL = 1.0


# --------------------------------------------------------------------------- streams
def frame(stream: int, data: bytes) -> bytes:
    """docker's multiplexed frame: ``[stream, 0, 0, 0, size]`` then the bytes."""
    return struct.pack(">BxxxL", stream, len(data)) + data


_CTRL = ["@"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["[", "\\", "]", "^", "_"]
_CTRL_CODES = {f"ctrl-{c}": i for i, c in enumerate(_CTRL)}


def parse_detach_keys(value: str | None) -> bytes:
    """``"ctrl-p,ctrl-q"`` -> ``b"\\x10\\x11"`` (moby/term's ToBytes); ``None``/empty: the default."""
    if not value:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in value.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key) & 0xFF)
        elif key.lower() in _CTRL_CODES:
            out.append(_CTRL_CODES[key.lower()])
        elif key == "DEL":
            out.append(127)
        else:
            raise InvalidArgument(f"Invalid detach keys ({value}) provided")
    return bytes(out)


class DetachFilter:
    """Finds the detach sequence in what a client sends on stdin.

    With a terminal every byte is watched, across reads (keys arrive one by one, or together).
    Without one, as docker does, only a read made entirely of the sequence's next bytes counts:
    data piped through ``docker run -i`` may contain ctrl-p ctrl-q anywhere and must pass.
    A partial match that turns out not to be one is forwarded intact.
    """

    def __init__(self, keys: bytes, every_byte: bool) -> None:
        self.keys = keys
        self.every_byte = every_byte
        self.pos = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.keys:
            return data, False
        if not self.every_byte:
            rest = self.keys[self.pos:]
            if data and rest.startswith(data):
                self.pos += len(data)
                if self.pos == len(self.keys):
                    return b"", True
                return b"", False
            held = self.keys[: self.pos]
            self.pos = 0
            return held + data, False
        out = bytearray()
        for b in data:
            while True:
                if b == self.keys[self.pos]:
                    self.pos += 1
                    if self.pos == len(self.keys):
                        self.pos = 0
                        return bytes(out), True
                    break
                if self.pos:
                    out += self.keys[: self.pos]
                    self.pos = 0
                    continue  # the byte may start a new match
                out.append(b)
                break
        return bytes(out), False


async def _close_client(stream: Any) -> None:
    with trio.move_on_after(2) as scope:
        scope.shield = True
        try:
            send_eof = getattr(stream, "send_eof", None)
            if send_eof is not None:
                await send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def pump(client: Any, leftover: bytes, att: Any, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
               detach_keys: bytes, stdin_once: bool, before_close: Any = None) -> bool:
    """Copy between a hijacked client connection and an attach stream until the output ends,
    the client goes away or detaches.  Returns True when the client detached.

    ``before_close`` (an async callable) runs when the output has ended, before the client's
    connection closes: an exec's exit code is recorded by then, as docker's clients expect."""
    detached = False
    filt = DetachFilter(detach_keys, every_byte=tty)

    async def output(scope: trio.CancelScope) -> None:
        try:
            while True:
                item = await att.receive()
                if item is None:
                    break
                fd, data = item
                if not data:
                    continue
                if tty or fd == 1:
                    if stdout or tty:
                        await client.send_all(data if tty else frame(1, data))
                elif fd == 2 and stderr:
                    await client.send_all(frame(2, data))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except CoreError as exc:  # the attach stream broke: its output has ended all the same
            log.debug("output of an attach: %s", exc)
        scope.cancel()

    async def input_(scope: trio.CancelScope) -> None:
        nonlocal detached
        data = leftover
        try:
            while True:
                if data:
                    forward, hit = filt.feed(data)
                    if forward and stdin:
                        await att.send_stdin(forward)
                    if hit:
                        detached = True
                        scope.cancel()
                        return
                data = await client.receive_some(65536)
                if not data:
                    if stdin and stdin_once:
                        await att.close_stdin()
                    elif not stdin:
                        pass
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            if not stdin:
                scope.cancel()  # the client went away
        except CoreError as exc:
            log.debug("stdin of an attach: %s", exc)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output, nursery.cancel_scope)
            nursery.start_soon(input_, nursery.cancel_scope)
        if before_close is not None and not detached:
            await before_close()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await att.aclose()
            except CoreError:
                pass
            await _close_client(client)
    return detached


def _wants_upgrade(req: Request) -> bool:
    return "upgrade" in req.headers.get("connection", "").lower() and bool(req.headers.get("upgrade"))


# --------------------------------------------------------------------------- logs
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time_ns(text: str) -> int:
    m = _TS.match(text or "")
    if not m:
        return 0
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = int((m.group(2) or "0")[:9].ljust(9, "0"))
    tz = m.group(3)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + frac


def fixed_time(ns: int) -> str:
    """docker's RFC3339NanoFixed: always nine fractional digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_since(value: str | None, name: str) -> int:
    """A ``since``/``until`` value (seconds, possibly fractional: ``1700000000.5``) in ns; 0 if unset."""
    if not value:
        return 0
    try:
        return int(decimal.Decimal(value) * 1_000_000_000)
    except decimal.InvalidOperation:
        pass
    ns = parse_time_ns(value)
    if ns:
        return ns
    raise InvalidArgument(f'invalid value for "{name}": {value!r} is not a timestamp')


def _parse_line(line: bytes) -> tuple[int, bytes, int] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    text = entry.get("log", "")
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""
    stream = 2 if entry.get("stream") == "stderr" else 1
    return stream, data, parse_time_ns(entry.get("time", ""))


async def read_logs(path: Path, *, tail: int | None, since: int, until: int, follow: bool,
                    alive: Any, limit: int | None = None) -> AsyncIterator[tuple[int, bytes, int]]:
    """``(stream, bytes, time_ns)`` of the json-file log at ``path``; with ``follow`` new lines
    as they are written until ``alive()`` says the container stopped.

    The file is opened once and read through that descriptor to the end: a container removed
    meanwhile (``docker run --rm`` reading its own logs) loses nothing that was written.
    ``limit`` (without ``follow``) stops at that byte offset.
    """
    f: Any = None

    def open_log() -> Any:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            return None

    def read_chunk(fh: Any, left: int) -> bytes:
        return fh.read(1 << 20 if left < 0 else min(left, 1 << 20))

    def read_tail(fh: Any) -> tuple[list[bytes], bytes]:
        lines: Any = collections.deque(maxlen=tail)
        pending = b""
        left = limit if limit is not None else -1
        while left != 0:
            chunk = read_chunk(fh, left)
            if not chunk:
                break
            if left > 0:
                left -= len(chunk)
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            lines.extend(p for p in parts if p)
        return list(lines), pending

    def wanted(entry: tuple[int, bytes, int] | None) -> bool:
        return entry is not None and not (since and entry[2] < since)

    try:
        f = await trio.to_thread.run_sync(open_log)
        while f is None and follow and alive():
            await trio.sleep(LOG_POLL)
            f = await trio.to_thread.run_sync(open_log)
        if f is None:
            return
        pending = b""
        if tail == 0:
            await trio.to_thread.run_sync(lambda: f.seek(0, os.SEEK_END))
        elif tail is not None:
            lines, pending = await trio.to_thread.run_sync(read_tail, f)
            for line in lines:
                entry = _parse_line(line)
                if wanted(entry):
                    if until and entry[2] > until:  # type: ignore[index]
                        return
                    yield entry  # type: ignore[misc]
        else:  # the whole log, a megabyte at a time
            left = limit if limit is not None else -1
            while left != 0:
                chunk = await trio.to_thread.run_sync(read_chunk, f, left)
                if not chunk:
                    break
                if left > 0:
                    left -= len(chunk)
                parts = (pending + chunk).split(b"\n")
                pending = parts.pop()
                for line in parts:
                    entry = _parse_line(line) if line else None
                    if wanted(entry):
                        if until and entry[2] > until:  # type: ignore[index]
                            return
                        yield entry  # type: ignore[misc]
        if not follow:
            return
        while True:
            if until and time.time_ns() > until:
                return
            running = alive()
            data = await trio.to_thread.run_sync(f.read, 4 << 20)
            if data:
                parts = (pending + data).split(b"\n")
                pending = parts.pop()
                for line in parts:
                    entry = _parse_line(line) if line else None
                    if entry is None:
                        continue
                    if since and entry[2] < since:
                        continue
                    if until and entry[2] > until:
                        return
                    yield entry
                continue
            if not running:
                return
            await trio.sleep(LOG_POLL)
    finally:
        if f is not None:
            f.close()


# --------------------------------------------------------------------------- JSON shapes
def _endpoint() -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def networks_of(c: Container, networks: Any = None) -> dict[str, Any]:
    if networks is not None:
        return network_settings(c, networks)["Networks"]
    mode = c.host_config.get("NetworkMode") or "bridge"
    if mode.startswith("container:"):
        return {}
    return {mode: _endpoint()}


def network_settings(c: Container, networks: Any = None) -> dict[str, Any]:
    """Inspect's ``NetworkSettings``: the network manager's when one is wired, else the
    network mode with an empty endpoint (a fresh, empty namespace: no address)."""
    if networks is not None:
        return networks.settings(c.id)
    sandbox = f"/proc/{c.state.pid}/ns/net" if c.running and c.state.pid else ""
    return {
        "Bridge": "", "SandboxID": "", "SandboxKey": sandbox, "HairpinMode": False, "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
        "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": networks_of(c),
    }


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
        **({"Health": health.state_json(st.health)} if st.health is not None else {}),  # p10ctr: healthchecks
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


def inspect_json(daemon: Daemon, c: Container, sizes: tuple[int, int] | None = None) -> dict[str, Any]:
    args = c.args
    cdir = daemon.containers.dir(c)
    execs = [e.id for e in daemon.containers.execs.values() if e.container_id == c.id and e.running]
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
        "LogPath": str(daemon.containers.log_path(c)) if c.host_config["LogConfig"]["Type"] == "json-file" else "",
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
    out["NetworkSettings"] = network_settings(c, daemon.containers.networks)
    return out


def summary_json(daemon: Daemon, c: Container, sizes: tuple[int, int] | None = None) -> dict[str, Any]:
    image = c.config.get("Image") or c.image_id
    try:
        if daemon.images.lookup(image).id != c.image_id:
            image = c.image_id
    except CoreError:
        image = c.image_id
    out: dict[str, Any] = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": image,
        "ImageID": c.image_id,
        # moby's summary: arguments holding a space are single-quoted
        "Command": " ".join(f"'{a}'" if " " in a and i else a for i, a in enumerate(c.args)),
        "Created": c.created // 1_000_000_000,
        "Ports": daemon.containers.networks.ps_ports(c.id) if daemon.containers.networks is not None else [],
        "Labels": c.config.get("Labels") or {},
        "State": c.status,
        "Status": status_text(c.state) + health.status_suffix(c),  # p10ctr: healthchecks
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "bridge"},
        "NetworkSettings": {"Networks": networks_of(c, daemon.containers.networks)},
        "Mounts": [m.to_json() for m in c.mounts if m.listed],
    }
    if sizes is not None:
        out["SizeRw"], out["SizeRootFs"] = sizes
    return out


def _label_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for want in wanted:
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels.get(key) != value):
            return False
    return True


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error as exc:
        raise InvalidArgument(f"invalid filter name={pattern}: {exc}") from None


PS_FILTERS = {"ancestor", "before", "expose", "exited", "health", "id", "isolation", "is-task", "label", "name",
              "network", "publish", "since", "status", "volume"}
STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


# --------------------------------------------------------------------------- top
def _ps_row(pid: int, clk: int, boot: float, now: float) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1: raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    ppid, tty_nr = int(fields[1]), int(fields[4])
    utime, stime, start = int(fields[11]), int(fields[12]), int(fields[19])
    uid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    cpu_secs = (utime + stime) / clk
    started = boot + start / clk
    elapsed = max(now - started, 1e-9)
    c_pct = int(cpu_secs * 100 / elapsed)
    st = time.localtime(started)
    stime_txt = time.strftime("%H:%M", st) if time.localtime(now)[:3] == st[:3] else time.strftime("%b%d", st)
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if tty_nr == 0:
        tty = "?"
    elif 136 <= major <= 143:
        tty = f"pts/{(major - 136) * 256 + minor}"
    elif major == 4:
        tty = f"tty{minor}"
    else:
        tty = "?"
    total = int(cpu_secs)
    days, rest = divmod(total, 86400)
    time_txt = (f"{days}-" if days else "") + f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    args = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
    cmd = " ".join(args) if args else f"[{comm}]"
    return [user, str(pid), str(ppid), str(c_pct), stime_txt, tty, time_txt, cmd]


def ps_table(pids: list[int]) -> dict[str, Any]:
    """``ps -ef`` of the given host pids, read from /proc."""
    clk = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    now = time.time()
    boot = now - uptime
    rows = [r for r in (_ps_row(p, clk, boot, now) for p in sorted(pids)) if r is not None]
    return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows}


async def ps_with_args(pids: list[int], ps_args: str) -> dict[str, Any]:
    """docker's way: run the host's ``ps`` with the given arguments and keep the container's rows."""
    import shlex
    import shutil

    if not shutil.which("ps"):
        raise NotImplemented_("ps_args needs the host's ps(1), which is not installed")
    args = shlex.split(ps_args)
    try:
        proc = await trio.run_process(["ps", *args], capture_stdout=True, capture_stderr=True, check=False)
    except OSError as exc:
        raise CoreError(f"running ps: {exc}") from exc
    if proc.returncode != 0:
        raise CoreError(f"ps: {proc.stderr.decode(errors='replace').strip()}")
    lines = proc.stdout.decode(errors="replace").splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    col = titles.index("PID")
    wanted = set(pids)
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            rows.append(fields)
    return {"Titles": titles, "Processes": rows}


# --------------------------------------------------------------------------- routes
def register(daemon: Daemon) -> None:
    r = daemon.router

    def ctr(req: Request) -> Container:
        return daemon.containers.lookup(req.params["id"])

    def signal_param(req: Request, default: int | None) -> int | None:
        value = req.q("signal")
        if value is None or value == "":
            return default
        return oci.parse_signal(value)

    # -- create / list / inspect ------------------------------------------------------------------
    async def create(req: Request) -> Response:
        body = req.json({})
        c, warnings = await daemon.containers.create(body, name=req.q("name"), drivers=req.drivers,
                                                     platform=req.q("platform"))
        return json_response({"Id": c.id, "Warnings": warnings}, status=201)

    r.add("POST", "/containers/create", create)

    async def list_(req: Request) -> Response:
        filters = req.filters(PS_FILTERS)
        all_ = req.qbool("all")
        limit = req.qint("limit", 0) or 0
        if limit > 0 or "status" in filters or "before" in filters or "since" in filters or "exited" in filters:
            all_ = True
        for value in filters.get("status", []):
            if value not in STATUSES:
                raise InvalidArgument(f"invalid filter 'status={value}'")
        health.check_filter(filters.get("health", []))  # p10ctr: healthchecks
        containers = daemon.containers.list()
        before = since = None
        if filters.get("before"):
            before = daemon.containers.lookup(filters["before"][0])
        if filters.get("since"):
            since = daemon.containers.lookup(filters["since"][0])
        ancestors: set[str] | None = None
        if "ancestor" in filters:
            ancestors = set()
            for a in filters["ancestor"]:
                try:
                    ancestors.add(daemon.images.lookup(a).id)
                except CoreError:
                    pass
        out = []
        for c in containers:
            if not all_ and c.status not in RUNNING:
                continue
            if "status" in filters and c.status not in filters["status"]:
                continue
            # a regular expression, matched with and without the leading "/" (as moby does)
            if "name" in filters and not any(_search(p, "/" + c.name) or _search(p, c.name) for p in filters["name"]):
                continue
            if "id" in filters and not any(c.id.startswith(p) or re.search(p, c.id) for p in filters["id"]):
                continue
            if "label" in filters and not _label_match(c.config.get("Labels") or {}, filters["label"]):
                continue
            if ancestors is not None and c.image_id not in ancestors:
                continue
            if "exited" in filters:
                if c.status != "exited" or str(c.state.exit_code) not in filters["exited"]:
                    continue
            if before is not None and c.created >= before.created:
                continue
            if since is not None and c.created <= since.created:
                continue
            if "volume" in filters and not any(
                    (m.name == v or m.destination == v) for m in c.mounts for v in filters["volume"]):
                continue
            if "network" in filters and (c.host_config.get("NetworkMode") or "bridge") not in filters["network"]:
                continue
            if "health" in filters and not health.filter_matches(c, filters["health"]):  # p10ctr: healthchecks
                continue
            if "is-task" in filters and "true" in filters["is-task"]:
                continue
            if "publish" in filters or "expose" in filters:
                continue
            out.append(c)
        if limit > 0:
            out = out[:limit]
        size = req.qbool("size")
        result = []
        for c in out:
            result.append(summary_json(daemon, c, await daemon.containers.sizes(c) if size else None))
        return json_response(result)

    r.add("GET", "/containers/json", list_)

    async def inspect(req: Request) -> Response:
        c = ctr(req)
        sizes = await daemon.containers.sizes(c) if req.qbool("size") else None
        return json_response(inspect_json(daemon, c, sizes))

    r.add("GET", "/containers/{id}/json", inspect)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(req: Request) -> Response:
        c = ctr(req)
        body = req.json(None)
        if isinstance(body, dict) and body:
            raise InvalidArgument("starting container with non-empty request body was deprecated since API v1.22 "
                                  "and removed in v1.24")
        if req.q("detachKeys"):
            parse_detach_keys(req.q("detachKeys"))
        try:
            await daemon.containers.start(c)
        except NotModified:
            return Response(status=304, body=b"", content_type=None)
        return no_content()

    r.add("POST", "/containers/{id}/start", start)

    async def stop(req: Request) -> Response:
        c = ctr(req)
        t = req.qint("t")
        sig = signal_param(req, None)
        try:
            await daemon.containers.stop(c, t, sig)
        except NotModified:
            return Response(status=304, body=b"", content_type=None)
        return no_content()

    r.add("POST", "/containers/{id}/stop", stop)

    async def restart(req: Request) -> Response:
        c = ctr(req)
        await daemon.containers.restart(c, req.qint("t"), signal_param(req, None))
        return no_content()

    r.add("POST", "/containers/{id}/restart", restart)

    async def kill(req: Request) -> Response:
        c = ctr(req)
        await daemon.containers.kill(c, signal_param(req, _signal.SIGKILL))  # type: ignore[arg-type]
        return no_content()

    r.add("POST", "/containers/{id}/kill", kill)

    async def pause(req: Request) -> Response:
        await daemon.containers.pause(ctr(req))
        return no_content()

    r.add("POST", "/containers/{id}/pause", pause)

    async def unpause(req: Request) -> Response:
        await daemon.containers.unpause(ctr(req))
        return no_content()

    r.add("POST", "/containers/{id}/unpause", unpause)

    async def wait(req: Request) -> Response:
        c = ctr(req)
        condition = req.q("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        exits = c.exits
        immediate = condition == "not-running" and c.status not in RUNNING

        async def body() -> AsyncIterator[bytes]:
            if not immediate:
                if condition == "removed":
                    await c.removed.wait()
                else:
                    while c.exits <= exits and not c.removed.is_set():
                        await c.changed()
            error = {"Message": c.state.error} if c.state.error else None
            yield json.dumps({"StatusCode": c.state.exit_code, "Error": error}).encode() + b"\n"

        return Response(status=200, body=body())

    r.add("POST", "/containers/{id}/wait", wait)

    async def remove(req: Request) -> Response:
        c = ctr(req)
        if req.qbool("link"):
            raise InvalidArgument("Conflict, cannot remove the default link name of the container")
        await daemon.containers.remove(c, force=req.qbool("force"), volumes=req.qbool("v"))
        return no_content()

    r.add("DELETE", "/containers/{id}", remove)

    async def rename(req: Request) -> Response:
        c = ctr(req)
        daemon.containers.rename(c, req.q("name") or "")
        return no_content()

    r.add("POST", "/containers/{id}/rename", rename)

    async def update(req: Request) -> Response:
        c = ctr(req)
        body = req.json({}) or {}
        if not isinstance(body, dict):
            raise InvalidArgument("update: expected a JSON object")
        resources = {k: v for k, v in body.items() if k != "RestartPolicy" and v not in (None, 0, "", [], {})}
        if resources:
            raise NotImplemented_("updating the resources of a container is not supported yet; "
                                  "only its restart policy can be changed")
        if "RestartPolicy" in body:
            from core.engine.containers.service import normalize_host_config

            hc = normalize_host_config({**c.host_config, "RestartPolicy": body["RestartPolicy"]})
            c.host_config["RestartPolicy"] = hc["RestartPolicy"]
            daemon.containers.store.save(c)
        daemon.events.emit("container", "update", c.id, c.event_attributes())
        return json_response({"Warnings": []})

    r.add("POST", "/containers/{id}/update", update)

    async def prune(req: Request) -> Response:
        filters = req.filters({"until", "label", "label!"})
        until = parse_since(filters["until"][0], "until") if filters.get("until") else 0
        deleted, reclaimed = [], 0
        for c in daemon.containers.list():
            if c.status in RUNNING or c.status == "removing":
                continue
            if until and c.created >= until:
                continue
            labels = c.config.get("Labels") or {}
            if "label" in filters and not _label_match(labels, filters["label"]):
                continue
            if "label!" in filters and any(_label_match(labels, [w]) for w in filters["label!"]):
                continue
            rw, _ = await daemon.containers.sizes(c)
            try:
                await daemon.containers.remove(c)
            except CoreError as exc:
                log.info("prune: keeping %s: %s", c.short_id, exc)
                continue
            deleted.append(c.id)
            reclaimed += rw
        daemon.events.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
        return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    r.add("POST", "/containers/prune", prune)

    # -- logs ---------------------------------------------------------------------------------------
    def parse_tail(value: str | None) -> int | None:
        if value is None or value in ("", "all"):
            return None
        try:
            n = int(value)
        except ValueError:
            raise InvalidArgument(f'invalid value for "tail": {value!r}') from None
        return None if n < 0 else n

    async def logs(req: Request) -> Response:
        c = ctr(req)
        want_out, want_err = req.qbool("stdout"), req.qbool("stderr")
        if not want_out and not want_err:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        if c.host_config["LogConfig"]["Type"] == "none":
            raise NotImplemented_('configured logging driver does not support reading')
        follow = req.qbool("follow")
        timestamps = req.qbool("timestamps")
        tail = parse_tail(req.q("tail"))
        since = parse_since(req.q("since"), "since")
        until = parse_since(req.q("until"), "until")
        tty = bool(c.config.get("Tty"))
        path = daemon.containers.log_path(c)

        def alive() -> bool:
            return c.status in RUNNING and not c.removed.is_set()

        async def body() -> AsyncIterator[bytes]:
            async for stream, data, ts in read_logs(path, tail=tail, since=since, until=until, follow=follow,
                                                    alive=alive):
                if (stream == 1 and not want_out) or (stream == 2 and not want_err):
                    continue
                if timestamps:
                    data = fixed_time(ts).encode() + b" " + data
                yield data if tty else frame(stream, data)

        return Response(status=200, body=body(), content_type=RAW if tty else MUX)

    r.add("GET", "/containers/{id}/logs", logs)

    # -- attach ---------------------------------------------------------------------------------------
    async def attach(req: Request) -> Response:
        c = ctr(req)
        keys = parse_detach_keys(req.q("detachKeys"))
        want_logs, want_stream = req.qbool("logs"), req.qbool("stream")
        want_in, want_out, want_err = req.qbool("stdin"), req.qbool("stdout"), req.qbool("stderr")
        if c.status == "paused":
            raise Conflict("You cannot attach to a paused container, unpause it first")
        if c.status == "restarting":
            raise Conflict("You cannot attach to a restarting container, wait until it is running")
        tty = bool(c.config.get("Tty"))
        stdin = want_in and bool(c.config.get("OpenStdin"))
        stdin_once = bool(c.config.get("StdinOnce")) and not tty
        daemon.events.emit("container", "attach", c.id, c.event_attributes())

        async def replay(limit: int | None = None) -> AsyncIterator[bytes]:
            if not want_logs:
                return
            async for stream, data, _ts in read_logs(daemon.containers.log_path(c), tail=None, since=0, until=0,
                                                     follow=False, alive=lambda: False, limit=limit):
                if (stream == 1 and want_out) or (stream == 2 and want_err):
                    yield data if tty else frame(stream, data)

        def log_size() -> int:
            try:
                return daemon.containers.log_path(c).stat().st_size
            except OSError:
                return 0

        if not _wants_upgrade(req):
            # a client that did not ask to upgrade gets the output as a plain streamed body
            async def output() -> AsyncIterator[bytes]:
                async for chunk in replay():
                    yield chunk
                if not want_stream:
                    return
                att = await daemon.containers.attach(c)
                if att is None:
                    return
                try:
                    while True:
                        item = await att.receive()
                        if item is None:
                            return
                        fd, data = item
                        if tty or (fd == 1 and want_out):
                            yield data if tty else frame(1, data)
                        elif fd == 2 and want_err:
                            yield frame(2, data)
                finally:
                    with trio.CancelScope(shield=True):
                        await att.aclose()

            return Response(status=200, body=output(), content_type=RAW if tty else MUX)

        async def run(stream: Any, leftover: bytes) -> None:
            try:
                att = None
                if want_stream and c.status in ("running", "paused"):
                    # attach first, then replay the log as it was then: nothing falls in between
                    try:
                        att = await daemon.containers.attach(c)
                    except CoreError as exc:
                        log.debug("attach to %s: %s", c.short_id, exc)
                        await _close_client(stream)
                        return
                    async for chunk in replay(log_size()):
                        await stream.send_all(chunk)
                else:
                    async for chunk in replay():
                        await stream.send_all(chunk)
                if not want_stream:
                    await _close_client(stream)
                    return
                try:
                    if att is None:
                        att = await daemon.containers.attach(c)
                except CoreError as exc:
                    log.debug("attach to %s: %s", c.short_id, exc)
                    await _close_client(stream)
                    return
                if att is None:
                    await _close_client(stream)
                    return
                detached = await pump(stream, leftover, att, tty=tty, stdin=stdin, stdout=want_out, stderr=want_err,
                                      detach_keys=keys, stdin_once=stdin_once)
                att = None  # pump closed it
                if detached:
                    daemon.events.emit("container", "detach", c.id, c.event_attributes())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await _close_client(stream)
            finally:
                if att is not None:
                    with trio.CancelScope(shield=True):
                        try:
                            await att.aclose()
                        except CoreError:
                            pass

        return Response(status=101, content_type=RAW if tty else MUX, hijack=run)

    r.add("POST", "/containers/{id}/attach", attach)

    async def attach_ws(req: Request) -> Response:
        raise NotImplemented_("attaching over a websocket is not supported; use POST /containers/{id}/attach")

    r.add("GET", "/containers/{id}/attach/ws", attach_ws)

    async def resize(req: Request) -> Response:
        c = ctr(req)
        h, w = req.qint("h"), req.qint("w")
        if h is None or w is None or h < 0 or w < 0:
            raise InvalidArgument("invalid resize: h and w must be non-negative integers")
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        await daemon.containers.executor(c).resize(c.id, w, h)
        daemon.events.emit("container", "resize", c.id, c.event_attributes(height=str(h), width=str(w)))
        return Response(status=200, body=b"", content_type="text/plain; charset=utf-8")

    r.add("POST", "/containers/{id}/resize", resize)

    # -- top / stats --------------------------------------------------------------------------------
    async def top(req: Request) -> Response:
        c = ctr(req)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = await daemon.containers.executor(c).top(c.id)
        ps_args = req.q("ps_args")
        if ps_args and ps_args != "-ef":
            table = await ps_with_args(pids, ps_args)
        else:
            table = await trio.to_thread.run_sync(ps_table, pids)
        daemon.events.emit("container", "top", c.id, c.event_attributes())
        return json_response(table)

    r.add("GET", "/containers/{id}/top", top)

    def host_memory_total() -> int:
        """``MemTotal`` of ``/proc/meminfo`` in bytes (0 when unreadable)."""
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def empty_stats(c: Container) -> dict[str, Any]:
        return {"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z", "pids_stats": {},
                "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                                "io_queue_recursive": None, "io_service_time_recursive": None,
                                "io_wait_time_recursive": None, "io_merged_recursive": None,
                                "io_time_recursive": None, "sectors_recursive": None},
                "num_procs": 0, "storage_stats": {},
                "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                              "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
                "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                                 "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
                "memory_stats": {}, "name": "/" + c.name, "id": c.id}

    async def sample(c: Container, previous: dict[str, Any] | None) -> dict[str, Any]:
        raw = docker_stats(await daemon.containers.executor(c).stats(c.id))
        out = empty_stats(c)
        out.update(raw)
        memory = out.get("memory_stats")
        if isinstance(memory, dict) and memory:
            total = host_memory_total()
            limit = memory.get("limit")
            if total and (not isinstance(limit, int) or limit <= 0 or limit >= total):
                out["memory_stats"] = {**memory, "limit": total}  # no limit: docker shows the host's memory
        out["read"] = archive.rfc3339(time.time_ns())
        out["name"], out["id"] = "/" + c.name, c.id
        if previous is not None:
            out["preread"] = previous["read"]
            out["precpu_stats"] = previous.get("cpu_stats", out["precpu_stats"])
        return out

    async def stats(req: Request) -> Response:
        c = ctr(req)
        stream = req.qbool("stream", True)
        one_shot = req.qbool("one-shot")
        if one_shot and stream:
            raise InvalidArgument("cannot have stream=true and one-shot=true")
        if not c.running:
            return json_response(empty_stats(c))
        if not stream:
            first = await sample(c, None)
            if one_shot:
                return json_response(first)
            await trio.sleep(STATS_INTERVAL)
            if not c.running:
                return json_response(first)
            return json_response(await sample(c, first))

        async def body() -> AsyncIterator[bytes]:
            previous = None
            while c.running:
                try:
                    current = await sample(c, previous)
                except CoreError:
                    if not c.running:
                        return
                    raise
                yield json.dumps(current).encode() + b"\n"
                previous = current
                await trio.sleep(STATS_INTERVAL)

        return Response(status=200, body=body())

    r.add("GET", "/containers/{id}/stats", stats)

    # -- archive / export / changes --------------------------------------------------------------------
    async def tar_stream(c: Container, root: archive.Root, work: Any) -> tuple[Any, AsyncIterator[bytes]]:
        """Run ``work(root_fd, send_first, write)`` in the root's thread: its first result
        (the path's stat) comes back before the response starts; then the tar's bytes."""
        send, recv = trio.open_memory_channel[tuple[str, Any]](8)
        token = trio.lowlevel.current_trio_token()

        def thread(root_fd: int) -> None:
            def put(kind: str, payload: Any) -> None:
                trio.from_thread.run(send.send, (kind, payload), trio_token=token)

            work(root_fd, lambda info: put("first", info), lambda chunk: put("data", chunk))

        async def runner() -> None:
            async with send:
                try:
                    await trio.to_thread.run_sync(archive.run_in_root, root, thread, abandon_on_cancel=True)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                except CoreError as exc:
                    try:
                        await send.send(("error", exc))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                except Exception as exc:
                    log.exception("archive of container %s failed", c.short_id)
                    try:
                        await send.send(("error", CoreError(f"internal error: {type(exc).__name__}: {exc}")))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

        daemon.nursery.start_soon(runner)
        try:
            kind, payload = await recv.receive()
        except trio.EndOfChannel:
            raise CoreError("the archive ended before it began") from None
        if kind == "error":
            await recv.aclose()
            raise payload

        async def body() -> AsyncIterator[bytes]:
            async with recv:
                async for k, p in recv:
                    if k == "data":
                        yield p
                    elif k == "error":
                        log.warning("archive of container %s: %s", c.short_id, p)
                        return

        return payload, body()

    def archive_path(req: Request) -> str:
        path = req.q("path")
        if not path:
            raise InvalidArgument("path is required: the path of a file or directory in the container")
        return path

    async def archive_head(req: Request) -> Response:
        c = ctr(req)
        path = archive_path(req)
        root = await daemon.containers.root(c)
        info = await trio.to_thread.run_sync(archive.run_in_root, root,
                                             lambda fd: archive.path_stat(fd, path, c.name))
        daemon.events.emit("container", "archive-path", c.id, c.event_attributes(path=path))
        return Response(status=200, body=b"", content_type=None,
                        headers=[("X-Docker-Container-Path-Stat", archive.stat_header(info))])

    async def archive_get(req: Request) -> Response:
        if req.method == "HEAD":
            return await archive_head(req)
        c = ctr(req)
        path = archive_path(req)
        root = await daemon.containers.root(c)

        def work(fd: int, first: Any, write: Any) -> None:
            first(archive.path_stat(fd, path, c.name))
            archive.write_tar(fd, path, c.name, write)

        info, body = await tar_stream(c, root, work)
        daemon.events.emit("container", "archive-path", c.id, c.event_attributes(path=path))
        return Response(status=200, body=body, content_type="application/x-tar",
                        headers=[("X-Docker-Container-Path-Stat", archive.stat_header(info))])

    r.add("GET", "/containers/{id}/archive", archive_get)
    r.add("HEAD", "/containers/{id}/archive", archive_head)

    async def archive_put(req: Request) -> Response:
        c = ctr(req)
        path = archive_path(req)
        no_overwrite = req.qbool("noOverwriteDirNonDir")
        copy_ids = req.qbool("copyUIDGID")
        if c.host_config.get("ReadonlyRootfs") and not c.running:
            target = os.path.normpath("/" + path.lstrip("/"))
            if not any(m.rw and (target == m.destination or target.startswith(m.destination.rstrip("/") + "/"))
                       for m in c.mounts if m.type in ("bind", "volume", "tmpfs")):
                raise _forbidden()
        root = await daemon.containers.root(c)
        # read as it arrives, any size: the tar goes to the worker thread in pieces
        data = req.body_stream.reader() if req.body_stream is not None else io.BytesIO(req.body)

        def work(fd: int) -> None:
            owner = None
            if copy_ids:
                passwd, group = oci.read_user_db(fd)
                u = oci.resolve_user(c.config.get("User") or "", passwd, group)
                owner = (u.uid, u.gid)
            archive.extract_tar(fd, path, c.name, data, owner=owner, no_overwrite_dir_nondir=no_overwrite)

        await trio.to_thread.run_sync(archive.run_in_root, root, work)
        daemon.events.emit("container", "extract-to-dir", c.id, c.event_attributes(path=path))
        return Response(status=200, body=b"", content_type=None)

    r.add("PUT", "/containers/{id}/archive", archive_put, stream_body=True)

    async def export(req: Request) -> Response:
        c = ctr(req)
        root = await daemon.containers.root(c, volumes=False)

        def work(fd: int, first: Any, write: Any) -> None:
            first(None)
            archive.write_tar(fd, "/", c.name, write, rebase="")

        _info, body = await tar_stream(c, root, work)
        daemon.events.emit("container", "export", c.id, c.event_attributes())
        return Response(status=200, body=body, content_type="application/octet-stream")

    r.add("GET", "/containers/{id}/export", export)

    async def changes(req: Request) -> Response:
        """``docker diff``: the container's root against a read-only view of its parent."""
        import secrets
        import shutil
        import tempfile

        c = ctr(req)
        sn = daemon.containers.snapshotter(c)
        parent = (await sn.stat(f"ctr-{c.id}")).parent
        key = f"diff-{c.id[:12]}-{secrets.token_hex(4)}"
        base_dir = tempfile.mkdtemp(prefix="diff-", dir=daemon.containers.dir(c))
        viewed = False
        try:
            base_mounts = []
            if parent:
                base_mounts = await sn.view(key, parent=parent)
                viewed = True
            roots = [archive.Root(base_dir, mounts=base_mounts), await daemon.containers.root(c, volumes=False)]
            ignore = {"/proc", "/sys", "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
            ignore |= {m.destination for m in c.mounts}
            result = await trio.to_thread.run_sync(archive.run_in_roots, roots,
                                                   lambda fds: archive.changes(fds[0], fds[1], ignore))
        finally:
            with trio.CancelScope(shield=True):
                if viewed:
                    try:
                        await sn.remove(key)
                    except CoreError as exc:
                        log.warning("diff of %s: removing view %s: %s", c.short_id, key, exc)
                shutil.rmtree(base_dir, ignore_errors=True)
        return json_response(result)

    r.add("GET", "/containers/{id}/changes", changes)

    # -- exec -----------------------------------------------------------------------------------------
    async def exec_create(req: Request) -> Response:
        c = ctr(req)
        body = req.json({}) or {}
        if isinstance(body, dict) and body.get("DetachKeys"):
            parse_detach_keys(body["DetachKeys"])
        e = daemon.containers.exec_create(c, body)
        return json_response({"Id": e.id}, status=201)

    r.add("POST", "/containers/{id}/exec", exec_create)

    async def exec_start(req: Request) -> Response:
        e = daemon.containers.exec_lookup(req.params["id"])
        body = req.json({}) or {}
        if not isinstance(body, dict):
            raise InvalidArgument("exec start: expected a JSON object")
        detach = bool(body.get("Detach"))
        tty = body.get("Tty")
        console = body.get("ConsoleSize")
        console_t = (int(console[0]), int(console[1])) if isinstance(console, list) and len(console) == 2 else None
        c = daemon.containers.lookup(e.container_id)
        if e.started:
            raise Conflict(f"Error: Exec command {e.id} is already running" if e.running
                           else f"exec {e.id} has already been started")
        if c.status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        # p10ctr: the process gets a terminal as the exec's create asked (docker: ExecConfig.Tty);
        # the start's Tty only says how the stream is framed (raw with a tty, multiplexed without)
        if detach:
            await daemon.containers.exec_start(e, console=console_t)
            return Response(status=200, body=b"", content_type=None)
        tty_on = bool(tty) if isinstance(tty, bool) else bool(e.config.get("Tty"))   # the framing
        process_tty = bool(e.config.get("Tty"))
        keys = parse_detach_keys(e.config.get("DetachKeys"))

        async def exited() -> None:
            """The exec's exit code recorded (``e.done``): what must hold before the client's
            connection closes, since clients inspect the exec as soon as its stream ends."""
            with trio.move_on_after(10):
                await e.done.wait()

        async def run(stream: Any, leftover: bytes) -> None:
            try:
                await daemon.containers.exec_start(e, console=console_t)
            except CoreError as exc:
                msg = (exc.message + "\r\n").encode()
                try:
                    await stream.send_all(msg if tty_on else frame(1, msg))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                await _close_client(stream)
                return
            try:
                att = await daemon.containers.executor(c).attach(c.id, e.id)
            except CoreError as exc:  # e.g. the exec ended before we attached: wait for its exit all the same
                log.info("attach to exec %s: %s", e.id[:12], exc)
                await exited()
                await _close_client(stream)
                return

            await pump(stream, leftover, att, tty=tty_on, stdin=bool(e.config.get("AttachStdin")),
                       stdout=bool(e.config.get("AttachStdout")), stderr=bool(e.config.get("AttachStderr")),
                       detach_keys=keys, stdin_once=not process_tty, before_close=exited)

        if not _wants_upgrade(req):
            raise InvalidArgument("exec start without Detach needs a connection upgrade (Upgrade: tcp)")
        return Response(status=101, content_type=RAW if tty_on else MUX, hijack=run)

    r.add("POST", "/exec/{id}/start", exec_start)

    async def exec_resize(req: Request) -> Response:
        e = daemon.containers.exec_lookup(req.params["id"])
        h, w = req.qint("h"), req.qint("w")
        if h is None or w is None or h < 0 or w < 0:
            raise InvalidArgument("invalid resize: h and w must be non-negative integers")
        with trio.move_on_after(10):  # docker waits for the session to start
            await e.ready.wait()
        if not e.ready.is_set():
            raise CoreError("timeout waiting for exec session ready")
        if not e.running:
            raise Conflict(f"Exec {e.id} is not running")
        c = daemon.containers.lookup(e.container_id)
        await daemon.containers.executor(c).resize(c.id, w, h, exec_id=e.id)
        return Response(status=200, body=b"", content_type="text/plain; charset=utf-8")

    r.add("POST", "/exec/{id}/resize", exec_resize)

    async def exec_inspect(req: Request) -> Response:
        e = daemon.containers.exec_lookup(req.params["id"])
        return json_response(e.inspect())

    r.add("GET", "/exec/{id}/json", exec_inspect)


def _forbidden() -> CoreError:
    from core.errors import Forbidden

    return Forbidden("container rootfs is marked read-only")

