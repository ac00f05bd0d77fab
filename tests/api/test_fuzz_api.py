"""The daemon's front door: HTTP conformance (docker's headers, reason phrases, 505, chunk
sizes, backlog, error logging), request validation (:mod:`core.api.validate`), the request
shapes a fuzzer once turned into ``500 internal error``, and a bounded, seeded fuzz of every
route of the router asserting no 5xx and no traceback in the daemon log.

The fuzz is deterministic: ``CORE_FUZZ_SEED`` and ``CORE_FUZZ_EXAMPLES`` (requests per route)
change it, ``CORE_FUZZ_SECONDS`` bounds each fuzz test's time (``CORE_FUZZ_SHOW=1`` prints
the well-typed fuzz's answers, with ``-s``).  It never reaches a registry: the routes that would (pull, push, distribution) are
left out, and network creation is only sent bodies validation refuses, so no bridge is made.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from core.api import services as services_api
from core.api import swarm as swarm_api
from core.api import unimplemented, validate
from core.errors import InvalidArgument
from tests.conftest import CoreEnv
from tests.api.test_api import daemon_router  # noqa: F401  (the fixture)

docker = pytest.importorskip("docker")


# -- a raw client ---------------------------------------------------------------------------------

def send(env: CoreEnv, data: bytes, timeout: float = 10.0, shut: bool = True) -> bytes:
    """``data`` on a fresh connection; what comes back until the daemon closes it, within
    ``timeout`` seconds (else ``TimeoutError``: a stream that goes on, say)."""
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(env.socket))
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no end of the answer within {timeout} s: {out[:200]!r}")
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def parse(raw: bytes) -> tuple[str, int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], int(lines[0].split()[1]), headers, body


def request(env: CoreEnv, method: str, target: str, body: bytes = b"", headers: dict | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    h = {"Host": "docker", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    if body and "Content-Type" not in h:
        h["Content-Type"] = "application/json"
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    _line, status, headers_out, out = parse(send(env, head.encode("latin-1") + body, timeout))
    return status, headers_out, out


def message(body: bytes) -> str:
    return json.loads(body)["message"]


@pytest.fixture(scope="module")
def bare():
    """A daemon with ``-D`` and no images: the HTTP layer and validation."""
    env = CoreEnv()
    try:
        env.start_daemon("-D")
        yield env
    finally:
        env.cleanup()


@contextlib.contextmanager
def busybox_daemon(test_images) -> Iterator[tuple[CoreEnv, Any]]:
    """A daemon of its own with the registry's busybox pulled (``env.image``) and a docker SDK
    client on it; its containers are removed, the client closed and the daemon cleaned up at the end."""
    env = CoreEnv()
    client = None
    try:
        env.start_daemon()
        env.image = test_images["busybox:latest"].reference
        proc = env.run("pull", env.image, timeout=300)
        assert proc.returncode == 0, proc.stderr
        client = env.docker_client()
        yield env, client
    finally:
        if client is not None:
            for c in client.containers.list(all=True, ignore_removed=True):
                try:
                    c.remove(force=True, v=True)
                except docker.errors.APIError:
                    pass
            client.close()
        env.cleanup()


@pytest.fixture(scope="module")
def busy(test_images):
    """A daemon with busybox and a running container ``runner`` (pids limit 4)."""
    with busybox_daemon(test_images) as (env, client):
        client.containers.run(env.image, ["sleep", "300"], name="runner", detach=True, pids_limit=4)
        yield env


# -- the type checks, without a daemon -----------------------------------------------------------

def test_keys_match_case_insensitively_and_take_the_apis_case():
    body = validate.check_body(validate.CONTAINER_CREATE, json.dumps({
        "image": "x", "CMD": "true", "hostconfig": {"networkmode": "none", "restartpolicy": {"name": "no"}},
        "Unknown": {"kept": 1}}).encode())
    assert body == {"Image": "x", "Cmd": "true", "HostConfig": {"NetworkMode": "none", "RestartPolicy": {"Name": "no"}},
                    "Unknown": {"kept": 1}}
    exec_body = validate.check_body(validate.EXEC_CONFIG, b'{"cmd": ["sh"], "detachKeys": "ctrl-x"}')
    assert exec_body == {"Cmd": ["sh"], "DetachKeys": "ctrl-x"}


def test_null_means_not_set():
    body = validate.check_body(validate.CONTAINER_CREATE, json.dumps({
        "Image": "x", "Entrypoint": None, "Env": ["A=1", None], "Labels": {"a": None},
        "HostConfig": None}).encode())
    assert body == {"Image": "x", "Env": ["A=1", ""], "Labels": {"a": ""}}
    assert validate.check_body(validate.CONTAINER_CREATE, b"null") == {}
    assert validate.check_body(validate.CONTAINER_CREATE, b"  ") == {}


@pytest.mark.parametrize("body,fragment", [
    ({"WorkingDir": 1}, "cannot unmarshal number into Go struct field WorkingDir of type string"),
    ({"Hostname": 1.5}, "cannot unmarshal number into Go struct field Hostname of type string"),
    ({"Domainname": True}, "cannot unmarshal bool into Go struct field Domainname of type string"),
    ({"Tty": "yes"}, "cannot unmarshal string into Go struct field Tty of type bool"),
    ({"Cmd": 5}, "Go struct field Cmd of type strslice.StrSlice"),
    ({"Cmd": ["a", 1]}, "Go struct field Cmd of type string"),
    ({"HostConfig": {"Memory": 2 ** 63}}, "number 9223372036854775808 into Go struct field HostConfig.Memory of type int64"),
    ({"HostConfig": {"Memory": -(2 ** 63) - 1}}, "HostConfig.Memory of type int64"),
    ({"HostConfig": {"Memory": 1.5}}, "number 1.5 into Go struct field HostConfig.Memory of type int64"),
    ({"HostConfig": {"BlkioWeight": 70000}}, "HostConfig.BlkioWeight of type uint16"),
    ({"HostConfig": {"PidsLimit": True}}, "cannot unmarshal bool into Go struct field HostConfig.PidsLimit of type int64"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 8080}]}}},
     "Go struct field HostConfig.PortBindings.80/tcp.HostPort of type string"),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "BindOptions": "x"}]}},
     "Go struct field HostConfig.Mounts.BindOptions of type mount.BindOptions"),
    ({"NetworkingConfig": {"EndpointsConfig": {"n": {"Aliases": "a"}}}},
     "Go struct field NetworkingConfig.EndpointsConfig.n.Aliases of type []string"),
    ({"Healthcheck": {"Retries": "3"}}, "Healthcheck.Retries of type int"),
    ({"ExposedPorts": {"80/tcp": 1}}, "ExposedPorts.80/tcp of type struct {}"),
])
def test_type_errors_name_the_field(body, fragment):
    with pytest.raises(InvalidArgument) as err:
        validate.check_body(validate.CONTAINER_CREATE, json.dumps(body).encode())
    assert fragment in err.value.message


def test_the_top_level_must_be_an_object():
    with pytest.raises(InvalidArgument, match="cannot unmarshal array into Go value of type container.CreateRequest"):
        validate.check_body(validate.CONTAINER_CREATE, b"[]")


def test_json_nesting_is_bounded():
    assert validate.loads("[" * validate.MAX_DEPTH + "]" * validate.MAX_DEPTH) is not None
    for depth in (validate.MAX_DEPTH + 1, 5000, 100_000):
        with pytest.raises(InvalidArgument, match="nested more than"):
            validate.loads("[" * depth + "]" * depth)
    with pytest.raises(InvalidArgument, match="nested more than"):
        validate.loads("[" * 100_000)


def test_every_schema_route_is_a_route_of_the_daemon(daemon_router):
    routes = set(daemon_router.routes())
    for route in validate.BODIES:
        assert route in routes, route
    for route in validate.QUERY_CHECKS:
        assert route == "*" or route in routes, route


# -- HTTP conformance ------------------------------------------------------------------------------

@pytest.mark.parametrize("method,target", [("GET", "/_ping"), ("GET", "/v1.47/version"), ("GET", "/nothing"),
                                           ("GET", "/v1.47/containers/nope/json"), ("GET", "/swarm"),
                                           ("POST", "/v1.47/build")])
def test_every_answer_has_dockers_headers_and_a_reason_phrase(bare, method, target):
    raw = send(bare, f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    line, status, headers, _body = parse(raw)
    assert headers["api-version"] == "1.47"
    assert headers["docker-experimental"] == "false"
    assert headers["ostype"] == "linux"
    assert headers["server"].startswith("core/")
    phrases = {200: "OK", 404: "Not Found", 501: "Not Implemented", 503: "Service Unavailable"}
    assert line == f"HTTP/1.1 {status} {phrases[status]}"
    assert raw.count(b"\r\nApi-Version:") == 1   # /_ping sets its own: not sent twice


def test_the_docker_sdk_sees_the_version_headers(bare):
    client = bare.docker_client()
    try:
        response = client.api.get(client.api._url("/info"))
        assert response.status_code == 200 and response.reason == "OK"
        assert response.headers["Api-Version"] == "1.47" and response.headers["Ostype"] == "linux"
        with pytest.raises(docker.errors.NotFound) as err:
            client.containers.get("nope")
        assert err.value.response.headers["Docker-Experimental"] == "false"
    finally:
        client.close()


@pytest.mark.parametrize("line", [b"GET /_ping HTTP/2.0", b"PRI * HTTP/2.0", b"GET /_ping HTTP/3.0"])
def test_other_http_versions_are_505(bare, line):
    raw = send(bare, line + b"\r\nHost: x\r\n\r\n" + (b"SM\r\n\r\n" if line.startswith(b"PRI") else b""))
    status_line, status, headers, body = parse(raw)
    assert status_line == "HTTP/1.1 505 HTTP Version Not Supported"
    assert message(body) == "unsupported protocol version"


@pytest.mark.parametrize("route", ["/v1.47/containers/create", "/v1.47/containers/runner/archive?path=/tmp"])
@pytest.mark.parametrize("size", [b"zz", b"-1", b"f" * 24, b"fffffff"])
def test_an_impossible_chunk_size_is_400_at_once(busy, route, size):
    """The client keeps the connection open (as one waiting for its answer does): the answer
    must come without waiting for the body the chunk announced.  ``docker cp``'s upload (a
    streamed body, of any size) is read by its handler: it answers the same."""
    method = "PUT" if "archive" in route else "POST"
    if size == b"fffffff" and method == "PUT":
        size = b"f" * 17   # a streamed body takes any int64 size: this is past it
    head = f"{method} {route} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    started = time.monotonic()
    raw = send(busy, head + size + b"\r\nabc", timeout=5, shut=False)
    _line, status, _headers, body = parse(raw)
    assert status == 400, raw[:300]
    assert "chunk" in message(body)
    assert time.monotonic() - started < 4


def test_the_listen_backlog_is_somaxconn(bare):
    out = subprocess.run(["ss", "-xlnH"], capture_output=True, text=True, check=True).stdout
    mine = [line.split() for line in out.splitlines() if str(bare.socket) in line]
    assert mine, out
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    assert int(mine[0][3]) == somaxconn   # Send-Q of a listening socket: its backlog


def test_the_daemon_log_records_errors_and_with_debug_every_request(bare):
    request(bare, "GET", "/v1.47/containers/no-such-thing/json")
    request(bare, "GET", "/v1.47/version")
    send(bare, b"GET /_ping HTTP/2.0\r\nHost: x\r\n\r\n")
    log = bare.daemon_log()
    assert "Calling GET /v1.47/version" in log
    assert "GET /v1.47/containers/no-such-thing/json: 404 No such container: no-such-thing" in log
    assert "a malformed request: 505 unsupported protocol version" in log


# -- the shapes that once answered 500 -------------------------------------------------------------

def _create(env: CoreEnv, fields: dict) -> tuple[int, str]:
    body = json.dumps({"Image": getattr(env, "image", "busybox"), "Cmd": ["true"], **fields}).encode()
    status, _h, out = request(env, "POST", "/v1.47/containers/create", body)
    return status, message(out) if status >= 400 else ""


@pytest.mark.parametrize("fields,fragment", [
    ({"WorkingDir": 1}, "WorkingDir of type string"),
    ({"HostConfig": {"NetworkMode": 1}}, "HostConfig.NetworkMode of type string"),
    ({"NetworkingConfig": "x"}, "NetworkingConfig of type network.NetworkingConfig"),
    ({"HostConfig": {"LogConfig": "x"}}, "HostConfig.LogConfig of type container.LogConfig"),
    ({"Hostname": 1.5}, "Hostname of type string"),
    ({"Domainname": True}, "Domainname of type string"),
    ({"HostConfig": {"Memory": 10 ** 30}}, "HostConfig.Memory of type int64"),
    ({"StopTimeout": 2 ** 64}, "StopTimeout of type int"),
    ({"HostConfig": {"ConsoleSize": [-1, 2]}}, "HostConfig.ConsoleSize of type uint16"),
    ({"HostConfig": {"ConsoleSize": [2 ** 64 - 1]}}, "HostConfig.ConsoleSize of type uint16"),
])
def test_bad_create_bodies_are_400_at_create(busy, fields, fragment):
    status, text = _create(busy, fields)
    assert status == 400 and fragment in text, text


@pytest.mark.parametrize("method,path", [("POST", "/containers/create"), ("POST", "/containers/runner/exec"),
                                         ("POST", "/volumes/create"), ("POST", "/networks/create"),
                                         ("POST", "/containers/runner/update"), ("POST", "/auth"),
                                         ("POST", "/exec/x/start")])
def test_a_body_of_100000_brackets_is_400(busy, method, path):
    status, _h, out = request(busy, method, "/v1.47" + path, b"[" * 100_000)
    assert status == 400 and "nested more than" in message(out)


@pytest.mark.parametrize("path", ["/containers/json", "/images/json", "/volumes", "/networks", "/events",
                                  "/containers/prune", "/images/prune", "/volumes/prune", "/networks/prune"])
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_filters_of_many_brackets_are_400(busy, path, depth):
    method = "POST" if path.endswith("/prune") else "GET"
    status, _h, out = request(busy, method, f"/v1.47{path}?filters=" + "%5B" * depth)
    assert status == 400, out
    assert "nested more than" in message(out) or "longer than" in message(out)


def test_exec_detach_keys_of_the_wrong_type_and_in_lower_case(busy):
    status, _h, out = request(busy, "POST", "/v1.47/containers/runner/exec",
                              json.dumps({"Cmd": ["true"], "DetachKeys": 1}).encode())
    assert status == 400 and "DetachKeys of type string" in message(out)
    # docker's decoder matches keys case-insensitively: ``detachKeys`` is DetachKeys
    status, _h, out = request(busy, "POST", "/v1.47/containers/runner/exec",
                              json.dumps({"cmd": ["true"], "detachKeys": "not-keys"}).encode())
    assert status == 400 and "detach" in message(out).lower(), out
    status, _h, out = request(busy, "POST", "/v1.47/containers/runner/exec",
                              json.dumps({"cmd": ["echo", "hi"], "attachStdout": True, "detachKeys": "ctrl-x"}).encode())
    assert status == 201, out
    client = busy.docker_client()
    try:
        assert client.api.exec_inspect(json.loads(out)["Id"])["ProcessConfig"]["entrypoint"] == "echo"
    finally:
        client.close()


def test_lower_case_create_keys_reach_the_container(busy):
    client = busy.docker_client()
    try:
        res = client.api._post_json(client.api._url("/containers/create"), params={"name": "lower"},
                                    data={"image": busy.image, "cmd": ["true"], "workingdir": "/tmp",
                                          "hostconfig": {"networkmode": "none"}, "labels": {"a": "b"}})
        client.api._result(res, True)
        attrs = client.api.inspect_container("lower")
        assert attrs["Config"]["WorkingDir"] == "/tmp" and attrs["Config"]["Cmd"] == ["true"]
        assert attrs["Config"]["Labels"] == {"a": "b"}
        assert attrs["HostConfig"]["NetworkMode"] == "none"
    finally:
        try:
            client.api.remove_container("lower", force=True)
        except docker.errors.NotFound:
            pass
        client.close()


@pytest.mark.parametrize("query", ["h=99999&w=10", "h=10&w=-1", "h=10&w=18446744073709551615"])
def test_a_resize_beyond_a_terminals_size_is_400(busy, query):
    status, _h, out = request(busy, "POST", f"/v1.47/containers/runner/resize?{query}")
    assert status == 400, out


def test_top_with_an_unterminated_quote_is_400(busy):
    status, _h, out = request(busy, "GET", "/v1.47/containers/runner/top?ps_args=" + urllib.parse.quote("'unterminated"))
    assert status == 400 and "ps_args" in message(out) and "No closing quotation" in message(out)


@pytest.mark.parametrize("target", ["/v1.47/containers/runner/archive?path=/%00",
                                    "/v1.47/containers/runner/archive?path=/etc%00x",
                                    "/v1.47/containers/run%00ner/json"])
def test_nul_bytes_are_400(busy, target):
    status, _h, out = request(busy, "GET", target)
    assert status == 400 and "NUL" in message(out)
    status, _h, _out = request(busy, "HEAD", target)
    assert status == 400


def test_long_names_are_400_without_host_paths(busy):
    status, _h, out = request(busy, "POST", "/v1.47/volumes/create", json.dumps({"Name": "v" * 10_000}).encode())
    assert status == 400
    text = message(out)
    assert "longer than 255" in text and str(busy.root) not in text and len(text) < 200
    status, _h, out = request(busy, "POST", "/v1.47/containers/create?name=" + "c" * 10_000,
                              json.dumps({"Image": busy.image}).encode())
    assert status == 400 and "longer than 255" in message(out)
    assert str(busy.root) not in busy.daemon_log().split("volumes/create")[-1][:2000]


@pytest.mark.parametrize("header,status,fragment", [
    ("storage=../../x", 400, "a driver name is letters"),
    ("storage=/etc", 400, "a driver name is letters"),
    ("storage=a/b", 400, "a driver name is letters"),
    ("bogus=x", 400, 'unknown driver kind "bogus"'),
    ("storage", 400, "expected KIND=NAME"),
    ("storage=nope", 404, 'storage driver "nope" not found (available: '),
])
def test_driver_selections_are_checked(busy, header, status, fragment):
    got, headers, out = request(busy, "GET", "/v1.47/info", headers={"X-Core-Driver": header})
    assert got == status and fragment in message(out)
    assert headers["x-core-error"] == "DriverError"   # the CLI exits 125 on these


@pytest.mark.parametrize("payload", [b"[" * 100_000, b"[" * 900 + b"]" * 900, b"!", b'"x"'])
def test_a_bad_registry_auth_header_is_400(bare, payload):
    """Refused before anything is sent (the registry named is a closed port on loopback)."""
    import base64

    header = base64.urlsafe_b64encode(payload).decode()
    status, _h, out = request(bare, "POST", "/v1.47/images/127.0.0.1:1/x/push",
                              headers={"X-Registry-Auth": header})
    assert status == 400 and "X-Registry-Auth" in message(out)


def test_an_exec_over_the_pids_limit_is_409(busy):
    client = busy.docker_client()
    try:
        answers = []
        for _ in range(6):
            e = client.api.exec_create("runner", ["sleep", "30"])
            try:
                client.api.exec_start(e["Id"], detach=True)
                answers.append(200)
            except docker.errors.APIError as exc:
                answers.append(exc.status_code)
                assert exc.status_code == 409, exc.explanation
                assert "pids-limit" in exc.explanation and "Errno" not in exc.explanation
                break
        assert 409 in answers, answers
    finally:
        client.close()


def test_no_traceback_in_the_busy_daemons_log(busy):
    assert "Traceback" not in busy.daemon_log()


# -- the fuzz --------------------------------------------------------------------------------------

SEED = int(os.environ.get("CORE_FUZZ_SEED", "20261207"))
EXAMPLES = int(os.environ.get("CORE_FUZZ_EXAMPLES", "20"))
SECONDS = float(os.environ.get("CORE_FUZZ_SECONDS", "40"))   # each fuzz test's budget
# they would reach a registry, which for random names is off this machine
OFF_MACHINE = {("POST", "/images/create"), ("POST", "/images/{name:path}/push"),
               ("GET", "/distribution/{name:path}/json"),
               # a swarm init would listen on the machine's 2377 and run etcd; a join dials out
               ("POST", "/swarm/init"), ("POST", "/swarm/join")}
# only bodies validation refuses: a valid one would make a bridge or ask a registry
REFUSED_BODIES_ONLY = {("POST", "/networks/create"), ("POST", "/auth")}
PARAMS = ["x", "nope", "..", "a b", "%2e%2e%2f", "%00", "%ff%fe", "\u00e9t\u00e9", "bridge", "none", "host",
          "0" * 64, "-1", "x" * 3000, "a:b", "a@sha256:" + "0" * 64, "%25", "ctrl-p"]
QUERY_NAMES = ["all", "limit", "size", "filters", "name", "force", "v", "link", "t", "signal", "ps_args", "path",
               "follow", "stdout", "stderr", "stdin", "since", "until", "timestamps", "tail", "stream",
               "one-shot", "condition", "h", "w", "detachKeys", "logs", "noOverwriteDirToNonDir",
               "copyUIDGID", "scope", "verbose", "repo", "tag", "platform", "noprune", "digests",
               "shared-size", "dangling", "fromImage", "changes"]
QUERY_VALUES = ["", "1", "0", "true", "false", "-1", "99999999999999999999999", "1.5", "abc", "{", "[", "null",
                '{"label":["a=b"]}', '{"label":{"a":true}}', '{"name":"x"}', '"str"', "[" * 200, "'unterm",
                "\x00", "/", "/etc/passwd", "../..", "x" * 5000, "SIGKILL", "KILL", "99", "ctrl-", "\u2603",
                '{"until":["2"]}', '{"dangling":["maybe"]}', '{"status":["nope"]}']
SCALARS = [None, True, False, 0, -1, 1.5, 2 ** 63, -(2 ** 63) - 1, 2 ** 70, "", "x", "\x00", "1", [], {},
           [1, "a"], {"a": 1}, "[" * 50, "x" * 2000]


def _value(kind: validate.T, rnd: random.Random, depth: int = 0) -> object:
    """A value of ``kind``: well-typed, nearly always."""
    if isinstance(kind, validate.Struct):
        fields = list(kind.fields.items())
        out = {}
        for name, sub in rnd.sample(fields, min(len(fields), rnd.randint(0, 4))):
            key = rnd.choice([name, name, name.lower(), name.upper()])
            out[key] = _value(sub, rnd, depth + 1)
        return out
    if isinstance(kind, validate.Map):
        return {rnd.choice(["a", "80/tcp", "x.y", ""]): _value(kind.value, rnd, depth + 1) for _ in range(rnd.randint(0, 2))}
    if isinstance(kind, validate.StrSlice) and rnd.random() < 0.3:
        return rnd.choice(["true", "", "sh -c 'x'"])
    if isinstance(kind, validate.List):
        return [_value(kind.item, rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    if isinstance(kind, validate.Int):
        return rnd.choice([0, 1, -1, kind.lo, kind.hi, 100, 4096])
    if kind is validate.BOOL:
        return rnd.choice([True, False])
    if kind is validate.STR:
        return rnd.choice(["", "x", "none", "bridge", "/tmp", "80/tcp", "a=b", "ctrl-x", "\u00e9", "on-failure"])
    return rnd.choice(SCALARS)


def _mutate(value: object, rnd: random.Random) -> object:
    """``value`` with one place replaced by something of the wrong type or out of range."""
    if isinstance(value, dict) and value and rnd.random() < 0.75:
        key = rnd.choice(list(value))
        return {**value, key: _mutate(value[key], rnd)}
    if isinstance(value, list) and value and rnd.random() < 0.75:
        i = rnd.randrange(len(value))
        return value[:i] + [_mutate(value[i], rnd)] + value[i + 1:]
    return rnd.choice([v for v in SCALARS if type(v) is not type(value)])


def _bad(value: object, rnd: random.Random, schema: validate.Struct) -> object:
    for _ in range(50):
        candidate = _mutate(value, rnd)
        try:
            validate.check_body(schema, json.dumps(candidate).encode())
        except InvalidArgument:
            return candidate
    return {"Name": 1}


def _body(route: tuple[str, str], rnd: random.Random) -> bytes:
    schema = validate.BODIES.get(route)
    roll = rnd.random()
    if schema is not None and (roll < 0.8 or route in REFUSED_BODIES_ONLY):
        value = _value(schema, rnd)
        if route in REFUSED_BODIES_ONLY or rnd.random() < 0.7:
            value = _bad(value, rnd, schema)
        return json.dumps(value).encode()
    if roll < 0.85:
        return b""
    if roll < 0.9:
        return rnd.choice([b"[" * 5000, b"{" * 5000, b'{"a":' * 3000])
    if roll < 0.95:
        return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 64)))
    return json.dumps(rnd.choice(SCALARS)).encode()


def _target(method: str, pattern: str, rnd: random.Random) -> str:
    import re

    def param(m: re.Match) -> str:
        value = rnd.choice(PARAMS)
        if m.group(2) and rnd.random() < 0.3:
            value += "/" + rnd.choice(PARAMS)
        return value if "%" in value else urllib.parse.quote(value, safe="/:@")

    path = re.sub(r"\{(\w+)(:path)?\}", param, pattern)
    query = []
    for _ in range(rnd.randint(0, 3)):
        query.append((rnd.choice(QUERY_NAMES), rnd.choice(QUERY_VALUES)))
    if pattern == "/events":
        query.append(("until", "1"))   # a past end: the stream ends at once
    prefix = rnd.choice(["", "/v1.47", "/v1.24", "/v1.41"])
    return prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")


def test_fuzz_every_route(bare, daemon_router):
    """Random requests to every route of the router: client errors are 4xx, never 5xx (but 501
    for what is not implemented, and 503 where the unimplemented table says so), and the daemon
    logs no traceback."""
    rnd = random.Random(SEED)
    designed = ({(m, p) for m, p, *_ in unimplemented.SWARM} | {(m, p) for m, p, _h in swarm_api.ROUTES}
                | {(m, p) for m, p, _h in services_api.ROUTES})
    routes = [r for r in daemon_router.routes() if r not in OFF_MACHINE]
    assert len(routes) > 100
    failures, sent = [], 0
    deadline = time.monotonic() + SECONDS
    for method, pattern in routes:
        for _ in range(EXAMPLES):
            if time.monotonic() > deadline:
                pytest.fail(f"the fuzz ran out of time after {sent} requests")
            target, body = _target(method, pattern, rnd), _body((method, pattern), rnd)
            headers = {"X-Core-Driver": rnd.choice(["storage=../x", "storage=vfs", "bogus=1", "network"])} \
                if rnd.random() < 0.05 else None
            try:
                status, _h, out = request(bare, method, target, body, headers=headers, timeout=15)
            except (socket.timeout, ConnectionError, ValueError, IndexError) as exc:
                failures.append((method, target[:200], body[:200], f"no answer: {exc!r}"))
                continue
            sent += 1
            # 501 is an honest "not implemented"; 503 is the swarm routes' designed answer (not
            # in a swarm, as docker's)
            if status >= 500 and status != 501 and not ((method, pattern) in designed and status == 503):
                failures.append((method, target[:200], body[:200], status, out[:300]))
    assert not failures, f"seed {SEED}: " + "\n".join(map(repr, failures[:20]))
    log = bare.daemon_log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
    assert "internal error" not in log


@pytest.fixture(scope="module")
def target_env(test_images):
    """A daemon of the fuzz's own, with busybox and a running container ``target``."""
    with busybox_daemon(test_images) as pair:
        yield pair


