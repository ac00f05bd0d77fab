"""Other engines for the benchmarks — podman, docker — run on the same image as core, pulled
from the same local registry (plain HTTP on 127.0.0.1: nothing leaves the machine)."""
from __future__ import annotations

import shutil
import subprocess

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
