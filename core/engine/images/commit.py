"""``docker commit``: a container's changes as a new layer on its image.

The layer is docker's naive diff: the container's root (its active snapshot, mounted without
its volumes) compared with a read-only view of its image's top layer
(:func:`core.engine.containers.archive.changes`); what was added or changed goes into the layer
tar, what was deleted becomes an OCI whiteout (``.wh.<name>``).  The tar is written to a
scratch file, hashed (its digest is the new diff ID) and stored uncompressed in the content
store; the storage driver unpacks it when a container first runs the image.

The new config is docker's (``daemon/commit.go``): the ``config`` the client sent, with the
``changes`` (Dockerfile instructions ``CMD``, ``ENTRYPOINT``, ``ENV``, ``EXPOSE``, ``LABEL``,
``ONBUILD``, ``STOPSIGNAL``, ``USER``, ``VOLUME``, ``WORKDIR``) applied, then merged over the
container's config; ``container_config`` is the container's; one history entry (``created_by``
its command) and the diff ID are added to the parent image's, whose ID is kept as ``parent``
(docker's ``Parent`` in ``inspect``, ``ParentId`` in ``images``).
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shlex
import stat
import tarfile
import time
from typing import IO, Any

import trio

from core import __version__
from core.engine.images.archive import manifest_of, spool_file
from core.engine.images.manifest import chain_ids
from core.engine.images.store import Image, ImageStore
from core.engine.interfaces import CommitSource
from core.errors import AlreadyExists, Conflict, CoreError, InvalidArgument
from core.reference import Reference
from core.types import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_TAR,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Digest,
)

COMMIT_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
                   "VOLUME", "WORKDIR")
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


# ------------------------------------------------------------------------------- config changes
def _json_or_words(rest: str) -> tuple[list[str], bool]:
    """A Dockerfile argument in exec form (a JSON array of strings) or not: (words, is_json)."""
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value, True
    return [text] if text else [], False


def _pairs(rest: str, what: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` (or the old ``k v`` form) as docker's parser reads ENV and LABEL."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if not words:
        raise InvalidArgument(f"{what} requires at least one argument")
    if "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"{what} must have two arguments")
        return [(words[0], rest.strip()[len(words[0]):].strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what}: {w!r} is not of the form key=value")
        out.append((key, value))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """``config`` with docker commit's ``--change`` instructions applied (a new dict)."""
    cfg = json.loads(json.dumps(config or {}))
    for change in changes:
        if not isinstance(change, str):
            raise InvalidArgument("changes must be strings")
        for line in change.splitlines() or [""]:
            if not line.strip():
                continue
            word, _, rest = line.strip().partition(" ")
            cmd = word.upper()
            if cmd not in COMMIT_COMMANDS:
                raise InvalidArgument(f"{word.lower()} is not a valid change command")
            if cmd in ("CMD", "ENTRYPOINT"):
                words, is_json = _json_or_words(rest)
                value = words if is_json else (["/bin/sh", "-c", *words] if words else [])
                cfg["Cmd" if cmd == "CMD" else "Entrypoint"] = value
                if cmd == "ENTRYPOINT" and not words:
                    cfg["Entrypoint"] = None
            elif cmd == "ENV":
                env = [e for e in cfg.get("Env") or [] if isinstance(e, str)]
                for key, value in _pairs(rest, "ENV"):
                    env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
                cfg["Env"] = env
            elif cmd == "LABEL":
                labels = dict(cfg.get("Labels") or {})
                labels.update(_pairs(rest, "LABEL"))
                cfg["Labels"] = labels
            elif cmd == "EXPOSE":
                ports = dict(cfg.get("ExposedPorts") or {})
                for p in rest.split():
                    port, _, proto = p.partition("/")
                    if not port.replace("-", "").isdigit() or (proto and proto.lower() not in ("tcp", "udp", "sctp")):
                        raise InvalidArgument(f"invalid port for EXPOSE: {p!r}")
                    ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
                cfg["ExposedPorts"] = ports
            elif cmd == "VOLUME":
                words, is_json = _json_or_words(rest)
                paths = words if is_json else rest.split()
                if not paths:
                    raise InvalidArgument("VOLUME requires at least one argument")
                volumes = dict(cfg.get("Volumes") or {})
                volumes.update({p: {} for p in paths})
                cfg["Volumes"] = volumes
            elif cmd == "ONBUILD":
                if not rest.strip():
                    raise InvalidArgument("ONBUILD requires at least one argument")
                cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest.strip()]
            elif cmd == "WORKDIR":
                if not rest.strip():
                    raise InvalidArgument("WORKDIR requires exactly one argument")
                cfg["WorkingDir"] = posixpath.join("/", cfg.get("WorkingDir") or "/", rest.strip())
            else:  # STOPSIGNAL, USER
                if not rest.strip():
                    raise InvalidArgument(f"{cmd} requires exactly one argument")
                cfg["StopSignal" if cmd == "STOPSIGNAL" else "User"] = rest.strip()
    return cfg


