"""Build OCI image layouts on disk with pure Python, and push them with skopeo.

Nothing here uses our own engine code: the layouts are written with tarfile,
hashlib, gzip, json (and zstandard for zstd layers), and pushed with Debian's
``skopeo``, so a pull bug in the engine cannot hide behind a push bug in it.

Everything is deterministic: fixed mtimes, empty user/group names, gzip with
mtime 0, fixed JSON serialisation.  The same content gives the same digests on
the same machine (compressed digests depend on the zlib/zstd library version).

Typical use::

    layer = LayerSpec().file("etc/motd", b"hi\\n").symlink("etc/link", "motd")
    info = build_image(tmp / "layout", [busybox_rootfs_layer(), layer])
    push(tmp / "layout", "myrepo:latest", registry)   # registry: Registry or "host:port"

Paths in a :class:`LayerSpec` and in :attr:`ImageInfo.files` are relative
POSIX paths without a leading ``/`` (``"bin/busybox"``).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import platform as _platform
import posixpath
import shutil
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# --------------------------------------------------------------------------
# constants

FIXED_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z, used for every tar entry
FIXED_CREATED = "2023-11-14T22:13:20Z"

OCI_LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MT_IN_TOTO = "application/vnd.in-toto+json"

#: Accept header listing every manifest type we build (for fetching back).
MANIFEST_ACCEPT = ", ".join(
    [MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST]
)

_LAYER_MEDIA_TYPES = {
    ("oci", "gzip"): MT_OCI_LAYER_GZIP,
    ("oci", "zstd"): MT_OCI_LAYER_ZSTD,
    ("oci", "none"): MT_OCI_LAYER,
    ("docker", "gzip"): MT_DOCKER_LAYER_GZIP,
    ("docker", "none"): MT_DOCKER_LAYER,
}

DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

HOST_BUSYBOX = "/bin/busybox"  # from Debian's busybox-static

_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_arch() -> str:
    """The GOARCH name of this machine (``amd64``, ``arm64``...)."""
    m = _platform.machine()
    return _GOARCH.get(m, m)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """The one JSON serialisation used for every config/manifest/index we write."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------
# layer description


@dataclass(frozen=True)
class Entry:
    """One tar member of a layer.

    kind is one of ``file``, ``dir``, ``symlink``, ``hardlink``, ``whiteout``,
    ``opaque``, ``char``, ``block``, ``fifo``.  For ``whiteout`` the path is the
    *removed* path (the tar member is ``dir/.wh.name``); for ``opaque`` it is
    the directory (member ``dir/.wh..wh..opq``).  ``raw`` entries are written
    with ``path`` verbatim as the tar name (for hostile-layer tests: ``../x``,
    ``/abs``) and are left out of the merged file view.
    """

    path: str
    kind: str
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    mtime: int = FIXED_MTIME
    xattrs: tuple[tuple[str, str], ...] = ()
    devmajor: int = 0
    devminor: int = 0
    raw: bool = False

    @property
    def tar_name(self) -> str:
        if self.raw:
            return self.path
        if self.kind == "whiteout":
            d, base = posixpath.split(self.path)
            return posixpath.join(d, ".wh." + base) if d else ".wh." + base
        if self.kind == "opaque":
            return posixpath.join(self.path, ".wh..wh..opq") if self.path else ".wh..wh..opq"
        return self.path


def _norm(path: str) -> str:
    p = path.strip()
    while p.startswith("./"):
        p = p[2:]
    p = p.lstrip("/")
    p = posixpath.normpath(p) if p else ""
    if p == ".":
        p = ""
    if p == ".." or p.startswith("../"):
        raise ValueError(f"path escapes the root: {path!r} (use raw=True for hostile layers)")
    return p


