"""Images end to end: core's CLI, the docker SDK and CLI against a real registry on loopback.

The images are built by the suite from busybox-static and pushed with skopeo
(tests/support), so a pull bug cannot hide behind a push bug of ours.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import trio

from core import plugins


def pull(env, ref, *args, check=True):
    proc = env.run("pull", *args, ref, timeout=300)
    if check:
        assert proc.returncode == 0, (proc.stdout, proc.stderr, env.daemon_log()[-3000:])
    return proc


def inspect(env, name):
    proc = env.run("image", "inspect", name)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


@contextlib.contextmanager
def mounted(env, image_id: str, storage: str = "overlay"):
    """The image's root filesystem, mounted read-only through the storage driver's own API."""
    from core.storage.mount import mount_all, unmount

    info = inspect(env, image_id)
    from core.engine.images.manifest import chain_ids
    from core.types import Digest

    top = str(chain_ids([Digest.parse(d) for d in info["RootFS"]["Layers"]])[-1])
    loaded = plugins.load("storage", storage)
    context = plugins.context_for("storage", storage, env.data_root, env.exec_root)
    sn = loaded.create(context)
    key = f"test-view-{os.getpid()}"
    target = Path(tempfile.mkdtemp(prefix="core-mnt-", dir="/tmp"))
    mounts = trio.run(sn.view, key, top)
    try:
        mount_all(mounts, str(target))
        try:
            yield target
        finally:
            unmount(str(target))
    finally:
        trio.run(sn.remove, key)
        trio.run(sn.aclose)
        shutil.rmtree(target, ignore_errors=True)


def assert_tree_matches(root: Path, files) -> None:
    """The mounted tree holds exactly the files the test image builder says the image has."""
    import hashlib
    import stat

    for path, entry in files.items():
        p = root / path.lstrip("/")
        st = os.lstat(p)
        kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
                stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}[stat.S_IFMT(st.st_mode)]
        want = "file" if entry.type == "hardlink" else entry.type
        assert kind == want, (path, kind, entry)
        if kind != "symlink":
            assert stat.S_IMODE(st.st_mode) == entry.mode, (path, oct(st.st_mode), oct(entry.mode))
        assert (st.st_uid, st.st_gid) == (entry.uid, entry.gid), path
        if kind == "symlink":
            assert os.readlink(p) == entry.target, path
        if kind == "file" and entry.sha256:
            assert hashlib.sha256(p.read_bytes()).hexdigest() == entry.sha256, path
    present = {"/" + str(p.relative_to(root)) for p in root.rglob("*")}
    expected = {("/" + f.lstrip("/")).rstrip("/") for f in files}
    assert present == expected, (present ^ expected)


@pytest.fixture(scope="module")
def env(test_images):
    from tests.conftest import CoreEnv

    e = CoreEnv()
    try:
        e.run("version", check=True)
        yield e
    finally:
        e.cleanup()


# -- pull ------------------------------------------------------------------------------------------


def test_pull_by_tag_prints_what_docker_prints(env, test_images):
    img = test_images["busybox:latest"]
    proc = pull(env, img.reference)
    out = proc.stdout.splitlines()
    layer = img.layer_digests[0].split(":")[1][:12]
    assert out[0] == "latest: Pulling from busybox"
    assert f"{layer}: Pull complete" in out
    assert f"Digest: {img.digest}" in out
    assert f"Status: Downloaded newer image for {img.reference}" in out
    assert out[-1] == img.reference
    again = pull(env, img.reference).stdout
    assert f"Status: Image is up to date for {img.reference}" in again
    info = inspect(env, img.reference)
    assert info["Id"] == img.config_digest
    assert info["RootFS"] == {"Type": "layers", "Layers": img.diff_ids}
    assert info["RepoTags"] == [img.reference]
    assert info["RepoDigests"] == [f"{img.reference.rsplit(':', 1)[0]}@{img.digest}"]
    assert info["Os"] == "linux"


def test_images_lists_with_digests_and_quiet(env, test_images):
    img = test_images["busybox:latest"]
    pull(env, img.reference)
    table = env.run("images", check=True).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    repo = img.reference.rsplit(":", 1)[0]
    row = next(r for r in table[1:] if r.startswith(repo + " "))
    assert img.config_digest.split(":")[1][:12] in row and " latest " in row
    digests = env.run("images", "--digests", repo, check=True).stdout.splitlines()
    assert "DIGEST" in digests[0] and img.digest in digests[1]
    quiet = env.run("images", "-q", repo, check=True).stdout.split()
    assert quiet == [img.config_digest.split(":")[1][:12]]
    assert img.config_digest in env.run("images", "-q", "--no-trunc", check=True).stdout


def test_pull_by_digest(env, test_images):
    img = test_images["layered:latest"]
    ref = img.ref(by_digest=True)
    out = pull(env, ref).stdout.splitlines()
    assert out[0] == f"{img.digest}: Pulling from layered"
    assert f"Status: Downloaded newer image for {ref}" in out
    info = inspect(env, ref)
    assert info["RepoTags"] == [] and info["Id"] == img.config_digest
    rows = env.run("images", "--digests", img.reference.rsplit(":", 1)[0], check=True).stdout.splitlines()
    assert "<none>" in rows[1] and img.digest in rows[1]


def test_layered_image_unpacks_whiteouts_exactly(env, test_images):
    img = test_images["layered:latest"]
    pull(env, img.reference)
    with mounted(env, img.config_digest) as root:
        assert_tree_matches(root, img.files)


def test_pull_all_tags_shares_layers(env, test_images):
    out = pull(env, test_images["busybox:1.0"].reference.rsplit(":", 1)[0], "-a").stdout
    shared = test_images["busybox:1.0"].layer_digests[0].split(":")[1][:12]
    assert f"{shared}: Already exists" in out  # pulled earlier as busybox:latest's only layer
    for tag in test_images.tags("busybox"):
        assert f"{tag}: Pulling from busybox" in out
    lines = out.rstrip().splitlines()
    assert lines[-1] == f"{test_images.host}/busybox"   # docker ends with the repository pulled
    assert lines[-2] == f"Status: Downloaded newer image for {test_images.host}/busybox" or \
        "Status: Image is up to date" in out
    listed = env.run("images", f"{test_images.host}/busybox", check=True).stdout
    for tag in test_images.tags("busybox"):
        assert f" {tag} " in listed


def test_multi_platform_index_selects_host_and_skips_attestations(env, test_images):
    img = test_images["multi:latest"]
    pull(env, img.reference)
    info = inspect(env, img.reference)
    assert info["Id"] == img.config_digest  # the host platform's manifest
    assert info["Architecture"] == "amd64"
    # another platform on request
    arm = img.platforms["linux/arm64/v8"]
    pull(env, img.reference, "--platform", "linux/arm64")
    assert inspect(env, img.reference)["Id"] == arm.config_digest
    bad = pull(env, img.reference, "--platform", "linux/s390x", check=False)
    assert bad.returncode == 1 and "no matching manifest for linux/s390x" in bad.stderr


def test_zstd_layers(env, test_images):
    img = test_images["zstd:latest"]
    pull(env, img.reference)
    with mounted(env, img.config_digest) as root:
        assert_tree_matches(root, img.files)


def test_130_layers_pull_and_mount(env, test_images):
    img = test_images["many:latest"]
    pull(env, img.reference)
    with mounted(env, img.config_digest) as root:
        assert_tree_matches(root, img.files)


def test_vfs_driver_side_by_side(env, test_images):
    img = test_images["layered:latest"]
    proc = env.run("--driver", "storage=vfs", "pull", img.reference, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (env.data_root / "storage" / "vfs").is_dir()
    with mounted(env, img.config_digest, storage="vfs") as root:
        assert_tree_matches(root, img.files)
    with mounted(env, img.config_digest, storage="overlay") as root:
        assert_tree_matches(root, img.files)


# -- rmi, tag, history, prune ------------------------------------------------------------------------


def test_rmi_untags_then_deletes_and_collects(core_env, test_images):
    img = test_images["busybox:1.1"]
    pull(core_env, img.reference)
    core_env.run("tag", img.reference, "mine/copy:v1", check=True)
    first = core_env.run("rmi", "mine/copy:v1", check=True).stdout
    assert first == "Untagged: mine/copy:v1\n"
    second = core_env.run("rmi", img.reference, check=True).stdout.splitlines()
    repo = img.reference.rsplit(":", 1)[0]
    assert second[0] == f"Untagged: {img.reference}"
    assert second[1] == f"Untagged: {repo}@{img.digest}"
    assert second[2] == f"Deleted: {img.config_digest}"
    assert len([line for line in second if line.startswith("Deleted: ")]) == 1 + len(img.layer_digests)
    assert core_env.run("images", "-q").stdout == ""
    blobs = core_env.data_root / "content" / "blobs" / "sha256"
    assert not any(blobs.iterdir()), list(blobs.iterdir())
    snapshots = core_env.data_root / "storage" / "overlay"
    assert not any(p for p in (snapshots / "snapshots").iterdir()) if (snapshots / "snapshots").exists() else True
    missing = core_env.run("rmi", "nosuch:image")
    assert missing.returncode == 1 and "No such image: nosuch:image" in missing.stderr


def test_rmi_by_id_with_force(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    core_env.run("tag", img.reference, "other/name:x", check=True)
    short = img.config_digest.split(":")[1][:12]
    refused = core_env.run("rmi", short)
    assert refused.returncode == 1 and "image is referenced in multiple repositories" in refused.stderr
    out = core_env.run("rmi", "-f", short, check=True).stdout
    assert f"Deleted: {img.config_digest}" in out and "Untagged: other/name:x" in out


def test_history_and_prune(core_env, test_images):
    img = test_images["layered:latest"]
    pull(core_env, img.reference)
    hist = core_env.run("history", img.reference, check=True).stdout.splitlines()
    assert re.split(r"\s{2,}", hist[0].strip()) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert hist[1].startswith(img.config_digest.split(":")[1][:12])
    pruned = core_env.run("image", "prune", "-f", check=True).stdout
    assert "Total reclaimed space: 0B" in pruned  # nothing dangling
    pruned = core_env.run("image", "prune", "-a", "-f", check=True).stdout
    assert f"deleted: {img.config_digest}" in pruned
    assert core_env.run("images", "-q").stdout == ""


# -- auth, faults, mirrors ------------------------------------------------------------------------------


def test_token_auth_login_and_token_reuse(core_env, test_images, token_registry):
    public = test_images["busybox:latest"].ref(token_registry)
    token_registry.token_server.reset_counters()
    pull(core_env, public)
    issued = token_registry.token_server.issued
    assert 1 <= issued <= 2, issued  # one token for the repository scope, reused for every blob
    private = f"{token_registry.host}/private/busybox:latest"
    denied = pull(core_env, private, check=False)
    assert denied.returncode == 1
    assert "pull access denied" in denied.stderr or "unauthorized" in denied.stderr.lower()
    home = core_env.root / "home"
    env = {"DOCKER_CONFIG": str(home / ".docker")}
    bad = core_env.run("login", "-u", "alice", "--password-stdin", token_registry.host, input="wrong\n", env=env)
    assert bad.returncode == 1 and "unauthorized" in bad.stderr.lower()
    ok = core_env.run("login", "-u", "alice", "--password-stdin", token_registry.host, input="alice-password\n",
                      env=env)
    assert ok.returncode == 0 and "Login Succeeded" in ok.stdout, ok.stderr
    saved = json.loads((home / ".docker" / "config.json").read_text())
    assert token_registry.host in saved["auths"]
    proc = core_env.run("pull", private, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = core_env.run("logout", token_registry.host, env=env, check=True).stdout
    assert out == f"Removing login credentials for {token_registry.host}\n"


def test_interrupted_blob_download_resumes_with_range(core_env, test_images, fault_proxy):
    img = test_images["busybox:latest"]
    layer = img.layer_digests[0]
    fault_proxy.cut_after(200_000, f"/blobs/{layer}")
    proc = pull(core_env, img.ref(fault_proxy))
    assert "Pull complete" in proc.stdout
    ranged = [r for r in fault_proxy.requests if layer in r.path and "range" in {k.lower() for k, _ in r.headers}]
    assert ranged, "the resumed download should have sent a Range header"


def test_corrupted_blob_fails_and_stores_nothing(core_env, test_images, fault_proxy):
    img = test_images["busybox:latest"]
    fault_proxy.flip_byte(f"/blobs/{img.layer_digests[0]}", times=None)
    proc = pull(core_env, img.ref(fault_proxy), check=False)
    assert proc.returncode == 1
    assert f"layer {img.layer_digests[0]}" in proc.stderr, proc.stderr
    assert core_env.run("images", "-q").stdout == ""
    blob = core_env.data_root / "content" / "blobs" / "sha256" / img.layer_digests[0].split(":")[1]
    assert not blob.exists()


def test_registry_errors_are_clear(core_env, test_images, fault_proxy):
    img = test_images["busybox:latest"]
    unknown_tag = pull(core_env, f"{test_images.host}/busybox:nope", check=False)
    assert unknown_tag.returncode == 1
    assert f"manifest for {test_images.host}/busybox:nope not found" in unknown_tag.stderr
    unknown_repo = pull(core_env, f"{test_images.host}/nosuchrepo:latest", check=False)
    assert unknown_repo.returncode == 1 and "not found" in unknown_repo.stderr.lower() or \
        "does not exist" in unknown_repo.stderr
    bad_ref = pull(core_env, "Busybox", check=False)
    assert bad_ref.returncode == 1 and "invalid reference format" in bad_ref.stderr
    fault_proxy.fail_with(500, "/manifests/", times=None)
    err = pull(core_env, img.ref(fault_proxy), check=False)
    assert err.returncode == 1 and "500" in err.stderr or "unavailable" in err.stderr.lower()
    for proc in (unknown_tag, unknown_repo, bad_ref, err):
        assert "Traceback" not in proc.stderr


def test_mirror_serves_docker_hub_names(core_env, test_images):
    """``docker.io/library/...`` reaches the local registry through a configured mirror."""
    img = test_images["busybox:latest"]
    src = f"docker://{img.reference}"
    dst = f"docker://{test_images.host}/library/busybox:latest"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
                    src, dst], check=True, capture_output=True, timeout=120)
    core_env.write_config({"registry-mirrors": [test_images.url]})
    proc = pull(core_env, "busybox")
    assert "latest: Pulling from library/busybox" in proc.stdout
    assert "Status: Downloaded newer image for busybox:latest" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "docker.io/library/busybox:latest"
    assert inspect(core_env, "busybox")["RepoTags"] == ["busybox:latest"]


def test_push_round_trip(core_env, test_images, fresh_registry):
    img = test_images["layered:latest"]
    pull(core_env, img.reference)
    target = f"{fresh_registry.host}/pushed/layered:v1"
    core_env.run("tag", img.reference, target, check=True)
    out = core_env.run("push", target, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"v1: digest: {img.digest}" in out.stdout
    core_env.run("rmi", target, check=True)
    core_env.run("rmi", img.reference, check=True)
    again = pull(core_env, target)
    assert f"Digest: {img.digest}" in again.stdout
    assert inspect(core_env, target)["Id"] == img.config_digest


def test_full_disk_fails_cleanly(test_images):
    from tests.conftest import CoreEnv

    env = CoreEnv()
    try:
        env.data_root.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(env.data_root)], check=True)
        try:
            proc = pull(env, test_images["busybox:latest"].reference, check=False)
            assert proc.returncode == 1
            assert "no space left on device" in proc.stderr.lower(), proc.stderr
            assert env.run("images", "-q").stdout == ""
        finally:
            env.stop_daemons()
            subprocess.run(["umount", "-l", str(env.data_root)], check=False)
    finally:
        env.cleanup()


# -- clients ------------------------------------------------------------------------------------------


def test_docker_sdk_images(core_env, test_images):
    img = test_images["busybox:latest"]
    core_env.run("version", check=True)  # the SDK does not start a daemon: the CLI does
    client = core_env.docker_client()
    try:
        repo = img.reference.rsplit(":", 1)[0]
        pulled = client.images.pull(repo, tag="latest")
        assert pulled.id == img.config_digest
        assert img.reference in pulled.tags
        assert [i.id for i in client.images.list()] == [img.config_digest]
        got = client.images.get(img.reference)
        assert got.attrs["RootFS"]["Layers"] == img.diff_ids
        client.images.remove(img.reference)
        assert client.images.list() == []
    finally:
        client.close()


def test_distribution_endpoint(core_env, test_images):
    """``GET /distribution/{name}/json``: the registry's descriptor and platforms, nothing pulled."""
    core_env.run("version", check=True)
    client = core_env.docker_client()
    try:
        multi = client.images.get_registry_data(test_images["multi:latest"].reference)
        assert multi.id == test_images["multi:latest"].digest
        assert {f"{p['os']}/{p['architecture']}" for p in multi.attrs["Platforms"]} == {"linux/amd64", "linux/arm64"}
        single = client.images.get_registry_data(test_images["busybox:latest"].reference)
        assert single.attrs["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
    finally:
        client.close()
    assert core_env.run("images", "-q").stdout == ""


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_pull_images_rmi(core_env, test_images):
    img = test_images["busybox:latest"]
    run = lambda *a: subprocess.run(["docker", *a], env=core_env.env, capture_output=True, text=True, timeout=300)  # noqa: E731
    core_env.run("version", check=True)
    p = run("pull", img.reference)
    assert p.returncode == 0, p.stderr
    assert f"Digest: {img.digest}" in p.stdout
    listed = run("images", "--digests")
    assert img.digest in listed.stdout
    removed = run("rmi", img.reference)
    assert removed.returncode == 0 and f"Deleted: {img.config_digest}" in removed.stdout


# --------------------------------------------------------------------------------------- decompression
def _decompress_all(blob: bytes, compression: str, chunk: int = 65536) -> tuple[int, int, str]:
    """Run core.engine.images.pull.decompress over ``blob`` in batches as the puller hands them: (total bytes
    out, largest piece, sha256 of the output)."""
    import hashlib

    from core.engine.images.pull import decompress

    async def batches():
        for i in range(0, len(blob), 1 << 20):
            part = blob[i:i + (1 << 20)]
            yield [part[j:j + chunk] for j in range(0, len(part), chunk)]

    async def main():
        h, total, largest = hashlib.sha256(), 0, 0
        async for piece in decompress(batches(), compression):
            h.update(piece)
            total += len(piece)
            largest = max(largest, len(piece))
        return total, largest, h.hexdigest()

    return trio.run(main)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_decompression_bombs_come_out_in_bounded_pieces(compression):
    """A few KiB that expand to 512 MiB: handed on piece by piece, never held whole."""
    import hashlib
    import tracemalloc

    size = 1 << 29
    if compression == "gzip":
        import zlib

        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        blob = b"".join(c.compress(bytes(1 << 24)) for _ in range(size >> 24)) + c.flush()
    else:
        import zstandard

        c = zstandard.ZstdCompressor(level=3).compressobj()
        blob = b"".join(c.compress(bytes(1 << 24)) for _ in range(size >> 24)) + c.flush()
    want = hashlib.sha256()
    for _ in range(size >> 24):
        want.update(bytes(1 << 24))
    tracemalloc.start()
    try:
        total, largest, digest = _decompress_all(blob, compression)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, digest) == (size, want.hexdigest())
    assert largest <= 32 << 20
    assert peak < 128 << 20, f"{peak >> 20} MiB held at once for {len(blob) >> 10} KiB of {compression}"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_decompression_follows_members_and_frames(compression):
    import gzip

    if compression == "gzip":
        blob = gzip.compress(b"first ") + gzip.compress(b"second")
    else:
        import zstandard

        blob = zstandard.ZstdCompressor().compress(b"first ") + zstandard.ZstdCompressor().compress(b"second")
    import hashlib

    from core.errors import InvalidArgument

    total, _largest, digest = _decompress_all(blob, compression, chunk=3)
    assert (total, digest) == (12, hashlib.sha256(b"first second").hexdigest())
    with pytest.raises(InvalidArgument, match="truncated"):
        _decompress_all(blob[:-3], compression)
    with pytest.raises(InvalidArgument, match=f"not valid {compression}"):
        _decompress_all(blob[:10] + b"\xff" * 40 + blob[50:], compression)


