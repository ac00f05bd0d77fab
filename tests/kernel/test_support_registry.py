"""The pull-test infrastructure itself: real docker-registry, skopeo-pushed
images, token server, fault proxy.  Nothing here touches the engine."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import urllib.parse
from pathlib import Path

import pytest

from core.testing.registry_server import Registry, http_request, parse_www_authenticate
from core.testing.token_server import decode_jwt
from tests.support import images as im
from tests.support.faultproxy import FaultProxy

if "tests.support.fixtures" not in sys.modules:  # tests/conftest.py may already provide them
    pytest_plugins = ["tests.support.fixtures"]

TEST_USER, TEST_PASSWORD = "alice", "alice-password"  # as in tests.support.fixtures


def _get_manifest(host: str, repo: str, ref: str, headers=None):
    return http_request(
        f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": im.MANIFEST_ACCEPT, **(headers or {})}
    )


def _get_blob(host: str, repo: str, digest: str, headers=None, method="GET"):
    return http_request(f"http://{host}/v2/{repo}/blobs/{digest}", headers=headers, method=method)


# --------------------------------------------------------------------------
# images built with pure Python


def test_build_is_deterministic(tmp_path):
    layers = im.layered_layers()
    a = im.build_image(tmp_path / "a", layers)
    b = im.build_image(tmp_path / "b", im.layered_layers())
    assert a.manifest_digest == b.manifest_digest
    assert a.layer_digests == b.layer_digests
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()
    z1 = im.build_image(tmp_path / "z1", [im.marker_layer("x")], compression="zstd")
    z2 = im.build_image(tmp_path / "z2", [im.marker_layer("x")], compression="zstd")
    assert z1.manifest_digest == z2.manifest_digest
    assert z1.layers[0].media_type == im.MT_OCI_LAYER_ZSTD


def test_layer_tar_members(tmp_path):
    info = im.build_image(tmp_path / "l", im.layered_layers())
    whiteout_layer = info.blob(info.layer_digests[2])
    tf = tarfile.open(fileobj=io.BytesIO(gzip.decompress(whiteout_layer)))
    names = tf.getnames()
    assert "data/.wh.remove-me.txt" in names
    assert "opq/.wh..wh..opq" in names
    assert names.index("opq") < names.index("opq/.wh..wh..opq") < names.index("opq/new.txt")
    for m in tf.getmembers():
        assert m.mtime == im.FIXED_MTIME and m.uname == "" and m.gname == ""
    assert hashlib.sha256(gzip.decompress(whiteout_layer)).hexdigest() == info.diff_ids[2].split(":")[1]
    busybox = tarfile.open(fileobj=io.BytesIO(gzip.decompress(info.blob(info.layer_digests[0]))))
    assert busybox.getmember("bin/busybox").mode == 0o755
    assert busybox.getmember("bin/sh").issym() and busybox.getmember("bin/sh").linkname == "busybox"
    assert busybox.getmember("tmp").mode == 0o1777
    assert b"app:x:1000:1000" in busybox.extractfile("etc/passwd").read()
    for applet in ("sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "hostname", "env", "ps",
                   "mount", "touch", "mkdir", "rm", "wc", "head", "grep"):
        assert f"bin/{applet}" in info.files, applet


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
def test_merged_file_view_matches_umoci(tmp_path):
    """ImageInfo.files (what pull tests compare against) agrees with an
    independent unpacker on whiteouts, opaque dirs, type changes, links."""
    layout = tmp_path / "layout"
    info = im.build_image(layout, im.layered_layers())
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)], check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    rootfs = bundle / "rootfs"
    seen = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            seen[p.relative_to(rootfs).as_posix()] = p
    assert sorted(seen) == info.paths
    for rel, entry in info.files.items():
        st = os.lstat(seen[rel])
        assert (st.st_uid, st.st_gid) == (entry.uid, entry.gid), rel
        if entry.type == "symlink":
            assert stat.S_ISLNK(st.st_mode) and os.readlink(seen[rel]) == entry.target, rel
            continue
        assert stat.S_IMODE(st.st_mode) == entry.mode, rel
        if entry.type == "dir":
            assert stat.S_ISDIR(st.st_mode), rel
        else:
            assert stat.S_ISREG(st.st_mode), rel
            assert hashlib.sha256(seen[rel].read_bytes()).hexdigest() == entry.sha256, rel
        if entry.type == "hardlink":
            assert st.st_ino == os.lstat(seen[entry.target]).st_ino
    assert "opq/old-1.txt" not in info.files and "opq/new.txt" in info.files
    assert info.files["replaced"].type == "dir" and info.files["dir-to-file"].type == "file"


# --------------------------------------------------------------------------
# the registry and the stock images


def test_registry_serves_every_stock_image(test_images):
    host = test_images.host
    assert set(test_images) >= {"busybox:latest", "busybox:1.0", "busybox:1.1", "layered:latest",
                                "multi:latest", "zstd:latest", "many:latest"}
    for name in test_images:
        p = test_images[name]
        status, headers, body = _get_manifest(host, p.repo, p.tag)
        assert status == 200, name
        assert "sha256:" + hashlib.sha256(body).hexdigest() == p.digest == p.info.manifest_digest, name
        assert headers["docker-content-digest"] == p.digest
        assert headers["content-type"] == p.media_type == p.info.manifest_media_type
        if p.is_index:
            continue
        m = json.loads(body)
        assert m["config"]["digest"] == p.config_digest
        assert [layer["digest"] for layer in m["layers"]] == p.layer_digests
        status, _, cfg = _get_blob(host, p.repo, p.config_digest)
        assert status == 200 and "sha256:" + hashlib.sha256(cfg).hexdigest() == p.config_digest
        assert json.loads(cfg)["rootfs"]["diff_ids"] == p.diff_ids
    assert test_images["busybox:latest"].media_type == im.MT_DOCKER_MANIFEST
    assert test_images["layered:latest"].media_type == im.MT_OCI_MANIFEST
    assert len(test_images["many:latest"].layer_digests) == 130
    assert test_images.tags("busybox") == ["1.0", "1.1", "latest"]
    status, _, body = http_request(f"{test_images.url}/v2/busybox/tags/list")
    assert status == 200 and sorted(json.loads(body)["tags"]) == ["1.0", "1.1", "latest"]


def test_layer_blobs_are_exactly_ours(test_images):
    host = test_images.host
    bb = test_images["busybox:latest"]
    status, headers, blob = _get_blob(host, bb.repo, bb.layer_digests[0])
    assert status == 200 and "sha256:" + hashlib.sha256(blob).hexdigest() == bb.layer_digests[0]
    tf = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)))
    assert tf.extractfile("bin/busybox").read() == Path(im.HOST_BUSYBOX).read_bytes()
    z = test_images["zstd:latest"]
    status, headers, blob = _get_blob(host, z.repo, z.layer_digests[0], method="HEAD")
    assert status == 200 and int(headers["content-length"]) == z.image.layers[0].size
    status, _, blob = _get_blob(host, z.repo, z.layer_digests[1])
    assert im.decompress(blob, im.MT_OCI_LAYER_ZSTD).startswith(b"etc/")
    # the registry honours Range (what a resuming client relies on)
    status, headers, part = _get_blob(host, bb.repo, bb.layer_digests[0], headers={"Range": "bytes=100-199"})
    assert status == 206 and len(part) == 100


def test_multiplatform_index(test_images):
    host = test_images.host
    multi = test_images["multi:latest"]
    index = json.loads(multi.manifest_bytes)
    assert index["mediaType"] == im.MT_OCI_INDEX
    plats = [(e["platform"]["os"], e["platform"]["architecture"]) for e in index["manifests"]]
    assert plats == [("linux", "amd64"), ("linux", "arm64"), ("unknown", "unknown"), ("unknown", "unknown")]
    for pstr, info in multi.platforms.items():
        status, _, body = _get_manifest(host, multi.repo, info.manifest_digest)
        assert status == 200 and body == info.manifest_bytes
        assert info.config["architecture"] == pstr.split("/")[1]
    for pstr, att in multi.attestations.items():
        entry = next(e for e in index["manifests"] if e["digest"] == att.manifest_digest)
        assert entry["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
        assert entry["annotations"]["vnd.docker.reference.digest"] == multi.platforms[pstr].manifest_digest
        status, _, body = _get_manifest(host, multi.repo, att.manifest_digest)
        assert status == 200 and json.loads(body)["layers"][0]["mediaType"] == im.MT_IN_TOTO
    assert "bin/busybox" in multi.files  # host platform has busybox
    assert multi.platforms["linux/arm64/v8"].files["etc/marker"].content == b"linux/arm64\n"


def test_push_as_v2s2_and_oci(tmp_path, fresh_registry):
    """push(format=...) converts with skopeo; digests are then the registry's."""
    info = im.build_image(tmp_path / "l", [im.marker_layer("fmt")])
    r1 = im.push(tmp_path / "l", "fmt:v2s2", fresh_registry, format="v2s2")
    assert r1.media_type == im.MT_DOCKER_MANIFEST and r1.digest != info.manifest_digest
    assert json.loads(r1.manifest_bytes)["layers"][0]["digest"] == info.layer_digests[0]
    r2 = im.push(tmp_path / "l", "fmt:oci", fresh_registry)
    assert r2.media_type == im.MT_OCI_MANIFEST and r2.digest == info.manifest_digest


