"""Finding a container's program as runc does (Go's ``exec.LookPath``), with docker's messages.

For runtime helpers (:mod:`core.shim`): standard library only, so a helper run as ``python -I -S``
by the shim may import it (the shim puts core's directory on the helper's path).
"""
from __future__ import annotations

import errno
import os
import stat

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The ``PATH`` a container without one searches (runc's and docker's)."""


def _executable(path: str) -> int:
    """0 when ``path`` can be run, else the errno that says why not."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.errno or errno.ENOENT
    if stat.S_ISDIR(st.st_mode):
        return errno.EISDIR
    return 0 if st.st_mode & 0o111 else errno.EACCES


def look_path(name: str, path_env: str | None) -> tuple[str | None, tuple[str, str, int] | None]:
    """``(path, None)`` for the program ``name`` found (``path_env`` is the container's ``PATH``,
    ``None`` when it has none), else ``(None, (kind, message, exit code))``: ``kind`` a
    :mod:`core.errors` class name (``ProgramNotFound``: 127, ``ProgramNotRunnable``: 126)."""
    if "/" in name:
        err = _executable(name)
        if err == 0:
            return name, None
        if err in (errno.ENOENT, errno.ENOTDIR):
            return None, ("ProgramNotFound", f'exec: "{name}": stat {name}: {os.strerror(err).lower()}', 127)
        return None, ("ProgramNotRunnable", f'exec: "{name}": {os.strerror(err).lower()}', 126)
    for d in (DEFAULT_PATH if path_env is None else path_env).split(":"):
        candidate = os.path.join(d or ".", name)
        if _executable(candidate) == 0:
            return candidate, None
    return None, ("ProgramNotFound", f'exec: "{name}": executable file not found in $PATH', 127)
