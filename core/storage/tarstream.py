"""A strict, streaming reader of tar archives (ustar, POSIX/PAX, GNU), for layer extraction.

:class:`TarReader` reads an archive once, front to back, from a function that hands it the
stream in pieces (``b""`` at the end): :meth:`TarReader.next` parses the headers of the next
entry into a :class:`TarEntry`, and :meth:`TarReader.write_data` writes the entry's contents
from those pieces straight to a file descriptor, without copying them.  The stream is never
seeked, and memory stays bounded whatever the archive says.  :mod:`core.storage.layer`
extracts layers with it, and :mod:`core.engine.containers.archive` ``docker cp`` uploads (the standard
:mod:`tarfile` parses the same headers at about three times the cost, and more leniently).

What is understood:

- the ustar header with its 155-byte name prefix (131 bytes in the star variant), the GNU
  header (no prefix) and the V7 header; numeric fields in octal or in base-256 (GNU's binary
  form, negative numbers included); the checksum, verified (unsigned, or signed as some old
  tars computed it);
- PAX extended headers (``x``, and Solaris' ``X``): ``path``, ``linkpath``, ``size``, ``uid``,
  ``gid``, ``mtime`` and ``atime`` (exactly, to the nanosecond), ``SCHILY.xattr.*`` (extended
  attributes, values kept as raw bytes), GNU's sparse records; other keywords are ignored, and
  an empty value leaves the header's field as it is.  Global headers (``g``) apply to every
  entry after them, under the entry's own records;
- GNU long names and long link targets (``L``, ``K``), which win over PAX records (as in Go);
- sparse files: old GNU (``S``, with its extension blocks) and PAX sparse 0.0, 0.1 and 1.0.

Strictness — each of these raises :class:`~core.errors.InvalidArgument` (``"invalid layer tar:
..."``): a bad checksum; a numeric field or PAX number that is not one; a PAX record that does
not parse or whose length is wrong; an extended header, long name or sparse map over
:data:`MAX_HEADER_BYTES`; more than :data:`MAX_PAX_RECORDS` PAX records in force; a sparse map
out of order or past the end of the file or of the data; a stream that ends inside a header,
after an extended header, or inside an entry's data or its padding.  The archive ends at the
first all-zero block (what follows is not parsed), or at the end of the stream between two
entries (a missing end-of-archive marker is accepted, as Go's ``archive/tar`` and docker
accept it).

Types come back as the archive has them, except that the old regular type ``"\\0"``,
contiguous files (``"7"``) and sparse files are regular (``"0"``), and a ``"\\0"`` entry whose
name ends in ``/`` is a directory, as tar and Go have it.  Hardlinks, symlinks, devices, fifos
and directories carry no data, whatever their size field says.  Names are decoded from UTF-8
(bytes that are not UTF-8 as surrogate escapes, so they round-trip through ``os`` calls) and
are otherwise as the archive has them: making them safe is the caller's business.
"""
from __future__ import annotations

import os
import struct
from typing import Callable

from core.errors import InvalidArgument

__all__ = ["TarReader", "TarEntry", "content_size", "pax_time", "MAX_HEADER_BYTES", "MAX_PAX_RECORDS", "REGULAR",
           "HARDLINK", "SYMLINK", "CHAR_DEVICE", "BLOCK_DEVICE", "DIRECTORY", "FIFO"]

MAX_HEADER_BYTES = 1 << 20   # a PAX extended header, a GNU long name or link, a sparse map
MAX_PAX_RECORDS = 10_000     # PAX records in force at once (global ones accumulate)

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
CHAR_DEVICE = b"3"
BLOCK_DEVICE = b"4"
DIRECTORY = b"5"
FIFO = b"6"
_OLD_REGULAR = b"\0"
_CONTIGUOUS = b"7"
_GNU_SPARSE = b"S"
_PAX_LOCAL = (b"x", b"X")
_PAX_GLOBAL = b"g"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"
_HEADER_ONLY = frozenset((HARDLINK, SYMLINK, CHAR_DEVICE, BLOCK_DEVICE, DIRECTORY, FIFO))
_META = frozenset((*_PAX_LOCAL, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK))

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
# name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, magic+version, uname, gname,
# devmajor, devminor, prefix, (GNU/star extras)
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12s")
_USTAR_MAGIC = b"ustar\0"          # POSIX ustar and PAX; GNU's is b"ustar " with version " \0"
_STAR_TRAILER = b"tar\0"           # star: the prefix is 131 bytes, then times
_OCTAL = b"01234567"
_HIGH_BYTES = bytes(range(0x80, 0x100))
_NS = 1_000_000_000

