"""Image parity with docker: sizes, ``rmi``/``pull`` behaviour, ``save``/``load``, ``commit``,
``system df`` and ``build prune`` -- through core's CLI, the docker CLI and the docker SDK, against
the suite's registry on loopback."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile

import pytest

from core.units import human_size
from tests.conftest import CORE as CORE_CMD


def pull(env, ref, *args):
    proc = env.run("pull", *args, ref, timeout=300)
    assert proc.returncode == 0, (proc.stdout, proc.stderr, env.daemon_log()[-3000:])
    return proc


def inspect(env, name):
    proc = env.run("image", "inspect", name)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def docker_size(files) -> int:
    """docker's size of a one-layer image, computed from the builder's own list of its files:
    regular files and symlink targets, hard links once."""
    total = 0
    for entry in files.values():
        if entry.type == "file":
            total += entry.size
        elif entry.type == "symlink":
            total += len(os.fsencode(entry.target))
    return total


# -- sizes -----------------------------------------------------------------------------------------


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE}[kind]
            info.linkname = payload or ""
            tf.addfile(info)
    return buf.getvalue()


def test_content_size_counts_files_and_symlink_targets_once():
    from core.storage.tarstream import content_size

    data = _tar([
        ("etc", "dir", None),
        ("etc/a", "file", b"x" * 1000),
        ("etc/b", "link", "etc/a"),            # a hard link: counted once, with its target
        ("etc/c", "symlink", "a"),             # 1 byte of target
        ("./etc/a", "file", b"y" * 10),        # replaces etc/a
        ("bin/long", "symlink", "/" + "d" * 300),   # a PAX linkpath
        ("big", "file", b"z" * 70000),
    ])
    pieces = [data[i:i + 4096] for i in range(0, len(data), 4096)] + [b""]
    assert content_size(iter(pieces).__next__) == 10 + 1 + 301 + 70000
    assert len(data) > 70000 + 3 * 512  # the tar's length is not the size


def test_image_size_is_docker_content_size(core_env, test_images):
    """``images``, ``inspect``, ``history`` and the SDK give docker's size, not the tar's length."""
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    want = docker_size(img.files)
    info = inspect(core_env, img.reference)
    assert info["Size"] == want
    listed = core_env.run("images", "--format", "{{.Size}}", check=True).stdout.strip()
    assert listed == human_size(want, 3)
    history = json.loads(core_env.run("history", "--format", "{{json .}}", img.reference,
                                      check=True).stdout.splitlines()[0])
    assert history["Size"] == human_size(want, 3)


# -- rmi -------------------------------------------------------------------------------------------


def test_rmi_of_an_id_with_several_tags_must_be_forced(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    repo = img.reference.rsplit(":", 1)[0]
    core_env.run("tag", img.reference, f"{repo}:second", check=True)   # the same repository
    short = img.config_digest.split(":")[1][:12]
    refused = core_env.run("rmi", short)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"Error response from daemon: conflict: unable to delete {short} "
                                      "(must be forced) - image is referenced in multiple repositories")
    assert inspect(core_env, img.reference)["RepoTags"] == [img.reference, f"{repo}:second"]
    out = core_env.run("rmi", "-f", short, check=True).stdout.splitlines()
    assert f"Untagged: {img.reference}" in out and f"Untagged: {repo}:second" in out
    assert f"Deleted: {img.config_digest}" in out


def test_rmi_force_of_a_missing_image_is_no_failure(core_env):
    core_env.run("version", check=True)
    forced = core_env.run("rmi", "-f", "nosuch:image")
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, "", "Error: No such image: nosuch:image\n")
    plain = core_env.run("rmi", "nosuch:image")
    assert (plain.returncode, plain.stderr) == (1, "Error: No such image: nosuch:image\n")


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_rmi_force_missing_and_several_tags(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    repo = img.reference.rsplit(":", 1)[0]
    core_env.run("tag", img.reference, f"{repo}:second", check=True)
    run = lambda *a: subprocess.run(["docker", *a], env=core_env.env, capture_output=True, text=True, timeout=120)  # noqa: E731
    refused = run("rmi", img.config_digest.split(":")[1][:12])
    assert refused.returncode == 1 and "image is referenced in multiple repositories" in refused.stderr
    missing = run("rmi", "-f", "nosuch:image")
    assert missing.returncode == 0 and "No such image: nosuch:image" in missing.stderr


# -- pull ------------------------------------------------------------------------------------------


def test_pull_of_an_image_present_is_up_to_date_without_layer_lines(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    again = pull(core_env, img.reference).stdout.splitlines()
    assert again == ["latest: Pulling from busybox", f"Digest: {img.digest}",
                     f"Status: Image is up to date for {img.reference}", img.reference]


def test_pull_all_tags_ends_with_the_repository(core_env, test_images):
    repo = test_images["busybox:1.0"].reference.rsplit(":", 1)[0]
    out = pull(core_env, repo, "-a").stdout.splitlines()
    assert out[-1] == repo
    assert out[-2] == f"Status: Downloaded newer image for {repo}"


class _Terminal(io.StringIO):
    """A terminal of infinite height: applies ``\\n``, ``\\r``, cursor up/down and erase-line."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        rows: list[str] = [""]
        row = col = 0
        text = self.getvalue()
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                m = re.match(r"\x1b\[(\d*)([ABK])", text[i:])
                assert m, repr(text[i:i + 10])
                n = int(m.group(1) or 1)
                if m.group(2) == "A":
                    row = max(0, row - n)
                elif m.group(2) == "B":
                    row += n
                else:
                    rows[row] = ""
                while len(rows) <= row:
                    rows.append("")
                i += len(m.group(0))
                continue
            if ch == "\n":
                row += 1
                col = 0
                while len(rows) <= row:
                    rows.append("")
            elif ch == "\r":
                col = 0
            else:
                line = rows[row].ljust(col)
                rows[row] = line[:col] + ch + line[col + 1:]
                col += 1
            i += 1
        return [r.rstrip() for r in rows if r.strip()]