def test_registry_stops_and_cleans_up():
    reg = Registry().start()
    pid, workdir = reg.pid, reg.workdir
    assert workdir.exists() and os.path.exists(f"/proc/{pid}")
    reg.stop()
    assert not workdir.exists()
    assert not os.path.exists(f"/proc/{pid}")  # reaped, not a zombie
    with pytest.raises(OSError):
        http_request(reg.url + "/v2/", timeout=1)


# --------------------------------------------------------------------------
# token auth


def test_token_flow_with_plain_urllib(token_registry, test_images):
    ts = token_registry.token_server
    ts.reset_counters()
    bb = test_images["busybox:latest"]
    status, headers, _ = _get_manifest(token_registry.host, bb.repo, bb.tag)
    assert status == 401
    scheme, params = parse_www_authenticate(headers["www-authenticate"])
    assert scheme == "bearer"
    assert params == {"realm": ts.realm, "service": ts.service, "scope": "repository:busybox:pull"}
    q = urllib.parse.urlencode({"service": params["service"], "scope": params["scope"]})
    status, _, body = http_request(f"{params['realm']}?{q}")  # anonymous
    assert status == 200
    token = json.loads(body)["token"]
    hdr, claims = decode_jwt(token)
    assert hdr["alg"] == "RS256" and hdr["x5c"]
    assert claims["access"] == [{"type": "repository", "name": "busybox", "actions": ["pull"]}]
    for _ in range(3):  # the same token is good for many requests
        status, headers, body = _get_manifest(token_registry.host, bb.repo, bb.tag, {"Authorization": f"Bearer {token}"})
        assert status == 200 and headers["docker-content-digest"] == bb.digest
    status, _, blob = _get_blob(token_registry.host, bb.repo, bb.config_digest, {"Authorization": f"Bearer {token}"})
    assert status == 200 and "sha256:" + hashlib.sha256(blob).hexdigest() == bb.config_digest
    assert ts.issued == 1
    # a token for one repository does not open another
    other = test_images["layered:latest"]
    status, _, _ = _get_manifest(token_registry.host, other.repo, other.tag, {"Authorization": f"Bearer {token}"})
    assert status == 401


