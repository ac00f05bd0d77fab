"""Finding runc and running it (synchronously: used by the helper and, in threads, the driver)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

_CANDIDATES = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc")


def find_runc() -> str | None:
    env = os.environ.get("CORE_RUNC")
    if env:
        return env if os.access(env, os.X_OK) else None
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("runc")


class RuncError(Exception):
    pass


def runc(root: str, *args: str, timeout: float = 30.0, **kw: Any) -> str:
    """Run ``runc --root ROOT ARGS``; its stdout, or ``RuncError`` with its message."""
    binary = find_runc()
    if binary is None:
        raise RuncError("runc is not installed")
    result = subprocess.run([binary, "--root", root, *args], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=timeout, **kw)
    if result.returncode != 0:
        raise RuncError(error_text(result.stderr))
    return result.stdout.decode("utf-8", "replace")


def error_text(stderr: bytes) -> str:
    """runc's message, without logrus's ``time=... level=error msg=`` decoration."""
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    line = text[-1] if text else "runc failed"
    if 'msg="' in line:
        line = line.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return line


def state(root: str, container_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(runc(root, "state", container_id))
    except (RuncError, ValueError, subprocess.TimeoutExpired):
        return None