# What a PAX header may set (other keywords are read and ignored).
_PAX_KEPT = frozenset(("path", "linkpath", "size", "uid", "gid", "mtime", "atime",
                       "GNU.sparse.major", "GNU.sparse.minor", "GNU.sparse.name",
                       "GNU.sparse.size", "GNU.sparse.realsize", "GNU.sparse.map"))
_XATTR_PREFIX = "SCHILY.xattr."
_SPARSE_OFFSET = "GNU.sparse.offset"    # PAX sparse 0.0: pairs of repeated records, in order
_SPARSE_NUMBYTES = "GNU.sparse.numbytes"


class TarEntry:
    """One entry of the archive: the merged result of its header and extended headers.

    ``type`` is one of the type constants of this module (or any other byte the archive used);
    ``size`` is the size of the file (for a sparse file, its full size, holes included);
    ``mtime_ns`` and ``atime_ns`` are nanoseconds since the epoch (``atime_ns`` is ``None`` when
    the archive has none); ``xattrs`` are the ``SCHILY.xattr.*`` records, ``(name, value)`` in
    archive order; ``sparse`` is ``None`` or the ``(offset, length)`` data extents of a sparse
    file, in order; ``offset`` is where the entry's first header starts in the stream.
    """

    __slots__ = ("name", "linkname", "type", "mode", "uid", "gid", "size", "mtime_ns",
                 "atime_ns", "devmajor", "devminor", "xattrs", "sparse", "offset")

    def __init__(self, name: str, type_: bytes, linkname: str = "", mode: int = 0o644,
                 uid: int = 0, gid: int = 0, size: int = 0, mtime_ns: int = 0,
                 atime_ns: int | None = None, devmajor: int = 0, devminor: int = 0,
                 xattrs: list[tuple[str, bytes]] | None = None,
                 sparse: list[tuple[int, int]] | None = None, offset: int = 0) -> None:
        self.name = name
        self.type = type_
        self.linkname = linkname
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime_ns = mtime_ns
        self.atime_ns = atime_ns
        self.devmajor = devmajor
        self.devminor = devminor
        self.xattrs = xattrs if xattrs is not None else []
        self.sparse = sparse
        self.offset = offset

    def __repr__(self) -> str:
        return f"<TarEntry {self.name!r} type {self.type!r} size {self.size}>"

    def isreg(self) -> bool:
        return self.type == REGULAR

    def isdir(self) -> bool:
        return self.type == DIRECTORY

    def issym(self) -> bool:
        return self.type == SYMLINK

    def islnk(self) -> bool:
        return self.type == HARDLINK

    def ischr(self) -> bool:
        return self.type == CHAR_DEVICE

    def isblk(self) -> bool:
        return self.type == BLOCK_DEVICE

    def isfifo(self) -> bool:
        return self.type == FIFO


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid layer tar: {message}")


def _padding(size: int) -> int:
    return -size % _BLOCK


def _cstring(field: bytes) -> bytes:
    """A NUL-terminated field: what comes before the first NUL."""
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str) -> int:
    """A numeric header field: octal digits padded with spaces and NULs, or base-256."""
    if field[0] & 0x80:
        # base-256 (GNU): a two's complement number in the bits after the marker bit
        bits = len(field) * 8 - 1
        value = int.from_bytes(field, "big") & ((1 << bits) - 1)
        return value - (1 << bits) if field[0] & 0x40 else value
    digits = field.strip(b" \0")
    if digits.translate(None, _OCTAL):
        digits = _cstring(digits).rstrip(b" ")  # as Go: what comes before a NUL
        if digits.translate(None, _OCTAL):
            raise _invalid(f"the {what} field {field!r} is not a number")
    return int(digits, 8) if digits else 0


_FIELD_VALUES: dict[bytes, int] = {}  # fields that repeat from header to header, parsed
_FIELD_VALUES_MAX = 4096