# -- the image service (core.engine.images.service), without a daemon ---------------------------------

class _Snapshots:
    """A storage driver that holds the snapshots named and records what is removed."""

    def __init__(self, names):
        self.names, self.removed = set(names), []

    async def remove(self, key):
        from core.errors import NotFound

        if key not in self.names:
            raise NotFound(key)
        self.names.discard(key)
        self.removed.append(key)


class _Drivers:
    def __init__(self, storage):
        self.storage = storage

    def get(self, kind, name=None):
        assert kind == "storage"
        return self.storage


class _Events:
    def __init__(self):
        self.seen = []

    def emit(self, type_, action, actor_id, attributes):
        self.seen.append((type_, action, actor_id))


class _NoContainers:
    """The image service's :class:`core.engine.interfaces.ImageUsers` when no container exists."""

    async def image_users(self, image_id):
        return []


def _image_service(tmp_path):
    import hashlib

    from core.daemon.app import MIGRATIONS
    from core.engine.images.content import ContentStore
    from core.engine.images.manifest import chain_ids
    from core.engine.images.service import Images
    from core.engine.images.store import ImageStore
    from core.engine.state import State
    from core.reference import parse_reference
    from core.types import Digest

    store = ImageStore(State(tmp_path / "state.db", MIGRATIONS), users=_NoContainers())
    content = ContentStore(tmp_path / "content")
    layer = lambda n: Digest.parse("sha256:" + hashlib.sha256(n.encode()).hexdigest())  # noqa: E731
    made = {}
    for name, layers, labels in [("app:1", ["base", "app1"], {"team": "a"}), ("app:2", ["base", "app2"], {}),
                                 ("tools/x:latest", ["other"], {"team": "b"})]:
        config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [str(layer(n)) for n in layers]},
                             "config": {"Labels": labels}, "architecture": "amd64", "os": "linux"}).encode()
        image_id = "sha256:" + hashlib.sha256(config).hexdigest()
        store.add(image_id, config, image_id, [image_id], parse_reference(name), None)
        made[name] = image_id
    every_chain = {str(c) for i in store.list() for c in chain_ids(i.config.diff_ids)}
    snapshots = _Snapshots(every_chain)
    events = _Events()
    return Images(store=store, content=content, drivers=_Drivers(snapshots), events=events), made, snapshots, events


