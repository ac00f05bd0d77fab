"""Small helpers several test modules share: processes, sockets, and engines driven through the CLI.

* :func:`pid_exists` -- whether a pid is taken (a zombie or another user's process counts), for
  sweeps of what a killed run left behind.
* :func:`stop_pid` -- SIGTERM a process this run started, SIGKILL if it is still there after a while.
* :func:`recv_all` -- everything a socket sends until the peer closes it.
* :func:`socket_answers` -- whether a Unix socket (a daemon's) accepts a connection.
* :func:`pull` and :func:`inspect_image` -- ``core pull`` and ``core image inspect`` of an engine
  (:class:`tests.conftest.CoreEnv`), asserting success with the daemon's log in the message.
* :func:`busybox_engine` -- a fresh engine with the test registry's ``busybox:latest`` pulled
  (``env.bb`` is its reference), cleaned up when the block ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.testing import pid_alive


def pid_exists(pid: int) -> bool:
    """Whether ``pid`` names a process (signal 0): one of another user counts as well."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid``; SIGKILL when it is still alive after ``timeout`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.02)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def socket_answers(path: Path) -> bool:
    """Whether the Unix socket at ``path`` accepts a connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def recv_all(sock: socket.socket) -> bytes:
    """What ``sock`` receives until the peer closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def pull(env: Any, ref: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``core pull [ARGS] REF`` on ``env``; with ``check``, it must succeed."""
    proc = env.run("pull", *args, ref, timeout=300)
    if check:
        assert proc.returncode == 0, (proc.stdout, proc.stderr, env.daemon_log()[-3000:])
    return proc


def inspect_image(env: Any, name: str) -> dict[str, Any]:
    """``core image inspect NAME`` on ``env``, decoded."""
    proc = env.run("image", "inspect", name)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


@contextlib.contextmanager
def busybox_engine(test_images: Any) -> Iterator[Any]:
    """A new engine (``CoreEnv``) with the registry's busybox pulled, as ``env.bb``; the engine is
    cleaned up when the block ends, whatever happened in it."""
    from tests.conftest import CoreEnv

    env = CoreEnv()
    try:
        ref = test_images["busybox:latest"].reference
        pull(env, ref)
        env.bb = ref
        yield env
    finally:
        env.cleanup()