def test_token_private_repo_needs_credentials(token_registry, test_images):
    ts = token_registry.token_server
    p = test_images["private/busybox:latest"]
    scope = "repository:private/busybox:pull"
    anon = token_registry.get_token(scope)
    status, headers, _ = _get_manifest(token_registry.host, p.repo, p.tag, {"Authorization": f"Bearer {anon}"})
    assert status == 401 and 'error="insufficient_scope"' in headers["www-authenticate"]
    q = urllib.parse.urlencode({"service": ts.service, "scope": scope})
    bad = "Basic " + base64.b64encode(f"{TEST_USER}:wrong".encode()).decode()
    status, _, _ = http_request(f"{ts.realm}?{q}", headers={"Authorization": bad})
    assert status == 401
    tok = token_registry.get_token(scope, f"{TEST_USER}:{TEST_PASSWORD}")
    status, headers, _ = _get_manifest(token_registry.host, p.repo, p.tag, {"Authorization": f"Bearer {tok}"})
    assert status == 200 and headers["docker-content-digest"] == p.digest
    # anonymous pulls can be switched off
    ts.anonymous_pull = False
    try:
        status, _, _ = http_request(f"{ts.realm}?{urllib.parse.urlencode({'service': ts.service, 'scope': 'repository:busybox:pull'})}")
        assert status == 401
    finally:
        ts.anonymous_pull = True