def test_image_service_filters_like_docker(tmp_path):
    from core.errors import InvalidArgument

    images, made, _snapshots, _events = _image_service(tmp_path)
    names = lambda found: sorted(t.familiar() for i in found for t in i.tags)  # noqa: E731
    assert names(images.list({"reference": ["app"]})) == ["app:1", "app:2"]
    assert names(images.list({"reference": ["tools/*"]})) == ["tools/x:latest"]
    assert names(images.list({"reference": ["*"]})) == ["app:1", "app:2"]  # `*` does not cross `/`
    assert names(images.list({"label": ["team"]})) == ["app:1", "tools/x:latest"]
    assert names(images.list({"label": ["team=b"]})) == ["tools/x:latest"]
    assert images.list({"dangling": ["true"]}) == []
    with pytest.raises(InvalidArgument, match="invalid until filter"):
        images.list({"until": ["yesterday"]})


def test_image_service_removes_then_collects_only_unshared_layers(tmp_path):
    from core.engine.images.manifest import chain_ids

    images, made, snapshots, events = _image_service(tmp_path)
    app1 = images.lookup("app:1")
    records = trio.run(images.remove, "app:1")
    top = str(chain_ids(app1.config.diff_ids)[-1])
    assert records == [{"Untagged": "app:1"}, {"Deleted": made["app:1"]}, {"Deleted": top}]
    assert snapshots.removed == [top]  # the base layer app:2 shares stays
    assert ("image", "delete", made["app:1"]) in events.seen and ("image", "untag", "app:1") in events.seen
    images.tag("app:2", "app", "copy")
    assert sorted(t.familiar() for t in images.lookup("app:2").tags) == ["app:2", "app:copy"]


def test_image_service_prune_takes_unused_images_and_reports_the_space(tmp_path):
    images, made, snapshots, _events = _image_service(tmp_path)
    assert trio.run(images.prune, {}) == ([], 0)  # every image is tagged: nothing dangling
    deleted, reclaimed = trio.run(images.prune, {"dangling": ["false"], "label": ["team=b"]})
    assert {"Deleted": made["tools/x:latest"]} in deleted and reclaimed == 0  # no layer sizes recorded
    assert [i.id for i in images.list({})] and made["tools/x:latest"] not in [i.id for i in images.list({})]
