"""Conformance: a registry driver keeps the registry contract (``core.contracts.registry``).

Run against an installed driver::

    pytest --pyargs core.testing.registry --driver registry=mydriver

or subclass :class:`RegistrySuite` in your own tests::

    from core.testing.registry import RegistrySuite

    class TestMyRegistryDriver(RegistrySuite):
        name = "mydriver"

The suite starts what it needs, on 127.0.0.1 at free ports: two real registries — Debian's
``docker-registry`` (CNCF distribution, ``/usr/bin/docker-registry``), one anonymous and one
with token auth behind a token server of its own (:mod:`core.testing.token_server`).  It puts
images into them, and reads back what the driver pushed, through a **backdoor**
(:class:`Backdoor`): a small HTTP client of its own that shares no code with the driver, so a
pull bug cannot hide behind a push bug.  The driver is built through its entry point by
:func:`core.testing.make_driver`, with the kernel's content store under its test root, exactly
as the daemon builds it.

What is checked (hypothesis draws the blobs, images and tags):

1. **Resolving**: by tag and by digest, a manifest or an index comes back byte-exact, with the
   digest of its bytes, their size and the registry's media type; the manifests of an index
   are fetched by digest.
2. **Blobs**: ``fetch_blob`` yields exactly the blob's bytes, reports progress up to its size,
   and leaves the blob committed in the content store; ``fetch_blob_to_store`` too; several
   tasks fetching one blob at once all get it.
3. **Verification**: a blob or a manifest whose bytes were altered in the registry's own
   storage (a flipped byte; a changed digit in a manifest, which the registry still parses
   and serves) is refused with
   ``InvalidArgument`` — by tag, by digest, as an index's child — and nothing is kept; once
   repaired, it is fetched.
4. **Tags**: every tag pushed is listed, in the registry's order.
5. **Pushing**: blobs pushed from bytes, from a factory and from the content store, and
   manifests pushed under a tag, are in the registry byte-exact; a blob the registry has is
   not uploaded again; bytes that do not match their descriptor are refused.
6. **Errors**: unknown tags, repositories and blobs are ``NotFound``.
7. **Token auth**: anonymous pulls of public repositories work; refused anonymous pulls,
   wrong passwords and anonymous pushes are ``Unauthorized`` (a refused pull with docker's
   ``pull access denied`` wording); ``login`` answers ``Login Succeeded`` or
   ``Unauthorized``; tokens are reused, not asked for on every request.
8. ``aclose`` may be called twice.

Everything the suite starts is stopped and every directory removed, even when a test fails.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import random
import re
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contracts.registry import AuthConfig
from core.errors import InvalidArgument, NotFound, Unauthorized
from core.reference import Reference, parse_reference
from core.testing import TrioThread, close_driver, make_driver, temp_root
from core.testing.loading import DriverSuite
from core.testing.registry_server import Registry, RegistryError, http_request, registry_available
from core.types import (MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_LAYER_GZIP,
                        MEDIA_TYPE_OCI_MANIFEST, Descriptor, Digest)

__all__ = ["Backdoor", "Image", "RegistryHarness", "RegistrySuite", "USER", "PASSWORD"]

#: the one user of the token registry
USER, PASSWORD = "conformance", "conformance-password"
CALL_TIMEOUT = 60.0
_repos = itertools.count()


def _bytes(seed: int, size: int) -> bytes:
    """``size`` pseudo-random bytes (cheaper for hypothesis to draw than the bytes themselves)."""
    return random.Random(seed).randbytes(size)


def _descriptor(media_type: str, data: bytes) -> Descriptor:
    return Descriptor(media_type, Digest.from_bytes(data), len(data))


class Image(NamedTuple):
    """An image the backdoor pushed: its manifest and blobs, as the registry holds them."""

    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    layers: list[Descriptor]
    blobs: dict[str, bytes]  # digest -> bytes, config and layers


# =========================================================================== the backdoor
class Backdoor:
    """Pushes to and reads from one registry with plain HTTP (urllib), bypassing the driver.

    With a token registry it authenticates as :data:`USER`.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _headers(self, repo: str, actions: str) -> dict[str, str]:
        return self.registry.auth_headers(repo, actions) if self.registry.auth else {}

    def _request(self, method: str, path_or_url: str, repo: str, actions: str = "pull",
                 headers: dict[str, str] | None = None, data: bytes | None = None
                 ) -> tuple[int, dict[str, str], bytes]:
        url = path_or_url if "://" in path_or_url else self.registry.url + path_or_url
        return http_request(url, method=method, data=data, timeout=30,
                            headers={**self._headers(repo, actions), **(headers or {})})

    def push_blob(self, repo: str, data: bytes, media_type: str = MEDIA_TYPE_OCI_LAYER_GZIP
                  ) -> Descriptor:
        """A monolithic upload of ``data``; its descriptor."""
        desc = _descriptor(media_type, data)
        status, headers, body = self._request("POST", f"/v2/{repo}/blobs/uploads/", repo,
                                              "pull,push", {"Content-Length": "0"}, b"")
        if status != 202:
            raise RegistryError(f"backdoor: opening an upload: {status} {body[:200]!r}")
        location = urllib.parse.urljoin(self.registry.url + "/", headers["location"])
        sep = "&" if "?" in location else "?"
        status, _, body = self._request(
            "PUT", f"{location}{sep}digest={urllib.parse.quote(str(desc.digest))}", repo,
            "pull,push", {"Content-Type": "application/octet-stream"}, data)
        if status != 201:
            raise RegistryError(f"backdoor: uploading {desc.digest}: {status} {body[:200]!r}")
        return desc

    def push_manifest(self, repo: str, reference: str, media_type: str, data: bytes
                      ) -> Descriptor:
        status, _, body = self._request("PUT", f"/v2/{repo}/manifests/{reference}", repo,
                                        "pull,push", {"Content-Type": media_type}, data)
        if status != 201:
            raise RegistryError(f"backdoor: putting manifest {repo}:{reference}: {status} "
                                f"{body[:300]!r}")
        return _descriptor(media_type, data)

    def push_image(self, repo: str, tag: str, layers: list[bytes], note: str = "") -> Image:
        """An OCI image of ``layers`` (any bytes: the registry does not look inside), with a
        config naming ``note``, pushed under ``repo:tag``."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {
            "note": note}}, "rootfs": {"type": "layers", "diff_ids": [
                str(Digest.from_bytes(layer)) for layer in layers]}}).encode()
        blobs = {}
        config_desc = self.push_blob(repo, config, MEDIA_TYPE_OCI_CONFIG)
        blobs[str(config_desc.digest)] = config
        layer_descs = []
        for layer in layers:
            desc = self.push_blob(repo, layer)
            blobs[str(desc.digest)] = layer
            layer_descs.append(desc)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": config_desc.to_json(), "layers": [d.to_json() for d in layer_descs],
        }).encode()
        desc = self.push_manifest(repo, tag, MEDIA_TYPE_OCI_MANIFEST, manifest)
        return Image(desc, manifest, config_desc, layer_descs, blobs)

    def push_index(self, repo: str, tag: str, images: list[Image]) -> tuple[Descriptor, bytes]:
        index = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [{**img.manifest.to_json(),
                           "platform": {"architecture": f"arch{i}", "os": "linux"}}
                          for i, img in enumerate(images)],
        }).encode()
        return self.push_manifest(repo, tag, MEDIA_TYPE_OCI_INDEX, index), index

    def blob(self, repo: str, digest: Digest | str) -> bytes | None:
        """The blob's bytes as the registry serves them; ``None`` if it has none."""
        status, _, body = self._request("GET", f"/v2/{repo}/blobs/{digest}", repo)
        return body if status == 200 else None

    def manifest(self, repo: str, reference: str) -> tuple[str, bytes] | None:
        """``(media type, bytes)`` of a manifest; ``None`` if unknown."""
        status, headers, body = self._request(
            "GET", f"/v2/{repo}/manifests/{reference}", repo,
            headers={"Accept": f"{MEDIA_TYPE_OCI_MANIFEST}, {MEDIA_TYPE_OCI_INDEX}"})
        return (headers.get("content-type", ""), body) if status == 200 else None

    def tags(self, repo: str) -> list[str]:
        status, _, body = self._request("GET", f"/v2/{repo}/tags/list", repo)
        if status != 200:
            raise RegistryError(f"backdoor: listing tags of {repo}: {status}")
        return json.loads(body).get("tags") or []

    def blob_file(self, digest: Digest | str) -> Path:
        """Where the registry keeps the blob on disk (distribution's filesystem layout)."""
        d = Digest.parse(digest)
        assert self.registry.storage_dir is not None
        return (self.registry.storage_dir / "docker" / "registry" / "v2" / "blobs" / d.algorithm
                / d.encoded[:2] / d.encoded / "data")

    @contextlib.contextmanager
    def flipped(self, digest: Digest | str, position: int) -> Iterator[None]:
        """The blob's stored byte at ``position`` (modulo its size) flipped, then repaired."""
        path = self.blob_file(digest)
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[position % len(damaged)] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            yield
        finally:
            path.write_bytes(original)

    @contextlib.contextmanager
    def altered_manifest(self, digest: Digest | str, position: int) -> Iterator[None]:
        """One hex digit of a digest the stored manifest names changed (the ``position``-th,
        modulo their number), then repaired: the document stays valid JSON that the registry
        parses and serves, but its bytes no longer hash to ``digest``."""
        path = self.blob_file(digest)
        original = path.read_bytes()
        digits = [m.start() + 7 + i for m in re.finditer(rb"sha256:[0-9a-f]{64}", original)
                  for i in range(64)]
        at = digits[position % len(digits)]
        damaged = bytearray(original)
        damaged[at] = ord("0") if damaged[at] != ord("0") else ord("1")
        path.write_bytes(bytes(damaged))
        try:
            yield
        finally:
            path.write_bytes(original)


