"""core.reference against docker's own test tables (distribution/reference normalize_test.go and
reference_test.go), docker's error messages, and hypothesis properties."""
from __future__ import annotations

import re

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.errors import InvalidArgument, InvalidReference
from core.reference import Reference, looks_like_id, parse_reference
from core.types import Digest

HEX64 = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
SHA = "sha256:" + HEX64
REDIS_SHA = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"


def test_invalid_reference_is_invalid_argument() -> None:
    assert issubclass(InvalidReference, InvalidArgument)
    assert InvalidReference("x").status == 400


# ---------------------------------------------------------------- normalize_test.go tables
VALID_REPO_NAMES = [
    "docker/docker", "library/debian", "debian", "docker.io/docker/docker",
    "docker.io/library/debian", "docker.io/debian", "index.docker.io/docker/docker",
    "index.docker.io/library/debian", "index.docker.io/debian", "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80",
    "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker", "DOCKER/docker",
    # TestValidateRemoteName
    "docker-rules/docker", "docker---rules/docker", "doc/docker", "d/docker", "jess/t",
    "dock__er/docker",
]

INVALID_REPO_NAMES = [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
    "-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker",
    "docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    # TestValidateRemoteName
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker",
    "dock_.er/docker", "dock-.er/docker", "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
]


@pytest.mark.parametrize("name", VALID_REPO_NAMES)
def test_valid_repo_names(name: str) -> None:
    ref = parse_reference(name)
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize("name", INVALID_REPO_NAMES)
def test_invalid_repo_names(name: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(name)


# (path, familiar name, full name, ambiguous spelling, domain) -- TestParseRepositoryInfo
REPOSITORY_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", None, "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", None, "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase",
     None, "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", None,
     "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", None,
     "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", None, "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase",
     "example.com:8000/private/moonbase", None, "example.com:8000"),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", None,
     "example.com:8000"),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", None, "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", None, "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", None, "Foo"),
    ("bar", "FOO/bar", "FOO/bar", None, "FOO"),
]


@pytest.mark.parametrize("path,familiar,full,ambiguous,domain", REPOSITORY_INFO)
def test_parse_repository_info(path: str, familiar: str, full: str, ambiguous: str | None,
                               domain: str) -> None:
    for text in filter(None, (familiar, full, ambiguous)):
        ref = parse_reference(text, default_tag=None)
        assert ref.familiar_name == familiar
        assert ref.name == full == str(ref)
        assert ref.domain == domain
        assert ref.path == path


@pytest.mark.parametrize("text,domain,path", [
    ("test.com/foo", "test.com", "foo"),
    ("test_com/foo", "docker.io", "test_com/foo"),
    ("docker/migrator", "docker.io", "docker/migrator"),
    ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"),
    ("foo", "docker.io", "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    ("localhost/x", "localhost", "x"),
    ("localhost:5000/x", "localhost:5000", "x"),
    ("localhost", "docker.io", "library/localhost"),
    ("test:8080/foo", "test:8080", "foo"),
])
def test_normalized_split_hostname(text: str, domain: str, path: str) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path) == (domain, path)


def test_reference_with_tag_and_digest() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse_reference(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest" and ref.digest is not None
    assert ref.familiar() == short


@pytest.mark.parametrize("text,equivalent", [
    ("redis", "docker.io/library/redis"),
    ("redis:latest", "docker.io/library/redis:latest"),
    ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
    (f"redis@{REDIS_SHA}", f"docker.io/library/redis@{REDIS_SHA}"),
    (f"docker.io/library/redis@{REDIS_SHA}", f"docker.io/library/redis@{REDIS_SHA}"),
    ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
    ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
    ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
    (f"dmcgowan/myapp@{REDIS_SHA}", f"docker.io/dmcgowan/myapp@{REDIS_SHA}"),
    (REDIS_SHA[7:-1], "docker.io/library/" + REDIS_SHA[7:-1]),  # 63 hex: a name
    ("dbcc1", "docker.io/library/dbcc1"),
])
def test_parse_any_reference_equivalents(text: str, equivalent: str) -> None:
    assert str(parse_reference(text, default_tag=None)) == equivalent


# ---------------------------------------------------------------- reference_test.go, normalised
# (input, expected str() with default_tag=None)
PARSE_OK = [
    ("test_com", "docker.io/library/test_com"),
    ("test.com:tag", "docker.io/library/test.com:tag"),
    ("test.com:5000", "docker.io/library/test.com:5000"),
    ("test.com/repo:tag", "test.com/repo:tag"),
    ("test:5000/repo", "test:5000/repo"),
    ("test:5000/repo:tag", "test:5000/repo:tag"),
    (f"test:5000/repo@{SHA}", f"test:5000/repo@{SHA}"),
    (f"test:5000/repo:tag@{SHA}", f"test:5000/repo:tag@{SHA}"),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase"),
    ("a/" * 127 + "a:tag-puts-this-over-max",
     "docker.io/" + "a/" * 127 + "a:tag-puts-this-over-max"),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    ("b.gcr.io/test.example.com/my-app:test.example.com",
     "b.gcr.io/test.example.com/my-app:test.example.com"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"),
    ("xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128,
     "xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128),
    ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"),
    ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
    ("192.168.1.1", "docker.io/library/192.168.1.1"),
    ("192.168.1.1:tag", "docker.io/library/192.168.1.1:tag"),
    ("192.168.1.1:5000", "docker.io/library/192.168.1.1:5000"),
    ("192.168.1.1/repo", "192.168.1.1/repo"),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000/repo"),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050"),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo"),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo:tag"),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo"),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo:tag"),
    (f"[2001:db8::1]:5000/repo@{SHA}", f"[2001:db8::1]:5000/repo@{SHA}"),
    (f"[2001:db8::1]:5000/repo:tag@{SHA}", f"[2001:db8::1]:5000/repo:tag@{SHA}"),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000/repo"),
    ("[::1]:5000/repo", "[::1]:5000/repo"),
    ("host:5000/ns/repo:tag", "host:5000/ns/repo:tag"),
    ("index.docker.io/user/repo:1", "docker.io/user/repo:1"),
    ("a:" + "t" * 128, "docker.io/library/a:" + "t" * 128),
]