def _cached_number(field: bytes, what: str) -> int:
    """:func:`_number`, remembered: modes, owners, times and device numbers repeat."""
    value = _FIELD_VALUES.get(field)
    if value is None:
        value = _number(field, what)
        if len(_FIELD_VALUES) >= _FIELD_VALUES_MAX:
            _FIELD_VALUES.clear()
        _FIELD_VALUES[field] = value
    return value


def _decimal(value: bytes, what: str) -> int:
    """A PAX number: decimal digits, nothing else."""
    if not value.isdigit() or len(value) > 40:
        raise _invalid(f"PAX record {what}={value[:60]!r} is not a number")
    return int(value)


def pax_time(value: bytes, what: str) -> int:
    """A PAX time (``[-]seconds[.fraction]``) in nanoseconds, exactly (digits past the ninth
    are dropped, rounding towards zero); ``InvalidArgument`` if ``value`` is not one."""
    text = value[1:] if value[:1] == b"-" else value
    seconds, dot, fraction = text.partition(b".")
    if (not seconds.isdigit() or (dot and not fraction.isdigit()) or len(seconds) > 30):
        raise _invalid(f"PAX record {what}={value[:60]!r} is not a time")
    ns = int(seconds) * _NS + int(fraction[:9].ljust(9, b"0") if dot else 0)
    return -ns if value[:1] == b"-" else ns


def _parse_pax(data: bytes, records: dict[str, bytes], xattrs: dict[str, bytes],
               sparse_pairs: list[bytes]) -> None:
    """Add the records of the PAX extended header ``data``: ``"<length> <key>=<value>\\n"``,
    where ``length`` counts the whole record.  ``records`` gets the keywords this module
    uses, ``xattrs`` the ``SCHILY.xattr.*`` ones, ``sparse_pairs`` PAX sparse 0.0's repeated
    offset and size records, in order."""
    pos, end = 0, len(data)
    while pos < end:
        space = data.find(b" ", pos, min(end, pos + 12))
        length_field = data[pos:space] if space > pos else b""
        if not length_field.isdigit():
            raise _invalid(f"malformed PAX record at byte {pos} of an extended header")
        stop = pos + int(length_field)
        equals = data.find(b"=", space + 1, stop)
        if stop > end or data[stop - 1:stop] != b"\n" or equals <= space + 1:
            raise _invalid(f"malformed PAX record at byte {pos} of an extended header")
        key = _decode(data[space + 1:equals])
        value = data[equals + 1:stop - 1]
        pos = stop
        if key.startswith(_XATTR_PREFIX):
            xattrs[key[len(_XATTR_PREFIX):]] = value
        elif key in _PAX_KEPT:
            records[key] = value
        elif key == _SPARSE_OFFSET or key == _SPARSE_NUMBYTES:
            sparse_pairs.append(value)
        if len(records) + len(xattrs) + len(sparse_pairs) > MAX_PAX_RECORDS:
            raise _invalid(f"more than {MAX_PAX_RECORDS} PAX records")


def _check_sparse(extents: list[tuple[int, int]], size: int, stored: int) -> list[tuple[int, int]]:
    """Sparse extents must be in order, apart, inside the file, and fit in the stored data."""
    end = total = 0
    for offset, length in extents:
        if offset < end or length < 0 or offset + length > size:
            raise _invalid(f"sparse map entry ({offset}, {length}) is out of order or past the "
                           f"end of a {size}-byte file")
        end = offset + length
        total += length
    if total > stored:
        raise _invalid(f"sparse map needs {total} bytes of data, the archive stores {stored}")
    return extents


def _sparse_pairs(numbers: list[bytes], what: str) -> list[tuple[int, int]]:
    if len(numbers) % 2:
        raise _invalid(f"{what} has an odd number of fields")
    values = [_decimal(n, what) for n in numbers]
    return list(zip(values[0::2], values[1::2]))