# =========================================================================== the harness
class RegistryHarness:
    """The driver under test in a fresh root, with the kernel's content store, and synchronous
    helpers.  :meth:`close` closes the driver and removes the root."""

    def __init__(self, kind: str, name: str, options: dict[str, str] | None = None) -> None:
        self.kind, self.name = kind, name
        self.root = temp_root()
        self._loop = TrioThread(timeout=CALL_TIMEOUT, name="core-testing-registry")
        self.driver: Any = None
        try:
            self.loaded, self.context, self.driver = self._loop.run_sync(
                make_driver, kind, name, self.root, options)
            assert self.context.content is not None
            self.content = self.context.content
        except BaseException:
            self.close()
            raise

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._loop.run(functools.partial(method, *args, **kwargs))

    def run(self, afn: Callable[..., Any], *args: Any) -> Any:
        return self._loop.run(afn, *args)

    def fetch(self, ref: Reference, desc: Descriptor, auth: AuthConfig | None = None
              ) -> tuple[bytes, list[int]]:
        """The bytes ``fetch_blob`` yields, and the progress it reported."""
        progress: list[int] = []

        async def go() -> bytes:
            out = bytearray()
            async with contextlib.aclosing(
                    self.driver.fetch_blob(ref, desc, auth, progress.append)) as chunks:
                async for chunk in chunks:
                    out += chunk
            return bytes(out)

        return self._loop.run(go), progress

    def close(self) -> None:
        try:
            if self.driver is not None:
                self.call(close_driver, self.driver)
                self.driver = None
        finally:
            self._loop.close()
            shutil.rmtree(self.root, ignore_errors=True)


