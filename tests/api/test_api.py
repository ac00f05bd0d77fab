"""The HTTP API's routing: route tables, and what a docker client gets for endpoints core lacks."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import trio

from core.api import unimplemented
from core.api.http import Request, Response, Route, Router, json_response
from tests.kernel.test_kernel import raw_http, split_response

# every endpoint of docker-engine-api-v1.47.yaml (its ``paths:``), as METHOD PATH
SPEC_ENDPOINTS = """
GET /containers/json; POST /containers/create; GET /containers/{id}/json;
GET /containers/{id}/top; GET /containers/{id}/logs; GET /containers/{id}/changes;
GET /containers/{id}/export; GET /containers/{id}/stats; POST /containers/{id}/resize;
POST /containers/{id}/start; POST /containers/{id}/stop; POST /containers/{id}/restart;
POST /containers/{id}/kill; POST /containers/{id}/update; POST /containers/{id}/rename;
POST /containers/{id}/pause; POST /containers/{id}/unpause; POST /containers/{id}/attach;
GET /containers/{id}/attach/ws; POST /containers/{id}/wait; DELETE /containers/{id};
HEAD /containers/{id}/archive; GET /containers/{id}/archive; PUT /containers/{id}/archive;
POST /containers/prune; GET /images/json; POST /build; POST /build/prune; POST /images/create;
GET /images/{name}/json; GET /images/{name}/history; POST /images/{name}/push;
POST /images/{name}/tag; DELETE /images/{name}; GET /images/search; POST /images/prune;
POST /auth; GET /info; GET /version; GET /_ping; HEAD /_ping; POST /commit; GET /events;
GET /system/df; GET /images/{name}/get; GET /images/get; POST /images/load;
POST /containers/{id}/exec; POST /exec/{id}/start; POST /exec/{id}/resize; GET /exec/{id}/json;
GET /volumes; POST /volumes/create; GET /volumes/{name}; PUT /volumes/{name};
DELETE /volumes/{name}; POST /volumes/prune; GET /networks; GET /networks/{id};
DELETE /networks/{id}; POST /networks/create; POST /networks/{id}/connect;
POST /networks/{id}/disconnect; POST /networks/prune; GET /plugins; GET /plugins/privileges;
POST /plugins/pull; GET /plugins/{name}/json; DELETE /plugins/{name};
POST /plugins/{name}/enable; POST /plugins/{name}/disable; POST /plugins/{name}/upgrade;
POST /plugins/create; POST /plugins/{name}/push; POST /plugins/{name}/set; GET /nodes;
GET /nodes/{id}; DELETE /nodes/{id}; POST /nodes/{id}/update; GET /swarm; POST /swarm/init;
POST /swarm/join; POST /swarm/leave; POST /swarm/update; GET /swarm/unlockkey;
POST /swarm/unlock; GET /services; POST /services/create; GET /services/{id};
DELETE /services/{id}; POST /services/{id}/update; GET /services/{id}/logs; GET /tasks;
GET /tasks/{id}; GET /tasks/{id}/logs; GET /secrets; POST /secrets/create; GET /secrets/{id};
DELETE /secrets/{id}; POST /secrets/{id}/update; GET /configs; POST /configs/create;
GET /configs/{id}; DELETE /configs/{id}; POST /configs/{id}/update;
GET /distribution/{name}/json; POST /session
"""


def spec_endpoints() -> list[tuple[str, str]]:
    return [tuple(item.split()) for item in SPEC_ENDPOINTS.replace("\n", " ").split(";") if item.strip()]  # type: ignore[misc]


def concrete(path: str) -> str:
    return re.sub(r"\{\w+(:path)?\}", "x", path)


@pytest.fixture(scope="module")
def daemon_router():
    from core.daemon.app import Daemon
    from core.daemon.config import DaemonConfig

    root = Path(tempfile.mkdtemp(prefix=f"core-test-api-{os.getpid()}-"))
    daemon = Daemon(DaemonConfig(data_root=root / "data", exec_root=root / "run"))
    try:
        daemon.open()   # every service built, every route registered
        yield daemon.router
    finally:
        trio.run(daemon.aclose)
        shutil.rmtree(root, ignore_errors=True)


# -- the route table -----------------------------------------------------------------------------

def test_route_tables_call_handlers_with_their_services():
    async def show(req: Request, services: dict) -> Response:
        return json_response({"services": services["name"], "params": req.params})

    router = Router()
    router.include([("GET", "/things/{name:path}/json", show), Route("PUT", "/things/{id}", show, stream_body=True)],
                   {"name": "svc"})
    handler, params = router.resolve("GET", "/things/a/b/json")
    assert params == {"name": "a/b"}
    response = trio.run(handler, Request(method="GET", path="/things/a/b/json", query={}, headers={}, params=params))
    assert json.loads(response.body) == {"services": "svc", "params": {"name": "a/b"}}
    assert router.resolve("HEAD", "/things/a/json")[0] is not None  # HEAD is answered by GET
    assert router.streams_body("PUT", "/things/1") and not router.streams_body("GET", "/things/1/json")
    assert router.resolve("DELETE", "/things/1") == (None, {})


def test_every_endpoint_of_the_spec_is_served_or_answered(daemon_router):
    endpoints = spec_endpoints()
    assert len(endpoints) > 100
    missing = [e for e in endpoints if daemon_router.resolve(e[0], concrete(e[1]))[0] is None]
    assert missing == []


def test_the_unimplemented_table_shadows_no_served_route(daemon_router):
    answers = {id(handler) for _m, _p, handler in unimplemented.ROUTES}
    spec = set(spec_endpoints())
    for method, path, handler in unimplemented.ROUTES:
        assert (method, path.replace(":path", "")) in spec, f"{method} {path} is not in the spec"
        found, _params = daemon_router.resolve(method, concrete(path))
        assert id(found.__wrapped__) in answers, f"{method} {path} is served: it must leave the table"


# -- what a client gets ----------------------------------------------------------------------------

def ask(core, method: str, path: str) -> tuple[int, dict]:
    raw = raw_http(core.socket, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                f"Content-Length: 0\r\n\r\n".encode())
    status, headers, body = split_response(raw)
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)


@pytest.mark.parametrize("method,path", [("GET", "/v1.47/nothing/here"), ("POST", "/v1.47/containers/json"),
                                         ("GET", "/images")])
def test_unknown_routes_answer_docker_404(shared_core, method, path):
    # moby's router answers a known path asked with another method the same way (no 405)
    assert ask(shared_core, method, path) == (404, {"message": "page not found"})


@pytest.mark.parametrize("method,path", unimplemented.NOT_IMPLEMENTED)
def test_unimplemented_endpoints_answer_501_naming_themselves(shared_core, method, path):
    status, body = ask(shared_core, method, "/v1.47" + concrete(path))
    assert status == 501
    assert body["message"] == f"{method} {path.replace(':path', '')} is not implemented yet"


@pytest.mark.parametrize("method,path,status,message", unimplemented.SWARM)
def test_swarm_endpoints_answer_as_a_node_outside_a_swarm(shared_core, method, path, status, message):
    assert ask(shared_core, method, concrete(path)) == (status, {"message": message})


def test_docker_sdk_sees_no_swarm(shared_core):
    import docker

    client = shared_core.docker_client()
    try:
        assert client.swarm.attrs == {}  # docker-py takes 503 on GET /swarm as "not in a swarm"
        with pytest.raises(docker.errors.APIError) as inspect:
            client.api.inspect_swarm()
        assert inspect.value.status_code == 503
        assert inspect.value.explanation == unimplemented.NOT_A_MANAGER
        with pytest.raises(docker.errors.APIError) as nodes:
            client.nodes.list()
        assert nodes.value.status_code == 503 and "not a swarm manager" in nodes.value.explanation
        with pytest.raises(docker.errors.APIError) as leave:
            client.swarm.leave()
        assert leave.value.status_code == 503
        assert leave.value.explanation == "This node is not part of a swarm"
        with pytest.raises(docker.errors.APIError) as search:
            client.images.search("busybox")
        assert search.value.status_code == 501 and "GET /images/search" in search.value.explanation
    finally:
        client.close()


# -- the event stream (core.engine.events) -----------------------------------------------------------

def test_event_subscriptions_start_when_made_and_filter():
    import time

    from core.engine.events import Events
    from core.engine.interfaces import EventSink

    assert isinstance(Events(), EventSink)

    async def main() -> None:
        events = Events()
        events.emit("image", "pull", "alpine:latest", {"name": "alpine:latest"})
        before = events.subscribe(since=time.time() - 60, filters={"type": ["container"]})
        live = events.subscribe(filters={"event": ["die"]})  # from now: misses the pull
        events.emit("container", "die", "abc", {"name": "web", "image": "alpine"})
        events.emit("container", "start", "def", {"name": "db", "image": "alpine"})
        async with before, live:
            with trio.fail_after(5):
                got = [e async for e in _take(before, 2)]
                assert [(e["Action"], e["Actor"]["ID"]) for e in got] == [("die", "abc"), ("start", "def")]
                assert got[0]["status"] == "die" and got[0]["from"] == "alpine"  # docker's old fields
                assert [e["Actor"]["ID"] async for e in _take(live, 1)] == ["abc"]
        # closed subscriptions are no longer fed
        events.emit("container", "die", "ghi", {})
        assert [e async for e in events.subscribe(since=time.time() - 60, until=time.time() - 30)] == []

    trio.run(main)


def test_an_event_subscription_ends_at_until_and_a_stalled_one_is_dropped():
    import time

    from core.engine import events as events_mod

    async def main() -> None:
        events = events_mod.Events()
        ending = events.subscribe(until=time.time() + 0.2)
        stalled = events.subscribe()
        for i in range(events_mod.BUFFER + 1):
            events.emit("volume", "create", f"v{i}", {})
        with trio.fail_after(5):
            assert len([e async for e in ending]) == events_mod.BUFFER  # then it was dropped too
            assert len([e async for e in stalled]) == events_mod.BUFFER
        await ending.aclose()
        await stalled.aclose()

    trio.run(main)


async def _take(iterator, n):
    async for item in iterator:
        yield item
        n -= 1
        if n == 0:
            return


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_prints_the_daemons_answers(shared_core):
    import subprocess

    nodes = subprocess.run(["docker", "node", "ls"], env=shared_core.env, capture_output=True, text=True, timeout=60)
    assert (nodes.returncode, nodes.stderr) == (1, f"Error response from daemon: {unimplemented.NOT_A_MANAGER}\n")
    search = subprocess.run(["docker", "search", "busybox"], env=shared_core.env, capture_output=True, text=True,
                            timeout=60)
    assert (search.returncode, search.stderr) == (1, "Error response from daemon: GET /images/search is not "
                                                     "implemented yet\n")
