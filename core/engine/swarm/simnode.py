"""Simulated swarm nodes for the scale simulation (``bench/swarm_scale.py``): light agents
that speak the real node protocol (:mod:`core.engine.swarm.tasks`) without running anything.

Each :class:`SimNode` joins with a token (the CA's ``ca.join`` call: a key, a CSR, a
certificate), opens its session with a manager (joins and sessions spread over the managers by
the node's name), heartbeats twice a period (the one the manager gives; a slow heartbeat is
tried again while the node is not yet down), and answers its assignments at once: a task to
run is reported ``running``, a task wanted stopped ``shutdown`` (through ``tasks.status``,
gathered).  No container, no image.  Many run in one process, each a trio task with three
connections (its session stream, its heartbeats, its reports: as the real agent), one TLS
context per node.

    python -m core.engine.swarm.simnode --token SWMTKN-... --managers 10.0.0.1:2377,... \\
        --count 100 --prefix sim0- [--stats FILE]

``--stats`` is rewritten every second with the process's figures (JSON): nodes joined and
in session, calls made per manager address, task states reported.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import resource
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from core import errors
from core.engine.swarm import nodes as swarm_nodes
from core.engine.swarm import tasks as swarm_tasks
from core.engine.swarm import transport
from core.engine.swarm.ca import NodeCredentials
from core.engine.swarm.dispatcher import BEATS_PER_PERIOD, down_after

log = logging.getLogger("core.swarm.simnode")

RETRY = 1.0
MAX_BACKOFF = 16.0
REPORT_DELAY = 0.2


class Stats:
    """What one process of simulated nodes did (shared by its nodes)."""

    def __init__(self) -> None:
        self.joined = 0
        self.in_session = 0
        self.calls: Counter[str] = Counter()   # manager address -> calls made
        self.reported = 0                      # task states reported
        self.errors = 0
        self.why: Counter[str] = Counter()     # what ended sessions (the error's first words)

    def failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.why[f"{what}: {type(exc).__name__}: {' '.join(str(exc).split()[:6])}"] += 1

    nodes: list[SimNode]

    def to_json(self) -> dict[str, Any]:
        nodes = getattr(self, "nodes", [])
        return {"joined": self.joined, "in_session": self.in_session, "calls": dict(self.calls),
                "reported": self.reported, "errors": self.errors,
                "why": dict(self.why.most_common(8)),
                "tasks": sum(len(n.states) for n in nodes),
                "running": sum(1 for n in nodes for s in n.states.values() if s == "running"),
                "pending": sum(len(n._pending) for n in nodes)}


class SimNode:
    """One simulated node (see the module docstring)."""

    def __init__(self, credentials: NodeCredentials, managers: list[str], hostname: str,
                 stats: Stats, *, cpus: int = 2, memory: int = 4 << 30) -> None:
        self.credentials = credentials
        self.managers = list(managers)
        self.hostname = hostname
        self.stats = stats
        self.description = swarm_nodes.local_description(hostname, "sim", cpus, memory)
        self.states: dict[str, str] = {}      # task ID -> the state known to the managers
        self._pending: dict[str, dict[str, Any]] = {}
        self._wake = trio.Event()
        self._start = hash(hostname) % len(self.managers)
        self._clients: dict[tuple[str, str], transport.ManagerClient] = {}  # (address, role) -> client
        self.beats = 0  # heartbeats answered (a session that got some was a good one)

    @property
    def node_id(self) -> str:
        return self.credentials.identity.node_id

    @classmethod
    async def join(cls, managers: list[str], token: str, hostname: str, stats: Stats) -> SimNode:
        # the joins spread over the managers as the sessions are (not all at the first one)
        start = hash(hostname) % len(managers)
        creds = await transport.join(managers[start:] + managers[:start], token)
        stats.joined += 1
        return cls(creds, managers, hostname, stats)

    async def run(self) -> None:
        """Keep a session for ever (failing over between the managers)."""
        n = 0
        backoff = RETRY
        while True:
            address = self.managers[(self._start + n) % len(self.managers)]
            beats = self.beats
            try:
                await self._session(address)
            except (errors.CoreError, trio.TooSlowError, OSError, StopAsyncIteration,
                    trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # (a connection the manager dropped while the session was being asked for)
                log.debug("%s: session with %s ended: %s", self.hostname, address, exc)
                self.stats.failed("session", exc)
            n += 1
            # backed off, with jitter, like docker's agent: a thousand nodes retrying in step
            # would keep overloaded managers overloaded
            backoff = RETRY if self.beats > beats else min(backoff * 2, MAX_BACKOFF)
            await trio.sleep(backoff * random.uniform(0.5, 1.5))

    def _client(self, address: str, role: str = "reports") -> transport.ManagerClient:
        """The client for ``role`` (the session's stream, its heartbeats, the reports) to
        ``address``, kept across sessions: one TLS context per node (building one writes and
        reads files: a process of a hundred nodes opening sessions again spent its time there,
        its heartbeats late), and the reports' connection kept open."""
        client = self._clients.get((address, role))
        if client is None:
            like = next(iter(self._clients.values()), None)
            client = self._clients[(address, role)] = transport.ManagerClient(
                self.credentials, [address], like=like)
        return client

    async def _session(self, address: str) -> None:
        # the session stream and the heartbeats on connections of their own, as the real
        # agent's (a slow report never holds a heartbeat back); the reports' one is kept
        opener = self._client(address, "session")
        beat = self._client(address, "heartbeat")
        try:
            async with opener.stream("session", description=self.description) as items:
                it = items.__aiter__()
                with trio.fail_after(opener.timeout * 2):
                    first = await it.__anext__()
                self.stats.calls[address] += 1
                self.stats.in_session += 1
                try:
                    session_id, period = first["session_id"], float(first.get("period") or 5.0)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._heartbeats, beat, address, session_id, period,
                                           nursery.cancel_scope)
                        nursery.start_soon(self._reporter, self._client(address), address)
                        self._assigned(first)
                        async for item in it:
                            if isinstance(item, dict):
                                self._assigned(item)
                        nursery.cancel_scope.cancel()
                finally:
                    self.stats.in_session -= 1
        finally:
            await beat.aclose()
            await opener.aclose()

    async def _heartbeats(self, client: transport.ManagerClient, address: str, session_id: str,
                          period: float, scope: trio.CancelScope) -> None:
        last = trio.current_time()  # the last heartbeat answered (the session's start)
        while True:
            # twice a period, a little early at random, as the real agent beats
            # (core.engine.swarm.dispatcher.Agent; a node is down after 1.5 periods)
            await trio.sleep(period / BEATS_PER_PERIOD * random.uniform(0.8, 1.0))
            while True:
                try:
                    with trio.fail_after(max(1.0, last + down_after(period) - trio.current_time())):
                        answer = await client.call("heartbeat", session_id=session_id)
                    break
                except (errors.CoreError, trio.TooSlowError, OSError) as exc:
                    self.stats.failed("heartbeat", exc)
                    if isinstance(exc, errors.NotFound) or \
                            trio.current_time() - last >= down_after(period):
                        scope.cancel()  # the session is gone (or the node is down by now)
                        return
                    # one slow heartbeat (a busy manager): again, while the node is not down
                    await trio.sleep(0.2)
            last = trio.current_time()
            self.stats.calls[address] += 1
            self.beats += 1
            period = float(answer.get("period") or period)

    def _assigned(self, item: dict[str, Any]) -> None:
        tasks = item.get("assignments")
        if not isinstance(tasks, list):
            return
        seen = set()
        for task in tasks:
            task_id = task.get("ID")
            if not task_id:
                continue
            seen.add(task_id)
            theirs = task.get("Status", {}).get("State", "assigned")
            known = self.states.get(task_id) or theirs
            self.states[task_id] = known
            if swarm_tasks.advances(theirs, known) and task_id not in self._pending:
                # a report lost with a session: the managers are told again
                self._pending[task_id] = swarm_tasks.status(known, known)
                self._wake.set()
            if known in swarm_tasks.TERMINAL:
                continue
            desired = task.get("DesiredState", "running")
            if swarm_tasks.ORDER.get(desired, 0) > swarm_tasks.ORDER["running"]:
                self._report(task_id, "shutdown", "shutdown")
            elif known != "running":
                self._report(task_id, "running", "started")
        for task_id in [t for t in self.states if t not in seen]:
            del self.states[task_id]

    def _report(self, task_id: str, state: str, message: str) -> None:
        if not swarm_tasks.advances(self.states.get(task_id, ""), state):
            return
        self.states[task_id] = state
        self._pending[task_id] = swarm_tasks.status(state, message)
        self._wake.set()

    async def _reporter(self, client: transport.ManagerClient, address: str) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(REPORT_DELAY)
            self._wake = trio.Event()
            batch, self._pending = self._pending, {}
            if not batch:
                continue
            try:
                await client.call("tasks.status", updates=[{"ID": i, "Status": s} for i, s in batch.items()])
            except BaseException as exc:  # an error, or the session's end: sent again later
                for task_id, status in batch.items():
                    self._pending.setdefault(task_id, status)
                self._wake.set()
                if not isinstance(exc, (errors.CoreError, trio.TooSlowError, OSError)):
                    raise
                self.stats.failed("report", exc)
                await trio.sleep(RETRY)
                continue
            self.stats.calls[address] += 1
            self.stats.reported += len(batch)


