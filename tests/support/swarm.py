"""Docker's words for ``swarm init`` and ``swarm join-token``, which core's CLI says with its own
name where docker says ``docker``: what the swarm CLI and cluster tests expect of either."""
from __future__ import annotations


def init_words(cli: str) -> str:
    """A pattern for ``<cli> swarm init``'s output; its groups are the node ID, the worker token
    and the manager's address."""
    return (r"Swarm initialized: current node \((\w{25})\) is now a manager\.\n\n"
            r"To add a worker to this swarm, run the following command:\n\n"
            rf"    {cli} swarm join --token (SWMTKN-1-\w{{50}}-\w{{25}}) ([\d.]+:2377)\n\n"
            rf"To add a manager to this swarm, run '{cli} swarm join-token manager' and "
            r"follow the instructions\.\n")


def manager_join_words(cli: str, token: str, address: str) -> str:
    """``<cli> swarm join-token manager``'s output."""
    return ("To add a manager to this swarm, run the following command:\n\n"
            f"    {cli} swarm join --token {token} {address}\n\n")


def cluster_with_raft_tick(shape: tuple[int, int], tick: float | str = 0.1):
    """A harness :class:`~tests.support.hosts.Cluster` of ``shape`` (managers, workers) whose
    daemons start with the Raft tick ``tick`` seconds (``CORE_SWARM_RAFT_TICK``: quick
    elections); the test process's own environment is left as it was.  The caller closes it."""
    import os

    from core.engine.swarm.service import RAFT_TICK_ENV
    from tests.support.hosts import Cluster

    old = os.environ.get(RAFT_TICK_ENV)
    os.environ[RAFT_TICK_ENV] = str(tick)
    try:
        return Cluster(*shape)
    finally:
        if old is None:
            del os.environ[RAFT_TICK_ENV]
        else:
            os.environ[RAFT_TICK_ENV] = old


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.25):
    """``check()``'s first truthy answer, asked every ``every`` seconds (an ``AssertionError``
    counts as not yet); after ``timeout`` seconds an ``AssertionError`` naming ``what`` and the
    last answer."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def core_ok(host, *args: str, code: int = 0, timeout: float = 120) -> str:
    """``core *args`` on a harness host, which must exit ``code``: its stdout (its stderr for
    a wanted failure); else an assertion with both and the end of the host's daemon log."""
    proc = host.core(*args, timeout=timeout)
    assert proc.returncode == code, (f"[{host.name}] core {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n"
                                     f"{proc.stderr}\n{host.log()[-3000:]}")
    return proc.stdout if code == 0 else proc.stderr


def with_store(host, fn):
    """``await fn(Store)`` on the host's etcd member (its client socket), from synchronous code."""
    import trio

    from core.engine.swarm.etcd import CLIENT_SOCKET_NAME, EtcdClient
    from core.engine.swarm.store import Store

    async def main():
        async with EtcdClient(host.data_root / "swarm" / CLIENT_SOCKET_NAME, timeout=10) as etcd:
            return await fn(Store(etcd))
    return trio.run(main)


def cluster_fixture(shape: tuple[int, int], tick: float | str = 0.1):
    """A module-scoped ``cluster`` fixture: :func:`cluster_with_raft_tick`, closed after the module."""
    import pytest

    @pytest.fixture(scope="module")
    def cluster():
        c = cluster_with_raft_tick(shape, tick)
        try:
            yield c
        finally:
            c.close()
    return cluster
