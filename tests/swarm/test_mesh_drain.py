"""The routing mesh's local rules, without a cluster: the node's task runner drains a task on a
swarm network before it stops it (out of the balancing sets first, as docker's
``controller.Shutdown`` waits ``defaultGossipConvergeDelay``), and a published port something
else holds on the node is seen as taken (:func:`core.engine.networks.mesh.port_free`).  The
harness tests are tests/swarm/test_swarm_mesh_continuity.py."""
from __future__ import annotations

import socket
from typing import Any

import trio
import trio.testing

from core.engine.networks.mesh import port_free
from core.engine.swarm.worker import TASK_ID_LABEL, Worker


class Containers:
    """The engine's containers as the worker uses them: one running container per task."""

    def __init__(self, tasks: list[str]) -> None:
        self.running = {f"c-{t}": t for t in tasks}
        self.stopped_at: dict[str, float] = {}

    async def list(self, filters: dict[str, Any], all_: bool = False) -> list[dict[str, Any]]:
        return [{"Id": cid, "Labels": {TASK_ID_LABEL: t}} for cid, t in self.running.items()]

    async def inspect(self, cid: str) -> dict[str, Any]:
        return {"Id": cid, "Config": {}, "State": {"Running": cid not in self.stopped_at, "Pid": 7,
                                                   "ExitCode": 0}}

    async def stop(self, cid: str, timeout: int) -> None:
        self.stopped_at[cid] = trio.current_time()

    async def remove(self, cid: str, force: bool = False) -> None:
        self.running.pop(cid, None)


class Events:
    def subscribe(self, filters: dict[str, Any]) -> Any:
        class Never:
            def __aiter__(self):
                return self

            async def __anext__(self):
                await trio.sleep_forever()

            async def aclose(self):
                pass
        return Never()


def task(tid: str, desired: str, networks: bool) -> dict[str, Any]:
    return {"ID": tid, "NodeID": "n1", "ServiceID": "s1", "DesiredState": desired, "Slot": 1,
            "Status": {"State": "running"}, "Spec": {"ContainerSpec": {"Image": "busybox"}},
            "ServiceAnnotations": {"Name": "web"},
            "NetworksAttachments": [{"Network": {"ID": "ingress"}, "Addresses": ["10.0.0.5/24"]}]
            if networks else []}


def test_a_task_on_a_swarm_network_is_drained_before_its_stop():
    reports: list[dict[str, Any]] = []

    async def call(name: str, **args: Any) -> dict[str, Any]:
        reports.extend(args.get("updates") or [])
        return {}

    async def main() -> None:
        containers = Containers(["meshed", "plain"])
        worker = Worker(containers=containers, images=None, events=Events(), call=call,  # type: ignore[arg-type]
                        node=lambda: {"ID": "n1"}, drivers=dict, drain=2.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await worker.on_update({"assignments": [task("meshed", "running", True),
                                                    task("plain", "running", False)]})
            await trio.sleep(1)
            told = trio.current_time()
            await worker.on_update({"assignments": [task("meshed", "shutdown", True),
                                                    task("plain", "shutdown", False)]})
            await trio.sleep(5)
            assert containers.stopped_at["c-plain"] - told < 0.5         # nothing to drain
            assert containers.stopped_at["c-meshed"] - told >= 2.0       # out of the sets first
            states = {(r["ID"], r["Status"]["State"]) for r in reports}
            assert ("meshed", "shutdown") in states and ("plain", "shutdown") in states
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_port_free_sees_a_listener_and_a_bound_udp_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.listen(1)
        assert not port_free("tcp", port)
    assert port_free("tcp", port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("0.0.0.0", 0))
        port = udp.getsockname()[1]
        assert not port_free("udp", port)
    assert port_free("udp", port)


def test_the_drain_from_the_environment(monkeypatch):
    from core.engine.swarm.worker import DRAIN, DRAIN_ENV, drain_seconds

    assert drain_seconds() == DRAIN == 2.0
    monkeypatch.setenv(DRAIN_ENV, "0")
    assert drain_seconds() == 0.0
    for bad in ("soon", "-1", "1e9"):
        monkeypatch.setenv(DRAIN_ENV, bad)
        assert drain_seconds() == DRAIN