async def run_many(managers: list[str], token: str, count: int, prefix: str, *,
                   stats_file: Path | None = None, join_concurrency: int = 8) -> None:
    """``count`` simulated nodes named ``<prefix><i>``, joined ``join_concurrency`` at a time."""
    stats = Stats()
    stats.nodes = []
    limit = trio.CapacityLimiter(join_concurrency)

    async def one(i: int) -> None:
        async with limit:
            while True:
                try:
                    node = await SimNode.join(managers, token, f"{prefix}{i}", stats)
                    break
                except (errors.Unavailable, trio.TooSlowError, OSError) as exc:
                    log.info("%s%d: join: %s; again", prefix, i, exc)
                    stats.failed("join", exc)
                    await trio.sleep(RETRY * random.uniform(1, 4))
        stats.nodes.append(node)
        await node.run()

    async def write_stats() -> None:
        while True:
            if stats_file is not None:
                tmp = stats_file.with_name(stats_file.name + ".tmp")
                tmp.write_text(json.dumps(stats.to_json()))
                tmp.replace(stats_file)
            await trio.sleep(1.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_stats)
        for i in range(count):
            nursery.start_soon(one, i)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.engine.swarm.simnode", description=__doc__.split("\n\n")[0])
    p.add_argument("--token", required=True)
    p.add_argument("--managers", required=True, help="comma-separated manager addresses (host:port)")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--prefix", default="sim-")
    p.add_argument("--stats", type=Path)
    p.add_argument("--join-concurrency", type=int, default=8)
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("CORE_SIMNODE_LOG", "WARNING"),
                        format="%(asctime)s %(name)s %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.count * 4 + 64))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    managers = [m.strip() for m in args.managers.split(",") if m.strip()]
    if not managers or args.count < 1:
        print("simnode: --managers and a positive --count are required", file=sys.stderr)
        return 2
    try:
        trio.run(functools.partial(run_many, managers, args.token, args.count, args.prefix,
                                   stats_file=args.stats, join_concurrency=args.join_concurrency))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