@pytest.mark.parametrize("text,expected", PARSE_OK)
def test_parse_ok(text: str, expected: str) -> None:
    ref = parse_reference(text, default_tag=None)
    assert str(ref) == expected
    assert parse_reference(expected, default_tag=None) == ref


LOWER = "invalid reference format: repository name ({}) must be lowercase"
PARSE_ERRORS = [
    ("", "invalid reference format"),
    (":justtag", "invalid reference format"),
    (f"@{SHA}", "invalid reference format"),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("repo@sha256:" + "F" * 64, "invalid checksum digest format"),
    ("repo@sha256:abc", "invalid reference format"),  # under 32 hex: not even a digest
    ("validname@invaliddigest:" + HEX64, "unsupported digest algorithm"),
    ("Uppercase:tag", LOWER.format("library/Uppercase")),
    ("Alpine", LOWER.format("library/Alpine")),
    ("test:5000/Uppercase/lowercase:tag", LOWER.format("Uppercase/lowercase")),
    ("docker.io/docker/Docker", LOWER.format("docker/Docker")),
    ("a/" * 128 + "a:tag", "repository name must not be more than 255 characters"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("[2001:db8::1]", "invalid reference format"),
    ("[2001:db8::1]:5000", "invalid reference format"),
    ("[2001:db8::1]:tag", "invalid reference format"),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format"),
    ("alpine:" + "t" * 129, "invalid reference format"),
    ("alpine:-tag", "invalid reference format"),
    ("alpine:tag:tag", "invalid reference format"),
    ("alpine@@" + SHA, "invalid reference format"),
    ("alpine\n", "invalid reference format"),
    ("alp\x00ine", "invalid reference format"),
    ("alpine:täg", "invalid reference format"),
    (" alpine", "invalid reference format"),
    ("foo_bar.com/x", "invalid reference format"),
    (HEX64, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
]


@pytest.mark.parametrize("text,message", PARSE_ERRORS)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [None, 1, b"alpine", ["alpine"]])
def test_parse_non_string(value: object) -> None:
    with pytest.raises(InvalidReference, match="invalid reference format"):
        parse_reference(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the Reference type
@pytest.mark.parametrize("text,full,familiar", [
    ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag"),
    ("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1"),
    ("host:5000/ns/repo:tag", "host:5000/ns/repo:tag", "host:5000/ns/repo:tag"),
    (f"alpine@{SHA}", f"docker.io/library/alpine@{SHA}", f"alpine@{SHA}"),
    (f"alpine:3@{SHA}", f"docker.io/library/alpine:3@{SHA}", f"alpine:3@{SHA}"),
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
])
def test_str_and_familiar(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_fields_and_properties() -> None:
    ref = parse_reference("alpine")
    assert ref == Reference("docker.io", "library/alpine", "latest", None)
    assert ref.name == "docker.io/library/alpine"
    assert ref.familiar_name == "alpine"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.repository_key == ("registry-1.docker.io", "library/alpine")
    other = parse_reference("quay.io/ns/app:v1")
    assert other.api_host == "quay.io"
    assert other.repository_key == ("quay.io", "ns/app")
    assert hash(ref) == hash(parse_reference("docker.io/library/alpine:latest"))


def test_default_tag() -> None:
    assert parse_reference("alpine", default_tag=None).tag is None
    assert parse_reference("alpine", default_tag="edge").tag == "edge"
    digested = parse_reference(f"alpine@{SHA}")
    assert digested.tag is None and digested.digest == Digest.parse(SHA)
    assert parse_reference(f"alpine:3@{SHA}").tag == "3"
    with pytest.raises(InvalidReference):
        parse_reference("alpine", default_tag="-bad")


def test_with_tag_and_digest() -> None:
    ref = parse_reference("alpine:3")
    assert str(ref.with_tag("edge")) == "docker.io/library/alpine:edge"
    assert str(ref.with_tag(None)) == "docker.io/library/alpine"
    assert str(ref.with_digest(SHA)) == f"docker.io/library/alpine:3@{SHA}"
    assert ref.with_digest(SHA).with_digest(None) == ref
    with pytest.raises(InvalidReference, match="invalid tag format"):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidReference, match="invalid checksum digest length"):
        ref.with_digest("sha256:abc")


@pytest.mark.parametrize("kwargs", [
    {"domain": "docker.io", "path": "alpine"},            # not normalised: library/ missing
    {"domain": "index.docker.io", "path": "library/alpine"},
    {"domain": "myhost", "path": "x"},                    # would read back as a path component
    {"domain": "", "path": "x"},
    {"domain": "quay.io", "path": "Upper"},
    {"domain": "quay.io", "path": "a" * 256},
    {"domain": "quay.io", "path": "x", "tag": ""},
    {"domain": "quay.io", "path": "x", "digest": "sha256:abc"},
    {"domain": "quay.io", "path": "x", "digest": 5},
    {"domain": 5, "path": "x"},
])
def test_constructor_validates(kwargs: dict) -> None:
    with pytest.raises(InvalidReference):
        Reference(**kwargs)


def test_frozen() -> None:
    ref = parse_reference("alpine")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]


@pytest.mark.parametrize("text,expected", [
    (HEX64, True), ("0123456789ab", True), ("0123456789a", False), ("f" * 65, False),
    (SHA, True), ("sha256:0123456789ab", True), ("ABCDEF012345", False), ("alpine", False),
    ("", False), (None, False), ("0123456789ab\n", False),
])
def test_looks_like_id(text: object, expected: bool) -> None:
    assert looks_like_id(text) is expected  # type: ignore[arg-type]


# ---------------------------------------------------------------- hypothesis
@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_only_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert parse_reference(str(ref)) == ref


@settings(max_examples=500)
@given(st.text(alphabet="aZ09:/@._-[]%\n\x00sha256fF", max_size=120))
def test_grammar_alphabet_only_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text, default_tag=None)
    except InvalidReference:
        return
    assert parse_reference(str(ref), default_tag=None) == ref