def test_display_stream_gives_each_tag_of_pull_all_its_own_layer_lines():
    from core.cli.format import display_stream

    def tag(name, layers, exists=()):
        yield {"status": "Pulling from busybox", "id": name}
        for layer in layers:
            yield {"status": "Already exists" if layer in exists else "Pulling fs layer", "progressDetail": {},
                   "id": layer}
        for layer in layers:
            if layer in exists:
                continue
            yield {"status": "Downloading", "progressDetail": {"current": 1, "total": 2}, "id": layer,
                   "progress": "[==>  ] 1B/2B"}
            yield {"status": "Pull complete", "progressDetail": {}, "id": layer}
        yield {"status": f"Digest: sha256:{name * 8}"}

    messages = [*tag("1.0", ["aaa", "bbb"]), *tag("1.1", ["aaa", "ccc"], exists={"aaa"}),
                {"status": "Status: Downloaded newer image for busybox"}]
    term = _Terminal()
    display_stream(messages, out=term)
    assert term.screen() == [
        "1.0: Pulling from busybox", "aaa: Pull complete", "bbb: Pull complete", f"Digest: sha256:{'1.0' * 8}",
        "1.1: Pulling from busybox", "aaa: Already exists", "ccc: Pull complete", f"Digest: sha256:{'1.1' * 8}",
        "Status: Downloaded newer image for busybox",
    ]
    plain = io.StringIO()
    display_stream(messages, out=plain)
    assert "Downloading" not in plain.getvalue()
    assert plain.getvalue().splitlines()[:3] == ["1.0: Pulling from busybox", "aaa: Pulling fs layer",
                                                 "bbb: Pulling fs layer"]


# -- system df, build prune --------------------------------------------------------------------------