class LayerSpec:
    """Describe the content of one layer; methods chain.

    ``auto_parents`` (default on) adds a ``dir`` entry (0755 root:root) for every
    parent directory not given explicitly, just before its first child, as real
    image builders do.  Turn it off to build layers that lack parent entries.
    ``compression`` overrides the image's compression for this layer only.
    """

    def __init__(
        self,
        entries: Iterable[Entry] = (),
        *,
        auto_parents: bool = True,
        compression: str | None = None,
        comment: str = "",
    ) -> None:
        self.entries: list[Entry] = list(entries)
        self.auto_parents = auto_parents
        self.compression = compression
        self.comment = comment

    # -- builders
    def add(self, entry: Entry) -> "LayerSpec":
        self.entries.append(entry)
        return self

    def file(
        self,
        path: str,
        content: bytes | str = b"",
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        *,
        xattrs: Mapping[str, str] | None = None,
        mtime: int = FIXED_MTIME,
    ) -> "LayerSpec":
        if isinstance(content, str):
            content = content.encode()
        return self.add(
            Entry(
                _norm(path),
                "file",
                content=content,
                mode=mode,
                uid=uid,
                gid=gid,
                xattrs=tuple(sorted((xattrs or {}).items())),
                mtime=mtime,
            )
        )

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> "LayerSpec":
        return self.add(Entry(_norm(path), "dir", mode=mode, uid=uid, gid=gid))

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0) -> "LayerSpec":
        return self.add(Entry(_norm(path), "symlink", mode=0o777, target=target, uid=uid, gid=gid))

    def hardlink(self, path: str, target: str) -> "LayerSpec":
        """``path`` becomes a hard link to ``target`` (a path earlier in this layer)."""
        return self.add(Entry(_norm(path), "hardlink", target=_norm(target)))

    def whiteout(self, path: str) -> "LayerSpec":
        """Delete ``path`` (and its subtree) of the lower layers: member ``dir/.wh.name``."""
        return self.add(Entry(_norm(path), "whiteout", mode=0o644))

    def opaque(self, dirpath: str) -> "LayerSpec":
        """Hide every lower-layer child of ``dirpath``: member ``dirpath/.wh..wh..opq``."""
        return self.add(Entry(_norm(dirpath), "opaque", mode=0o644))

    def device(self, path: str, kind: str = "char", major: int = 0, minor: int = 0, mode: int = 0o666) -> "LayerSpec":
        assert kind in ("char", "block", "fifo")
        return self.add(Entry(_norm(path), kind, mode=mode, devmajor=major, devminor=minor))

    def raw_entry(
        self,
        name: str,
        kind: str = "file",
        content: bytes = b"",
        mode: int = 0o644,
        target: str = "",
    ) -> "LayerSpec":
        """A member whose tar name is written verbatim (``../evil``, ``/etc/x``)."""
        return self.add(Entry(name, kind, content=content, mode=mode, target=target, raw=True))

    # -- output
    def _ordered(self) -> list[Entry]:
        if not self.auto_parents:
            return list(self.entries)
        out: list[Entry] = []
        have_dirs = {e.path for e in self.entries if e.kind == "dir" and not e.raw}
        seen: set[str] = set()
        for e in self.entries:
            if not e.raw:
                parent = posixpath.dirname(e.path) if e.kind != "opaque" else e.path
                chain = []
                while parent:
                    chain.append(parent)
                    parent = posixpath.dirname(parent)
                for d in reversed(chain):
                    if d not in seen and d not in have_dirs:
                        out.append(Entry(d, "dir", mode=0o755))
                    seen.add(d)
            out.append(e)
        return out

    def tar_bytes(self) -> bytes:
        """The uncompressed, deterministic tar stream of this layer."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tf:
            for e in self._ordered():
                ti = tarfile.TarInfo(e.tar_name)
                ti.mtime = e.mtime
                ti.mode = e.mode
                ti.uid, ti.gid = e.uid, e.gid
                ti.uname = ti.gname = ""
                data = None
                if e.kind in ("file", "whiteout", "opaque"):
                    ti.type = tarfile.REGTYPE
                    data = e.content
                    ti.size = len(data)
                elif e.kind == "dir":
                    ti.type = tarfile.DIRTYPE
                elif e.kind == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = e.target
                elif e.kind == "hardlink":
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = e.target
                elif e.kind in ("char", "block", "fifo"):
                    ti.type = {"char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[e.kind]
                    ti.devmajor, ti.devminor = e.devmajor, e.devminor
                else:
                    raise ValueError(f"unknown entry kind {e.kind!r}")
                if e.xattrs:
                    ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs}
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def decompress(data: bytes, media_type: str) -> bytes:
    if media_type.endswith("+gzip") or media_type.endswith(".gzip"):
        return gzip.decompress(data)
    if media_type.endswith("+zstd"):
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
    return data


# --------------------------------------------------------------------------
# the merged root filesystem (what a correct pull + unpack must produce)


@dataclass(frozen=True)
class FileEntry:
    """One path of the merged root filesystem after applying all layers.

    ``type``: file, dir, symlink, hardlink, char, block, fifo.  ``mode`` is the
    permission bits (07777).  ``target`` is the symlink target, or for a
    hardlink the path it links to.  ``content``/``sha256``/``size`` are the
    file's bytes (also for hardlinks: those of the target).
    """

    path: str
    type: str
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    sha256: str | None = None
    target: str | None = None
    content: bytes | None = field(default=None, repr=False, compare=False)


def apply_layer(files: dict[str, FileEntry], layer: LayerSpec) -> None:
    """Apply a layer to a merged view in place (OCI whiteout semantics)."""
    entries = [e for e in layer._ordered() if not e.raw]

    def remove_tree(p: str) -> None:
        files.pop(p, None)
        prefix = p + "/"
        for k in [k for k in files if k.startswith(prefix)]:
            del files[k]

    # whiteouts in a layer only hide lower-layer content
    for e in entries:
        if e.kind == "whiteout":
            remove_tree(e.path)
        elif e.kind == "opaque":
            prefix = e.path + "/" if e.path else ""
            for k in [k for k in files if k.startswith(prefix) and k != e.path]:
                del files[k]
    for e in entries:
        if e.kind in ("whiteout", "opaque"):
            continue
        old = files.get(e.path)
        if e.kind == "dir":
            if old is not None and old.type != "dir":
                remove_tree(e.path)
            files[e.path] = FileEntry(e.path, "dir", e.mode & 0o7777, e.uid, e.gid)
            continue
        if old is not None and old.type == "dir":
            remove_tree(e.path)
        if e.kind == "file":
            files[e.path] = FileEntry(
                e.path, "file", e.mode & 0o7777, e.uid, e.gid, len(e.content),
                hashlib.sha256(e.content).hexdigest(), None, e.content,
            )
        elif e.kind == "symlink":
            files[e.path] = FileEntry(e.path, "symlink", 0o777, e.uid, e.gid, 0, None, e.target)
        elif e.kind == "hardlink":
            t = files.get(e.target)
            if t is None:
                raise ValueError(f"hardlink {e.path} -> {e.target}: target not present")
            files[e.path] = FileEntry(e.path, "hardlink", t.mode, t.uid, t.gid, t.size, t.sha256, e.target, t.content)
        else:
            files[e.path] = FileEntry(e.path, e.kind, e.mode & 0o7777, e.uid, e.gid)


def merged_files(layers: Sequence[LayerSpec]) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    for layer in layers:
        apply_layer(files, layer)
    return dict(sorted(files.items()))


# --------------------------------------------------------------------------
# results


@dataclass
class LayerInfo:
    digest: str  # of the compressed blob (what the manifest lists)
    diff_id: str  # of the uncompressed tar (what the config lists)
    size: int
    media_type: str
    compression: str


@dataclass
class ImageInfo:
    """What build_image wrote; everything a pull test compares against."""

    layout_dir: Path
    tag: str
    media: str  # "oci" or "docker"
    platform: tuple[str, ...]
    manifest_digest: str
    manifest_media_type: str
    manifest_bytes: bytes = field(repr=False)
    config_digest: str = ""
    config_bytes: bytes = field(default=b"", repr=False)
    layers: list[LayerInfo] = field(default_factory=list, repr=False)
    files: dict[str, FileEntry] = field(default_factory=dict, repr=False)

    @property
    def manifest(self) -> dict:
        return json.loads(self.manifest_bytes)

    @property
    def config(self) -> dict:
        return json.loads(self.config_bytes)

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def paths(self) -> list[str]:
        return sorted(self.files)

    @property
    def platform_string(self) -> str:
        return "/".join(self.platform)

    def blob(self, digest: str) -> bytes:
        return (self.layout_dir / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


@dataclass
class AttestationInfo:
    manifest_digest: str
    refers_to: str  # digest of the platform manifest it describes
    layer_digest: str


@dataclass
class IndexInfo:
    """A multi-platform image (OCI index or Docker manifest list)."""

    layout_dir: Path
    tag: str
    media: str
    index_digest: str
    index_media_type: str
    index_bytes: bytes = field(repr=False)
    manifests: dict[str, ImageInfo] = field(default_factory=dict)  # "linux/amd64" -> image
    attestations: dict[str, AttestationInfo] = field(default_factory=dict)  # "linux/amd64" -> att

    @property
    def index(self) -> dict:
        return json.loads(self.index_bytes)

    # same names as ImageInfo so callers can treat both alike
    @property
    def manifest_digest(self) -> str:
        return self.index_digest

    @property
    def manifest_media_type(self) -> str:
        return self.index_media_type


# --------------------------------------------------------------------------
# layout writing


def _write_blob(layout: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    p = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
    return digest


def _init_layout(layout: Path) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    if not (layout / "index.json").exists():
        (layout / "index.json").write_bytes(
            canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []})
        )


def _add_to_index(layout: Path, descriptor: dict, tag: str) -> None:
    idx = json.loads((layout / "index.json").read_bytes())
    d = dict(descriptor)
    d["annotations"] = {**d.get("annotations", {}), REF_NAME_ANNOTATION: tag}
    idx["manifests"] = [
        m for m in idx.get("manifests", []) if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ] + [d]
    (layout / "index.json").write_bytes(canonical_json(idx))


def _platform_dict(platform: Sequence[str]) -> dict:
    d = {"architecture": platform[1], "os": platform[0]}
    if len(platform) > 2 and platform[2]:
        d["variant"] = platform[2]
    return d


@functools.lru_cache(maxsize=512)
def _layer_blob(tar: bytes, compression: str) -> bytes:
    return compress(tar, compression)


def _full_config(config: dict | None, platform: Sequence[str]) -> dict:
    """Accept either a full image config or just its ``config`` section."""
    if config is not None and any(k in config for k in ("config", "rootfs", "architecture", "os")):
        full = json.loads(json.dumps(config))
    else:
        run = {"Env": list(DEFAULT_ENV), "Cmd": ["/bin/sh"], "WorkingDir": "/"}
        if config:
            run.update(json.loads(json.dumps(config)))
        full = {"config": run}
    out = {
        "architecture": full.pop("architecture", platform[1]),
        "os": full.pop("os", platform[0]),
    }
    if len(platform) > 2 and platform[2]:
        out["variant"] = full.pop("variant", platform[2])
    out["created"] = full.pop("created", FIXED_CREATED)
    out.update(full)
    out.setdefault("config", {})
    return out


def _write_manifest(
    layout: Path,
    layers: Sequence[LayerSpec],
    config: dict | None,
    compression: str,
    platform: Sequence[str],
    media: str,
    annotations: Mapping[str, str] | None,
) -> ImageInfo:
    if media not in ("oci", "docker"):
        raise ValueError("media must be 'oci' or 'docker'")
    layer_infos: list[LayerInfo] = []
    history = []
    for i, spec in enumerate(layers):
        comp = spec.compression or compression
        mt = _LAYER_MEDIA_TYPES.get((media, comp))
        if mt is None:
            raise ValueError(f"{comp} layers cannot be described in a {media} manifest")
        tar = spec.tar_bytes()
        blob = _layer_blob(tar, comp)
        digest = _write_blob(layout, blob)
        layer_infos.append(LayerInfo(digest, sha256_digest(tar), len(blob), mt, comp))
        history.append({"created": FIXED_CREATED, "created_by": spec.comment or f"layer {i}"})
    cfg = _full_config(config, platform)
    cfg["rootfs"] = {"type": "layers", "diff_ids": [li.diff_id for li in layer_infos]}
    cfg.setdefault("history", history)
    config_bytes = canonical_json(cfg)
    config_digest = _write_blob(layout, config_bytes)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST if media == "oci" else MT_DOCKER_MANIFEST,
        "config": {
            "mediaType": MT_OCI_CONFIG if media == "oci" else MT_DOCKER_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [{"mediaType": li.media_type, "digest": li.digest, "size": li.size} for li in layer_infos],
    }
    if annotations:
        if media != "oci":
            raise ValueError("annotations need an OCI manifest")
        manifest["annotations"] = dict(annotations)
    manifest_bytes = canonical_json(manifest)
    manifest_digest = _write_blob(layout, manifest_bytes)
    return ImageInfo(
        layout_dir=layout,
        tag="",
        media=media,
        platform=tuple(platform),
        manifest_digest=manifest_digest,
        manifest_media_type=manifest["mediaType"],
        manifest_bytes=manifest_bytes,
        config_digest=config_digest,
        config_bytes=config_bytes,
        layers=layer_infos,
        files=merged_files(layers),
    )


def build_image(
    dir: str | os.PathLike,
    layers: Sequence[LayerSpec],
    config: dict | None = None,
    compression: str = "gzip",
    platform: Sequence[str] = ("linux", "amd64"),
    *,
    media: str = "oci",
    tag: str = "latest",
    annotations: Mapping[str, str] | None = None,
) -> ImageInfo:
    """Write one image into the OCI layout at ``dir`` (created or added to).

    ``config``: a full image config (has ``config``/``rootfs``/``os``...) or
    just the runtime ``config`` section (Env, Cmd, Entrypoint, User, ...);
    default ``{"Env": [PATH], "Cmd": ["/bin/sh"], "WorkingDir": "/"}``.
    ``rootfs.diff_ids`` and ``history`` are filled in.
    ``compression``: gzip, zstd (OCI only) or none.  ``media``: ``"oci"``
    (OCI media types) or ``"docker"`` (Docker schema2 media types inside the
    OCI layout; skopeo pushes it as is with ``--preserve-digests``).
    ``platform``: (os, arch) or (os, arch, variant).
    The layout's index.json gets an entry annotated with ref name ``tag``.
    """
    layout = Path(dir)
    _init_layout(layout)
    info = _write_manifest(layout, layers, config, compression, platform, media, annotations)
    info.tag = tag
    _add_to_index(
        layout,
        {"mediaType": info.manifest_media_type, "digest": info.manifest_digest, "size": len(info.manifest_bytes)},
        tag,
    )
    return info


# --------------------------------------------------------------------------
# stock content


BUSYBOX_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
)
BUSYBOX_GROUP = "root:x:0:\nnobody:x:65534:\napp:x:1000:\n"


@functools.lru_cache(maxsize=1)
def _busybox_bytes_and_applets(path: str = HOST_BUSYBOX) -> tuple[bytes, tuple[str, ...]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} missing: install Debian's busybox-static (see ci/apt-packages.txt)")
    data = Path(path).read_bytes()
    out = subprocess.run([path, "--list"], check=True, capture_output=True, text=True).stdout
    applets = tuple(sorted({a.strip() for a in out.split() if a.strip() and a.strip() != "busybox" and "/" not in a}))
    return data, applets


def busybox_applets() -> list[str]:
    return list(_busybox_bytes_and_applets()[1])


def busybox_rootfs_layer(*, extra_files: Mapping[str, bytes | str] | None = None) -> LayerSpec:
    """A runnable root filesystem: /bin/busybox (the host's static one), a
    /bin/<applet> -> busybox symlink for every applet, /etc/passwd and
    /etc/group (root, nobody, app uid 1000), /tmp (1777), /root (0700),
    /home/app (1000:1000), empty /dev /proc /sys, /usr/bin, /var/tmp.
    """
    data, applets = _busybox_bytes_and_applets()
    layer = LayerSpec(comment="busybox rootfs")
    layer.dir("bin").file("bin/busybox", data, 0o755)
    for a in applets:
        layer.symlink(f"bin/{a}", "busybox")
    layer.dir("dev").dir("proc", 0o555).dir("sys", 0o555)
    layer.dir("etc")
    layer.file("etc/passwd", BUSYBOX_PASSWD, 0o644)
    layer.file("etc/group", BUSYBOX_GROUP, 0o644)
    layer.file("etc/hostname", "busybox\n", 0o644)
    layer.dir("home").dir("home/app", 0o755, 1000, 1000)
    layer.dir("root", 0o700)
    layer.dir("tmp", 0o1777)
    layer.dir("usr").dir("usr/bin").dir("usr/sbin")
    layer.dir("var").dir("var/tmp", 0o1777)
    for p, c in (extra_files or {}).items():
        layer.file(p, c)
    return layer


def layered_layers() -> list[LayerSpec]:
    """The stock ``layered`` image: busybox + 3 layers exercising whiteouts,
    an opaque directory, a file replaced by a directory (and a directory
    replaced by a file), symlinks, a hardlink, modes and ownership."""
    l1 = (
        LayerSpec(comment="add data")
        .file("data/keep.txt", "keep\n")
        .file("data/remove-me.txt", "going away\n")
        .dir("data/removed-dir")
        .file("data/removed-dir/inner.txt", "inner\n")
        .dir("opq")
        .file("opq/old-1.txt", "old 1\n")
        .file("opq/old-2.txt", "old 2\n")
        .dir("opq/old-sub")
        .file("opq/old-sub/deep.txt", "deep\n")
        .file("replaced", "I am a file for now\n")
        .dir("dir-to-file")
        .file("dir-to-file/child.txt", "child\n")
        .file("etc/removed.conf", "x=1\n")
        .file("data/owned-by-app.txt", "app's\n", 0o640, 1000, 1000)
        .file("data/setuid-bin", b"#!/bin/sh\necho suid\n", 0o4755)
    )
    l2 = (
        LayerSpec(comment="whiteouts, opaque dir, replace file by dir")
        .whiteout("data/remove-me.txt")
        .whiteout("data/removed-dir")
        .whiteout("etc/removed.conf")
        .opaque("opq")
        .file("opq/new.txt", "new in opaque dir\n")
        .dir("replaced", 0o750)  # a file in the lower layer: the dir replaces it
        .file("replaced/now-a-dir.txt", "replaced by a directory\n")
        .file("dir-to-file", "now a file\n", 0o600)  # a dir (with a child) below
    )
    l3 = (
        LayerSpec(comment="links and overwrite")
        .file("data/keep.txt", "keep, version 2\n", 0o664)
        .file("data/hard-src.txt", "shared inode\n")
        .hardlink("data/hard-link.txt", "data/hard-src.txt")
        .symlink("data/sym-rel", "keep.txt")
        .symlink("data/sym-abs", "/etc/passwd")
        .symlink("data/sym-dangling", "/does/not/exist")
        .file("data/empty", b"")
    )
    return [busybox_rootfs_layer(), l1, l2, l3]


def marker_layer(text: str, path: str = "etc/marker") -> LayerSpec:
    return LayerSpec(comment=f"marker {text}").file(path, text if text.endswith("\n") else text + "\n")


def build_many_layer_image(
    dir: str | os.PathLike,
    n_layers: int = 130,
    *,
    compression: str = "gzip",
    media: str = "oci",
    tag: str = "latest",
    base: bool = True,
) -> ImageInfo:
    """An image of ``n_layers`` layers: busybox (if ``base``) then small layers
    each adding ``layers/NNN.txt`` and overwriting ``layers/last.txt``."""
    layers: list[LayerSpec] = [busybox_rootfs_layer()] if base else []
    i = 0
    while len(layers) < n_layers:
        layers.append(
            LayerSpec(comment=f"layer {i}").file(f"layers/{i:03d}.txt", f"layer {i}\n").file("layers/last.txt", f"{i}\n")
        )
        i += 1
    return build_image(dir, layers, compression=compression, media=media, tag=tag)


def _attestation_layers(subject_digest: str, platform: Sequence[str]) -> bytes:
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": "_", "digest": {"sha256": subject_digest.split(":", 1)[1]}}],
        "predicate": {"spdxVersion": "SPDX-2.3", "name": "sbom-" + "/".join(platform)},
    }
    return canonical_json(statement)


def build_multiplatform_image(
    dir: str | os.PathLike,
    platforms: Mapping[tuple[str, ...], Sequence[LayerSpec]] | None = None,
    *,
    attestations: bool = True,
    compression: str = "gzip",
    media: str = "oci",
    tag: str = "latest",
) -> IndexInfo:
    """An index (OCI) or manifest list (``media="docker"``) over several
    platform manifests, plus -- for OCI with ``attestations`` -- one
    buildkit-style attestation manifest per platform (index entry with
    platform unknown/unknown and annotations ``vnd.docker.reference.type:
    attestation-manifest``, ``vnd.docker.reference.digest: <platform manifest>``).

    Default platforms: linux/amd64 and linux/arm64/v8; the host's architecture
    gets busybox + a marker layer (``etc/marker`` = "linux/<arch>"), the other
    only the marker layer (no foreign busybox binary is available).
    """
    layout = Path(dir)
    _init_layout(layout)
    if platforms is None:
        harch = host_arch()
        platforms = {}
        for plat in (("linux", "amd64"), ("linux", "arm64", "v8")):
            base = [busybox_rootfs_layer()] if plat[1] == harch else []
            platforms[plat] = base + [marker_layer("/".join(plat[:2]))]
    if media == "docker":
        attestations = False
    entries = []
    manifests: dict[str, ImageInfo] = {}
    atts: dict[str, AttestationInfo] = {}
    for plat, layers in platforms.items():
        info = _write_manifest(layout, layers, None, compression, plat, media, None)
        info.tag = tag
        manifests["/".join(plat)] = info
        entries.append(
            {
                "mediaType": info.manifest_media_type,
                "digest": info.manifest_digest,
                "size": len(info.manifest_bytes),
                "platform": _platform_dict(plat),
            }
        )
    if attestations:
        for pstr, info in manifests.items():
            layer = _attestation_layers(info.manifest_digest, info.platform)
            layer_digest = _write_blob(layout, layer)
            cfg = canonical_json(
                {
                    "architecture": "unknown",
                    "os": "unknown",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                }
            )
            cfg_digest = _write_blob(layout, cfg)
            m = canonical_json(
                {
                    "schemaVersion": 2,
                    "mediaType": MT_OCI_MANIFEST,
                    "config": {"mediaType": MT_OCI_CONFIG, "digest": cfg_digest, "size": len(cfg)},
                    "layers": [
                        {
                            "mediaType": MT_IN_TOTO,
                            "digest": layer_digest,
                            "size": len(layer),
                            "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
                        }
                    ],
                }
            )
            m_digest = _write_blob(layout, m)
            atts[pstr] = AttestationInfo(m_digest, info.manifest_digest, layer_digest)
            entries.append(
                {
                    "mediaType": MT_OCI_MANIFEST,
                    "digest": m_digest,
                    "size": len(m),
                    "annotations": {
                        "vnd.docker.reference.digest": info.manifest_digest,
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                    "platform": {"architecture": "unknown", "os": "unknown"},
                }
            )
    index_mt = MT_OCI_INDEX if media == "oci" else MT_DOCKER_LIST
    index_bytes = canonical_json({"schemaVersion": 2, "mediaType": index_mt, "manifests": entries})
    index_digest = _write_blob(layout, index_bytes)
    _add_to_index(layout, {"mediaType": index_mt, "digest": index_digest, "size": len(index_bytes)}, tag)
    return IndexInfo(layout, tag, media, index_digest, index_mt, index_bytes, manifests, atts)


# --------------------------------------------------------------------------
# pushing with skopeo


class PushError(RuntimeError):
    pass


@dataclass
class PushResult:
    reference: str  # host:port/repo:tag
    digest: str  # manifest digest as served by the registry
    media_type: str
    manifest_bytes: bytes = field(repr=False)


def _registry_host(registry: Any) -> str:
    if isinstance(registry, str):
        return registry.removeprefix("http://").rstrip("/")
    return registry.host


def _layout_top_entry(layout: Path, src_tag: str | None) -> dict:
    idx = json.loads((layout / "index.json").read_bytes())
    ms = idx.get("manifests", [])
    if src_tag is None:
        if len(ms) != 1:
            raise ValueError(f"{layout} holds {len(ms)} images: give src_tag")
        return ms[0]
    for m in ms:
        if m.get("annotations", {}).get(REF_NAME_ANNOTATION) == src_tag:
            return m
    raise ValueError(f"{layout} has no image tagged {src_tag!r}")


def fetch_manifest(host: str, repo: str, ref: str, *, headers: Mapping[str, str] | None = None,
                   timeout: float = 10) -> tuple[bytes, str, str]:
    """GET a manifest over plain HTTP: (body, content type, Docker-Content-Digest)."""
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT, **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
        return body, resp.headers.get("Content-Type", ""), resp.headers.get("Docker-Content-Digest", "")


def push(
    layout_dir: str | os.PathLike,
    ref: str,
    registry: Any,
    *,
    src_tag: str | None = None,
    format: str | None = None,
    all: bool | None = None,
    creds: str | None = None,
    preserve_digests: bool | None = None,
    verify: bool = True,
    timeout: float = 300,
) -> PushResult:
    """Push an image (or index) from an OCI layout with ``skopeo copy``.

    ``ref``: ``repo:tag`` (the registry host is prepended).  ``registry``: a
    :class:`core.testing.registry_server.Registry` or ``"127.0.0.1:PORT"``.
    ``format``: None (as built), ``"oci"`` or ``"v2s2"`` (skopeo converts; the
    manifest digest then differs from the built one).  ``all``: copy every
    instance of an index (default: on when the source is an index).
    ``preserve_digests`` (default: on unless converting) passes
    ``--preserve-digests`` so the registry holds exactly our bytes; with
    ``verify`` the manifest is fetched back over HTTP and its digest checked.
    """
    layout = Path(layout_dir)
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise PushError("skopeo missing: install Debian's skopeo (see ci/apt-packages.txt)")
    top = _layout_top_entry(layout, src_tag)
    is_index = top["mediaType"] in (MT_OCI_INDEX, MT_DOCKER_LIST)
    if all is None:
        all = is_index
    built_format = "oci" if top["mediaType"] in (MT_OCI_MANIFEST, MT_OCI_INDEX) else "v2s2"
    if preserve_digests is None:
        preserve_digests = format is None or format == built_format
    host = _registry_host(registry)
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        repo, tag = ref, "latest"
    n_entries = len(json.loads((layout / "index.json").read_bytes()).get("manifests", []))
    # skopeo 1.9's oci transport only finds a *named* reference whose descriptor
    # has an OCI media type; a sole entry is taken whatever its type, so name
    # the reference only when the layout holds several images.
    if n_entries > 1 and top["mediaType"] not in (MT_OCI_MANIFEST, MT_OCI_INDEX):
        raise PushError(f"{layout}: a Docker-media-type image must be the only one in its layout to be pushed")
    src = f"oci:{layout}" + (f":{src_tag}" if src_tag and n_entries > 1 else "")
    dst = f"docker://{host}/{repo}:{tag}"
    cmd = [skopeo, "--insecure-policy", "copy", "--dest-tls-verify=false", "--retry-times", "2"]
    cmd += ["--dest-creds", creds] if creds else ["--dest-no-creds"]
    if all:
        cmd.append("--all")
    if format:
        cmd += ["--format", format]
    if preserve_digests:
        cmd.append("--preserve-digests")
    cmd += [src, dst]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_AUTH_FILE", "DOCKER_CONFIG"))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise PushError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    result = PushResult(f"{host}/{repo}:{tag}", top["digest"], top["mediaType"], b"")
    if verify:
        hdrs = {}
        if creds and getattr(registry, "auth", None):
            hdrs = registry.auth_headers(repo, "pull", creds)
        body, ctype, dcd = fetch_manifest(host, repo, tag, headers=hdrs)
        digest = sha256_digest(body)
        if dcd and dcd != digest:
            raise PushError(f"registry says {dcd} but served bytes hash to {digest}")
        if preserve_digests and digest != top["digest"]:
            raise PushError(f"pushed {top['digest']} but registry serves {digest} for {repo}:{tag}")
        result = PushResult(f"{host}/{repo}:{tag}", digest, ctype.split(";")[0].strip(), body)
    return result