def _ensure_target(env: CoreEnv, client) -> None:
    """``target`` exists and runs (a fuzzed request may have stopped, paused or removed it)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            c = client.containers.get("target")
            if c.status == "running":
                return
            c.remove(force=True)
        except docker.errors.NotFound:
            try:
                client.containers.run(env.image, ["sleep", "300"], name="target", detach=True)
                return
            except docker.errors.APIError:
                pass   # the name is still taken by one being removed
        except docker.errors.APIError:
            pass
        assert time.monotonic() < deadline, "the fuzz's container cannot be brought back"
        time.sleep(0.2)


def test_fuzz_a_real_container_and_image(target_env, daemon_router):
    """The same, with path parameters that name a running container and a pulled image, so
    requests reach deeper than "no such container".  A request may take its time (``stop?t=``,
    attach): a slow answer is not a failure, a 5xx or a traceback is."""
    env, client = target_env
    rnd = random.Random(SEED + 1)
    names = ["target", "target", "target", env.image, "busybox", "bridge", "x"]
    routes = [(m, p) for m, p in daemon_router.routes()
              if (m, p) not in OFF_MACHINE and p.startswith(("/containers/{", "/images/{", "/exec/", "/containers/json",
                                                             "/images/json"))]
    failures, sent, slow = [], 0, 0
    deadline = time.monotonic() + SECONDS
    for method, pattern in routes:
        for _ in range(max(EXAMPLES // 4, 1)):
            if time.monotonic() > deadline:
                break
            _ensure_target(env, client)
            target = _target(method, pattern, rnd)
            for prefix in ("/v1.47", "/v1.24", "/v1.41"):
                target = target.removeprefix(prefix)
            path, _, query = target.partition("?")
            if pattern.startswith(("/containers/{id}", "/images/{name:path}")) and rnd.random() < 0.8:
                pieces = pattern.split("/")
                pieces[2] = urllib.parse.quote(rnd.choice(names), safe=":@")
                path = "/".join(pieces)
            target = path + ("?" + query if query else "")
            body = _body((method, pattern), rnd)
            try:
                status, _h, out = request(env, method, target, body, timeout=2)
            except (socket.timeout, TimeoutError):
                slow += 1
                continue
            except (ConnectionError, ValueError, IndexError) as exc:
                failures.append((method, target[:200], body[:200], f"no answer: {exc!r}"))
                continue
            sent += 1
            if status >= 500 and status != 501:
                failures.append((method, target[:200], body[:200], status, out[:300]))
    assert sent > 50, (sent, slow)
    assert not failures, f"seed {SEED + 1}: " + "\n".join(map(repr, failures[:20]))
    log = env.daemon_log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


# host-facing settings a fuzzed container must not get (the host is shared with other tests)
HOST_FACING = {"Privileged", "Devices", "DeviceRequests", "DeviceCgroupRules", "PidMode", "IpcMode", "UTSMode",
               "UsernsMode", "CgroupnsMode", "Cgroup", "NetworkMode", "PortBindings", "PublishAllPorts", "Binds",
               "Mounts", "VolumesFrom", "CapAdd", "SecurityOpt", "Sysctls", "CgroupParent", "Runtime", "Links",
               "ExtraHosts", "Dns", "Tmpfs", "StorageOpt", "VolumeDriver", "ContainerIDFile", "Volumes"}


def test_fuzz_create_and_start_well_typed_configs(target_env):
    """Bodies of the right types but random values pass validation and reach the engine: a
    container either is created and starts, or the request is refused with a 4xx — at create
    or at start, never a 500.  Host-facing settings are left out (no host mounts, devices,
    namespaces or published ports)."""
    env, client = target_env
    rnd = random.Random(SEED + 2)
    failures, made = [], 0
    deadline = time.monotonic() + SECONDS / 2
    while time.monotonic() < deadline and made < 10 * EXAMPLES:
        body = _value(validate.CONTAINER_CREATE, rnd)
        body = {k: v for k, v in body.items() if k.lower() not in {"hostconfig", "networkingconfig", "volumes"}}
        host = _value(validate.HOST_CONFIG, rnd)
        host = {k: v for k, v in host.items() if k.lower() not in {h.lower() for h in HOST_FACING}}
        body.update(Image=env.image, HostConfig={**host, "NetworkMode": "none"})
        if rnd.random() < 0.5:
            body["Cmd"] = ["sleep", "5"]
        name = f"fz{made}"
        made += 1
        step = "create"
        try:
            status, _h, out = request(env, "POST", f"/v1.47/containers/create?name={name}",
                                      json.dumps(body).encode(), timeout=30)
            if status == 201:
                step = "start"
                status, _h, out = request(env, "POST", f"/v1.47/containers/{name}/start", timeout=30)
                step = "remove"
                request(env, "DELETE", f"/v1.47/containers/{name}?force=1", timeout=60)
        except TimeoutError as exc:
            failures.append((json.dumps(body)[:400], f"no answer to {step}: {exc}"))
            continue
        if os.environ.get("CORE_FUZZ_SHOW"):
            print(status, out[:150])
        if status >= 500:
            failures.append((json.dumps(body)[:400], status, out[:300]))
    assert made > 5
    assert not failures, f"seed {SEED + 2}: " + "\n".join(map(repr, failures[:10]))
    log = env.daemon_log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
