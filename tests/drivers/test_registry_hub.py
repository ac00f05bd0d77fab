"""The registry driver "hub" against a real registry (Debian's docker-registry on 127.0.0.1),
its token server, the fault proxy, and tiny local HTTP servers for what a real registry does not
do on demand (oversized manifests, 500s, redirects to blob storage, TLS)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest
import trio

from core.engine.images.content import ContentStore
from core.contracts import DriverContext, RegistryClient
from core.contracts.registry import MAX_MANIFEST_BYTES, AuthConfig, RegistryConfig
from core.errors import DriverError, Forbidden, InvalidArgument, NotFound, Unauthorized, Unavailable
from core.reference import parse_reference
from core.testing.registry_server import Registry, http_request
from core.types import Descriptor, Digest
from drivers.registry_hub import plugin
from drivers.registry_hub.auth import parse_challenges
from drivers.registry_hub.client import HubClient
from tests.support import images as im
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures import require_registry_tools
from tests.support.aio import collect

# the fixtures registry, token_registry, test_images, fault_proxy and fresh_registry come from
# tests.support.fixtures, which tests/conftest.py imports

TEST_USER, TEST_PASSWORD = "alice", "alice-password"  # as in tests.support.fixtures
CREDS = AuthConfig(username=TEST_USER, password=TEST_PASSWORD)


# ------------------------------------------------------------------------------ helpers
def make_client(tmp_path: Path, config: dict | None = None, **kw) -> HubClient:
    kw.setdefault("backoff", 0.01)
    return HubClient(ContentStore(tmp_path / "content"), config, **kw)


@contextlib.asynccontextmanager
async def client_at(tmp_path: Path, config: dict | None = None, **kw) -> AsyncIterator[HubClient]:
    """:func:`make_client`, closed when the block ends."""
    client = make_client(tmp_path, config, **kw)
    try:
        yield client
    finally:
        await client.aclose()


def run(fn: Callable, *args):
    """Run an async test body (no pytest-trio here)."""
    return trio.run(fn, *args)




def ref(host, name: str):
    return parse_reference(f"{host if isinstance(host, str) else host.host}/{name}")


def layer_desc(image, i: int = 0) -> Descriptor:
    layer = image.layers[i]
    return Descriptor(layer.media_type, layer.digest, layer.size)


def config_desc(image) -> Descriptor:
    return Descriptor("application/vnd.oci.image.config.v1+json", image.config_digest,
                      len(image.config_bytes))


class TinyServer:
    """A threaded HTTP/1.1 server on 127.0.0.1: ``handler(method, path, headers)`` returns
    ``(status, headers, body)`` (body: bytes, or an iterable of bytes sent chunked).
    ``requests`` records ``(method, path, headers)``."""

    def __init__(self, handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                headers = {k.lower(): v for k, v in self.headers.items()}
                length = int(headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path, headers))
                status, rheaders, body = outer.handler(self.command, self.path, headers)
                self.send_response(status)
                for k, v in rheaders.items():
                    self.send_header(k, v)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in body:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> TinyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ pure parts
def test_auth_config_header_and_challenges():
    a = AuthConfig(username="u", password="p:w", serveraddress="r.example")
    assert AuthConfig.from_header(a.to_header()) == a
    assert "p:w" not in repr(a)
    legacy = AuthConfig.from_json({"Auth": "dTpwOnc=", "ServerAddress": "x"})  # keys any case
    assert legacy.basic() == ("u", "p:w") and not legacy.anonymous
    assert AuthConfig.from_header("") is None and AuthConfig().anonymous
    assert AuthConfig.coerce({"username": "u", "password": "p"}).basic() == ("u", "p")
    with pytest.raises(InvalidArgument):
        AuthConfig.from_header("!!!not base64")
    [bearer, basic] = parse_challenges([
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push",'
        'error="insufficient_scope", Basic realm="x y"'])
    assert bearer.scheme == "bearer" and bearer.realm == "https://auth.example/token"
    assert bearer.scopes == ("repository:a/b:pull,push",) and bearer.params["error"] == "insufficient_scope"
    assert basic.scheme == "basic" and basic.realm == "x y"


def test_config_insecure_and_mirror_endpoints(tmp_path):
    cfg = RegistryConfig.from_mapping({
        "mirrors": {"docker.io": ["https://mirror.example/cache/", "http://127.0.0.1:5001"],
                    "index.docker.io": ["https://m2.example"]},
        "insecure": ["reg.example:5000", "10.1.0.0/16"]})
    assert cfg.is_insecure("127.0.0.5:80") and cfg.is_insecure("[::1]:5000")
    assert cfg.is_insecure("localhost:5000") and cfg.is_insecure("reg.example:5000")
    assert cfg.is_insecure("10.1.2.3:443") and not cfg.is_insecure("10.2.0.1")
    assert not cfg.is_insecure("registry-1.docker.io")
    assert not RegistryConfig.from_mapping({}, loopback_insecure=False).is_insecure("127.0.0.1:5")
    client = HubClient(ContentStore(tmp_path / "c"), cfg)
    eps = client._endpoints(parse_reference("alpine"))
    assert [(e.scheme, e.host, e.prefix, e.mirror) for e in eps] == [
        ("https", "mirror.example", "/cache", True), ("http", "127.0.0.1:5001", "", True),
        ("https", "m2.example", "", True), (None, "registry-1.docker.io", "", False)]
    assert [e.host for e in client._endpoints(parse_reference("alpine"), pull=False)] == [
        "registry-1.docker.io"]
    with pytest.raises(InvalidArgument):
        RegistryConfig.from_mapping({"mirrors": {"docker.io": ["ftp://x"]}})
    with pytest.raises(InvalidArgument):
        RegistryConfig.from_mapping({"insecure": ["10.0.0.0/99"]})
    trio.run(client.aclose)


def test_conformance_suite_as_a_third_party_runs_it(tmp_path):
    """``pytest --pyargs core.testing.registry --driver registry=hub``, from outside the tree:
    the suite starts its own registries (plain and token auth) and passes."""
    require_registry_tools()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         "core.testing.registry", "--driver", "registry=hub"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    assert "skipped" not in proc.stdout


def test_plugin_builds_a_registry_client(tmp_path):
    store = ContentStore(tmp_path / "content")
    config = RegistryConfig.from_mapping({"mirrors": {"docker.io": ["http://127.0.0.1:1"]}})
    ctx = DriverContext(kind="registry", name="hub", root=tmp_path / "registry" / "hub",
                        exec_root=tmp_path / "run", data_root=tmp_path, content=store,
                        registry=config)
    client = plugin.core_registry_driver(ctx)
    assert isinstance(client, RegistryClient) and client.content is store
    assert client.config is config
    assert "not implemented" not in plugin.core_driver_describe()
    trio.run(client.aclose)


def test_the_driver_imports_only_the_kernel():
    """``drivers/registry_hub`` codes against ``core.contracts`` (the content-store Protocol
    among them), never against the engine that implements them."""
    import ast

    kernel = ("core.contracts", "core.errors", "core.hookspecs", "core.reference", "core.types")
    for path in Path(plugin.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("core."):  # ``core`` itself: its version
                    assert name.startswith(kernel), f"{path.name} imports {name}"


def test_plugin_refuses_a_context_without_content_store(tmp_path):
    ctx = DriverContext(kind="registry", name="hub", root=tmp_path / "registry" / "hub",
                        exec_root=tmp_path / "run", data_root=tmp_path)
    with pytest.raises(DriverError, match="content store"):
        plugin.core_registry_driver(ctx)
    assert not (tmp_path / "registry").exists()  # and it made no store of its own


# ------------------------------------------------------------------------------ pulling
def test_resolve_schema2_oci_and_index_by_tag_and_digest(registry, test_images, tmp_path):
    async def main():
        async with client_at(tmp_path) as client:
            for name in ("busybox:latest", "layered:latest", "multi:latest"):
                pushed = test_images[name]
                for r in (ref(registry, name), parse_reference(pushed.ref(by_digest=True))):
                    desc, data = await client.resolve(r)
                    assert str(desc.digest) == pushed.digest and desc.size == len(data)
                    assert desc.media_type == pushed.media_type
                    assert "sha256:" + hashlib.sha256(data).hexdigest() == pushed.digest
            # an index: its child manifest by digest, verified
            multi = test_images["multi:latest"]
            desc, data = await client.resolve(ref(registry, "multi:latest"))
            assert desc.media_type == "application/vnd.oci.image.index.v1+json"
            entry = next(m for m in json.loads(data)["manifests"]
                         if m["digest"] == multi.image.manifest_digest)
            child = Descriptor.from_json(entry)
            assert await client.fetch_manifest(ref(registry, "multi:latest"), child) == \
                multi.image.manifest_bytes
            wrong_size = Descriptor(child.media_type, child.digest, child.size - 1)
            with pytest.raises(InvalidArgument):
                await client.fetch_manifest(ref(registry, "multi:latest"), wrong_size)

    run(main)


def test_fetch_blob_streams_verifies_and_stores(fault_proxy, test_images, tmp_path):
    bb = test_images["busybox:latest"].image
    layer = layer_desc(bb)
    r = ref(fault_proxy, "busybox:latest")
    seen: list[int] = []

    async def main():
        async with client_at(tmp_path) as client:
            data = await collect(client.fetch_blob(r, layer, progress=seen.append))
            assert "sha256:" + hashlib.sha256(data).hexdigest() == bb.layer_digests[0]
            assert client.content.exists(layer.digest) and client.content.ingests() == []
            assert seen[-1] == layer.size and seen == sorted(seen)
            before = fault_proxy.request_count("/blobs/")
            # already in the store: streamed from there, no request
            assert await collect(client.fetch_blob(r, layer)) == data
            await client.fetch_blob_to_store(r, layer)
            assert fault_proxy.request_count("/blobs/") == before
            await client.fetch_blob_to_store(r, config_desc(bb))
            assert client.content.read_bytes(bb.config_digest, 1 << 20) == bb.config_bytes

    run(main)


def test_tags_list(registry, test_images, tmp_path):
    async def main():
        async with client_at(tmp_path) as client:
            assert sorted(await client.tags(ref(registry, "busybox"))) == ["1.0", "1.1", "latest"]
            with pytest.raises(NotFound, match="pull access denied for 127.0.0.1:.*/nosuchrepo"):
                await client.tags(ref(registry, "nosuchrepo"))

    run(main)


def test_tags_follow_link_pagination(tmp_path):
    pages = {"/v2/repo/tags/list": (["a", "b"], '</v2/repo/tags/list?last=b&n=2>; rel="next"'),
             "/v2/repo/tags/list?last=b&n=2": (["c"], None)}

    def handler(method, path, headers):
        tags, link = pages[path]
        h = {"Content-Type": "application/json"}
        if link:
            h["Link"] = link
        return 200, h, json.dumps({"name": "repo", "tags": tags}).encode()

    with TinyServer(handler) as srv:
        async def main():
            async with client_at(tmp_path) as client:
                assert await client.tags(ref(srv, "repo")) == ["a", "b", "c"]

        run(main)
    assert [p for _m, p, _h in srv.requests] == list(pages)


def test_not_found_messages(registry, test_images, tmp_path):
    async def main():
        async with client_at(tmp_path) as client:
            with pytest.raises(NotFound) as exc:
                await client.resolve(ref(registry, "busybox:nope"))
            assert str(exc.value) == (f"manifest for {registry.host}/busybox:nope not found: "
                                      "manifest unknown: manifest unknown")
            with pytest.raises(NotFound, match="not found"):
                await client.resolve(ref(registry, "no/such/repo:latest"))
            missing = Descriptor(im.MT_OCI_LAYER_GZIP, Digest.from_bytes(b"nothing"), 7)
            with pytest.raises(NotFound, match=f"blob {missing.digest} not found"):
                await collect(client.fetch_blob(ref(registry, "busybox:latest"), missing))

    run(main)


# ------------------------------------------------------------------------------ auth
def test_token_flow_reuses_tokens(token_registry, test_images, tmp_path):
    ts = token_registry.token_server
    bb = test_images["busybox:latest"].image

    async def main():
        async with client_at(tmp_path) as client:
            ts.reset_counters()
            r = ref(token_registry, "busybox:latest")
            async with trio.open_nursery() as nursery:  # concurrent first requests: one token
                for _ in range(4):
                    nursery.start_soon(client.resolve, r)
            desc, _ = await client.resolve(r)
            await client.fetch_blob_to_store(r, config_desc(bb))
            await client.fetch_blob_to_store(r, layer_desc(bb))
            assert ts.issued == 1
            assert [q.user for q in ts.requests] == [None]  # anonymous pull
            # credentials: another token (another identity), reused too
            p = ref(token_registry, "private/busybox:latest")
            for _ in range(2):
                pdesc, _ = await client.resolve(p, CREDS)
            assert pdesc.digest == desc.digest and ts.issued == 2
            assert ts.requests[-1].user == TEST_USER
            assert ts.requests[-1].scopes == ["repository:private/busybox:pull"]

    run(main)


def test_token_expiry_is_honoured(token_registry, test_images, tmp_path):
    ts = token_registry.token_server
    now = [1000.0]

    async def main():
        async with client_at(tmp_path) as client:
            client._auth._clock = lambda: now[0]
            ts.reset_counters()
            r = ref(token_registry, "busybox:latest")
            await client.resolve(r)
            now[0] += ts.expires_in - 30  # still valid (10 s margin)
            await client.resolve(r)
            assert ts.issued == 1
            now[0] += 25  # within the margin: a new token
            await client.resolve(r)
            assert ts.issued == 2

    run(main)


def test_refused_credentials(token_registry, test_images, tmp_path):
    async def main():
        async with client_at(tmp_path) as client:
            p = ref(token_registry, "private/busybox:latest")
            with pytest.raises(Unauthorized, match="^unauthorized: authentication required$"):
                await client.resolve(p, AuthConfig(username=TEST_USER, password="wrong"))
            with pytest.raises(Unauthorized) as exc:  # anonymous: the token lacks the scope
                await client.resolve(p)
            assert str(exc.value).startswith(
                "pull access denied for 127.0.0.1:")
            assert "private/busybox, repository does not exist or may require 'docker login'" \
                in str(exc.value)
            assert await client.login(token_registry.host, CREDS) == "Login Succeeded"
            with pytest.raises(Unauthorized):
                await client.login(token_registry.host, AuthConfig(username="bob", password="x"))

    run(main)


def test_identity_token_and_registry_token(token_registry, test_images, tmp_path):
    """An identity token (OAuth2 refresh token from a login) is exchanged with a POST; a
    registry token is sent as is."""
    ts = token_registry.token_server
    form = {"grant_type": "password", "username": TEST_USER, "password": TEST_PASSWORD,
            "service": ts.service, "client_id": "t", "access_type": "offline"}
    status, _, body = http_request(ts.realm, method="POST",
                                   data=urllib.parse.urlencode(form).encode())
    assert status == 200
    refresh = json.loads(body)["refresh_token"]
    p = ref(token_registry, "private/busybox:latest")

    async def main():
        async with client_at(tmp_path) as client:
            ts.reset_counters()
            desc, _ = await client.resolve(p, AuthConfig(identitytoken=refresh))
            assert str(desc.digest) == test_images["private/busybox:latest"].digest
            assert [(q.method, q.grant_type, q.user) for q in ts.requests] == [
                ("POST", "refresh_token", TEST_USER)]
            token = token_registry.get_token("repository:private/busybox:pull",
                                             f"{TEST_USER}:{TEST_PASSWORD}")
            ts.reset_counters()
            desc, _ = await client.resolve(p, {"registrytoken": token})
            assert ts.requests == []

    run(main)


def test_basic_auth_challenge(registry, test_images, tmp_path):
    try:
        reg = Registry(auth="basic", users={"bob": "bob-pw"}, storage_dir=registry.storage_dir).start()
    except Exception as exc:  # no bcrypt / htpasswd here
        pytest.skip(f"no basic-auth registry: {exc}")

    async def main():
        async with client_at(tmp_path) as client:
            r = ref(reg, "busybox:latest")
            desc, _ = await client.resolve(r, {"username": "bob", "password": "bob-pw"})
            assert str(desc.digest) == test_images["busybox:latest"].digest
            with pytest.raises(Unauthorized):
                await client.resolve(r, AuthConfig(username="bob", password="nope"))
            assert await client.login(reg.host, {"username": "bob", "password": "bob-pw"}) == \
                "Login Succeeded"

    try:
        run(main)
    finally:
        reg.stop()


# ------------------------------------------------------------------------------ faults
def test_cut_mid_blob_resumes_with_range(fault_proxy, test_images, tmp_path):
    bb = test_images["busybox:latest"].image
    layer = layer_desc(bb)
    assert layer.size > 200_000
    fault_proxy.cut_after(50_000, "/blobs/")
    fault_proxy.cut_after(120_000, "/blobs/")  # the resumed request is cut again

    async def main():
        async with client_at(tmp_path) as client:
            data = await collect(client.fetch_blob(ref(fault_proxy, "busybox:latest"), layer))
            assert "sha256:" + hashlib.sha256(data).hexdigest() == str(layer.digest)
            assert client.content.exists(layer.digest)

    run(main)
    reqs = fault_proxy.matching(str(layer.digest), "GET")
    assert [r.fault for r in reqs] == ["cut", "cut", None]
    assert [r.header("Range") for r in reqs] == [None, "bytes=50000-", "bytes=170000-"]
    assert [r.status for r in reqs] == [200, 206, 206]


def test_partial_ingest_from_an_earlier_pull_is_resumed(fault_proxy, test_images, tmp_path):
    bb = test_images["busybox:latest"].image
    layer = layer_desc(bb)
    fault_proxy.cut_after(70_000, "/blobs/")
    fault_proxy.cut_after(0, "/blobs/", times=None)  # then every try is cut at once

    async def main():
        async with client_at(tmp_path, blob_attempts=2) as client:
            with pytest.raises(Unavailable, match="no progress after 2 attempts"):
                await collect(client.fetch_blob(ref(fault_proxy, "busybox:latest"), layer))
        [partial] = ContentStore(tmp_path / "content").ingests()
        assert partial.offset == 70_000 and not partial.active
        fault_proxy.clear_faults()
        async with client_at(tmp_path) as client:  # as after a daemon restart
            data = await collect(client.fetch_blob(ref(fault_proxy, "busybox:latest"), layer))
            assert "sha256:" + hashlib.sha256(data).hexdigest() == str(layer.digest)

    run(main)
    assert fault_proxy.matching(str(layer.digest), "GET")[-1].header("Range") == "bytes=70000-"


def test_whole_blob_answer_to_a_range_request(tmp_path):
    """A registry that ignores Range (200, the whole blob): the bytes already held are skipped,
    the stream the consumer sees stays in order."""
    blob = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    desc = Descriptor(im.MT_OCI_LAYER_GZIP, digest, len(blob))

    def handler(method, path, headers):
        return 200, {}, (blob[i:i + 65536] for i in range(0, len(blob), 65536))

    async def main():
        store = ContentStore(tmp_path / "content")
        with store.ingest(f"blob-{digest}", desc) as w:  # an earlier, interrupted download
            await w.write(blob[:100_000])
        async with client_at(tmp_path) as client:
            assert await collect(client.fetch_blob(ref(srv, "x:latest"), desc)) == blob

    with TinyServer(handler) as srv:
        run(main)
    assert [h.get("range") for _m, _p, h in srv.requests] == ["bytes=100000-"]


def test_concurrent_fetches_of_one_blob_download_it_once(fault_proxy, test_images, tmp_path):
    bb = test_images["busybox:latest"].image
    layer = layer_desc(bb)
    results: list[bytes] = []

    async def main():
        async with client_at(tmp_path) as client:
            async def one():
                results.append(await collect(client.fetch_blob(ref(fault_proxy, "busybox:latest"),
                                                               layer)))

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(one)

    run(main)
    assert len(results) == 3 and all(r == bb.blob(bb.layer_digests[0]) for r in results)
    assert fault_proxy.request_count(str(layer.digest), "GET") == 1


def test_flipped_byte_keeps_nothing(fault_proxy, test_images, tmp_path):
    bb = test_images["busybox:latest"].image
    layer = layer_desc(bb)
    fault_proxy.flip_byte("/blobs/")

    async def main():
        async with client_at(tmp_path) as client:
            with pytest.raises(InvalidArgument, match=f"failed to verify blob {layer.digest}"):
                await collect(client.fetch_blob(ref(fault_proxy, "busybox:latest"), layer))
            assert not client.content.exists(layer.digest)
            assert client.content.ingests() == []
            assert list((client.content.root / "ingest").iterdir()) == []
            # a manifest with a flipped byte does not verify either
            fault_proxy.flip_byte("/manifests/")
            with pytest.raises(InvalidArgument, match="the registry says sha256:.*the content hashes to"):
                await client.resolve(ref(fault_proxy, "busybox:latest"))

    run(main)


def test_oversized_and_schema1_manifests(tmp_path):
    big = b'{"schemaVersion":2,"layers":[' + b" " * MAX_MANIFEST_BYTES + b"]}"
    schema1 = json.dumps({"schemaVersion": 1, "name": "x", "tag": "latest"}).encode()

    def handler(method, path, headers):
        if path.endswith("/big/manifests/latest"):
            return 200, {"Content-Type": im.MT_OCI_MANIFEST}, big
        if path.endswith("/chunked/manifests/latest"):  # no Content-Length: counted while read
            return 200, {"Content-Type": im.MT_OCI_MANIFEST}, (big[i:i + 65536]
                                                              for i in range(0, len(big), 65536))
        if path.endswith("/old/manifests/latest"):
            return 200, {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}, schema1
        if path.endswith("/generic/manifests/latest"):
            return 200, {"Content-Type": "application/json"}, schema1
        return 200, {"Content-Type": "application/vnd.example.thing"}, b"{}"

    with TinyServer(handler) as srv:
        async def main():
            async with client_at(tmp_path) as client:
                for repo in ("big", "chunked"):
                    with pytest.raises(InvalidArgument, match="more than the 4194304"):
                        await client.resolve(ref(srv, f"{repo}:latest"))
                for repo in ("old", "generic"):
                    with pytest.raises(InvalidArgument, match="schema 1 images are not supported"):
                        await client.resolve(ref(srv, f"{repo}:latest"))
                with pytest.raises(InvalidArgument, match="unsupported manifest media type "
                                                          "application/vnd.example.thing"):
                    await client.resolve(ref(srv, "other:latest"))

        run(main)


def test_5xx_is_retried_then_unavailable(tmp_path):
    def handler(method, path, headers):
        return 500, {"Content-Type": "application/json"}, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}'

    with TinyServer(handler) as srv:
        async def main():
            async with client_at(tmp_path, attempts=3) as client:
                with pytest.raises(Unavailable, match="500 Internal Server Error"):
                    await client.resolve(ref(srv, "busybox:latest"))

        run(main)
    assert len(srv.requests) == 3


def test_transient_5xx_recovers(fault_proxy, test_images, tmp_path):
    fault_proxy.fail_with(503, "/manifests/", times=2)

    async def main():
        async with client_at(tmp_path, attempts=3) as client:
            desc, _ = await client.resolve(ref(fault_proxy, "busybox:latest"))
            assert str(desc.digest) == test_images["busybox:latest"].digest

    run(main)


def test_connection_refused_and_tls(tmp_path):
    port = closed_port()

    async def refused():
        async with client_at(tmp_path, attempts=2) as client:
            with pytest.raises(Unavailable, match="connection refused"):
                await client.resolve(ref(f"127.0.0.1:{port}", "busybox:latest"))

    run(refused)

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": im.MT_OCI_MANIFEST,
                           "config": {}, "layers": []}).encode()

    def handler(method, path, headers):
        return 200, {"Content-Type": im.MT_OCI_MANIFEST}, manifest

    with TinyServer(handler, tls=tls) as srv:
        async def main():
            strict = make_client(tmp_path, attempts=1, loopback_insecure=False)
            lenient = make_client(tmp_path)  # loopback is insecure: http, then unverified https
            try:
                with pytest.raises(Unavailable, match="tls: failed to verify certificate"):
                    await strict.resolve(ref(srv, "x:latest"))
                desc, data = await lenient.resolve(ref(srv, "x:latest"))
                assert data == manifest and lenient._schemes[srv.host] == "https"
            finally:
                await strict.aclose()
                await lenient.aclose()

        run(main)


# ------------------------------------------------------------------------------ mirrors
def test_mirror_first_then_upstream(registry, fresh_registry, test_images, tmp_path):
    bb = test_images["busybox:latest"]
    with FaultProxy(fresh_registry) as empty_mirror:
        async def main():
            cfg = {"mirrors": {registry.host: [empty_mirror.url]}}
            async with client_at(tmp_path, cfg) as client:
                desc, _ = await client.resolve(ref(registry, "busybox:latest"))
                assert str(desc.digest) == bb.digest
                await client.fetch_blob_to_store(ref(registry, "busybox:latest"),
                                                 config_desc(bb.image))

        run(main)
        asked = [(r.method, r.path, r.status) for r in empty_mirror.requests]
        assert asked == [("GET", "/v2/busybox/manifests/latest", 404),
                         ("GET", f"/v2/busybox/blobs/{bb.config_digest}", 404)]


def test_mirror_serves_when_upstream_is_down(fault_proxy, test_images, tmp_path):
    bb = test_images["busybox:latest"]
    down = f"127.0.0.1:{closed_port()}"

    async def main():
        cfg = {"mirrors": {down: [f"http://{fault_proxy.host}"]}}
        async with client_at(tmp_path, cfg, attempts=1) as client:
            r = ref(down, "busybox:latest")
            desc, _ = await client.resolve(r)
            assert str(desc.digest) == bb.digest
            await client.fetch_blob_to_store(r, layer_desc(bb.image))
            # a mirror failing mid-blob is resumed on it too
            fault_proxy.cut_after(10_000, "/blobs/")
            data = await collect(client.fetch_blob(r, config_desc(bb.image)))
            assert hashlib.sha256(data).hexdigest() == bb.config_digest.split(":")[1]

    run(main)
    assert fault_proxy.request_count("/v2/busybox/manifests/latest") == 1


# ------------------------------------------------------------------------------ redirects
def test_redirect_to_blob_storage_without_authorization(tmp_path):
    blob = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    def storage(method, path, headers):
        return 200, {"Content-Type": "application/octet-stream"}, blob

    with TinyServer(storage) as store_srv:
        def registry(method, path, headers):
            if "authorization" not in headers:
                return 401, {"WWW-Authenticate": 'Basic realm="tiny"'}, b""
            return 307, {"Location": f"http://{store_srv.host}/bucket/{digest}?sig=abc"}, b""

        with TinyServer(registry) as reg_srv:
            async def main():
                async with client_at(tmp_path) as client:
                    desc = Descriptor(im.MT_OCI_LAYER_GZIP, digest, len(blob))
                    got = await collect(client.fetch_blob(ref(reg_srv, "x:latest"), desc, CREDS))
                    assert got == blob and client.content.exists(digest)

            run(main)
    assert [("authorization" in h) for _m, _p, h in reg_srv.requests] == [False, True]
    assert len(store_srv.requests) == 1
    method, path, headers = store_srv.requests[0]
    assert path == f"/bucket/{digest}?sig=abc" and "authorization" not in headers


# ------------------------------------------------------------------------------ push
def test_push_round_trip(fresh_registry, tmp_path):
    info = im.build_image(tmp_path / "layout", [im.marker_layer("pushed by core")])
    layer, config = info.layers[0], info.config_digest
    r = ref(fresh_registry, "pushed/image:v1")

    async def main():
        async with client_at(tmp_path) as client:
            # the config from memory, the layer from the content store
            layer_d = Descriptor(layer.media_type, layer.digest, layer.size)
            await client.content.write_blob(info.blob(layer.digest), layer_d)
            config_d = Descriptor(im.MT_OCI_CONFIG, config, len(info.config_bytes))
            assert await client.push_blob(r, config_d, info.config_bytes) is True
            assert await client.push_blob(r, layer_d) is True
            assert await client.push_blob(r, layer_d) is False  # the registry has it
            desc = await client.push_manifest(r, info.manifest_media_type, info.manifest_bytes)
            assert str(desc.digest) == info.manifest_digest
            # pull it back, with a client of its own (empty store)
            other = make_client(tmp_path / "other")
            try:
                got, data = await other.resolve(r)
                assert got == desc and data == info.manifest_bytes
                assert await collect(other.fetch_blob(r, layer_d)) == info.blob(layer.digest)
                assert await other.tags(r) == ["v1"]
            finally:
                await other.aclose()
            with pytest.raises(InvalidArgument):
                await client.push_blob(r, layer_d, b"not the layer")
            # a one-shot stream (what core.engine.images.push hands over) to another repository
            other_repo = ref(fresh_registry, "pushed/other:v1")
            assert await client.push_blob(other_repo, layer_d,
                                          client.content.open(layer_d.digest)) is True
            assert await client.push_blob(other_repo, layer_d) is False

    run(main)


def test_push_needs_credentials_on_token_registry(token_registry, tmp_path):
    data = b"a blob pushed through a token registry\n"
    desc = Descriptor(im.MT_OCI_LAYER, Digest.from_bytes(data), len(data))
    r = ref(token_registry, "pushed/tokens:latest")

    async def main():
        async with client_at(tmp_path) as client:
            with pytest.raises((Unauthorized, Forbidden)):
                await client.push_blob(r, desc, data)
            assert await client.push_blob(r, desc, data, CREDS) is True
            assert await client.push_blob(r, desc, data, CREDS) is False

    run(main)
