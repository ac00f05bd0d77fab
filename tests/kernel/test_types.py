"""core.types: Digest, Platform, Descriptor, Mount, media types; strict JSON on hostile input."""
from __future__ import annotations

import hashlib
import json
import pickle

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core.types as t
from core.errors import InvalidArgument
from core.types import Descriptor, Digest, FrozenMap, Mount, Platform

HEX64 = "a" * 64
SHA = "sha256:" + HEX64


# ---------------------------------------------------------------- Digest
def test_digest_parse_and_properties() -> None:
    d = Digest.parse(SHA)
    assert (d.algorithm, d.encoded, d.hex, d.short) == ("sha256", HEX64, HEX64, "a" * 12)
    assert str(d) == SHA == d.to_json()
    assert Digest.from_json(SHA) == d == Digest("sha256", HEX64)
    assert Digest.parse(d) is d
    assert Digest.parse("sha512:" + "0" * 128).algorithm == "sha512"
    assert Digest.parse("sha384:" + "0" * 96).algorithm == "sha384"  # as go-digest
    assert hash(d) == hash(Digest.parse(SHA))
    assert sorted([Digest.parse("sha256:" + "b" * 64), d])[0] == d


def test_digest_from_bytes() -> None:
    assert str(Digest.from_bytes(b"")) == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert Digest.from_bytes(b"x", "sha512").encoded == hashlib.sha512(b"x").hexdigest()
    h = Digest.from_bytes(b"abc").hasher()
    h.update(b"abc")
    assert h.hexdigest() == Digest.from_bytes(b"abc").hex
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm"):
        Digest.from_bytes(b"", "md5")


@pytest.mark.parametrize("text,message", [
    ("", "invalid checksum digest format"),
    ("sha256", "invalid checksum digest format"),
    (":" + HEX64, "invalid checksum digest format"),
    ("sha256:", "invalid checksum digest format"),
    ("sha256:" + "a" * 63, "invalid checksum digest length"),
    ("sha256:" + "a" * 65, "invalid checksum digest length"),
    ("sha256:" + "A" * 64, "invalid checksum digest format"),
    ("sha256:" + "g" * 64, "invalid checksum digest format"),
    ("sha512:" + "a" * 64, "invalid checksum digest length"),
    ("md5:" + "a" * 32, "unsupported digest algorithm"),
    ("sha1:" + "a" * 40, "unsupported digest algorithm"),
    ("sha384:" + "a" * 64, "invalid checksum digest length"),
    ("SHA256:" + HEX64, "invalid checksum digest format"),
    ("sha256:" + HEX64 + "\n", "invalid checksum digest length"),
    ("sha256 :" + HEX64, "invalid checksum digest format"),
])
def test_digest_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Digest.parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [None, 1, b"sha256:" + b"a" * 64, ["x"]])
def test_digest_non_string(value: object) -> None:
    with pytest.raises(InvalidArgument, match="digest must be a string"):
        Digest.parse(value)


@given(st.text())
def test_digest_parse_arbitrary_text(text: str) -> None:
    try:
        d = Digest.parse(text)
    except InvalidArgument:
        return
    assert str(d) == text


@given(st.binary())
def test_digest_round_trip(data: bytes) -> None:
    d = Digest.from_bytes(data)
    assert Digest.parse(str(d)) == d