class TarReader:
    """Reads the entries of the tar archive that ``fill`` hands over in pieces.

    ``fill()`` returns the next piece of the stream (any non-empty bytes-like object), ``b""``
    at the end.  Call :meth:`next` for each entry; between two calls, :meth:`write_data` writes
    the entry's contents (what it does not write is skipped).  :meth:`drain` reads the rest of
    the stream, after the archive.  See the module docstring for what is accepted.
    """

    def __init__(self, fill: Callable[[], bytes]) -> None:
        self._fill = fill
        self._buf = b""
        self._pos = 0           # of the next byte in _buf
        self._base = 0          # stream offset of _buf[0]
        self._eof = False
        self._done = False      # the end of the archive was read
        self._data_left = 0     # data of the current entry not read yet
        self._pad = 0           # padding after it
        self._global: dict[str, bytes] = {}
        self._global_xattrs: dict[str, bytes] = {}

    # ------------------------------------------------------------------- the stream
    @property
    def offset(self) -> int:
        """How many bytes of the stream have been consumed."""
        return self._base + self._pos

    def _more(self) -> bool:
        """Whether a byte is left in the buffer, reading the next piece if need be."""
        while self._pos >= len(self._buf):
            if self._eof:
                return False
            piece = self._fill()
            if not piece:
                self._eof = True
                return False
            self._base += len(self._buf)
            self._buf, self._pos = piece, 0
        return True

    def _read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or fewer if the stream ends first."""
        pos = self._pos
        if pos + size <= len(self._buf):  # the common case: within the piece at hand
            self._pos = pos + size
            return self._buf[pos:pos + size]
        parts = []
        while size and self._more():
            pos = self._pos
            piece = self._buf[pos:pos + size]
            parts.append(piece)
            self._pos = pos + len(piece)
            size -= len(piece)
        return b"".join(parts)

    def _skip(self, size: int) -> bool:
        """Skip ``size`` bytes; ``False`` if the stream ends first."""
        while size:
            if not self._more():
                return False
            step = min(size, len(self._buf) - self._pos)
            self._pos += step
            size -= step
        return True

    def drain(self) -> None:
        """Read the stream to its end, discarding it (what follows the archive)."""
        while self._more():
            self._pos = len(self._buf)

    # ------------------------------------------------------------------- data
    def write_data(self, fd: int, size: int) -> None:
        """Write the next ``size`` bytes of the current entry's data to the descriptor ``fd``.

        ``InvalidArgument`` if the stream ends first; ``ValueError`` if the entry has fewer
        bytes of data left (a sparse map is checked against the data when it is read)."""
        if size > self._data_left:
            raise ValueError(f"{size} bytes asked, the entry has {self._data_left} left")
        self._data_left -= size
        while size:
            if not self._more():
                raise _invalid("the archive ends inside a file's data")
            buf, pos = self._buf, self._pos
            step = min(size, len(buf) - pos)
            view = memoryview(buf)[pos:pos + step]
            while view:
                view = view[os.write(fd, view):]
            self._pos = pos + step
            size -= step

    # ------------------------------------------------------------------- headers
    def next(self) -> TarEntry | None:
        """The next entry, or ``None`` at the end of the archive."""
        if self._done:
            return None
        if not self._skip(self._data_left + self._pad):
            raise _invalid("the archive ends inside a file's data or its padding")
        self._data_left = self._pad = 0
        records: dict[str, bytes] = {}
        xattrs: dict[str, bytes] = {}
        sparse_pairs: list[bytes] = []
        long_name = long_link = None
        start = self.offset
        while True:
            at = self.offset
            block = self._read(_BLOCK)
            if len(block) < _BLOCK:
                if block:
                    raise _invalid(f"the archive ends inside a header (at byte {at})")
                if at != start:
                    raise _invalid(f"the archive ends after an extended header (at byte {at})")
                self._done = True
                return None
            fields = _HEADER.unpack(block)
            checksum = _number(fields[6], "checksum")
            unsigned = sum(block) - sum(fields[6]) + 8 * 32  # the field counts as spaces
            if checksum != unsigned:
                if block == _ZERO_BLOCK:  # the end-of-archive marker
                    if at != start:
                        raise _invalid(f"the archive ends after an extended header (at byte {at})")
                    self._done = True
                    return None
                high = _BLOCK - len(block.translate(None, _HIGH_BYTES))
                high -= 8 - len(fields[6].translate(None, _HIGH_BYTES))
                if checksum != unsigned - 256 * high:  # some old tars summed signed chars
                    raise _invalid(f"bad header checksum at byte {at}")
            kind = fields[7]
            if kind not in _META:
                return self._entry(block, fields, kind, start, records, xattrs, sparse_pairs,
                                   long_name, long_link)
            size = _number(fields[4], "size")
            if not 0 <= size <= MAX_HEADER_BYTES:
                raise _invalid(f"an extended header of {size} bytes at byte {at} "
                               f"(at most {MAX_HEADER_BYTES})")
            data = self._read(size)
            if len(data) < size or not self._skip(_padding(size)):
                raise _invalid(f"the archive ends inside an extended header (at byte {at})")
            if kind in _PAX_LOCAL:
                _parse_pax(data, records, xattrs, sparse_pairs)
            elif kind == _PAX_GLOBAL:
                ignored: list[bytes] = []
                _parse_pax(data, self._global, self._global_xattrs, ignored)
                if len(self._global) + len(self._global_xattrs) > MAX_PAX_RECORDS:
                    raise _invalid(f"more than {MAX_PAX_RECORDS} global PAX records")
            elif kind == _GNU_LONGNAME:
                long_name = _decode(_cstring(data))
            else:
                long_link = _decode(_cstring(data))

    def _entry(self, block: bytes, fields: tuple, kind: bytes, start: int,
               records: dict[str, bytes], xattrs: dict[str, bytes], sparse_pairs: list[bytes],
               long_name: str | None, long_link: str | None) -> TarEntry:
        """The entry of the header ``block`` (parsed into ``fields``), with what the extended
        headers before it said; positions the stream at its data."""
        if self._global:
            records = {**self._global, **records}
        if self._global_xattrs:
            xattrs = {**self._global_xattrs, **xattrs}
        if len(records) + len(xattrs) > MAX_PAX_RECORDS:
            raise _invalid(f"more than {MAX_PAX_RECORDS} PAX records in force at byte {start}")
        name = _cstring(fields[0])
        if fields[9][:6] == _USTAR_MAGIC:
            prefix = _cstring(block[345:476] if block[508:] == _STAR_TRAILER else fields[14])
            if prefix:
                name = prefix + b"/" + name
        link = _cstring(fields[8])
        entry = TarEntry(_decode(name), kind, _decode(link) if link else "",
                         _cached_number(fields[1], "mode"), _cached_number(fields[2], "uid"),
                         _cached_number(fields[3], "gid"), 0,
                         _cached_number(fields[5], "mtime") * _NS, None,
                         _cached_number(fields[12], "devmajor"),
                         _cached_number(fields[13], "devminor"), None, None, start)
        stored = _number(fields[4], "size")
        if records:
            stored = self._apply_pax(entry, records, stored)
        if xattrs:
            entry.xattrs = list(xattrs.items())
        if long_name is not None:
            entry.name = long_name
        if long_link is not None:
            entry.linkname = long_link
        if kind == _OLD_REGULAR:
            kind = DIRECTORY if entry.name.endswith("/") else REGULAR
        elif kind == _CONTIGUOUS:
            kind = REGULAR
        if kind in _HEADER_ONLY:
            stored = 0
        elif stored < 0:
            raise _invalid(f"negative size {stored} at byte {start}")
        entry.size = stored
        self._data_left, self._pad = stored, _padding(stored)
        if kind == _GNU_SPARSE:
            kind = REGULAR
            self._gnu_sparse(entry, block, start)
        elif kind == REGULAR and ("GNU.sparse.major" in records or "GNU.sparse.map" in records
                                  or sparse_pairs):
            self._pax_sparse(entry, records, sparse_pairs)
        entry.type = kind
        return entry

    @staticmethod
    def _apply_pax(entry: TarEntry, records: dict[str, bytes], stored: int) -> int:
        """Apply the PAX records to ``entry``; returns the stored data size."""
        for key, value in records.items():
            if not value:
                continue  # an empty value: the header's field stands
            if key == "path":
                entry.name = _decode(value)
            elif key == "linkpath":
                entry.linkname = _decode(value)
            elif key == "size":
                stored = _decimal(value, key)
            elif key == "uid":
                entry.uid = _decimal(value, key)
            elif key == "gid":
                entry.gid = _decimal(value, key)
            elif key == "mtime":
                entry.mtime_ns = pax_time(value, key)
            elif key == "atime":
                entry.atime_ns = pax_time(value, key)
        return stored

    # ------------------------------------------------------------------- sparse files
    def _gnu_sparse(self, entry: TarEntry, block: bytes, start: int) -> None:
        """Old GNU sparse: four extents in the header, more in extension blocks after it."""
        extents: list[tuple[int, int]] = []
        area, count, extended = block[386:482], 4, block[482]
        blocks = 0
        while True:
            for i in range(count):
                field = area[24 * i:24 * i + 24]
                if not field[0]:
                    break  # as GNU tar: an entry starting with NUL ends the list
                extents.append((_number(field[:12], "sparse offset"),
                                _number(field[12:], "sparse length")))
            if not extended:
                break
            blocks += 1
            if blocks * _BLOCK > MAX_HEADER_BYTES:
                raise _invalid(f"the sparse map at byte {start} is over {MAX_HEADER_BYTES} bytes")
            ext = self._read(_BLOCK)
            if len(ext) < _BLOCK:
                raise _invalid(f"the archive ends inside a sparse map (at byte {start})")
            area, count, extended = ext[:504], 21, ext[504]
        entry.size = _number(block[483:495], "sparse size")
        entry.sparse = _check_sparse(extents, entry.size, self._data_left)

    def _pax_sparse(self, entry: TarEntry, records: dict[str, bytes],
                    sparse_pairs: list[bytes]) -> None:
        """PAX sparse formats 0.0, 0.1 (the map in records) and 1.0 (the map in the data)."""
        if records.get("GNU.sparse.name"):
            entry.name = _decode(records["GNU.sparse.name"])
        real = records.get("GNU.sparse.realsize") or records.get("GNU.sparse.size")
        if not real:
            raise _invalid(f"sparse file {entry.name!r} has no size")
        entry.size = _decimal(real, "GNU.sparse.size")
        major, minor = records.get("GNU.sparse.major"), records.get("GNU.sparse.minor")
        if major is not None:
            if (major, minor) != (b"1", b"0"):
                raise _invalid(f"unknown sparse format {major!r}.{minor!r}")
            extents = self._sparse_map_in_data(entry)
        elif "GNU.sparse.map" in records:
            extents = _sparse_pairs(records["GNU.sparse.map"].split(b","), "GNU.sparse.map")
        else:
            extents = _sparse_pairs(sparse_pairs, "GNU.sparse.offset/numbytes")
        entry.sparse = _check_sparse(extents, entry.size, self._data_left)

    def _sparse_map_in_data(self, entry: TarEntry) -> list[tuple[int, int]]:
        """PAX sparse 1.0: decimal numbers, one a line, in whole blocks before the data: the
        count of extents, then offset and length of each."""
        numbers: list[bytes] = []
        partial = b""  # a line not ended yet
        wanted: int | None = None  # lines: the count, then two per extent
        read = 0
        while wanted is None or len(numbers) < wanted:
            if read >= MAX_HEADER_BYTES or self._data_left < _BLOCK or len(partial) > 40:
                raise _invalid(f"the sparse map of {entry.name!r} is malformed, truncated or "
                               "too large")
            block = self._read(_BLOCK)
            if len(block) < _BLOCK:
                raise _invalid("the archive ends inside a sparse map")
            read += _BLOCK
            self._data_left -= _BLOCK
            lines = (partial + block).split(b"\n")
            partial = lines.pop()
            numbers += lines
            if wanted is None and numbers:
                wanted = 1 + 2 * _decimal(numbers[0], "sparse map count")
        return _sparse_pairs(numbers[1:wanted], "the sparse map")


def content_size(fill: Callable[[], bytes]) -> int:
    """The size docker gives a layer, read from its tar (``fill`` as for :class:`TarReader`):
    the sum of what its files hold as they would lie on disk -- regular files (a sparse file's
    full size) and symlinks (the length of their target), each path counted once (a later entry
    for the same path replaces the earlier one), hard links and everything else nothing.

    That is docker's ``directory.Size`` of an unpacked layer, the figure ``docker images``,
    ``history``, ``inspect`` and ``system df`` show, not the tar's length (headers and padding
    make a small-file layer half as large again).  ``InvalidArgument`` for a corrupt tar.
    """
    reader = TarReader(fill)
    sizes: dict[str, int] = {}
    while (entry := reader.next()) is not None:
        name = entry.name.strip("/")
        while name.startswith("./"):
            name = name[2:]
        if entry.type == REGULAR:
            sizes[name] = entry.size
        elif entry.type == SYMLINK:
            sizes[name] = len(os.fsencode(entry.linkname))
        else:
            sizes.pop(name, None)
    reader.drain()
    return sum(sizes.values())