def _regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True)


PATH_COMPONENT = r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,3}"
DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?"
domains = st.one_of(
    st.sampled_from(["docker.io", "localhost", "quay.io", "Foo"]),
    st.builds(lambda parts, port: ".".join(parts) + port,
              st.lists(_regex(DOMAIN_COMPONENT), min_size=1, max_size=4),
              st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}"))),
    st.builds(lambda h, port: f"[{h}]{port}", _regex(r"[a-fA-F0-9:]{1,20}"),
              st.sampled_from(["", ":5000"])),
)
paths = st.lists(_regex(PATH_COMPONENT), min_size=1, max_size=4).map("/".join)
tags = st.none() | _regex(r"[\w][\w.-]{0,127}")
digests = st.none() | st.binary().map(Digest.from_bytes) | st.binary().map(
    lambda b: Digest.from_bytes(b, "sha512"))


@st.composite
def references(draw: st.DrawFn) -> Reference:
    domain = draw(domains)
    assume(domain == "localhost" or "." in domain or ":" in domain or domain.lower() != domain)
    assume(domain != "index.docker.io")
    path = draw(paths)
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    assume(len(path) <= 255)
    return Reference(domain, path, draw(tags), draw(digests))


@settings(max_examples=500)
@given(references())
def test_round_trip(ref: Reference) -> None:
    assert parse_reference(str(ref), default_tag=None) == ref
    # docker's familiar form is ambiguous when the first path component looks like a host
    first = ref.familiar_name.partition("/")[0]
    if ref.domain == "docker.io" and ("." in first or ":" in first) and "/" in ref.familiar_name:
        return
    assume(ref.tag or ref.digest or not re.fullmatch("[a-f0-9]{64}", ref.familiar_name))
    assert parse_reference(ref.familiar(), default_tag=None) == ref


@settings(max_examples=200)
@given(references(), st.text(max_size=5))
def test_corrupted_references_only_raise_invalid_reference(ref: Reference, junk: str) -> None:
    text = str(ref)
    half = len(text) // 2
    for candidate in (text + junk, junk + text, text[:half] + junk + text[half:]):
        try:
            parse_reference(candidate)
        except InvalidReference:
            pass


def test_absurd_lengths() -> None:
    for text in ("a" * 1_000_000, "a." * 500_000, "a/" * 500_000 + "A", "[" + ":" * 100_000,
                 "x@sha256:" + "f" * 1_000_000):
        with pytest.raises(InvalidReference) as info:
            parse_reference(text)
        assert len(str(info.value)) < 700
