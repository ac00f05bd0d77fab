"""pytest fixtures for pull tests against a real registry on 127.0.0.1.

Import them from tests/conftest.py (``from tests.support.fixtures import *``)
or list this module in ``pytest_plugins``.  Run pytest from the repository
root (``python -m pytest``) so ``tests.support`` is importable.

* ``registry`` (session): :class:`Registry`, plain HTTP, no auth, writable.
* ``token_registry`` (session): a second docker-registry with ``auth: token``
  serving the *same storage* as ``registry`` (so every image of
  ``test_images`` is there too).  ``token_registry.token_server`` is the
  :class:`TokenServer`: users ``{"alice": "alice-password"}``, anonymous pull
  of repositories not under ``private/``; ``.issued`` counts tokens.  Tests
  that change its settings must restore them; call ``reset_counters()``
  before counting.
* ``test_images`` (session): :class:`ImageSet` -- the stock images, built
  with tests.support.images and pushed with skopeo into ``registry``.
* ``fault_proxy`` (function): a :class:`FaultProxy` in front of ``registry``.
* ``fresh_registry`` (function): an empty Registry of its own.

When docker-registry, skopeo or busybox-static are missing the fixtures skip
(they fail instead when ``CI`` is set, so CI cannot go green without them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from . import images as im
from .faultproxy import FaultProxy
from core.testing.registry_server import REGISTRY_BIN, Registry

#: credentials known to the token/basic registries of these fixtures
TEST_USER = "alice"
TEST_PASSWORD = "alice-password"

__all__ = [
    "ImageSet",
    "PushedImage",
    "STOCK_IMAGES",
    "TEST_PASSWORD",
    "TEST_USER",
    "build_and_push_stock_images",
    "fault_proxy",
    "fresh_registry",
    "registry",
    "require_registry_tools",
    "test_images",
    "token_registry",
]


def require_registry_tools() -> None:
    """Skip (or fail under CI) unless the Debian tools are installed."""
    missing = [
        what
        for what, ok in (
            ("docker-registry", os.access(REGISTRY_BIN, os.X_OK)),
            ("skopeo", shutil.which("skopeo") is not None),
            ("busybox-static", os.access(im.HOST_BUSYBOX, os.X_OK)),
        )
        if not ok
    ]
    if missing:
        msg = f"missing Debian packages {missing}: apt-get install $(cat ci/apt-packages.txt)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@dataclass
class PushedImage:
    """One stock image as it sits in the registry.

    For an index (``multi``) ``digest``/``media_type`` are the index's, and
    ``config_digest``/``layer_digests``/``diff_ids``/``files`` those of the
    host platform's manifest; ``platforms`` maps "linux/amd64" etc. to each
    platform's ImageInfo and ``attestations`` to the attestation manifests.
    """

    name: str  # "busybox:latest"
    repo: str
    tag: str
    reference: str  # "127.0.0.1:PORT/busybox:latest"
    digest: str  # manifest/index digest the registry serves
    media_type: str
    info: Any = field(repr=False)  # ImageInfo or IndexInfo
    manifest_bytes: bytes = field(default=b"", repr=False)

    @property
    def is_index(self) -> bool:
        return isinstance(self.info, im.IndexInfo)

    @property
    def image(self) -> im.ImageInfo:
        """The single-platform ImageInfo (host platform for an index)."""
        if isinstance(self.info, im.IndexInfo):
            for pstr, info in self.info.manifests.items():
                if info.platform[0] == "linux" and info.platform[1] == im.host_arch():
                    return info
            return next(iter(self.info.manifests.values()))
        return self.info

    @property
    def platforms(self) -> dict[str, im.ImageInfo]:
        return dict(self.info.manifests) if self.is_index else {self.info.platform_string: self.info}

    @property
    def attestations(self) -> dict[str, im.AttestationInfo]:
        return dict(self.info.attestations) if self.is_index else {}

    @property
    def manifest_digest(self) -> str:
        return self.digest

    @property
    def config_digest(self) -> str:
        return self.image.config_digest

    @property
    def config(self) -> dict:
        return self.image.config

    @property
    def layer_digests(self) -> list[str]:
        return self.image.layer_digests

    @property
    def diff_ids(self) -> list[str]:
        return self.image.diff_ids

    @property
    def files(self) -> dict[str, im.FileEntry]:
        return self.image.files

    def ref(self, host: str | Any | None = None, *, by_digest: bool = False) -> str:
        """Reference through another host (a proxy, the token registry...)."""
        h = self.reference.split("/", 1)[0] if host is None else (host if isinstance(host, str) else host.host)
        return f"{h}/{self.repo}@{self.digest}" if by_digest else f"{h}/{self.repo}:{self.tag}"


@dataclass
class ImageSet:
    """The ``test_images`` fixture's value: ``images["busybox:latest"]``."""

    registry: Registry
    images: dict[str, PushedImage]
    layout_root: Path

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def url(self) -> str:
        return self.registry.url

    def __getitem__(self, name: str) -> PushedImage:
        return self.images[name]

    def __contains__(self, name: str) -> bool:
        return name in self.images

    def __iter__(self):
        return iter(self.images)

    def tags(self, repo: str) -> list[str]:
        return sorted(p.tag for p in self.images.values() if p.repo == repo)