def test_token_oauth_post_and_refresh(token_registry):
    ts = token_registry.token_server
    form = {"grant_type": "password", "username": TEST_USER, "password": TEST_PASSWORD, "service": ts.service,
            "scope": "repository:busybox:pull", "client_id": "core-tests", "access_type": "offline"}
    status, _, body = http_request(ts.realm, method="POST", data=urllib.parse.urlencode(form).encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    data = json.loads(body)
    assert data["access_token"] and data["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": data["refresh_token"], "service": ts.service,
            "scope": "repository:busybox:pull", "client_id": "core-tests"}
    status, _, body = http_request(ts.realm, method="POST", data=urllib.parse.urlencode(form).encode())
    assert status == 200
    assert decode_jwt(json.loads(body)["access_token"])[1]["sub"] == TEST_USER
    # an outage of the token endpoint can be injected
    ts.fail_next = 1
    q = urllib.parse.urlencode({"service": ts.service, "scope": "repository:busybox:pull"})
    assert [http_request(f"{ts.realm}?{q}")[0] for _ in range(2)] == [503, 200]


def test_skopeo_authenticates_against_token_registry(token_registry, test_images):
    """A real client (skopeo) accepts our token server."""
    ts = token_registry.token_server
    before = ts.issued
    p = test_images["private/busybox:latest"]
    out = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--raw", "--tls-verify=false",
         "--creds", f"{TEST_USER}:{TEST_PASSWORD}", f"docker://{p.ref(token_registry)}"],
        capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert "sha256:" + hashlib.sha256(out.stdout).hexdigest() == p.digest
    assert ts.issued > before
    assert any(r.user == TEST_USER for r in ts.requests)


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="htpasswd (apache2-utils) not installed")
def test_basic_auth_registry(registry, test_images):
    with Registry(auth="basic", users={"bob": "bob-pw"}, storage_dir=registry.storage_dir) as reg:
        status, headers, _ = _get_manifest(reg.host, "busybox", "latest")
        assert status == 401 and headers["www-authenticate"].startswith("Basic ")
        good = "Basic " + base64.b64encode(b"bob:bob-pw").decode()
        status, headers, _ = _get_manifest(reg.host, "busybox", "latest", {"Authorization": good})
        assert status == 200 and headers["docker-content-digest"] == test_images["busybox:latest"].digest


# --------------------------------------------------------------------------
# fault proxy


