"""install.sh's main job, tried side by side ($CORE_PREFIX): the installed ``core`` is a copy on
Debian's own python3, needs nothing of the clone it came from, and runs for a user who is not
root (a member of the socket's group)."""
from __future__ import annotations

import grp
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from core import __version__
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _tree_copy(dest):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.fixture
def world_readable_dir():
    path = Path(tempfile.mkdtemp(prefix="core-install-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_installed_core_outlives_its_clone_and_serves_a_group_member(world_readable_dir, core_env):
    clone, prefix = world_readable_dir / "clone", world_readable_dir / "prefix"
    clone.mkdir()
    _tree_copy(clone)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORE_", "VIRTUAL_ENV"))}
    proc = subprocess.run(["./install.sh"], cwd=clone, env={**env, "CORE_PREFIX": str(prefix)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(clone)   # the installed core must not need it

    venv_cfg = (prefix / "venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in venv_cfg      # Debian's python3, readable by every user
    core = prefix / "venv" / "bin" / "core"
    assert str(REPO) not in core.read_text()   # the launcher names no clone

    group = grp.getgrnam("nogroup")
    core_env.write_config({"group": group.gr_name})
    core_env.start_daemon()
    for d in (core_env.root, core_env.exec_root):
        os.chmod(d, 0o755)
    as_user = ["setpriv", "--reuid=65534", f"--regid={group.gr_gid}", f"--groups={group.gr_gid}"]
    user_env = {"PATH": "/usr/bin:/bin", "CORE_HOST": core_env.host, "HOME": "/nonexistent"}
    out = subprocess.run([*as_user, str(core), "version", "--format", "{{.Server.Version}}"],
                         env=user_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == __version__
    # without the group, the socket (0660) refuses
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=1", "--clear-groups", str(core), "version"],
                         env=user_env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
