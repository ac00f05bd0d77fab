"""Value types shared by the kernel and every driver contract.

All are frozen attrs classes with slots: they validate on construction, compare by value, hash,
and convert to and from the OCI / docker JSON shapes with ``to_json()`` / ``from_json()``.
``from_json`` is written for hostile input (a manifest from an untrusted registry): anything
that is not exactly the documented shape raises :class:`core.errors.InvalidArgument`, never
``KeyError``/``TypeError``/``AttributeError``.

- :class:`Digest`      ``sha256:<64 hex>`` content addresses (and sha512, sha384)
- :class:`Platform`    ``linux/arm64/v8`` with containerd's normalisation and matching
- :class:`Descriptor`  the OCI content descriptor (``mediaType``, ``digest``, ``size``, ...)
- :class:`Mount`       a mount described as data (containerd style); drivers return, callers mount
- ``MEDIA_TYPE_*``     docker schema2 / OCI / schema1 media types and the sets grouping them
"""
from __future__ import annotations

import hashlib
import platform as _platform
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from core.errors import InvalidArgument

__all__ = [
    "Digest", "Platform", "Descriptor", "Mount", "FrozenMap", "layer_compression",
    "MANIFEST_MEDIA_TYPES", "INDEX_MEDIA_TYPES", "CONFIG_MEDIA_TYPES", "LAYER_MEDIA_TYPES",
    "SCHEMA1_MEDIA_TYPES",
]

# --------------------------------------------------------------------------- media types
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# Schema 1 (deprecated, removed from docker 28): recognised only to be rejected with a clear error.
MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX})
CONFIG_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_OCI_CONFIG})
SCHEMA1_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST,
                                 MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED})

_LAYER_COMPRESSION: dict[str, str | None] = {
    MEDIA_TYPE_DOCKER_LAYER: "gzip",
    MEDIA_TYPE_DOCKER_LAYER_TAR: None,
    MEDIA_TYPE_DOCKER_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER: "gzip",
    MEDIA_TYPE_OCI_LAYER: None,
    MEDIA_TYPE_OCI_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_OCI_LAYER_NONDIST: None,
    MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD: "zstd",
}
LAYER_MEDIA_TYPES = frozenset(_LAYER_COMPRESSION)


def layer_compression(media_type: str) -> str | None:
    """Return ``"gzip"``, ``"zstd"`` or ``None`` (plain tar) for a layer media type.

    Raises ``InvalidArgument`` if ``media_type`` is not a known layer media type.
    """
    try:
        return _LAYER_COMPRESSION[media_type]
    except (KeyError, TypeError):
        raise InvalidArgument(f"unsupported layer media type: {media_type!r}") from None


# --------------------------------------------------------------------------- helpers
_JSON_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}
_WANTED = {dict: "an object", list: "an array", str: "a string", int: "an integer"}


def _type_name(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    """A short repr for error messages (hostile input can be megabytes long)."""
    text = repr(value) if isinstance(value, str) else _type_name(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _want(value: object, kind: type, what: str) -> Any:
    """Return ``value`` if it is a ``kind`` (a bool is not an int), else raise InvalidArgument."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidArgument(f"{what} must be {_WANTED[kind]}, not {_type_name(value)}")
    return value


def _str_list(value: object, what: str) -> tuple[str, ...]:
    return tuple(_want(v, str, f"{what}[{i}]") for i, v in enumerate(_want(value, list, what)))


def _str_map(value: object, what: str) -> FrozenMap:
    return FrozenMap({_want(k, str, f"{what} key"): _want(v, str, f"{what}[{k!r}]")
                      for k, v in _want(value, dict, what).items()})


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping (annotations, labels); equal to a dict."""

    __slots__ = ("_d", "_h")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._d = dict(items or {})
        self._h: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(frozenset(self._d.items()))
        return self._h

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._d,))