def test_proxy_passes_through_keep_alive(fault_proxy, test_images):
    bb = test_images["busybox:latest"]
    conn = http.client.HTTPConnection("127.0.0.1", fault_proxy.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", f"/v2/busybox/manifests/latest", headers={"Accept": im.MANIFEST_ACCEPT})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == bb.digest
        conn.request("HEAD", f"/v2/busybox/blobs/{bb.layer_digests[0]}")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        conn.request("GET", f"/v2/busybox/blobs/{bb.config_digest}")
        resp = conn.getresponse()
        assert "sha256:" + hashlib.sha256(resp.read()).hexdigest() == bb.config_digest
    finally:
        conn.close()
    assert fault_proxy.connections == 1
    reqs = fault_proxy.matching("/v2/busybox/")
    assert [(r.method, r.status) for r in reqs] == [("GET", 200), ("GET", 200), ("HEAD", 200), ("GET", 200)]
    assert reqs[0].header("accept") == im.MANIFEST_ACCEPT
    assert all(r.fault is None for r in reqs)


def test_proxy_cut_then_range_resume(fault_proxy, test_images):
    bb = test_images["busybox:latest"]
    digest = bb.layer_digests[0]
    size = bb.image.layers[0].size
    fault_proxy.cut_after(50_000, "/blobs/")
    conn = http.client.HTTPConnection("127.0.0.1", fault_proxy.port, timeout=10)
    conn.request("GET", f"/v2/busybox/blobs/{digest}")
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == size
    with pytest.raises(http.client.IncompleteRead) as exc:
        resp.read()
    first = exc.value.partial
    conn.close()
    assert len(first) == 50_000
    # resume: the fault fired once, the Range request goes through whole
    status, headers, rest = http_request(f"{fault_proxy.url}/v2/busybox/blobs/{digest}",
                                         headers={"Range": f"bytes={len(first)}-"})
    assert status == 206 and len(rest) == size - 50_000
    assert "sha256:" + hashlib.sha256(first + rest).hexdigest() == digest
    reqs = fault_proxy.matching(digest)
    assert [r.fault for r in reqs] == ["cut", None]
    assert reqs[0].body_bytes_sent == 50_000
    assert reqs[1].header("Range") == "bytes=50000-" and reqs[1].status == 206


def test_proxy_flips_one_byte(fault_proxy, test_images):
    bb = test_images["busybox:latest"]
    digest = bb.config_digest
    fault_proxy.flip_byte(digest)
    url = f"{fault_proxy.url}/v2/busybox/blobs/{digest}"
    _, _, bad = http_request(url)
    _, _, good = http_request(url)
    assert len(bad) == len(good) and "sha256:" + hashlib.sha256(good).hexdigest() == digest
    assert sum(a != b for a, b in zip(bad, good)) == 1
    assert bad[len(good) // 2] == good[len(good) // 2] ^ 0xFF
    assert [r.fault for r in fault_proxy.matching(digest)] == ["flip", None]


def test_proxy_injects_status_and_relays_pushes(fault_proxy, tmp_path):
    fault_proxy.fail_with(503, "/manifests/", times=2)
    url = f"{fault_proxy.url}/v2/busybox/manifests/latest"
    assert [http_request(url, headers={"Accept": im.MANIFEST_ACCEPT})[0] for _ in range(3)] == [503, 503, 200]
    # a push through the proxy (request bodies, upload Location URLs through the proxy)
    info = im.build_image(tmp_path / "l", [im.marker_layer("via proxy")])
    res = im.push(tmp_path / "l", "viaproxy:latest", fault_proxy)
    assert res.digest == info.manifest_digest
    assert fault_proxy.request_count("/v2/viaproxy/blobs/uploads/") >= 2
    assert any(r.method == "PUT" and "/manifests/" in r.target for r in fault_proxy.requests)


def test_proxy_as_context_manager(registry):
    with FaultProxy(registry) as proxy:
        url = proxy.url
        assert http_request(url + "/v2/")[0] == 200
    with pytest.raises(OSError):
        http_request(url + "/v2/", timeout=1)


def test_proxy_handles_chunked_responses():
    """Chunked bodies (the registry itself sends Content-Length) are relayed,
    flipped and cut on the de-chunked data."""
    chunks = [b"hello ", b"chunked ", b"world"]
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(4096)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
                    try:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
                    except OSError:
                        break

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with FaultProxy(f"127.0.0.1:{srv.getsockname()[1]}") as proxy:
            proxy.flip_byte("/flip", offset=7)
            proxy.cut_after(8, "/cut")
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("GET", "/plain")
            assert conn.getresponse().read() == b"hello chunked world"
            conn.request("GET", "/flip")
            flipped = conn.getresponse().read()
            assert flipped[:7] + flipped[8:] == b"hello chunked world"[:7] + b"hello chunked world"[8:]
            assert flipped[7] == ord("h") ^ 0xFF
            conn.request("GET", "/cut")
            with pytest.raises(http.client.IncompleteRead) as exc:
                conn.getresponse().read()
            assert exc.value.partial == b"hello ch"
            conn.close()
            assert [r.fault for r in proxy.requests] == [None, "flip", "cut"]
    finally:
        stop.set()
        try:
            srv.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        srv.close()
        t.join(5)