def _busybox(d: Path) -> im.ImageInfo:
    return im.build_image(d, [im.busybox_rootfs_layer()], media="docker", tag="latest")


def _busybox_version(version: str) -> Callable[[Path], im.ImageInfo]:
    def build(d: Path) -> im.ImageInfo:
        return im.build_image(
            d,
            [im.busybox_rootfs_layer(), im.marker_layer(version, "etc/busybox-image-version")],
            {"Cmd": ["/bin/sh"], "Labels": {"org.example.version": version}},
            media="docker",
            tag=version,
        )

    return build


def _layered(d: Path) -> im.ImageInfo:
    return im.build_image(
        d,
        im.layered_layers(),
        {"Cmd": ["/bin/sh"], "Env": im.DEFAULT_ENV + ["LAYERED=1"], "WorkingDir": "/data"},
        media="oci",
    )


def _multi(d: Path) -> im.IndexInfo:
    return im.build_multiplatform_image(d, attestations=True, media="oci")


def _zstd(d: Path) -> im.ImageInfo:
    return im.build_image(
        d, [im.busybox_rootfs_layer(), im.marker_layer("zstd")], compression="zstd", media="oci"
    )


def _many(d: Path) -> im.ImageInfo:
    return im.build_many_layer_image(d, 130, media="oci")


#: name -> builder(layout_dir); ``private/busybox`` needs credentials on token_registry
STOCK_IMAGES: dict[str, Callable[[Path], Any]] = {
    "busybox:latest": _busybox,  # Docker schema2, 1 gzip layer
    "busybox:1.0": _busybox_version("1.0"),  # Docker schema2, 2 layers (shared base)
    "busybox:1.1": _busybox_version("1.1"),
    "layered:latest": _layered,  # OCI, 4 layers: whiteouts, opaque dir, type changes, links
    "multi:latest": _multi,  # OCI index: linux/amd64, linux/arm64/v8, 2 attestation manifests
    "zstd:latest": _zstd,  # OCI, zstd layers
    "many:latest": _many,  # OCI, 130 layers
    "private/busybox:latest": _busybox,
}


def build_and_push_stock_images(registry: Registry, layout_root: Path,
                                names: list[str] | None = None) -> ImageSet:
    """Build (in one layout dir per image) and push the stock images."""
    names = list(STOCK_IMAGES) if names is None else names

    def one(name: str) -> PushedImage:
        repo, _, tag = name.rpartition(":")
        d = layout_root / name.replace("/", "_").replace(":", "_")
        info = STOCK_IMAGES[name](d)
        res = im.push(d, name, registry, src_tag=info.tag)
        return PushedImage(name, repo, tag, res.reference, res.digest, res.media_type, info, res.manifest_bytes)

    def repository(tags: list[str]) -> list[PushedImage]:
        return [one(name) for name in tags]

    # build the shared busybox layer once before fanning out; one repository's tags are pushed
    # one after the other (docker-registry answers 500 to concurrent pushes into one
    # repository now and then), repositories side by side
    im.busybox_rootfs_layer().tar_bytes()
    by_repo: dict[str, list[str]] = {}
    for name in names:
        by_repo.setdefault(name.rpartition(":")[0], []).append(name)
    with ThreadPoolExecutor(max_workers=4) as pool:
        pushed = [p for group in pool.map(repository, by_repo.values()) for p in group]
    return ImageSet(registry, {p.name: p for p in pushed}, layout_root)


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def registry():
    require_registry_tools()
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def token_registry(registry):
    with Registry(auth="token", users={TEST_USER: TEST_PASSWORD}, storage_dir=registry.storage_dir) as reg:
        yield reg


@pytest.fixture(scope="session")
def test_images(registry):
    root = Path(tempfile.mkdtemp(prefix=f"core-images-{os.getpid()}-"))
    try:
        yield build_and_push_stock_images(registry, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fault_proxy(registry):
    proxy = FaultProxy(registry)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def fresh_registry():
    require_registry_tools()
    with Registry() as reg:
        yield reg