def _ref(registry: Registry, repo: str, tag: str | None = None, digest: Any = None) -> Reference:
    text = f"{registry.host}/{repo}"
    if digest is not None:
        return parse_reference(f"{text}@{digest}")
    return parse_reference(f"{text}:{tag or 'latest'}")


def _repo(prefix: str = "conformance") -> str:
    return f"{prefix}/r{next(_repos)}"


#: hypothesis: a few layers of a few KiB to a few hundred KiB, given as (seed, size)
_layers = st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 300_000)), min_size=1,
                   max_size=3)
_tag = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,30}", fullmatch=True)
_examples = settings(max_examples=6, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))


# =========================================================================== the suite
class RegistrySuite(DriverSuite):
    """The registry conformance suite; subclass it with ``name = "<driver>"``."""

    kind = "registry"

    @pytest.fixture(scope="class")
    @classmethod
    def plain(cls) -> Iterator[Registry]:
        """An anonymous registry, read-write for everyone."""
        if not registry_available():
            pytest.skip("the registry suite needs /usr/bin/docker-registry (Debian's "
                        "docker-registry)")
        with Registry() as reg:
            yield reg

    @pytest.fixture(scope="class")
    @classmethod
    def token(cls) -> Iterator[Registry]:
        """A registry with token auth: :data:`USER` may do anything; anonymous users may pull
        repositories not under ``private/``."""
        if not registry_available():
            pytest.skip("the registry suite needs /usr/bin/docker-registry (Debian's "
                        "docker-registry)")
        with Registry(auth="token", users={USER: PASSWORD}) as reg:
            yield reg

    @pytest.fixture
    def harness(self, driver_under_test: tuple[str, str]) -> Iterator[RegistryHarness]:
        h = RegistryHarness(*driver_under_test, self.driver_options())
        try:
            yield h
        finally:
            h.close()

    # ------------------------------------------------------------------- 1. resolving
    def test_resolve_by_tag_and_by_digest(self, harness: RegistryHarness, plain: Registry
                                          ) -> None:
        backdoor = Backdoor(plain)

        @_examples
        @given(layers=_layers, tag=_tag)
        def check(layers: list[tuple[int, int]], tag: str) -> None:
            repo = _repo()
            img = backdoor.push_image(repo, tag, [_bytes(*spec) for spec in layers])
            for ref in (_ref(plain, repo, tag), _ref(plain, repo, digest=img.manifest.digest)):
                desc, data = harness.call(harness.driver.resolve, ref)
                assert data == img.manifest_bytes, f"resolve({ref}) returned other bytes"
                assert desc.digest == img.manifest.digest == Digest.from_bytes(data)
                assert desc.size == len(data)
                assert desc.media_type == MEDIA_TYPE_OCI_MANIFEST

        check()

    def test_an_index_and_its_manifests(self, harness: RegistryHarness, plain: Registry) -> None:
        backdoor = Backdoor(plain)
        repo = _repo()
        images = [backdoor.push_image(repo, f"arch{i}", [_bytes(i, 1000 + i)], note=str(i))
                  for i in range(2)]
        index_desc, index = backdoor.push_index(repo, "multi", images)
        desc, data = harness.call(harness.driver.resolve, _ref(plain, repo, "multi"))
        assert (desc.media_type, desc.digest, data) == (MEDIA_TYPE_OCI_INDEX, index_desc.digest,
                                                        index)
        for img in images:
            got = harness.call(harness.driver.fetch_manifest, _ref(plain, repo, "multi"),
                               img.manifest)
            assert got == img.manifest_bytes

    # ------------------------------------------------------------------- 2. blobs
    def test_blobs_come_back_verified_and_committed(self, harness: RegistryHarness,
                                                    plain: Registry) -> None:
        backdoor = Backdoor(plain)
        repo = _repo()
        ref = _ref(plain, repo)

        @_examples
        @given(seed=st.integers(0, 2**32), size=st.integers(0, 2_000_000))
        def check(seed: int, size: int) -> None:
            data = _bytes(seed, size)
            desc = backdoor.push_blob(repo, data)
            got, progress = harness.fetch(ref, desc)
            assert got == data, "fetch_blob yielded other bytes than the blob's"
            assert progress == sorted(progress) and (progress[-1] if progress else 0) == size
            assert harness.content.exists(desc.digest), "the blob is not in the content store"
            assert harness.content.size(desc.digest) == size
            again, _ = harness.fetch(ref, desc)  # from the content store now
            assert again == data

        check()

    def test_fetch_blob_to_store(self, harness: RegistryHarness, plain: Registry) -> None:
        backdoor = Backdoor(plain)
        repo = _repo()
        data = _bytes(7, 100_000)
        desc = backdoor.push_blob(repo, data)
        harness.call(harness.driver.fetch_blob_to_store, _ref(plain, repo), desc)
        assert harness.content.read_bytes(desc.digest, len(data)) == data

    def test_one_blob_fetched_by_several_tasks_at_once(self, harness: RegistryHarness,
                                                       plain: Registry) -> None:
        backdoor = Backdoor(plain)
        repo = _repo()
        data = _bytes(11, 1_500_000)
        desc = backdoor.push_blob(repo, data)
        ref = _ref(plain, repo)
        results: list[bytes] = []

        async def one() -> None:
            out = bytearray()
            async with contextlib.aclosing(harness.driver.fetch_blob(ref, desc)) as chunks:
                async for chunk in chunks:
                    out += chunk
            results.append(bytes(out))

        async def many() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(one)

        harness.run(many)
        assert results == [data] * 4
        assert harness.content.size(desc.digest) == len(data)

    # ------------------------------------------------------------------- 3. verification
    def test_a_flipped_byte_is_refused(self, harness: RegistryHarness, plain: Registry) -> None:
        backdoor = Backdoor(plain)
        repo = _repo()
        ref = _ref(plain, repo)

        @_examples
        @given(seed=st.integers(0, 2**32), size=st.integers(1, 300_000),
               position=st.integers(0, 2**32))
        def check(seed: int, size: int, position: int) -> None:
            data = _bytes(seed, size)
            desc = backdoor.push_blob(repo, data)
            with backdoor.flipped(desc.digest, position):
                with pytest.raises(InvalidArgument):
                    harness.fetch(ref, desc)
                assert not harness.content.exists(desc.digest), "an unverified blob was kept"
            got, _ = harness.fetch(ref, desc)  # repaired: nothing bad was kept meanwhile
            assert got == data

        check()

    def test_a_manifest_with_a_flipped_byte_is_refused(self, harness: RegistryHarness,
                                                       plain: Registry) -> None:
        backdoor = Backdoor(plain)

        @_examples
        @given(position=st.integers(0, 2**32))
        def check(position: int) -> None:
            repo = _repo()
            img = backdoor.push_image(repo, "latest", [b"layer"])
            images = [img, backdoor.push_image(repo, "other", [b"other"], note="other")]
            index_desc, _ = backdoor.push_index(repo, "multi", images)
            with backdoor.altered_manifest(img.manifest.digest, position):
                for ref in (_ref(plain, repo, "latest"),
                            _ref(plain, repo, digest=img.manifest.digest)):
                    with pytest.raises(InvalidArgument):
                        harness.call(harness.driver.resolve, ref)
                with pytest.raises(InvalidArgument):
                    harness.call(harness.driver.fetch_manifest, _ref(plain, repo, "multi"),
                                 img.manifest)
            desc, data = harness.call(harness.driver.resolve, _ref(plain, repo, "latest"))
            assert (desc.digest, data) == (img.manifest.digest, img.manifest_bytes)

        check()

    # ------------------------------------------------------------------- 4. tags
    def test_every_tag_is_listed(self, harness: RegistryHarness, plain: Registry) -> None:
        backdoor = Backdoor(plain)

        @_examples
        @given(tags=st.sets(_tag, min_size=1, max_size=8))
        def check(tags: set[str]) -> None:
            repo = _repo()
            img = backdoor.push_image(repo, "base", [b"layer"])
            for tag in tags:
                backdoor.push_manifest(repo, tag, MEDIA_TYPE_OCI_MANIFEST, img.manifest_bytes)
            listed = harness.call(harness.driver.tags, _ref(plain, repo))
            assert listed == backdoor.tags(repo)
            assert set(listed) == tags | {"base"}

        check()

    # ------------------------------------------------------------------- 5. pushing
    def test_pushed_images_are_in_the_registry_byte_exact(self, harness: RegistryHarness,
                                                          plain: Registry) -> None:
        backdoor = Backdoor(plain)

        @_examples
        @given(layers=_layers, tag=_tag)
        def check(layers: list[tuple[int, int]], tag: str) -> None:
            repo = _repo()
            ref = _ref(plain, repo, tag)
            blobs = [_bytes(*spec) for spec in layers]
            descs = [_descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, b) for b in blobs]
            # the first from bytes, the second from a factory, the rest from the content store
            for i, (desc, data) in enumerate(zip(descs, blobs)):
                if i == 0:
                    source: Any = data
                elif i == 1:
                    async def chunks(data: bytes = data) -> Any:
                        for start in range(0, len(data), 65536):
                            yield data[start:start + 65536]
                    source = chunks
                else:
                    harness.call(harness.content.write_blob, data, desc)
                    source = None
                uploaded = harness.call(harness.driver.push_blob, ref, desc, source)
                assert uploaded is True or backdoor.blob(repo, desc.digest) == data
            for desc, data in zip(descs, blobs):
                assert backdoor.blob(repo, desc.digest) == data
                assert harness.call(harness.driver.push_blob, ref, desc, data) is False
            config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
            config_desc = _descriptor(MEDIA_TYPE_OCI_CONFIG, config)
            harness.call(harness.driver.push_blob, ref, config_desc, config)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                                   "config": config_desc.to_json(),
                                   "layers": [d.to_json() for d in descs]}).encode()
            desc = harness.call(harness.driver.push_manifest, ref, MEDIA_TYPE_OCI_MANIFEST,
                                manifest)
            assert (desc.digest, desc.size) == (Digest.from_bytes(manifest), len(manifest))
            assert backdoor.manifest(repo, tag) == (MEDIA_TYPE_OCI_MANIFEST, manifest)

        check()

    def test_a_blob_that_does_not_match_its_descriptor_is_not_pushed(
            self, harness: RegistryHarness, plain: Registry) -> None:
        backdoor = Backdoor(plain)
        repo = _repo()
        data = _bytes(3, 5000)
        desc = _descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, data)
        damaged = bytes([data[0] ^ 0xFF]) + data[1:]
        with pytest.raises(InvalidArgument):
            harness.call(harness.driver.push_blob, _ref(plain, repo), desc, damaged)
        assert backdoor.blob(repo, desc.digest) is None

    # ------------------------------------------------------------------- 6. errors
    def test_unknown_things_are_not_found(self, harness: RegistryHarness, plain: Registry
                                          ) -> None:
        backdoor = Backdoor(plain)
        repo = _repo()
        backdoor.push_image(repo, "known", [b"x"])
        missing = _descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, b"never pushed")
        with pytest.raises(NotFound):
            harness.call(harness.driver.resolve, _ref(plain, repo, "unknown"))
        with pytest.raises(NotFound):
            harness.call(harness.driver.resolve, _ref(plain, _repo("nobody"), "latest"))
        with pytest.raises(NotFound):
            harness.fetch(_ref(plain, repo), missing)
        with pytest.raises(NotFound):
            harness.call(harness.driver.tags, _ref(plain, _repo("nobody")))
        assert not harness.content.exists(missing.digest)

    # ------------------------------------------------------------------- 7. token auth
    def test_token_auth(self, harness: RegistryHarness, token: Registry) -> None:
        backdoor = Backdoor(token)
        good = AuthConfig(username=USER, password=PASSWORD)
        bad = AuthConfig(username=USER, password=PASSWORD + "-not")
        public, private = _repo(), _repo("private")
        img = backdoor.push_image(public, "latest", [_bytes(1, 3000)])
        secret = backdoor.push_image(private, "latest", [_bytes(2, 3000)])
        resolve = harness.driver.resolve
        # anonymous pulls of a public repository work, with tokens of their own
        assert harness.call(resolve, _ref(token, public))[1] == img.manifest_bytes
        got, _ = harness.fetch(_ref(token, public), img.layers[0])
        assert got == img.blobs[str(img.layers[0].digest)]
        # a refused anonymous pull, with docker's wording
        with pytest.raises(Unauthorized, match="pull access denied"):
            harness.call(resolve, _ref(token, private))
        # credentials open it; wrong ones are refused
        assert harness.call(resolve, _ref(token, private), good)[1] == secret.manifest_bytes
        with pytest.raises(Unauthorized):
            harness.call(resolve, _ref(token, private), bad)
        # tokens are reused, per registry and scope
        assert token.token_server is not None
        token.token_server.reset_counters()
        for _ in range(3):
            harness.call(resolve, _ref(token, private), good)
        assert token.token_server.issued <= 1, "the driver asked for a token on every request"
        # pushing needs credentials
        data = _bytes(5, 2000)
        desc = _descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, data)
        with pytest.raises(Unauthorized):
            harness.call(harness.driver.push_blob, _ref(token, public), desc, data)
        assert harness.call(harness.driver.push_blob, _ref(token, public), desc, data, good)
        assert backdoor.blob(public, desc.digest) == data
        # login
        assert harness.call(harness.driver.login, token.host, good) == "Login Succeeded"
        with pytest.raises(Unauthorized):
            harness.call(harness.driver.login, token.host, bad)

    # ------------------------------------------------------------------- 8. closing
    def test_aclose_twice_is_harmless(self, harness: RegistryHarness) -> None:
        harness.call(harness.driver.aclose)
        harness.call(harness.driver.aclose)


class TestRegistry(RegistrySuite):
    """Collected when this module is run with ``--pyargs``; runs for every ``--driver registry=``."""
