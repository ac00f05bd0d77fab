"""The engines the benchmarks drive: :class:`Core`, a daemon of their own, and the others —
podman, docker — run on the same image as core, pulled from the same local registry (plain
HTTP on 127.0.0.1: nothing leaves the machine)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.testing.registry_server import Registry
from tests.conftest import purge_network_driver, remove_containers_under, stop_pid, unmount_under
from tests.support.images import build_image, busybox_rootfs_layer, push

NAMES = ("podman", "docker")


def answers(name: str) -> bool:
    """Installed, and its engine answers (`docker` is often only a client)."""
    return bool(shutil.which(name)) and subprocess.run([name, "info"], capture_output=True).returncode == 0


def limits(name: str) -> list[str]:
    """podman raises nofile and nproc past a small VM's hard limits by default (runc then fails
    with EPERM): modest limits within the host's instead."""
    if name != "podman":
        return []
    import resource

    out = []
    for flag, which, cap in (("nofile", resource.RLIMIT_NOFILE, 16384), ("nproc", resource.RLIMIT_NPROC, 4096)):
        hard = resource.getrlimit(which)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        out += ["--ulimit", f"{flag}={value}:{value}"]
    return out


def pull(name: str, image: str) -> None:
    """``image`` from the local registry (docker treats 127.0.0.0/8 as insecure by itself)."""
    subprocess.run([name, "pull", *(["--tls-verify=false"] if name == "podman" else []), image],
                   check=True, capture_output=True)


def remove_image(name: str, image: str) -> None:
    subprocess.run([name, "rmi", "-f", image], capture_output=True)


class Core:
    """A core daemon of the benchmark's own: its roots under /tmp, its own nft tables (so its own
    default bridge); :meth:`close` removes every trace."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="core-bench-", dir="/tmp"))
        self.nft_table = f"cbench{os.getpid()}"
        (self.root / "daemon.json").write_text(json.dumps({"driver-opts": {"network": {"nft-table": self.nft_table}}}))
        self.bin = shutil.which("core", path=str(Path(sys.executable).parent)) or "core"
        self.env = {**os.environ, "CORE_DATA_ROOT": str(self.root / "data"), "CORE_EXEC_ROOT": str(self.root / "run"),
                    "CORE_HOST": f"unix://{self.root}/run/core.sock",
                    "CORE_CONFIG_FILE": str(self.root / "daemon.json")}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.bin, *args], env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"core {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc

    def processes(self) -> list[int]:
        """The daemon, its children (the executor's zygote) and every shim — not the containers'
        own processes."""
        pids = []
        for pidfile in [self.root / "run" / "core.pid", *self.root.glob("run/executor/*/*/shim.pid")]:
            try:
                pids.append(int(pidfile.read_text()))
            except (OSError, ValueError):
                pass
        if pids:
            for children in Path(f"/proc/{pids[0]}/task").glob("*/children"):
                pids += [int(c) for c in children.read_text().split()]
        return pids

    def close(self) -> None:
        ids = self.run("ps", "-aq", check=False).stdout.split()
        if ids:
            self.run("rm", "-f", *ids, check=False)
        try:
            stop_pid(int((self.root / "run" / "core.pid").read_text()))
        except (OSError, ValueError):
            pass
        remove_containers_under(self.root)
        try:
            purge_network_driver(self.root / "data", self.root / "run", {"nft-table": self.nft_table})
        except Exception as exc:  # noqa: BLE001 - say so, go on cleaning
            print(f"warning: removing the bench's bridge/nft tables: {exc}", file=sys.stderr)
        unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def served_busybox(work: Path, core: "Core") -> Iterator[str]:
    """busybox, built under ``work`` by the test suite's image builder, pushed to a real registry
    (Debian's docker-registry) on 127.0.0.1 that serves it while the block runs, and pulled by
    ``core``: the image's reference."""
    build_image(work / "layout", [busybox_rootfs_layer()], config={"Cmd": ["/bin/sh"]})
    with Registry() as registry:
        push(work / "layout", "busybox:latest", registry)
        image = f"{registry.host}/busybox:latest"
        core.run("pull", "-q", image)
        yield image