def test_system_df_counts_images_containers_and_volumes(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    core_env.run("tag", img.reference, "copy:v1", check=True)
    core_env.run("volume", "create", "dfvol", check=True)
    core_env.run("run", "--name", "dfc", "-v", "dfvol:/data", img.reference,
                 "sh", "-c", "head -c 3000 /dev/zero > /data/x; head -c 5000 /dev/zero > /y", check=True, timeout=120)
    size = docker_size(img.files)
    client = core_env.docker_client()
    try:
        df = client.df()
    finally:
        client.close()
    assert df["LayersSize"] == size
    [image] = df["Images"]
    assert (image["Id"], image["Size"], image["SharedSize"], image["Containers"]) == (img.config_digest, size, 0, 1)
    [ctr] = df["Containers"]
    assert ctr["Names"] == ["/dfc"] and ctr["SizeRw"] >= 5000 and ctr["SizeRootFs"] == ctr["SizeRw"] + size
    [vol] = df["Volumes"]
    assert vol["Name"] == "dfvol" and vol["UsageData"]["RefCount"] == 1 and vol["UsageData"]["Size"] >= 3000
    assert df["BuildCache"] == []
    out = core_env.run("system", "df", check=True).stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert re.split(r"\s{2,}", out[1].strip()) == ["Images", "1", "1", human_size(size), "0B (0%)"]
    assert re.split(r"\s{2,}", out[2].strip())[:3] == ["Containers", "1", "0"]
    assert re.split(r"\s{2,}", out[3].strip())[:3] == ["Local Volumes", "1", "1"]
    assert re.split(r"\s{2,}", out[4].strip()) == ["Build Cache", "0", "0", "0B", "0B"]
    verbose = core_env.run("system", "df", "-v", check=True).stdout
    assert "Images space usage:" in verbose and "Containers space usage:" in verbose
    assert re.search(r"copy\s+v1\s+" + img.config_digest[7:19], verbose)
    assert re.search(r"dfvol\s+1\s+", verbose) and "dfc" in verbose
    bad = core_env.run("system", "df", "--nosuch")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_system_df_and_builder_prune(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    run = lambda *a: subprocess.run(["docker", *a], env=core_env.env, capture_output=True, text=True, timeout=120)  # noqa: E731
    df = run("system", "df")
    assert df.returncode == 0, df.stderr
    assert re.split(r"\s{2,}", df.stdout.splitlines()[1].strip())[:4] == ["Images", "1", "0",
                                                                          human_size(docker_size(img.files))]
    assert run("system", "df", "-v").returncode == 0
    pruned = run("builder", "prune", "-f")
    assert pruned.returncode == 0 and "Total reclaimed space: 0B" in pruned.stdout, pruned.stderr
    client = core_env.docker_client()
    try:
        assert client.api.prune_builds() == {"CachesDeleted": None, "SpaceReclaimed": 0}
    finally:
        client.close()


# -- save / load -----------------------------------------------------------------------------------


def _members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: (tf.extractfile(m).read() if m.isfile() else b"") for m in tf.getmembers()}


def test_save_then_load_round_trips(core_env, test_images, tmp_path):
    img = test_images["layered:latest"]
    pull(core_env, img.reference)
    archive = tmp_path / "layered.tar"
    core_env.run("save", "-o", str(archive), img.reference, check=True)
    files = _members(archive)
    manifest = json.loads(files["manifest.json"])
    assert manifest == [{"Config": img.config_digest[7:] + ".json", "RepoTags": [img.reference],
                         "Layers": manifest[0]["Layers"]}]
    assert len(manifest[0]["Layers"]) == len(img.diff_ids)
    import hashlib
    assert [f"sha256:{hashlib.sha256(files[p]).hexdigest()}" for p in manifest[0]["Layers"]] == img.diff_ids
    assert hashlib.sha256(files[manifest[0]["Config"]]).hexdigest() == img.config_digest[7:]
    repo = img.reference.rsplit(":", 1)[0]
    assert json.loads(files["repositories"]) == {repo: {"latest": manifest[0]["Layers"][-1].split("/")[0]}}
    size = inspect(core_env, img.reference)["Size"]
    core_env.run("rmi", img.reference, check=True)
    out = core_env.run("load", "-i", str(archive), check=True).stdout
    assert out == f"Loaded image: {img.reference}\n"
    info = inspect(core_env, img.reference)
    assert (info["Id"], info["RootFS"]["Layers"], info["Size"]) == (img.config_digest, img.diff_ids, size)
    from tests.test_images import assert_tree_matches, mounted
    with mounted(core_env, img.config_digest) as root:
        assert_tree_matches(root, img.files)
    # by ID: no tags recorded; a repository name: all its tags
    core_env.run("tag", img.reference, f"{repo}:other", check=True)
    core_env.run("save", "-o", str(archive), img.config_digest[7:19], check=True)
    assert json.loads(_members(archive)["manifest.json"])[0]["RepoTags"] is None
    core_env.run("save", "-o", str(archive), repo, check=True)
    assert json.loads(_members(archive)["manifest.json"])[0]["RepoTags"] == [img.reference, f"{repo}:other"]
    ran = core_env.run("run", "--rm", img.reference, "true", timeout=120)
    assert ran.returncode == 0, ran.stderr
    missing = core_env.run("save", "-o", str(archive), "nosuch:image")
    assert missing.returncode == 1 and "No such image: nosuch:image" in missing.stderr


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_save_and_load_through_core(core_env, test_images, tmp_path):
    """``docker save`` (from core's socket) piped into ``core load``, and ``core save`` into
    ``docker load``; the SDK's ``save``/``load`` too."""
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    saved = subprocess.run(["docker", "save", img.reference], env=core_env.env, capture_output=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    core_env.run("rmi", img.reference, check=True)
    loaded = subprocess.run(CORE_CMD + ["load"], input=saved.stdout, env=core_env.env, capture_output=True,
                            timeout=120)
    assert loaded.returncode == 0 and loaded.stdout == f"Loaded image: {img.reference}\n".encode(), loaded.stderr
    core_saved = subprocess.run(CORE_CMD + ["save", img.reference], env=core_env.env, capture_output=True,
                                timeout=120)
    assert core_saved.returncode == 0, core_saved.stderr
    core_env.run("rmi", img.reference, check=True)
    docker_loaded = subprocess.run(["docker", "load"], input=core_saved.stdout, env=core_env.env,
                                   capture_output=True, timeout=120)
    assert docker_loaded.returncode == 0, docker_loaded.stderr
    assert f"Loaded image: {img.reference}".encode() in docker_loaded.stdout
    assert inspect(core_env, img.reference)["Id"] == img.config_digest
    client = core_env.docker_client()
    try:
        data = b"".join(client.images.get(img.reference).save(named=True))
        client.images.remove(img.reference)
        [image] = client.images.load(data)
        assert image.id == img.config_digest and img.reference in image.tags
        import docker
        with pytest.raises(docker.errors.ImageLoadError):
            client.images.load(b"abc")
    finally:
        client.close()


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed")
def test_skopeo_docker_archive_loads(core_env, test_images, tmp_path):
    img = test_images["layered:latest"]
    archive = tmp_path / "skopeo.tar"
    copy = subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "--src-no-creds",
                           f"docker://{img.reference}", f"docker-archive:{archive}:made/by-skopeo:v1"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert copy.returncode == 0, copy.stderr
    core_env.run("version", check=True)
    out = core_env.run("load", "-i", str(archive), check=True).stdout
    assert out == "Loaded image: made/by-skopeo:v1\n"
    assert inspect(core_env, "made/by-skopeo:v1")["Id"] == img.config_digest
    from tests.test_images import assert_tree_matches, mounted
    with mounted(core_env, img.config_digest) as root:
        assert_tree_matches(root, img.files)


def _archive(tmp_path, members: dict[str, bytes | tuple[str, str]]) -> str:
    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w") as tf:
        for name, value in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type = tarfile.SYMTYPE if value[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = value[1]
                tf.addfile(info)
            else:
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
    return str(path)


def test_load_refuses_hostile_archives(core_env, tmp_path):
    import gzip
    import hashlib

    layer = _tar([("ok", "file", b"fine")])
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"

    def manifest(layers, tags=None, config_name=cname):
        return json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": layers}]).encode()

    escape = _tar([("../../etc/evil", "file", b"x")])
    escape_config = json.dumps({"rootfs": {"type": "layers",
                                           "diff_ids": ["sha256:" + hashlib.sha256(escape).hexdigest()]}}).encode()
    cases = {
        "not a tar": b"abc",
        "no manifest": {"x": b"y"},
        "a name outside": {"manifest.json": manifest(["../../../../etc/passwd"]), cname: config},
        "a symlink out": {"manifest.json": manifest(["l.tar"]), cname: config, "l.tar": ("symlink", "/etc/passwd")},
        "a symlink loop": {"manifest.json": manifest(["a"]), cname: config, "a": ("symlink", "b"),
                           "b": ("symlink", "a")},
        "a wrong layer": {"manifest.json": manifest(["l.tar"]), cname: config, "l.tar": layer + b"\0" * 512},
        "a layer that escapes": {"manifest.json": manifest(["l.tar"], config_name="e.json"), "e.json": escape_config,
                                 "l.tar": escape},
        "bad json": {"manifest.json": b"{", cname: config},
        "a bad tag": {"manifest.json": manifest(["l.tar"], ["UPPER:case"]), cname: config, "l.tar": layer},
        "layers and diff IDs disagree": {"manifest.json": manifest([]), cname: config},
    }
    core_env.run("version", check=True)
    for what, members in cases.items():
        path = tmp_path / "raw.tar"
        if isinstance(members, bytes):
            path.write_bytes(members)
            path = str(path)
        else:
            path = _archive(tmp_path, members)
        proc = core_env.run("load", "-i", path)
        assert proc.returncode == 1 and proc.stderr.strip() and "Traceback" not in proc.stderr, (what, proc)
        assert core_env.run("images", "-q").stdout == "", what
    blobs = core_env.data_root / "content" / "blobs" / "sha256"
    assert not any(blobs.iterdir()), list(blobs.iterdir())
    assert not any((core_env.data_root / "content" / "ingest").iterdir())
    # and the same layer, gzipped, through a symlink inside the archive, loads
    good = _archive(tmp_path, {"manifest.json": manifest(["dir/layer.tar"], ["ok/loaded:v1"]), cname: config,
                               "blobs/l.tar.gz": gzip.compress(layer), "dir/layer.tar": ("symlink", "../blobs/l.tar.gz")})
    assert core_env.run("load", "-i", good, check=True).stdout == "Loaded image: ok/loaded:v1\n"
    assert inspect(core_env, "ok/loaded:v1")["Size"] == 4


# -- commit ----------------------------------------------------------------------------------------


def test_commit_makes_an_image_of_the_changes(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    core_env.run("run", "--name", "box", "-e", "FROM_RUN=1", img.reference, "sh", "-c",
                 "echo hello > /greeting; mkdir -p /d/e; echo x > /d/e/f; ln -s /greeting /link; "
                 "ln /greeting /hard; rm /bin/ls", check=True, timeout=120)
    out = core_env.run("commit", "-a", "Ann <ann@example.com>", "-m", "a message", "-c", "ENV COLOR=blue",
                       "-c", 'CMD ["cat", "/greeting"]', "-c", "EXPOSE 8080", "-c", "LABEL stage=test",
                       "-c", "WORKDIR /d", "box", "mine/committed:v1", check=True).stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", out)
    info = inspect(core_env, "mine/committed:v1")
    assert info["Id"] == out and info["RepoTags"] == ["mine/committed:v1"]
    assert info["Parent"] == img.config_digest
    assert info["Author"] == "Ann <ann@example.com>" and info["Comment"] == "a message"
    cfg = info["Config"]
    assert cfg["Cmd"] == ["cat", "/greeting"] and cfg["WorkingDir"] == "/d"
    assert "COLOR=blue" in cfg["Env"] and "FROM_RUN=1" in cfg["Env"]
    assert cfg["ExposedPorts"] == {"8080/tcp": {}} and cfg["Labels"]["stage"] == "test"
    assert info["RootFS"]["Layers"][:-1] == img.diff_ids and len(info["RootFS"]["Layers"]) == 2
    # docker's size: the parent's, plus the new files (6 + 2 bytes, a 9-byte symlink, a hard link once)
    assert info["Size"] == docker_size(img.files) + 6 + 2 + len("/greeting")
    hist = json.loads(core_env.run("history", "--no-trunc", "--format", "{{json .}}", "mine/committed:v1",
                                   check=True).stdout.splitlines()[0])
    assert hist["Comment"] == "a message" and "rm /bin/ls" in hist["CreatedBy"]
    ran = core_env.run("run", "--rm", "mine/committed:v1", timeout=120)
    assert (ran.returncode, ran.stdout) == (0, "hello\n"), ran.stderr
    check = core_env.run("run", "--rm", "mine/committed:v1", "sh", "-c",
                         "cat /d/e/f; readlink /link; cat /hard; ls /bin/ls 2>&1; pwd", timeout=120)
    assert check.stdout.splitlines()[:3] == ["x", "/greeting", "hello"], check
    assert "No such file" in check.stdout and check.stdout.splitlines()[-1] == "/d"
    # bad input: clear errors
    bad = core_env.run("commit", "-c", "RUN echo", "box")
    assert bad.returncode == 1 and "run is not a valid change command" in bad.stderr
    missing = core_env.run("commit", "nosuch")
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr
    untagged = core_env.run("commit", "box", check=True).stdout.strip()
    assert inspect(core_env, untagged)["RepoTags"] == []


def test_commit_of_a_running_container_through_the_sdk_and_docker_cli(core_env, test_images):
    img = test_images["busybox:latest"]
    pull(core_env, img.reference)
    core_env.run("run", "-d", "--name", "live", img.reference, "sh", "-c", "echo up > /state; sleep 300",
                 check=True, timeout=120)
    client = core_env.docker_client()
    try:
        ctr = client.containers.get("live")
        import time
        for _ in range(100):
            if ctr.exec_run("cat /state").output == b"up\n":
                break
            time.sleep(0.1)
        image = ctr.commit("sdk/live", "v2", message="from the sdk", changes=["ENV A=1"])
        assert image.tags == ["sdk/live:v2"] and "A=1" in image.attrs["Config"]["Env"]
        ctr.reload()
        assert ctr.status == "running"  # paused for the commit, then unpaused
        out = client.containers.run("sdk/live:v2", "cat /state", remove=True)
        assert out == b"up\n"
    finally:
        client.close()
    if shutil.which("docker"):
        proc = subprocess.run(["docker", "commit", "-c", "USER nobody", "live", "cli/live"], env=core_env.env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("sha256:"), proc.stderr
        assert inspect(core_env, "cli/live")["Config"]["User"] == "nobody"


def test_pull_all_tags_on_a_terminal_gives_each_tag_its_layer_lines(core_env, test_images):
    """``core pull -a`` in a real pty: every tag's block of layer lines stays under its own
    ``TAG: Pulling from`` line, and the last line is the repository."""
    import pty
    import select

    repo = test_images["busybox:1.0"].reference.rsplit(":", 1)[0]
    core_env.run("version", check=True)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(CORE_CMD + ["pull", "-a", repo], env=core_env.env, stdin=subprocess.DEVNULL,
                                stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    term = _Terminal()
    term.write(out.decode().replace("\r\n", "\n"))
    screen = term.screen()
    assert screen[-1] == repo
    tags = test_images.tags("busybox")
    heads = [i for i, line in enumerate(screen) if line.endswith(": Pulling from busybox")]
    assert [screen[i].split(":")[0] for i in heads] == sorted(tags)
    for start, end in zip(heads, heads[1:] + [len(screen)]):
        block = screen[start + 1:end]
        layers = [line for line in block if re.match(r"[0-9a-f]{12}: ", line)]
        assert layers and all(line.endswith(("Pull complete", "Already exists")) for line in layers), block
        assert any(line.startswith("Digest: sha256:") for line in block), block


def test_sizes_recorded_by_an_older_core_are_recounted_once(core_env, test_images):
    import sqlite3

    img = test_images["layered:latest"]
    pull(core_env, img.reference)
    right = inspect(core_env, img.reference)["Size"]
    core_env.stop_daemons()
    db = sqlite3.connect(core_env.data_root / "state.db")
    with db:   # what an older core recorded: tar lengths, and no mark
        db.execute("UPDATE layers SET size = size + 1536")
        db.execute("UPDATE images SET size = size + 9999")
        db.execute("DELETE FROM meta WHERE key = 'image_layer_sizes'")
    db.close()
    core_env.run("version", check=True)
    import time
    deadline = time.monotonic() + 60
    while inspect(core_env, img.reference)["Size"] != right and time.monotonic() < deadline:
        time.sleep(0.2)
    assert inspect(core_env, img.reference)["Size"] == right
