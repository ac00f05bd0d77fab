"""The container's cgroups, v1 (each hierarchy, hybrid included) and v2 (unified).

A container's cgroup is the spec's ``linux.cgroupsPath`` when it is absolute (``/docker/<id>``
as dockerd's cgroupfs driver writes it), else ``/core/<id>``, relative to the root of every
hierarchy: ``/sys/fs/cgroup/<controller>/core/<id>`` on v1 (and under the named ``systemd`` and
the hybrid ``unified`` hierarchies), ``/sys/fs/cgroup/core/<id>`` on v2 with the controllers
enabled in the parents' ``cgroup.subtree_control``.

:class:`Cgroup` creates it, applies ``linux.resources`` (memory limit/reservation/swap, cpu
shares/quota/period/cpuset, pids limit, v1 device rules), moves processes in, freezes and thaws,
changes them in place (:meth:`Cgroup.update`, ``docker update``), lists the pids, reads resource statistics (:class:`core.contracts.executor.ContainerStats`), kills every process in it and
removes it.  Its paths are saved to the container's state directory (:meth:`save`/:meth:`load`,
the ``cgroup`` file of :mod:`core.shim`'s protocol) so the shim (OOM kills) and
:class:`core.shim.executor.ShimExecutor` (pause, top, stats, delete) find them.

Part of the executor kit: a runtime helper may use it to create and fill the container's cgroup
(the built-in one does).  Stdlib only: imported by runtime helpers as well as by executors.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.contracts.executor import ContainerStats

ROOT = "/sys/fs/cgroup"
# cpu.shares (v1, 2..262144) -> cpu.weight (v2, 1..10000), as runc and crun convert
_MAX_SHARES = 262144


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


_SWAP_LIMIT: list[bool] = []


def swap_limit() -> bool:
    """Whether the kernel limits swap per cgroup (docker's ``SwapLimit``): v1's
    ``memory.memsw.*`` files (swap accounting on), v2's ``memory.swap.max``.  Read once per
    process (it is the kernel's configuration): container create asks every time."""
    if not _SWAP_LIMIT:
        version, mounts = hierarchies()
        if version == 2:
            try:
                found = any(os.path.exists(os.path.join(ROOT, d, "memory.swap.max")) for d in os.listdir(ROOT))
            except OSError:
                found = False
        else:
            found = any("memory" in name.split(",")
                        and os.path.exists(os.path.join(point, "memory.memsw.limit_in_bytes"))
                        for name, point in mounts.items())
        _SWAP_LIMIT.append(found)
    return _SWAP_LIMIT[0]


def hierarchies() -> tuple[int, dict[str, str]]:
    """``(version, {name: mount point})``: on v1, one entry per hierarchy named by its
    controllers (``"memory"``, ``"cpu,cpuacct"``, ``"name=systemd"``) plus ``""`` for a hybrid
    cgroup2 mount; on v2, ``{"": "/sys/fs/cgroup"}``."""
    if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):
        return 2, {"": ROOT}
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(rfields) < 3 or len(fields) < 5:
                continue
            point = _unescape(fields[4])
            if rfields[0] == "cgroup":
                names = [o for o in rfields[2].split(",")
                         if o not in ("rw", "ro") and not o.startswith(("release_agent=",
                                                                          "clone_children",
                                                                          "noprefix", "xattr",
                                                                          "cpuset_v2_mode"))]
                if names:
                    found.setdefault(",".join(names), point)
            elif rfields[0] == "cgroup2" and point.startswith(ROOT):
                found.setdefault("", point)
    if not any(name for name in found):
        return (2, {"": found[""]}) if "" in found else (0, {})
    return 1, found


def available() -> str | None:
    """``None`` when cgroups are usable here, else why not."""
    version, mounts = hierarchies()
    if not version:
        return "no cgroup filesystem is mounted under /sys/fs/cgroup"
    if version == 1 and not any("memory" in n.split(",") for n in mounts):
        return "the cgroup v1 memory controller is not mounted"
    return None


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _write_file(path: str, value: str) -> None:
    """:func:`_write` whose ``OSError`` names the file."""
    try:
        _write(path, value)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None


def _cpu_weight(shares: Any) -> str:
    """cgroup v2's ``cpu.weight`` for docker's ``CpuShares`` (runc's conversion)."""
    return str(max(1, min(10000, 1 + ((int(shares) - 2) * 9999) // (_MAX_SHARES - 2))))


def _pids_max(limit: Any) -> str:
    """``pids.max`` for docker's ``PidsLimit`` (0 or negative: unlimited)."""
    return str(int(limit)) if int(limit) > 0 else "max"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_int(path: str, default: int = 0) -> int:
    try:
        text = _read(path).strip()
    except OSError:
        return default
    if text == "max":
        return 2**63 - 1
    try:
        return int(text)
    except ValueError:
        return default


def _kv(path: str) -> dict[str, int]:
    out = {}
    try:
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
    except OSError:
        pass
    return out


def own_procs_file() -> str | None:
    """The ``cgroup.procs`` of the cgroup this process is in (one hierarchy), if any."""
    version, mounts = hierarchies()
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError:
        return None
    for line in lines:
        _num, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        point = mounts.get(names) if version == 1 else mounts.get("") if not names else None
        if point and path.startswith("/"):
            procs = os.path.join(point, path.lstrip("/"), "cgroup.procs")
            if os.path.exists(procs):
                return procs
    return None


def prime(procs_file: str) -> None:
    """Start the kernel's wait for a cgroup move early (blocks for it: call it in a thread).

    Moving a process into a cgroup (what every container start does) takes the kernel's global
    ``cgroup_threadgroup_rwsem`` for writing, and the first writer after a quiet spell waits for
    an RCU grace period (~10 ms on this kind of host: the longest single step of a start);
    writers that come within about a grace period of the last one pass at once.  Writing our
    own pid into the cgroup it is already in moves nothing and pays that wait now, while the
    container's bundle is being prepared.  Errors are ignored: it is only a head start."""
    try:
        _write(procs_file, str(os.getpid()))
    except OSError:
        pass


def cgroup_path(spec: dict[str, Any], container_id: str) -> str:
    path = (spec.get("linux") or {}).get("cgroupsPath") or ""
    if not path.startswith("/"):
        path = f"/core/{path or container_id}"
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid cgroupsPath {path!r}")
    return "/" + "/".join(parts)


class Cgroup:
    """One container's cgroup: ``paths`` maps hierarchy names to directories."""

    def __init__(self, version: int, paths: dict[str, str]) -> None:
        self.version = version
        self.paths = paths

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_path(cls, path: str) -> Cgroup:
        version, mounts = hierarchies()
        if not version:
            raise OSError(errno.ENOENT, "no cgroup filesystem is mounted")
        return cls(version, {name: os.path.join(point, path.lstrip("/"))
                             for name, point in mounts.items()})

    @classmethod
    def of_pid(cls, pid: int) -> Cgroup | None:
        """The cgroup process ``pid`` is in (one made by someone else: runc's), a real
        controller first (the shim reads the first path as the init's); None when there is none."""
        version, mounts = hierarchies()
        paths: dict[str, str] = {}
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if version == 2 and controllers == "" and "" in mounts:
                    paths[""] = os.path.join(mounts[""], path.lstrip("/"))
                elif version == 1:
                    for name, point in mounts.items():
                        if name and set(name.split(",")) == set(controllers.split(",")):
                            paths[name] = os.path.join(point, path.lstrip("/"))
        if not paths:
            return None
        order = sorted(paths, key=lambda n: (0 if "memory" in n.split(",") else 1 if not n.startswith("name=") else 2))
        return cls(version, {name: paths[name] for name in order})

    def save(self, state_file: str) -> None:
        tmp = f"{state_file}.tmp"
        with open(tmp, "w") as f:
            f.write(f"version {self.version}\n")
            for name, path in self.paths.items():
                f.write(f"{name or '-'} {path}\n")
        os.rename(tmp, state_file)

    @classmethod
    def load(cls, state_file: str) -> Cgroup | None:
        try:
            lines = _read(state_file).splitlines()
        except OSError:
            return None
        version = int(lines[0].split()[1])
        paths = {}
        for line in lines[1:]:
            name, _, path = line.partition(" ")
            paths["" if name == "-" else name] = path
        return cls(version, paths)

    def _controller(self, controller: str) -> str | None:
        """The directory holding ``controller``'s files (None when not mounted)."""
        if self.version == 2:
            return self.paths.get("")
        for name, path in self.paths.items():
            if controller in name.split(","):
                return path
        return None

    def create(self) -> None:
        for name, path in self.paths.items():
            if self.version == 1 and "cpuset" in name.split(","):
                self._make_cpuset(path)
            else:
                os.makedirs(path, exist_ok=True)
        if self.version == 2:
            self._enable_controllers(self.paths[""])

    @staticmethod
    def _make_cpuset(path: str) -> None:
        """v1 cpuset: a new group has no cpus/mems; copy them down from the parent, as runc."""
        missing = []
        p = path
        while not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                pass
            parent = os.path.dirname(d)
            for f in ("cpuset.cpus", "cpuset.mems"):
                try:
                    if not _read(os.path.join(d, f)).strip():
                        _write(os.path.join(d, f), _read(os.path.join(parent, f)).strip())
                except OSError:
                    pass

    @staticmethod
    def _enable_controllers(path: str) -> None:
        root = ROOT
        wanted = set()
        try:
            wanted = set(_read(os.path.join(root, "cgroup.controllers")).split()) & {
                "cpu", "cpuset", "memory", "pids", "io"}
        except OSError:
            return
        rel = os.path.relpath(path, root).split("/")
        d = root
        for part in rel[:-1] if rel != ["."] else []:
            for c in wanted:
                try:
                    _write(os.path.join(d, "cgroup.subtree_control"), f"+{c}")
                except OSError:
                    pass
            d = os.path.join(d, part)
        for c in wanted:
            try:
                _write(os.path.join(d, "cgroup.subtree_control"), f"+{c}")
            except OSError:
                pass

    # ------------------------------------------------------------------ resources
    def apply(self, resources: dict[str, Any] | None) -> None:
        """Apply ``linux.resources`` (OCI): memory, cpu, pids, v1 devices."""
        r = resources or {}
        mem = r.get("memory") or {}
        cpu = r.get("cpu") or {}
        pids = r.get("pids") or {}
        m = self._controller("memory")
        if m and mem:
            limit, swap = mem.get("limit"), mem.get("swap")
            if self.version == 1:
                if mem.get("reservation") is not None:
                    _write(f"{m}/memory.soft_limit_in_bytes", str(mem["reservation"]))
                if limit is not None:
                    _write(f"{m}/memory.limit_in_bytes", str(limit))
                if swap is not None and os.path.exists(f"{m}/memory.memsw.limit_in_bytes"):
                    _write(f"{m}/memory.memsw.limit_in_bytes", str(swap))
                if mem.get("swappiness") is not None and 0 <= int(mem["swappiness"]) <= 100:
                    _write(f"{m}/memory.swappiness", str(mem["swappiness"]))
                if mem.get("disableOOMKiller"):
                    _write(f"{m}/memory.oom_control", "1")
            else:
                if mem.get("reservation") is not None:
                    _write(f"{m}/memory.low", str(mem["reservation"]))
                if limit is not None:
                    _write(f"{m}/memory.max", "max" if int(limit) < 0 else str(limit))
                if swap is not None and os.path.exists(f"{m}/memory.swap.max"):
                    value = "max" if int(swap) < 0 else str(max(0, int(swap) - int(limit or 0)))
                    _write(f"{m}/memory.swap.max", value)
        c = self._controller("cpu")
        if c and cpu:
            shares, quota, period = cpu.get("shares"), cpu.get("quota"), cpu.get("period")
            if self.version == 1:
                if shares:
                    _write(f"{c}/cpu.shares", str(shares))
                if period:
                    _write(f"{c}/cpu.cfs_period_us", str(period))
                if quota is not None and quota != 0:
                    _write(f"{c}/cpu.cfs_quota_us", str(quota))
            else:
                if shares:
                    _write(f"{c}/cpu.weight", _cpu_weight(shares))
                if quota or period:
                    q = "max" if not quota or int(quota) < 0 else str(quota)
                    _write(f"{c}/cpu.max", f"{q} {period or 100000}")
        self._set_cpuset_and_pids(cpu.get("cpus"), cpu.get("mems"), pids.get("limit"), _write)
        d = self._controller("devices") if self.version == 1 else None
        if d and r.get("devices"):
            for rule in r["devices"]:
                kind = rule.get("type") or "a"
                major = "*" if rule.get("major") in (None, -1) else str(rule["major"])
                minor = "*" if rule.get("minor") in (None, -1) else str(rule["minor"])
                access = rule.get("access") or "rwm"
                entry = "a" if kind == "a" else f"{kind} {major}:{minor} {access}"
                _write(f"{d}/devices.{'allow' if rule.get('allow') else 'deny'}", entry)

    def _set_cpuset_and_pids(self, cpus: Any, mems: Any, pids: Any, write: Any) -> None:
        """The cpuset (CPUs, memory nodes) and pids limit, as given (``None``/empty: unchanged),
        each written with ``write`` (at create, or raising with the file's name at update)."""
        s = self._controller("cpuset")
        if s and cpus:
            write(f"{s}/cpuset.cpus", cpus)
        if s and mems:
            write(f"{s}/cpuset.mems", mems)
        p = self._controller("pids")
        if p and pids is not None:
            write(f"{p}/pids.max", _pids_max(pids))

    def update(self, values: dict[str, Any]) -> None:
        """Change the limits of a live cgroup (``docker update``).  ``values`` holds docker's
        fields (``memory``, ``memory_reservation``, ``memory_swap``, ``cpu_shares``,
        ``cpu_period``, ``cpu_quota``, ``cpuset_cpus``, ``cpuset_mems``, ``pids_limit``,
        ``blkio_weight``), those to change only; ``-1`` means unlimited where docker has it.
        Raises ``OSError`` as the kernel refuses a write (``EBUSY``: a memory limit below the
        usage), with the file in its ``filename``."""
        v = values
        m = self._controller("memory")
        if m:
            limit, swap = v.get("memory"), v.get("memory_swap")
            if self.version == 1:
                if v.get("memory_reservation") is not None:
                    _write_file(f"{m}/memory.soft_limit_in_bytes", str(v["memory_reservation"]))
                memsw = f"{m}/memory.memsw.limit_in_bytes"
                has_memsw = os.path.exists(memsw)
                # memory.limit <= memsw.limit always: raise memsw first when growing
                if has_memsw and swap is not None and limit is not None and \
                        (int(swap) < 0 or int(swap) >= _read_int(memsw)):
                    _write_file(memsw, "-1" if int(swap) < 0 else str(swap))
                    swap = None
                if limit is not None:
                    if has_memsw and swap is None and int(limit) > 0 and \
                            int(limit) > _read_int(memsw):
                        _write_file(memsw, str(limit))
                    _write_file(f"{m}/memory.limit_in_bytes", "-1" if int(limit) < 0 else str(limit))
                if has_memsw and swap is not None:
                    _write_file(memsw, "-1" if int(swap) < 0 else str(swap))
            else:
                if v.get("memory_reservation") is not None:
                    _write_file(f"{m}/memory.low", str(v["memory_reservation"]))
                if limit is not None:
                    _write_file(f"{m}/memory.max", "max" if int(limit) < 0 else str(limit))
                if swap is not None and os.path.exists(f"{m}/memory.swap.max"):
                    mem = int(limit) if limit is not None else _read_int(f"{m}/memory.max")
                    value = "max" if int(swap) < 0 else str(max(0, int(swap) - mem))
                    _write_file(f"{m}/memory.swap.max", value)
        c = self._controller("cpu")
        if c:
            shares, quota, period = v.get("cpu_shares"), v.get("cpu_quota"), v.get("cpu_period")
            if self.version == 1:
                if shares:
                    _write_file(f"{c}/cpu.shares", str(shares))
                if period:
                    _write_file(f"{c}/cpu.cfs_period_us", str(period))
                if quota is not None:
                    _write_file(f"{c}/cpu.cfs_quota_us", str(quota if int(quota) > 0 else -1))
            else:
                if shares:
                    _write_file(f"{c}/cpu.weight", _cpu_weight(shares))
                if quota is not None or period:
                    old = _read(f"{c}/cpu.max").split()
                    q = ("max" if int(quota) <= 0 else str(quota)) if quota is not None else old[0]
                    _write_file(f"{c}/cpu.max", f"{q} {period or old[1]}")
        self._set_cpuset_and_pids(v.get("cpuset_cpus"), v.get("cpuset_mems"), v.get("pids_limit"), _write_file)
        if v.get("blkio_weight"):
            if self.version == 2:
                path = f"{self.paths['']}/io.weight"
                if os.path.exists(path):
                    _write_file(path, f"default {v['blkio_weight']}")
            else:
                b = self._controller("blkio")
                for name in ("blkio.weight", "blkio.bfq.weight"):
                    if b and os.path.exists(f"{b}/{name}"):
                        _write_file(f"{b}/{name}", str(v["blkio_weight"]))
                        break

    # ------------------------------------------------------------------ processes
    def join(self, pid: int) -> None:
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        """Every process in the container's cgroup (and its descendants)."""
        base = self._controller("pids") or self._controller("memory") or next(
            iter(self.paths.values()), None)
        if base is None:
            return []
        out: list[int] = []
        for dirpath, _dirs, _files in os.walk(base):
            try:
                out.extend(int(x) for x in _read(os.path.join(dirpath, "cgroup.procs")).split())
            except OSError:
                continue
        return sorted(set(out))

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self.paths.values())

    # ------------------------------------------------------------------ freezer
    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if self.version == 2:
            path = self.paths[""]
            _write(f"{path}/cgroup.freeze", "1" if frozen else "0")
            want = "frozen 1" if frozen else "frozen 0"
            for _ in range(1000):
                if want in _read(f"{path}/cgroup.events"):
                    return
                time.sleep(0.002)
            return
        path = self._controller("freezer")
        if path is None:
            raise OSError(errno.ENOTSUP, "the freezer cgroup controller is not mounted")
        target = "FROZEN" if frozen else "THAWED"
        for _ in range(2000):
            _write(f"{path}/freezer.state", target)
            if _read(f"{path}/freezer.state").strip() == target:
                return
            time.sleep(0.002)
        raise OSError(errno.EBUSY, f"the container's cgroup did not become {target}")

    def frozen(self) -> bool:
        try:
            if self.version == 2:
                return "frozen 1" in _read(f"{self.paths['']}/cgroup.events")
            path = self._controller("freezer")
            return path is not None and _read(f"{path}/freezer.state").strip() in (
                "FROZEN", "FREEZING")
        except OSError:
            return False

    # ------------------------------------------------------------------ OOM, stats
    def stats(self) -> ContainerStats:
        """Resource use (``Executor.stats``): memory, cpu, pids, blkio (v1) counters."""
        from core.contracts.executor import (   # not at the top: the runtime helper imports us
            BlkioEntry, BlkioStats, ContainerStats, CpuStats, CpuUsage, MemoryStats, PidsStats,
            Throttling)

        memory = None
        m = self._controller("memory")
        if m:
            if self.version == 1:
                memory = MemoryStats(usage=_read_int(f"{m}/memory.usage_in_bytes"),
                                     max_usage=_read_int(f"{m}/memory.max_usage_in_bytes"),
                                     limit=_read_int(f"{m}/memory.limit_in_bytes"),
                                     failcnt=_read_int(f"{m}/memory.failcnt"),
                                     stats=_kv(f"{m}/memory.stat"))
            else:
                memory = MemoryStats(usage=_read_int(f"{m}/memory.current"),
                                     limit=_read_int(f"{m}/memory.max"),
                                     stats=_kv(f"{m}/memory.stat"))
        usage = throttling = None
        if self.version == 1:
            a = self._controller("cpuacct")
            if a:
                per_cpu: list[int] = []
                try:
                    per_cpu = [int(x) for x in _read(f"{a}/cpuacct.usage_percpu").split()]
                except OSError:
                    pass
                ticks = _kv(f"{a}/cpuacct.stat")
                hz = os.sysconf("SC_CLK_TCK") or 100
                usage = CpuUsage(total=_read_int(f"{a}/cpuacct.usage"), percpu=per_cpu,
                                 user=ticks.get("user", 0) * 10**9 // hz,
                                 kernel=ticks.get("system", 0) * 10**9 // hz)
            c = self._controller("cpu")
            if c:
                st = _kv(f"{c}/cpu.stat")
                throttling = Throttling(periods=st.get("nr_periods", 0),
                                        throttled_periods=st.get("nr_throttled", 0),
                                        throttled_time=st.get("throttled_time", 0))
        else:
            st = _kv(f"{self.paths['']}/cpu.stat")
            usage = CpuUsage(total=st.get("usage_usec", 0) * 1000,
                             user=st.get("user_usec", 0) * 1000,
                             kernel=st.get("system_usec", 0) * 1000)
            throttling = Throttling(periods=st.get("nr_periods", 0),
                                    throttled_periods=st.get("nr_throttled", 0),
                                    throttled_time=st.get("throttled_usec", 0) * 1000)
        system = None
        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()[1:8]
            hz = os.sysconf("SC_CLK_TCK") or 100
            system = sum(int(x) for x in fields) * 10**9 // hz
        except OSError:
            pass
        cpu = CpuStats(usage=usage, throttling=throttling, system_usage=system,
                       online_cpus=os.cpu_count() or 1)
        pids = None
        p = self._controller("pids")
        if p:
            limit = _read_int(f"{p}/pids.max")
            pids = PidsStats(current=_read_int(f"{p}/pids.current"),
                             limit=limit if limit < 2**63 - 1 else None)
        service_bytes = None
        if self.version == 1:
            b = self._controller("blkio")
            if b:
                service_bytes = []
                try:
                    for line in _read(f"{b}/blkio.throttle.io_service_bytes_recursive").splitlines():
                        parts = line.split()
                        if len(parts) == 3 and ":" in parts[0]:
                            major, minor = parts[0].split(":")
                            service_bytes.append(BlkioEntry(major=int(major), minor=int(minor),
                                                            op=parts[1].lower(), value=int(parts[2])))
                except OSError:
                    pass
        return ContainerStats(memory=memory, cpu=cpu, pids=pids,
                              blkio=BlkioStats(service_bytes=service_bytes))

    # ------------------------------------------------------------------ removal
    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left in the cgroup and remove its directories (deepest first).
        Absent is fine; raises ``OSError`` when a directory stays busy past ``timeout``."""
        deadline = time.monotonic() + timeout
        frozen = self.frozen()
        self.signal_all(signal.SIGKILL)
        if frozen:
            try:
                self.thaw()
            except OSError:
                pass
        for path in self.paths.values():
            if not os.path.isdir(path):
                continue
            dirs = sorted((d for d, _s, _f in os.walk(path)), key=len, reverse=True)
            for d in dirs:
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                            raise
                        self.signal_all(signal.SIGKILL)
                        time.sleep(0.01)