# ---------------------------------------------------------------- Platform
@pytest.mark.parametrize("text,expected", [
    ("linux/amd64", "linux/amd64"),
    ("linux/arm64/v8", "linux/arm64/v8"),
    ("linux/arm64", "linux/arm64/v8"),
    ("linux/aarch64", "linux/arm64/v8"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/i386", "linux/386"),
    ("Linux/AMD64", "linux/amd64"),
    ("windows/amd64", "windows/amd64"),
    ("linux/ppc64le", "linux/ppc64le"),
    ("arm64", "linux/arm64/v8"),
    ("amd64", "linux/amd64"),
    ("s390x", "linux/s390x"),
])
def test_platform_parse(text: str, expected: str) -> None:
    assert str(Platform.parse(text)) == expected


def test_platform_parse_os_only_takes_host_arch() -> None:
    host = Platform.host()
    assert Platform.parse("linux") == Platform("linux", host.architecture, host.variant)


@pytest.mark.parametrize("text", ["", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64",
                                  "linux\n/amd64", "nonsense", "linux/amd64/v8\x00", 5])
def test_platform_parse_errors(text: object) -> None:
    with pytest.raises(InvalidArgument):
        Platform.parse(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("machine,system,expected", [
    ("x86_64", "Linux", "linux/amd64"),
    ("AMD64", "Linux", "linux/amd64"),
    ("aarch64", "Linux", "linux/arm64/v8"),
    ("arm64", "Darwin", "darwin/arm64/v8"),
    ("armv7l", "Linux", "linux/arm/v7"),
    ("armv6l", "Linux", "linux/arm/v6"),
    ("i686", "Linux", "linux/386"),
    ("ppc64le", "Linux", "linux/ppc64le"),
    ("s390x", "Linux", "linux/s390x"),
    ("riscv64", "Linux", "linux/riscv64"),
])
def test_platform_host(monkeypatch: pytest.MonkeyPatch, machine: str, system: str,
                       expected: str) -> None:
    monkeypatch.setattr(t._platform, "machine", lambda: machine)
    monkeypatch.setattr(t._platform, "system", lambda: system)
    assert str(Platform.host()) == expected


@pytest.mark.parametrize("want,have,result", [
    ("linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/amd64/v3", True),     # amd64 ignores variant unless asked
    ("linux/amd64/v3", "linux/amd64", False),
    ("linux/amd64/v3", "linux/amd64/v3", True),
    ("linux/amd64/v1", "linux/amd64", True),
    ("linux/x86_64", "linux/amd64", True),
    ("linux/arm64", "linux/arm64/v8", True),     # arm64 == arm64/v8
    ("linux/arm64/v8", "linux/arm64", True),
    ("linux/aarch64", "linux/arm64", True),
    ("linux/arm64", "linux/arm64/v9", False),
    ("linux/arm", "linux/arm/v7", True),
    ("linux/arm/v7", "linux/arm/v6", False),
    ("linux/arm64", "linux/amd64", False),
    ("linux/amd64", "windows/amd64", False),
])
def test_platform_matches(want: str, have: str, result: bool) -> None:
    a, b = want.split("/"), have.split("/")
    raw_a = Platform(a[0], a[1], a[2] if len(a) > 2 else None)
    raw_b = Platform(b[0], b[1], b[2] if len(b) > 2 else None)
    assert raw_a.matches(raw_b) is result


def test_platform_keeps_fields_and_json() -> None:
    p = Platform("windows", "amd64", None, "10.0.17763.1234", ("win32k",))
    assert p.to_json() == {"architecture": "amd64", "os": "windows",
                           "os.version": "10.0.17763.1234", "os.features": ["win32k"]}
    assert Platform.from_json(p.to_json()) == p
    raw = Platform("linux", "aarch64")
    assert raw.architecture == "aarch64" and raw.normalized().architecture == "arm64"
    assert Platform.from_json({"os": "linux", "architecture": "arm", "variant": "v7",
                               "unknown": 1}) == Platform("linux", "arm", "v7")


@pytest.mark.parametrize("obj,message", [
    ([], "platform must be an object, not array"),
    ({"architecture": "amd64"}, "platform: missing os"),
    ({"os": "linux"}, "platform: missing architecture"),
    ({"os": 1, "architecture": "amd64"}, "platform os must be a string, not integer"),
    ({"os": "", "architecture": "amd64"}, "platform os must be a non-empty string"),
    ({"os": "linux", "architecture": "amd64", "variant": 8}, "platform variant must be a string"),
    ({"os": "linux", "architecture": "amd64", "os.features": "x"},
     "platform os.features must be an array, not string"),
    ({"os": "linux", "architecture": "amd64", "os.features": [1]},
     r"platform os.features\[0\] must be a string"),
])
def test_platform_from_json_errors(obj: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Platform.from_json(obj)


# ---------------------------------------------------------------- Descriptor
def _desc_json(**over: object) -> dict:
    obj = {"mediaType": t.MEDIA_TYPE_OCI_LAYER_GZIP, "digest": SHA, "size": 42}
    obj.update(over)
    return obj


def test_descriptor_json() -> None:
    obj = _desc_json(urls=["https://example.com/blob"],
                     annotations={"org.opencontainers.image.ref.name": "v1"},
                     platform={"architecture": "arm64", "os": "linux", "variant": "v8"},
                     artifactType="application/vnd.example+json")
    d = Descriptor.from_json(obj)
    assert d.media_type == t.MEDIA_TYPE_OCI_LAYER_GZIP
    assert d.digest == Digest.parse(SHA) and d.size == 42
    assert d.urls == ("https://example.com/blob",)
    assert d.annotations == {"org.opencontainers.image.ref.name": "v1"}
    assert d.platform == Platform("linux", "arm64", "v8")
    assert d.to_json() == obj
    assert json.loads(json.dumps(d.to_json())) == obj
    assert Descriptor.from_json(_desc_json(data="aGk=")).to_json() == _desc_json()  # ignored
    minimal = Descriptor(t.MEDIA_TYPE_OCI_MANIFEST, SHA, 0)
    assert minimal.to_json() == {"mediaType": t.MEDIA_TYPE_OCI_MANIFEST, "digest": SHA, "size": 0}


def test_descriptor_is_immutable_and_hashable() -> None:
    d = Descriptor(t.MEDIA_TYPE_OCI_MANIFEST, SHA, 1, annotations={"a": "b"})
    assert isinstance(d.annotations, FrozenMap)
    with pytest.raises(TypeError):
        d.annotations["a"] = "c"  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        d.size = 2  # type: ignore[misc]
    assert hash(d) == hash(Descriptor(t.MEDIA_TYPE_OCI_MANIFEST, SHA, 1, annotations={"a": "b"}))
    assert d != attrs.evolve(d, annotations={"a": "c"})
    assert pickle.loads(pickle.dumps(d)) == d


@pytest.mark.parametrize("obj,message", [
    ("x", "descriptor must be an object, not string"),
    (None, "descriptor must be an object, not null"),
    ({}, "descriptor: missing mediaType"),
    ({"mediaType": "a/b", "size": 1}, "descriptor: missing digest"),
    ({"mediaType": "a/b", "digest": SHA}, "descriptor: missing size"),
    (_desc_json(mediaType=1), "descriptor mediaType must be a string, not integer"),
    (_desc_json(mediaType="nonsense"), "invalid media type: 'nonsense'"),
    (_desc_json(mediaType="a/b\r\nX-Injected: 1"), "invalid media type"),
    (_desc_json(digest=5), "descriptor digest must be a string, not integer"),
    (_desc_json(digest="sha256:abc"), "invalid checksum digest length"),
    (_desc_json(digest="md5:" + "a" * 32), "unsupported digest algorithm"),
    (_desc_json(size="42"), "descriptor size must be an integer, not string"),
    (_desc_json(size=42.0), "descriptor size must be an integer, not number"),
    (_desc_json(size=True), "descriptor size must be an integer, not boolean"),
    (_desc_json(size=-1), "descriptor size must be between 0 and 2\\^63-1"),
    (_desc_json(size=2**63), "descriptor size must be between 0 and 2\\^63-1"),
    (_desc_json(urls="https://x"), "descriptor urls must be an array, not string"),
    (_desc_json(urls=[1]), r"descriptor urls\[0\] must be a string, not integer"),
    (_desc_json(annotations=[]), "descriptor annotations must be an object, not array"),
    (_desc_json(annotations={"a": None}), r"descriptor annotations\['a'\] must be a string"),
    (_desc_json(platform="linux/amd64"), "platform must be an object, not string"),
    (_desc_json(platform={"os": "linux"}), "platform: missing architecture"),
    (_desc_json(artifactType=3), "descriptor artifactType must be a string"),
])
def test_descriptor_from_json_errors(obj: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Descriptor.from_json(obj)


def test_descriptor_constructor_validates() -> None:
    with pytest.raises(InvalidArgument):
        Descriptor("a/b", "sha256:nope", 1)
    with pytest.raises(InvalidArgument):
        Descriptor("a/b", SHA, -1)
    with pytest.raises(InvalidArgument):
        Descriptor("a/b", 5, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Descriptor("a/b", SHA, 1, annotations={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        Descriptor("a/b", SHA, 1, platform="linux/amd64")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Descriptor("a/b", SHA, 1, urls=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Descriptor("a/b", SHA, 1, annotations=[("a", "b")])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Platform("linux", "amd64", os_features="x")  # type: ignore[arg-type]


media_types = st.sampled_from(sorted(t.LAYER_MEDIA_TYPES | t.MANIFEST_MEDIA_TYPES
                                     | t.INDEX_MEDIA_TYPES | t.CONFIG_MEDIA_TYPES))
platforms = st.builds(Platform, os=st.sampled_from(["linux", "windows"]),
                      architecture=st.sampled_from(["amd64", "arm64", "arm", "s390x"]),
                      variant=st.none() | st.sampled_from(["v7", "v8"]),
                      os_version=st.none() | st.text(min_size=1, max_size=10),
                      os_features=st.lists(st.text(max_size=5), max_size=2).map(tuple))
descriptors = st.builds(
    Descriptor, media_type=media_types, digest=st.binary().map(Digest.from_bytes),
    size=st.integers(0, 2**63 - 1), urls=st.lists(st.text(max_size=20), max_size=3).map(tuple),
    annotations=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    platform=st.none() | platforms,
    artifact_type=st.none() | media_types)


@given(descriptors)
def test_descriptor_json_round_trip(desc: Descriptor) -> None:
    assert Descriptor.from_json(desc.to_json()) == desc
    assert Descriptor.from_json(json.loads(json.dumps(desc.to_json()))) == desc


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(json_values)
def test_from_json_of_arbitrary_data_raises_only_invalid_argument(value: object) -> None:
    for cls in (Descriptor, Platform, Mount, Digest):
        try:
            cls.from_json(value)
        except InvalidArgument:
            pass


@settings(max_examples=300)
@given(descriptors, st.sampled_from(["mediaType", "digest", "size", "urls", "annotations",
                                     "platform", "artifactType"]), json_values)
def test_descriptor_with_one_hostile_field(desc: Descriptor, key: str, value: object) -> None:
    obj = desc.to_json()
    obj[key] = value
    try:
        Descriptor.from_json(obj)
    except InvalidArgument:
        pass


@settings(max_examples=300)
@given(st.sampled_from(["os", "architecture", "variant", "os.version", "os.features"]),
       json_values)
def test_platform_with_one_hostile_field(key: str, value: object) -> None:
    obj = {"os": "linux", "architecture": "amd64", key: value}
    try:
        Platform.from_json(obj)
    except InvalidArgument:
        pass


# ---------------------------------------------------------------- Mount
def test_mount() -> None:
    m = Mount("overlay", "overlay", options=["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"])
    assert m.options == ("lowerdir=/a:/b", "upperdir=/u", "workdir=/w")
    assert m.target == "" and not m.readonly
    assert Mount("bind", "/src", options=("rbind", "ro")).readonly
    assert not Mount("bind", "/src", options=("ro", "rw")).readonly
    assert Mount.from_json(m.to_json()) == m
    assert m.to_json() == {"type": "overlay", "source": "overlay", "target": "",
                           "options": ["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"]}
    assert Mount.from_json({"type": "tmpfs", "source": "tmpfs"}) == Mount("tmpfs", "tmpfs")
    assert hash(m) == hash(Mount.from_json(m.to_json()))


@pytest.mark.parametrize("kwargs", [
    {"type": "", "source": "x"}, {"type": "bind", "source": "/a\0b"},
    {"type": "bind", "source": 1}, {"type": "bind", "source": "/a", "options": ["ro", ""]},
    {"type": "bind", "source": "/a", "options": [1]},
    {"type": "bind", "source": "/a", "target": None},
    {"type": "bind", "source": "/a", "options": "ro"},
    {"type": "bind", "source": "/a", "options": 5},
])
def test_mount_validates(kwargs: dict) -> None:
    with pytest.raises(InvalidArgument):
        Mount(**kwargs)


@pytest.mark.parametrize("obj", [[], {"source": "x"}, {"type": "bind"},
                                 {"type": "bind", "source": "/", "options": "ro"},
                                 {"type": "bind", "source": "/", "target": 1}])
def test_mount_from_json_errors(obj: object) -> None:
    with pytest.raises(InvalidArgument):
        Mount.from_json(obj)


# ---------------------------------------------------------------- media types
def test_media_types() -> None:
    assert t.MEDIA_TYPE_DOCKER_MANIFEST == "application/vnd.docker.distribution.manifest.v2+json"
    assert t.MEDIA_TYPE_OCI_INDEX == "application/vnd.oci.image.index.v1+json"
    assert t.MEDIA_TYPE_DOCKER_MANIFEST_LIST in t.INDEX_MEDIA_TYPES
    assert t.MEDIA_TYPE_DOCKER_CONFIG in t.CONFIG_MEDIA_TYPES
    assert t.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED in t.SCHEMA1_MEDIA_TYPES
    assert not t.SCHEMA1_MEDIA_TYPES & (t.MANIFEST_MEDIA_TYPES | t.INDEX_MEDIA_TYPES)
    assert t.layer_compression(t.MEDIA_TYPE_DOCKER_LAYER) == "gzip"
    assert t.layer_compression(t.MEDIA_TYPE_DOCKER_FOREIGN_LAYER) == "gzip"
    assert t.layer_compression(t.MEDIA_TYPE_OCI_LAYER) is None
    assert t.layer_compression(t.MEDIA_TYPE_OCI_LAYER_ZSTD) == "zstd"
    with pytest.raises(InvalidArgument):
        t.layer_compression(t.MEDIA_TYPE_OCI_MANIFEST)
    all_types = [v for k, v in vars(t).items() if k.startswith("MEDIA_TYPE_")]
    for media_type in all_types:  # every constant is a valid descriptor media type
        Descriptor(media_type, SHA, 0)
