"""``core service ...``: the requests the commands send and their output, side by side with
docker's own CLI against one recorded Engine API (no daemon; the commands on a real swarm are
tests/swarm/test_services_api.py's)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from core.cli.cmd_service import parse_publish, ports_text

SERVICE_ID = "z7ovearqmruwk0u2vc5o7ql0p"
IMAGE = "registry.example:5000/web:1"


def _zero_free(v):
    """A request body without Go's zero values (docker's CLI sends them, core's leaves them out)."""
    if isinstance(v, dict):
        v = {k: _zero_free(x) for k, x in v.items()}
        return {k: x for k, x in v.items() if x not in ("", 0, False, None, {}, [])}
    if isinstance(v, list):
        return [_zero_free(x) for x in v]
    return v


def service(spec: dict) -> dict:
    return {"ID": SERVICE_ID, "Version": {"Index": 42}, "CreatedAt": "2026-12-07T12:00:00Z",
            "UpdatedAt": "2026-12-07T12:00:00Z", "Spec": spec, "Endpoint": {"Spec": {}}}


SPEC = {"Name": "web", "Labels": {"a": "b"},
        "TaskTemplate": {"ContainerSpec": {"Image": IMAGE, "Env": ["X=1", "Y=2"], "Init": False,
                                           "StopGracePeriod": 10_000_000_000},
                         "Resources": {"Limits": {}, "Reservations": {}},
                         "RestartPolicy": {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0},
                         "Placement": {"Constraints": ["node.role==worker"]}, "ForceUpdate": 0},
        "Mode": {"Replicated": {"Replicas": 2}},
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000,
                         "MaxFailureRatio": 0, "Order": "stop-first"},
        "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000,
                           "MaxFailureRatio": 0, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                                                   "PublishMode": "ingress"}]}}


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    """An Engine API on a unix socket that answers from a table and records what it is asked."""
    import os
    import socketserver
    import threading
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlsplit

    answers = {("POST", "/services/create"): {"ID": SERVICE_ID, "Warnings": None},
               ("GET", "/services/web"): service(SPEC), ("GET", f"/services/{SERVICE_ID}"): service(SPEC),
               ("POST", f"/services/{SERVICE_ID}/update"): {"Warnings": None},
               ("GET", "/info"): {"Swarm": {"NodeID": "n1", "LocalNodeState": "active", "ControlAvailable": True}}}
    calls = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _serve(self):
            url = urlsplit(self.path)
            path = url.path
            if path.startswith("/v1."):
                path = "/" + path.split("/", 2)[2]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if path != "/_ping":
                query = {k: v for k, v in parse_qs(url.query).items()}
                calls.append((self.command, path, query, _zero_free(json.loads(body)) if body else None))
            answer = answers.get((self.command, path))
            data = b"OK" if path == "/_ping" else json.dumps(answer).encode() if answer is not None else b""
            self.send_response(200)
            self.send_header("Api-Version", "1.47")
            self.send_header("Content-Type", "text/plain" if path == "/_ping" else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_HEAD = _serve

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    root = tmp_path_factory.mktemp("api")
    server = Server(str(root / "api.sock"), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = dict(os.environ, DOCKER_HOST=f"unix://{root}/api.sock", CORE_HOST=f"unix://{root}/api.sock",
               DOCKER_CONFIG=str(root / "docker-config"), CORE_NO_AUTOSTART="1", DOCKER_CLI_HINTS="false")
    try:
        yield env, calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI here")
@pytest.mark.parametrize("argv", [
    f"service create -d --no-resolve-image --name web --replicas 2 -p 8080:80 -e X=1 --label a=b {IMAGE}",
    f"service create -d --no-resolve-image --mode global --constraint node.role==worker --placement-pref "
    f"spread=node.labels.dc --limit-cpu 0.5 --limit-memory 64m --reserve-cpu 0.25 --reserve-memory 32m "
    f"--restart-condition on-failure --restart-delay 3s --restart-max-attempts 4 --restart-window 1m "
    f"--update-parallelism 2 --update-delay 20s --update-failure-action rollback --update-monitor 10s "
    f"--update-max-failure-ratio 0.2 --update-order start-first --rollback-parallelism 3 "
    f"--rollback-failure-action continue --health-cmd true --health-interval 5s --health-retries 2 "
    f"--stop-grace-period 3s --stop-signal SIGINT --hostname h --user nobody --workdir /tmp "
    f"--container-label c=d --mount type=volume,source=v,target=/data --entrypoint /bin/sh "
    f"-p published=9000,target=90,protocol=udp,mode=host {IMAGE} -c true",
    "service update -d --no-resolve-image --image other:2 --env-add Z=3 --env-rm X --label-add n=1 --label-rm a "
    "--constraint-add node.labels.x==y --constraint-rm node.role==worker --publish-add 9090:90 "
    "--publish-rm 80 --replicas 5 --force web",
    "service update -d --update-parallelism 2 --update-delay 20s web",
    "service scale -d web=7",
    "service rollback -d web",
    "service rm web",
])
def test_same_requests_as_the_docker_cli(recorder, argv):
    env, calls = recorder
    seen = {}
    for who, cmd in (("docker", ["docker"]), ("core", [sys.executable, "-m", "core"])):
        calls.clear()
        proc = subprocess.run(cmd + argv.split(), env=env, capture_output=True, text=True, timeout=60)
        seen[who] = (list(calls), proc.stdout, proc.returncode, proc.stderr)
    (docker_calls, docker_out, docker_rc, docker_err), (core_calls, core_out, core_rc, core_err) = \
        seen["docker"], seen["core"]
    assert (core_rc, docker_rc) == (0, 0), (core_err, docker_err)

    def calls(made):  # docker's CLI orders an updated env as a Go map does: at random
        out = []
        for method, path, query, body in made:
            env = (((body or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Env")
            if env:
                body["TaskTemplate"]["ContainerSpec"]["Env"] = sorted(env)
            if path != "/info":
                out.append((method, path, query, body))
        return out

    assert calls(core_calls) == calls(docker_calls)
    assert core_out == docker_out


@pytest.mark.parametrize("value,ports", [
    ("8080:80", [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]),
    ("53:53/udp", [{"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"}]),
    ("80", [{"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress"}]),
    ("8080-8081:80-81", [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
                         {"Protocol": "tcp", "TargetPort": 81, "PublishedPort": 8081, "PublishMode": "ingress"}]),
    ("published=8080,target=80,mode=host", [{"Protocol": "tcp", "PublishMode": "host", "PublishedPort": 8080,
                                             "TargetPort": 80}]),
])
def test_publish_values(value, ports):
    assert parse_publish(value) == ports


@pytest.mark.parametrize("value,message", [
    ("published=8080", "missing mandatory field 'target'"),
    ("target=80,mode=bridge", "invalid publish mode value (bridge): must be either 'ingress' or 'host'"),
    ("80/icmp", "invalid proto: icmp"),
])
def test_bad_publish_values(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_publish(value)


def test_ports_column_groups_ranges_as_dockers():
    def port(p, t, proto="tcp", mode="ingress"):
        return {"PublishedPort": p, "TargetPort": t, "Protocol": proto, "PublishMode": mode}

    assert ports_text([port(8080, 80), port(8081, 81), port(8082, 80), port(53, 53, "udp"),
                       port(9000, 90, mode="host")]) == "*:8080-8081->80-81/tcp, *:8082->80/tcp, *:53->53/udp"
    assert ports_text([port(80, 80), port(81, 80)]) == "*:80-81->80/tcp"
    assert ports_text(None) == ""