def _to_frozen_map(value: Mapping[str, str] | None) -> FrozenMap:
    if isinstance(value, FrozenMap):
        return value
    if value is not None and not isinstance(value, Mapping):
        raise InvalidArgument(f"expected a mapping of strings, not {_type_name(value)}")
    return FrozenMap(value)


def _to_tuple(value: object) -> tuple[Any, ...]:
    """Converter for sequence fields: any iterable but a string (``"ro"`` is not ``("r", "o")``)."""
    if isinstance(value, (str, bytes)):
        raise InvalidArgument(f"expected a sequence of strings, not {_type_name(value)}")
    try:
        return tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidArgument(f"expected a sequence of strings, not {_type_name(value)}") from None


# --------------------------------------------------------------------------- Digest
_DIGEST_SIZES = {"sha256": 64, "sha384": 96, "sha512": 128}  # algorithm -> hex length (go-digest)
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)


def _check_digest(algorithm: object, encoded: object) -> None:
    """The rules of go-digest's ``Digest.Validate``, with its messages."""
    if not (isinstance(algorithm, str) and isinstance(encoded, str) and algorithm and encoded):
        raise InvalidArgument("invalid checksum digest format")
    size = _DIGEST_SIZES.get(algorithm)
    if size is None:
        if _DIGEST_RE.fullmatch(f"{algorithm}:{encoded}"):
            raise InvalidArgument("unsupported digest algorithm")
        raise InvalidArgument("invalid checksum digest format")
    if len(encoded) != size:
        raise InvalidArgument("invalid checksum digest length")
    if not _HEX_RE.fullmatch(encoded):
        raise InvalidArgument("invalid checksum digest format")


@attrs.frozen(slots=True, order=True)
class Digest:
    """A content address: ``sha256:<64 lowercase hex>``; also sha512 (128) and sha384 (96 hex).

    Construct with :meth:`parse` or :meth:`from_bytes`; the constructor validates too
    (``InvalidArgument``: 'invalid checksum digest format' / '... length' /
    'unsupported digest algorithm', the messages of go-digest).
    """

    algorithm: str
    encoded: str

    def __attrs_post_init__(self) -> None:
        _check_digest(self.algorithm, self.encoded)

    @classmethod
    def parse(cls, s: object) -> Digest:
        """Parse ``"algorithm:hex"``.  Raises ``InvalidArgument`` for anything else."""
        if isinstance(s, Digest):
            return s
        if not isinstance(s, str):
            raise InvalidArgument(f"digest must be a string, not {_type_name(s)}")
        algorithm, sep, encoded = s.partition(":")
        if not sep:
            raise InvalidArgument("invalid checksum digest format")
        return cls(algorithm, encoded)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``.  Raises ``InvalidArgument`` for an unsupported algorithm."""
        if algorithm not in _DIGEST_SIZES:
            raise InvalidArgument("unsupported digest algorithm")
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @property
    def hex(self) -> str:
        """The hex encoding (same as :attr:`encoded`)."""
        return self.encoded

    @property
    def short(self) -> str:
        """The first 12 hex characters, as docker shows image and container IDs."""
        return self.encoded[:12]

    def hasher(self) -> Any:
        """A fresh ``hashlib`` object of this digest's algorithm (to verify a stream)."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    def to_json(self) -> str:
        return str(self)

    @classmethod
    def from_json(cls, value: object) -> Digest:
        """Same as :meth:`parse`.  Raises ``InvalidArgument``."""
        return cls.parse(value)


# --------------------------------------------------------------------------- Platform
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386",
                 "i486": "386", "i586": "386", "i686": "386", "armhf": "arm", "armel": "arm"}
_OS_ALIASES = {"macos": "darwin"}
_KNOWN_OS = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios",
                       "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows",
                       "zos", "wasip1"})
_KNOWN_ARCH = frozenset({"386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64",
                         "ppc64le", "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32",
                         "mips64p32le", "ppc", "riscv", "riscv64", "s390", "s390x", "sparc",
                         "sparc64", "wasm"})
