"""The out-of-tree example driver ``examples/core-runc-executor`` (executor ``runc``), used the
way a third party's driver is: installed with pip into this environment, listed by ``core
info``, checked with the executor conformance suite, and run through the daemon by the CLI.

The distribution stays installed afterwards (it is harmless: ``runc`` is only used when
selected), as ``install.sh --test`` installs it too.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, CoreEnv, _kill_if_cmdline_has, wait_for

EXAMPLE = REPO / "examples" / "core-runc-executor"
RUNC = next((p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.access(p, os.X_OK)),
            shutil.which("runc"))

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root"),
    pytest.mark.skipif(RUNC is None, reason="runc is not installed (apt-get install runc)"),
]


@pytest.fixture(scope="session")
def runc_driver():
    """``pip install --no-deps examples/core-runc-executor``, as a user would (already
    installed is fine: pip installs it again)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--disable-pip-version-check", str(EXAMPLE)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return "runc"


def _cleanup_runc(env: CoreEnv) -> None:
    """What a failed test may leave: the runc driver's shims and runc's containers."""
    base = env.exec_root / "executor" / "runc"
    for state in base.glob("containers/*"):
        try:
            _kill_if_cmdline_has(int((state / "shim.pid").read_text()), str(state))
        except (OSError, ValueError):
            pass
    root = base / "runc"
    if root.is_dir():
        for c in root.iterdir():
            subprocess.run([RUNC, "--root", str(root), "delete", "-f", c.name], capture_output=True)


@pytest.fixture(scope="module")
def runc_env(runc_driver, test_images):
    """One daemon for the module running executor=runc, busybox pulled."""
    env = CoreEnv()
    env.write_config({"drivers": {"executor": "runc"}})
    try:
        ref = test_images["busybox:latest"].reference
        proc = env.run("--driver", "executor=runc", "pull", ref, timeout=300)
        assert proc.returncode == 0, (proc.stdout, proc.stderr, env.daemon_log()[-3000:])
        env.bb = ref
        yield env
    finally:
        try:
            env.cleanup()
        finally:
            _cleanup_runc(env)


def core(env: CoreEnv, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return env.run("--driver", "executor=runc", *args, timeout=timeout)


def test_core_info_lists_the_runc_driver(runc_driver):
    env = CoreEnv()
    try:
        proc = env.run("info", timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = [line for line in proc.stdout.splitlines() if "runc" in line]
        assert lines, proc.stdout
        assert not any(word in " ".join(lines).lower()
                       for word in ("unavailable", "broken", "error", "failed")), lines
    finally:
        env.cleanup()


def test_conformance_suite_passes(runc_driver, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "core.testing.executor",
                           "--driver", "executor=runc", "-q", "-p", "no:cacheprovider"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout


def test_run_rm_prints_hi(runc_env):
    proc = core(runc_env, "run", "--rm", runc_env.bb, "echo", "hi")
    assert proc.returncode == 0, (proc.stdout, proc.stderr, runc_env.daemon_log()[-3000:])
    assert proc.stdout == "hi\n"
    assert core(runc_env, "ps", "-aq").stdout.split() == []


def test_exit_code_and_missing_program(runc_env):
    assert core(runc_env, "run", "--rm", runc_env.bb, "sh", "-c", "exit 3").returncode == 3
    proc = core(runc_env, "run", "--rm", runc_env.bb, "no-such-program")
    assert proc.returncode == 127, (proc.stdout, proc.stderr)
    assert "executable file not found" in proc.stderr


def test_detached_ps_exec_stop_rm(runc_env):
    env = runc_env
    proc = core(env, "run", "-d", "--name", "sleeper", env.bb, "sleep", "60")
    assert proc.returncode == 0, (proc.stdout, proc.stderr, env.daemon_log()[-3000:])
    cid = proc.stdout.strip()
    try:
        ps = core(env, "ps")
        assert "sleeper" in ps.stdout and cid[:12] in ps.stdout, ps.stdout
        # the container is runc's, in the driver's own runc root
        root = env.exec_root / "executor" / "runc" / "runc"
        listed = subprocess.run([RUNC, "--root", str(root), "list", "-q"],
                                capture_output=True, text=True).stdout.split()
        assert listed, "runc does not list the container"
        ex = core(env, "exec", "sleeper", "sh", "-c", "echo in-$(hostname); ps | grep -c sleep")
        assert ex.returncode == 0, (ex.stdout, ex.stderr)
        assert ex.stdout.startswith("in-"), ex.stdout
        assert core(env, "exec", "sleeper", "sh", "-c", "exit 5").returncode == 5
        top = core(env, "top", "sleeper")
        assert top.returncode == 0 and "sleep" in top.stdout, (top.stdout, top.stderr)
        assert core(env, "pause", "sleeper").returncode == 0
        assert "Paused" in core(env, "ps").stdout
        assert core(env, "unpause", "sleeper").returncode == 0
        stop = core(env, "stop", "-t", "1", "sleeper", timeout=60)
        assert stop.returncode == 0, (stop.stdout, stop.stderr)
        assert core(env, "ps", "-q").stdout.split() == []
        assert "Exited (137)" in core(env, "ps", "-a").stdout
    finally:
        rm = core(env, "rm", "-f", "sleeper")
    assert rm.returncode == 0, (rm.stdout, rm.stderr)
    assert core(env, "ps", "-aq").stdout.split() == []
    wait_for(lambda: not subprocess.run([RUNC, "--root", str(root), "list", "-q"],
                                        capture_output=True, text=True).stdout.split(),
             what="runc's state of the container to be deleted")