def merge_config(user: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """docker's ``merge(userConf, imageConf)`` of ``daemon/commit.go``: what the client gave
    wins, the container's config fills the rest."""
    out = json.loads(json.dumps(user or {}))
    if not out.get("User"):
        out["User"] = container.get("User") or ""
    ports = dict(out.get("ExposedPorts") or {})
    for port in container.get("ExposedPorts") or {}:
        ports.setdefault(port, {})
    out["ExposedPorts"] = ports or None
    env = list(out.get("Env") or [])
    keys = {e.partition("=")[0] for e in env}
    env += [e for e in container.get("Env") or [] if e.partition("=")[0] not in keys]
    out["Env"] = env or None
    labels = dict(container.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = container.get("Cmd")
            if "ArgsEscaped" in container:
                out["ArgsEscaped"] = container["ArgsEscaped"]
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = container.get("Entrypoint")
    if out.get("Healthcheck") is None and container.get("Healthcheck") is not None:
        out["Healthcheck"] = container["Healthcheck"]
    if not out.get("WorkingDir"):
        out["WorkingDir"] = container.get("WorkingDir") or ""
    volumes = dict(out.get("Volumes") or {})
    volumes.update(container.get("Volumes") or {})
    out["Volumes"] = volumes or None
    if not out.get("StopSignal") and container.get("StopSignal"):
        out["StopSignal"] = container["StopSignal"]
    for key in ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                "StdinOnce", "Image", "OnBuild"):
        out.setdefault(key, {"Hostname": "", "Domainname": "", "Image": "", "OnBuild": None}.get(key, False))
    return out


# ------------------------------------------------------------------------------- the layer
def _header(name: str, st: os.stat_result, *, kind: bytes, size: int = 0, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    info.type, info.size, info.linkname = kind, size, link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info.tobuf(tarfile.PAX_FORMAT)


class _Writer:
    """The layer tar written to ``out``, hashed, and docker's size of it counted."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hasher = hashlib.sha256()
        self.length = 0
        self.size = 0
        self.links: dict[tuple[int, int], str] = {}

    def write(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.hasher.update(data)
            self.length += len(data)

    def whiteout(self, path: str) -> None:
        parent, name = posixpath.split(path)
        info = tarfile.TarInfo(posixpath.join(parent, ".wh." + name).lstrip("/"))
        info.mode, info.mtime = 0o600, int(time.time())
        self.write(info.tobuf(tarfile.PAX_FORMAT))

    def entry(self, root_fd: int, path: str) -> None:
        from core.engine.containers.archive import resolve_parent

        name = path.lstrip("/")
        try:
            pfd, base = resolve_parent(root_fd, path)
        except OSError:
            return  # gone meanwhile
        try:
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                return
            fmt = stat.S_IFMT(st.st_mode)
            if fmt == stat.S_IFDIR:
                self.write(_header(name + "/", st, kind=tarfile.DIRTYPE))
            elif fmt == stat.S_IFLNK:
                link = os.readlink(base, dir_fd=pfd)
                self.write(_header(name, st, kind=tarfile.SYMTYPE, link=link))
                self.size += len(os.fsencode(link))
            elif fmt == stat.S_IFREG:
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self.links:
                    self.write(_header(name, st, kind=tarfile.LNKTYPE, link=self.links[key]))
                    return
                fd = os.open(base, _OPEN, dir_fd=pfd)
                try:
                    st = os.fstat(fd)
                    self.write(_header(name, st, kind=tarfile.REGTYPE, size=st.st_size))
                    left = st.st_size
                    while left > 0:  # exactly st_size bytes: zeros if it shrank meanwhile
                        chunk = os.read(fd, min(left, 1 << 20)) or b"\0" * min(left, 1 << 20)
                        self.write(chunk)
                        left -= len(chunk)
                    self.write(b"\0" * (-st.st_size % 512))
                finally:
                    os.close(fd)
                if st.st_nlink > 1:
                    self.links[key] = name
                self.size += st.st_size
            elif fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
                kind = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE}.get(fmt, tarfile.FIFOTYPE)
                self.write(_header(name, st, kind=kind))
            # sockets are not archived (as docker)
        finally:
            os.close(pfd)

    def finish(self) -> None:
        self.write(b"\0" * 1024)
        self.out.flush()


def write_diff(fds: list[int], ignore: frozenset[str], out: IO[bytes]) -> tuple[str, int, int]:
    """The changes of ``fds[1]`` (the container's root) over ``fds[0]`` (its image's) as a
    layer tar in ``out``: (its sha256 hex, its length, docker's size of it).  Blocking, in the
    roots' thread."""
    from core.engine.containers.archive import changes

    found = changes(fds[0], fds[1], ignore, tuple(p for p in ignore if p not in ("/etc/hostname", "/etc/hosts",
                                                                                 "/etc/resolv.conf")))
    w = _Writer(out)
    for change in found:
        if change["Kind"] == 2:
            w.whiteout(change["Path"])
        else:
            w.entry(fds[1], change["Path"])
    w.finish()
    return w.hasher.hexdigest(), w.length, w.size


async def commit_container(src: CommitSource, *, store: ImageStore, content: Any, snapshotter: Any,
                           ref: Reference | None, comment: str, author: str, changes: list[str],
                           config: dict[str, Any] | None) -> Image:
    """Make the image of ``src`` (see the module docstring) and tag it ``ref``."""
    import secrets
    import shutil
    import tempfile

    from core.engine.containers.archive import Root, run_in_roots

    parent = store.by_id(src.image_id)
    if parent is None:
        raise Conflict(f"the image of container {src.name} ({src.image_id[7:19]}) is gone: it cannot be committed")
    if config is not None and not isinstance(config, dict):
        raise InvalidArgument("the container config to commit must be a JSON object")
    new_config = merge_config(apply_changes(config or {}, changes), src.config)
    parent_manifest = manifest_of(parent, content)
    top = (await snapshotter.stat(src.key)).parent
    key = f"commit-{src.id[:12]}-{secrets.token_hex(4)}"
    base_dir = tempfile.mkdtemp(prefix="commit-", dir=src.scratch)
    viewed = False
    out = spool_file(content.root)
    try:
        base_mounts = []
        if top:
            base_mounts = await snapshotter.view(key, parent=top)
            viewed = True
        roots = [Root(base_dir, mounts=base_mounts), src.root]
        hexdigest, length, size = await trio.to_thread.run_sync(
            run_in_roots, roots, lambda fds: write_diff(fds, src.ignore, out))
        diff_id = Digest("sha256", hexdigest)
        oci = parent_manifest.media_type == MEDIA_TYPE_OCI_MANIFEST
        layer_desc = Descriptor(MEDIA_TYPE_OCI_LAYER if oci else MEDIA_TYPE_DOCKER_LAYER_TAR, diff_id, length)
        if not content.exists(diff_id):
            try:
                w = content.ingest(f"commit-{diff_id}", layer_desc)
            except AlreadyExists:
                w = None
            if w is not None:
                with w:
                    try:
                        await w.truncate()
                        await trio.to_thread.run_sync(out.seek, 0)
                        while chunk := await trio.to_thread.run_sync(out.read, 1 << 20):
                            await w.write(chunk)
                        await w.commit()
                    except BaseException:
                        w.abort()
                        raise
    finally:
        out.close()
        with trio.CancelScope(shield=True):
            if viewed:
                try:
                    await snapshotter.remove(key)
                except CoreError:
                    pass
            shutil.rmtree(base_dir, ignore_errors=True)
    store.record_layer(diff_id, size)
    now = time.time()
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"
    raw = parent.config.raw
    history = [h for h in raw.get("history") or [] if isinstance(h, dict)]
    entry: dict[str, Any] = {"created": created, "created_by": " ".join(src.config.get("Cmd") or [])}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    image_json: dict[str, Any] = {
        "architecture": parent.config.platform.architecture,
        **({"variant": parent.config.platform.variant} if parent.config.platform.variant else {}),
        "os": parent.config.platform.os,
        "parent": parent.id,
        **({"author": author} if author else {}),
        **({"comment": comment} if comment else {}),
        "config": new_config,
        "container": src.id,
        "container_config": src.config,
        "created": created,
        "docker_version": __version__,
        "history": [*history, entry],
        "rootfs": {"type": "layers", "diff_ids": [*(str(d) for d in parent.config.diff_ids), str(diff_id)]},
    }
    config_bytes = json.dumps(image_json, separators=(",", ":")).encode()
    config_desc = Descriptor(MEDIA_TYPE_OCI_CONFIG if oci else MEDIA_TYPE_DOCKER_CONFIG,
                             "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes))
    await content.write_blob(config_bytes, config_desc)
    layers = [*parent_manifest.layers, layer_desc]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": parent_manifest.media_type if oci else
                           MEDIA_TYPE_DOCKER_MANIFEST, "config": config_desc.to_json(),
                           "layers": [d.to_json() for d in layers]}, separators=(",", ":")).encode()
    manifest_desc = Descriptor(MEDIA_TYPE_OCI_MANIFEST if oci else MEDIA_TYPE_DOCKER_MANIFEST,
                               "sha256:" + hashlib.sha256(manifest).hexdigest(), len(manifest))
    await content.write_blob(manifest, manifest_desc)
    blobs = [str(manifest_desc.digest), str(config_desc.digest), *(str(d.digest) for d in layers)]
    image, _ = store.add(str(config_desc.digest), config_bytes, str(manifest_desc.digest), blobs, ref, None)
    assert len(chain_ids(image.config.diff_ids)) == len(layers)
    return image


__all__ = ["apply_changes", "commit_container", "merge_config", "write_diff", "COMMIT_COMMANDS"]