_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    """containerd's ``normalizeArch``, but arm64 keeps an explicit default variant ``v8``."""
    arch = arch.lower()
    variant = variant.lower() if variant else None
    if arch in ("armhf", "armel"):
        return "arm", "v7" if arch == "armhf" else "v6"
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "386":
        return arch, None
    if arch == "amd64":
        return arch, None if variant == "v1" else variant
    if arch == "arm64":
        return arch, "v8" if variant in (None, "8", "v8", "v8.0") else variant
    if arch == "arm":
        if variant in (None, "7"):
            return arch, "v7"
        if variant in ("5", "6", "8"):
            return arch, "v" + variant
    return arch, variant


def _opt_str(value: object, what: str) -> str | None:
    return None if value is None else _want(value, str, what)


@attrs.frozen(slots=True)
class Platform:
    """An OCI platform: ``os``/``architecture``[/``variant``], plus Windows' version and features.

    Fields keep what was given (so a manifest's platform round-trips); :meth:`normalized` and
    :meth:`matches` apply containerd's normalisation.  Raises ``InvalidArgument`` when ``os`` or
    ``architecture`` is empty or a field is not a string.
    """

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)

    def __attrs_post_init__(self) -> None:
        for what, value in (("os", self.os), ("architecture", self.architecture)):
            if not isinstance(value, str) or not value:
                raise InvalidArgument(f"platform {what} must be a non-empty string")
        _opt_str(self.variant, "platform variant")
        _opt_str(self.os_version, "platform os.version")
        for i, feature in enumerate(self.os_features):
            _want(feature, str, f"platform os.features[{i}]")

    @classmethod
    def parse(cls, s: str) -> Platform:
        """Parse ``os[/arch[/variant]]`` or a bare ``arch`` (``"linux/arm64/v8"``, ``"arm64"``).

        As containerd does, a single component that is a known OS gets the host's architecture,
        and a known architecture gets the ``linux`` OS.  The result is :meth:`normalized`.
        Raises ``InvalidArgument`` with containerd's messages.
        """
        if not isinstance(s, str):
            raise InvalidArgument(f"platform must be a string, not {_type_name(s)}")
        parts = s.split("/")
        for part in parts:
            if not _COMPONENT_RE.fullmatch(part):
                raise InvalidArgument(f"{_show(part)} is an invalid component of {_show(s)}: "
                                      "platform specifier component must match "
                                      '"^[A-Za-z0-9_.-]+$"')
        if len(parts) > 3:
            raise InvalidArgument(f"{_show(s)}: cannot parse platform specifier")
        if len(parts) == 1:
            os_name = _OS_ALIASES.get(parts[0].lower(), parts[0].lower())
            if os_name in _KNOWN_OS:
                host = cls.host()
                return cls(os_name, host.architecture, host.variant)
            plat = cls("linux", parts[0]).normalized()
            if plat.architecture not in _KNOWN_ARCH:
                raise InvalidArgument(f"{_show(s)}: unknown operating system or architecture")
            return plat
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()

    @classmethod
    def host(cls) -> Platform:
        """The platform of this machine, from ``platform.machine()``/``platform.system()``."""
        machine = _platform.machine().lower() or "amd64"
        arch, variant = machine, None                # x86_64, aarch64, i686... normalised below
        if machine.startswith("armv") and machine[4:5].isdigit():
            arch, variant = "arm", "v" + machine[4]  # armv7l -> arm/v7, armv6l -> arm/v6
        return cls(_platform.system().lower() or "linux", arch, variant).normalized()

    def normalized(self) -> Platform:
        """Canonical names: ``x86_64``->``amd64``, ``aarch64``->``arm64/v8``, ``arm``->``arm/v7``,
        ``armhf``->``arm/v7``, ``armel``->``arm/v6``, ``i386``->``386``, ``amd64/v1``->``amd64``,
        lower-case os (``macos``->``darwin``)."""
        os_name = self.os.lower()
        arch, variant = _normalize_arch(self.architecture, self.variant)
        return attrs.evolve(self, os=_OS_ALIASES.get(os_name, os_name), architecture=arch,
                            variant=variant)

    def matches(self, other: Platform) -> bool:
        """Whether an image for ``other`` satisfies a request for ``self`` (both normalised).

        OS and architecture must be equal.  ``arm64`` and ``arm64/v8`` are the same, as are
        ``arm`` and ``arm/v7``; for ``arm``/``arm64`` variants must then be equal.  For other
        architectures (``amd64``...) a request without a variant accepts any variant, and a
        request with one needs that exact variant.  ``os_version`` is compared when both have it.
        """
        a, b = self.normalized(), other.normalized()
        if (a.os, a.architecture) != (b.os, b.architecture):
            return False
        if a.os_version and b.os_version and a.os_version != b.os_version:
            return False
        if a.architecture in ("arm", "arm64") or a.variant is not None:
            return a.variant == b.variant
        return True

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, Any]:
        """The OCI shape: ``architecture``, ``os``, ``os.version``, ``os.features``, ``variant``."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: object) -> Platform:
        """Build from the OCI shape; unknown keys are ignored.  Raises ``InvalidArgument``."""
        obj = _want(obj, dict, "platform")
        for key in ("os", "architecture"):
            if key not in obj:
                raise InvalidArgument(f"platform: missing {key}")
        features = obj.get("os.features")
        return cls(
            os=_want(obj.get("os"), str, "platform os"),
            architecture=_want(obj.get("architecture"), str, "platform architecture"),
            variant=_opt_str(obj.get("variant"), "platform variant") or None,
            os_version=_opt_str(obj.get("os.version"), "platform os.version") or None,
            os_features=() if features is None else _str_list(features, "platform os.features"),
        )


# --------------------------------------------------------------------------- Descriptor
# RFC 6838 type/subtype; also keeps CR/LF out of the Accept and Content-Type headers built from it.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE_RE = re.compile(f"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}", re.ASCII)
_MAX_SIZE = 2**63 - 1


def _check_media_type(instance: object, attribute: object, value: object) -> None:
    if not isinstance(value, str) or not _MEDIA_TYPE_RE.fullmatch(value):
        raise InvalidArgument(f"invalid media type: {_show(value)}")


def _check_size(instance: object, attribute: object, value: object) -> None:
    _want(value, int, "descriptor size")
    if not 0 <= value <= _MAX_SIZE:  # type: ignore[operator]
        raise InvalidArgument("descriptor size must be between 0 and 2^63-1")


def _check_digest_field(instance: object, attribute: object, value: object) -> None:
    if not isinstance(value, Digest):
        raise InvalidArgument(f"descriptor digest must be a Digest, not {type(value).__name__}")


def _check_str_items(instance: object, attribute: Any, value: Any) -> None:
    for i, item in enumerate(value):
        _want(item, str, f"descriptor {attribute.name}[{i}]")


def _check_optional_platform(instance: object, attribute: object, value: object) -> None:
    if value is not None and not isinstance(value, Platform):
        raise InvalidArgument(f"descriptor platform must be a Platform, not {type(value).__name__}")


def _to_digest(value: object) -> object:
    return Digest.parse(value) if isinstance(value, str) else value


def _descriptor_digest(value: object) -> Digest:
    _want(value, str, "descriptor digest")
    try:
        return Digest.parse(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"descriptor digest {_show(value)}: {exc}") from None


@attrs.frozen(slots=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size, where else to find it.

    ``digest`` may be given as a string (it is parsed).  Raises ``InvalidArgument`` on an invalid
    media type, digest, size (an int in [0, 2^63)), url or annotation.
    """

    media_type: str = attrs.field(validator=_check_media_type)
    digest: Digest = attrs.field(converter=_to_digest, validator=_check_digest_field)
    size: int = attrs.field(validator=_check_size)
    urls: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_check_str_items)
    annotations: FrozenMap = attrs.field(factory=FrozenMap, converter=_to_frozen_map)
    platform: Platform | None = attrs.field(default=None, validator=_check_optional_platform)
    artifact_type: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_check_media_type))

    def __attrs_post_init__(self) -> None:
        for key, value in self.annotations.items():
            _want(key, str, "descriptor annotations key")
            _want(value, str, f"descriptor annotations[{key!r}]")

    def to_json(self) -> dict[str, Any]:
        """The OCI shape: ``mediaType``, ``digest``, ``size`` and, when set, ``urls``,
        ``annotations``, ``platform``, ``artifactType``."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest),
                               "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, obj: object) -> Descriptor:
        """Build from the OCI shape, checking every type; unknown keys (``data``...) are ignored.

        Raises ``InvalidArgument`` naming the offending field.
        """
        obj = _want(obj, dict, "descriptor")
        for key in ("mediaType", "digest", "size"):
            if key not in obj:
                raise InvalidArgument(f"descriptor: missing {key}")
        urls, annotations, plat = obj.get("urls"), obj.get("annotations"), obj.get("platform")
        return cls(
            media_type=_want(obj["mediaType"], str, "descriptor mediaType"),
            digest=_descriptor_digest(obj["digest"]),
            size=_want(obj["size"], int, "descriptor size"),
            urls=() if urls is None else _str_list(urls, "descriptor urls"),
            annotations=FrozenMap() if annotations is None
            else _str_map(annotations, "descriptor annotations"),
            platform=None if plat is None else Platform.from_json(plat),
            artifact_type=_opt_str(obj.get("artifactType"), "descriptor artifactType"),
        )


# --------------------------------------------------------------------------- Mount
def _check_mount_str(instance: object, attribute: Any, value: object) -> None:
    if not isinstance(value, str) or "\0" in value:
        raise InvalidArgument(f"mount {attribute.name} must be a string without NUL: "
                              f"{_show(value)}")


def _check_mount_options(instance: object, attribute: object, value: tuple[object, ...]) -> None:
    for option in value:
        if not isinstance(option, str) or not option or "\0" in option:
            raise InvalidArgument("mount option must be a non-empty string without NUL: "
                                  f"{_show(option)}")


@attrs.frozen(slots=True)
class Mount:
    """A mount as data (containerd style): what ``mount -t TYPE -o OPTIONS SOURCE TARGET`` does.

    Storage drivers return these, callers perform them; ``target`` is relative to where the
    caller mounts (``""``: the mount point itself).  Raises ``InvalidArgument`` on non-strings,
    NUL bytes or an empty type or option.
    """

    type: str = attrs.field(validator=_check_mount_str)
    source: str = attrs.field(validator=_check_mount_str)
    target: str = attrs.field(default="", validator=_check_mount_str)
    options: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple,
                                           validator=_check_mount_options)

    def __attrs_post_init__(self) -> None:
        if not self.type:
            raise InvalidArgument("mount type must not be empty")

    @property
    def readonly(self) -> bool:
        """Whether the ``ro`` option is set (the last of ``ro``/``rw`` wins, as mount(8) does)."""
        for option in reversed(self.options):
            if option in ("ro", "rw"):
                return option == "ro"
        return False

    def to_json(self) -> dict[str, Any]:
        """``{"type", "source", "target", "options"}`` (containerd's mount JSON)."""
        return {"type": self.type, "source": self.source, "target": self.target,
                "options": list(self.options)}

    @classmethod
    def from_json(cls, obj: object) -> Mount:
        """Inverse of :meth:`to_json`; ``target``/``options`` may be absent.

        Raises ``InvalidArgument``.
        """
        obj = _want(obj, dict, "mount")
        options = obj.get("options")
        return cls(type=_want(obj.get("type"), str, "mount type"),
                   source=_want(obj.get("source"), str, "mount source"),
                   target=_want(obj.get("target", ""), str, "mount target"),
                   options=() if options is None else _str_list(options, "mount options"))
