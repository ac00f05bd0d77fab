"""``core cp``: copy files between a container and the local filesystem, as ``docker cp`` does.

The API moves tar archives (``GET``/``PUT``/``HEAD /containers/{id}/archive``); this module builds
them from local files and extracts the ones the daemon sends — safely: an entry that would land
outside the destination (absolute names, ``..``, through a symlink, a hard link to a file
outside) is refused, device nodes are skipped, set-id bits dropped, and no file is written
through an existing symlink.  docker's copy rules (archive.PrepareArchiveCopy):

=======================  =========================  =================================================
source                   destination                result
=======================  =========================  =================================================
file                     existing directory         DEST/name
file                     existing file / new path   DEST (overwritten / created)
directory                existing directory         DEST/dirname/...
``directory/.``          existing directory         DEST/... (the contents)
directory                new path                   DEST/... (created)
directory                existing file              error "cannot copy directory"
file                     ``new/`` (a slash)         error "no such directory"
=======================  =========================  =================================================
"""
from __future__ import annotations

import base64
import io
import json
import os
import stat as statmod
import sys

from core.cli.client import APIError, CLIError
from core.cli.flags import Flags, command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27


def split_cp_arg(arg: str) -> tuple[str, str]:
    """``ctr:/path`` → ("ctr", "/path"); local paths (absolute, ``./x:y``, no colon) → ("", arg)."""
    if arg.startswith("/"):
        return "", arg
    ctr, sep, path = arg.partition(":")
    if not sep or ctr.startswith("."):
        return "", arg
    return ctr, path


def preserve_trailing(clean: str, original: str) -> str:
    """archive.PreserveTrailingDotOrSeparator."""
    if original.endswith("/.") and not clean.endswith("/."):
        return clean.rstrip("/") + "/." if clean != "/" else "/."
    if original.endswith("/") and not clean.endswith("/"):
        return clean + "/"
    return clean


def split_dir_entry(path: str) -> tuple[str, str]:
    """archive.SplitPathDirEntry: ("/a/b/.", → ("/a/b", ".")); ("/a/b/" → ("/a", "b"))."""
    clean = os.path.normpath(path) if path else "."
    if path.endswith("/.") or path == ".":
        clean = os.path.normpath(path[:-2] or "/") if path.endswith("/.") else "."
        return clean, "."
    return os.path.dirname(clean) or ".", os.path.basename(clean) or clean


def asserts_directory(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.")


def rebase_name(name: str, old: str, new: str) -> str:
    """Replace the first path component ``old`` of a tar entry name by ``new``."""
    n = name
    while n.startswith("./") and old != ".":
        n = n[2:]
    if old == ".":
        if n in (".", "./"):
            return new
        if n.startswith("./"):
            return f"{new}/{n[2:]}" if new else n[2:]
        return f"{new}/{n}" if new else n
    if n == old or n == old + "/":
        return new + ("/" if n.endswith("/") else "")
    if n.startswith(old + "/"):
        return new + n[len(old):]
    return n


# ================================================================================================
# Safe extraction
# ================================================================================================


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, counting what was read."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.count += n
        return n


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _clean_member_name(name: str) -> str:
    parts = []
    for p in name.replace("\\", "/").split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise CLIError(f'invalid archive entry "{name}": it points outside the destination', 1)
        parts.append(p)
    return "/".join(parts)


def safe_extract(fileobj: Any, dest: str, rebase: tuple[str, str] | None = None, no_overwrite_dir_nondir: bool = True,
                 keep_owner: bool = False) -> None:
    """Extract a tar stream into the existing directory ``dest`` without ever writing outside it."""
    import tarfile

    root = os.path.realpath(dest)
    if not os.path.isdir(root):
        raise CLIError(f"{dest}: not a directory", 1)
    dirs: list[tuple[str, int, float]] = []
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|*")
    except tarfile.TarError as exc:
        raise CLIError(f"invalid tar archive: {exc}", 1) from None
    with tar:
        for m in tar:
            name = m.name
            if rebase is not None:
                name = rebase_name(name, *rebase)
            if name.startswith("/"):
                name = name.lstrip("/")
            rel = _clean_member_name(name)
            if not rel:
                if m.isdir():
                    dirs.append((root, m.mode, m.mtime))
                continue
            target = os.path.join(root, rel)
            parent = os.path.dirname(target)
            parent_real = os.path.realpath(parent)
            if not _inside(root, parent_real):
                raise CLIError(f'invalid archive entry "{m.name}": it points outside the destination', 1)
            if not os.path.isdir(parent_real):
                _makedirs_inside(root, parent)
                parent_real = os.path.realpath(parent)
                if not _inside(root, parent_real):
                    raise CLIError(f'invalid archive entry "{m.name}": it points outside the destination', 1)
            target = os.path.join(parent_real, os.path.basename(target))
            try:
                existing = os.lstat(target)
            except FileNotFoundError:
                existing = None
            if existing is not None:
                is_dir = statmod.S_ISDIR(existing.st_mode)
                if no_overwrite_dir_nondir and is_dir and not m.isdir():
                    raise CLIError(f'cannot overwrite directory "{target}" with non-directory "{rel}"', 1)
                if no_overwrite_dir_nondir and not is_dir and m.isdir():
                    raise CLIError(f'cannot overwrite non-directory "{target}" with directory "{rel}"', 1)
                if not is_dir and not m.isdir():
                    os.unlink(target)  # never write through an existing symlink
            if m.isdir():
                if existing is None:
                    os.mkdir(target, 0o700)
                dirs.append((target, m.mode, m.mtime))
                continue
            if m.isreg():
                src = tar.extractfile(m)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = src.read(1 << 20) if src is not None else b""
                        if not chunk:
                            break
                        out.write(chunk)
            elif m.issym():
                os.symlink(m.linkname, target)
            elif m.islnk():
                link = m.linkname
                if rebase is not None:
                    link = rebase_name(link, *rebase)
                link_rel = _clean_member_name(link.lstrip("/"))
                source = os.path.join(root, link_rel)
                source_real = os.path.realpath(source)
                if not link_rel or not _inside(root, source_real) or not os.path.lexists(source):
                    raise CLIError(f'invalid hard link "{m.name}" -> "{m.linkname}": outside the destination', 1)
                os.link(source, target, follow_symlinks=False)
                continue
            elif m.isfifo():
                os.mkfifo(target, 0o600)
            else:
                continue  # device nodes and other specials are not created on the client
            if keep_owner:
                try:
                    os.lchown(target, m.uid, m.gid)
                except OSError:
                    pass
            if not m.issym():
                os.chmod(target, m.mode & 0o777)
            try:
                os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)
            except (OSError, NotImplementedError):
                pass
    for path, mode, mtime in reversed(dirs):
        if path != root:
            os.chmod(path, mode & 0o1777)
            try:
                os.utime(path, (mtime, mtime))
            except OSError:
                pass


def _makedirs_inside(root: str, path: str) -> None:
    rel = os.path.relpath(path, root)
    cur = root
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        cur = os.path.join(cur, part)
        real = os.path.realpath(cur)
        if not _inside(root, real):
            raise CLIError(f'invalid archive entry: "{rel}" points outside the destination', 1)
        if not os.path.isdir(real):
            os.mkdir(cur, 0o755)


# ================================================================================================
# Building an archive of local files
# ================================================================================================


def build_archive(src: str, root_name: str, follow_link: bool = False) -> Any:
    """A tar of local ``src`` whose top entry is named ``root_name`` (``""``: the contents of a
    directory, for ``dir/.``), in an anonymous temporary file (rewound): what is copied may be
    larger than memory.  Symlinks inside are archived as links."""
    import tarfile
    import tempfile

    buf = tempfile.TemporaryFile()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = os.path.realpath(src) if follow_link else src.rstrip("/") or "/"
        if src.endswith("/."):
            top = src[:-2] or "/"
        st = os.stat(top) if follow_link else os.lstat(top)
        if statmod.S_ISDIR(st.st_mode):
            if root_name:
                tar.add(top, arcname=root_name, recursive=False)
            for entry in sorted(os.listdir(top)):
                name = f"{root_name}/{entry}" if root_name else entry
                tar.add(os.path.join(top, entry), arcname=name, recursive=True)
        else:
            tar.add(top, arcname=root_name or os.path.basename(top), recursive=False)
    buf.seek(0)
    return buf


# ================================================================================================
# The command
# ================================================================================================


def _stat_header(headers: dict[str, str]) -> dict[str, Any]:
    raw = headers.get("x-docker-container-path-stat")
    if not raw:
        return {}
    try:
        return json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        return {}


def container_stat(ctx: Any, ctr: str, path: str) -> dict[str, Any] | None:
    """HEAD /containers/{id}/archive: the path's stat, or None when it cannot be had (docker's
    cp ignores a failed stat and lets the copy itself report what is wrong)."""
    try:
        resp = ctx.client.request("HEAD", f"/containers/{ctr}/archive", {"path": path})
    except APIError:
        return None
    try:
        return _stat_header(resp.headers) or None
    finally:
        resp.sock.close()


def _progress_size(n: int) -> str:
    from core.units import human_size

    return human_size(n, 3)


@command
def cp(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tcore cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
              "Copy files/folders between a container and the local filesystem",
              aliases="core container cp, core cp",
              long="Copy files/folders between a container and the local filesystem\n\n"
                   "Use '-' as the source to read a tar archive from stdin\n"
                   "and extract it to a directory destination in a container.\n"
                   "Use '-' as the destination to stream a tar archive of a\n"
                   "container source to stdout.")
    f.add("archive", "a", help="Archive mode (copy all uid/gid information)")
    f.add("follow-link", "L", help="Always follow symbol link in SRC_PATH")
    f.add("quiet", "q", help="Suppress progress output during copy. Progress output is automatically suppressed if "
                             "no terminal is attached")
    opts, args = f.parse(argv)
    f.require(args, exact=2)
    if not args[0]:
        raise CLIError("source can not be empty", 1)
    if not args[1]:
        raise CLIError("destination can not be empty", 1)
    quiet = opts.quiet if "quiet" in opts.changed else not sys.stdout.isatty()
    src_ctr, src_path = split_cp_arg(args[0])
    dst_ctr, dst_path = split_cp_arg(args[1])
    if src_ctr and dst_ctr:
        raise CLIError("copying between containers is not supported", 1)
    if src_ctr:
        return _from_container(ctx, src_ctr, src_path, dst_path, opts.follow_link, quiet)
    if dst_ctr:
        return _to_container(ctx, dst_ctr, src_path, dst_path, opts.follow_link, opts.archive, quiet)
    raise CLIError("must specify at least one container source", 1)


def _local_abs(path: str) -> str:
    return preserve_trailing(os.path.abspath(path), path)


def _from_container(ctx: Any, ctr: str, src: str, dst: str, follow: bool, quiet: bool) -> int:
    if dst != "-":
        dst = _local_abs(dst)
        parent = os.path.dirname(os.path.normpath(dst))
        if parent and not os.path.exists(parent):
            raise CLIError(f'invalid output path: directory "{parent}" does not exist', 1)
        if os.path.exists(dst) and not (os.path.isdir(dst) or os.path.isfile(dst)):
            raise CLIError(f'invalid output path: "{dst}" must be a directory or a regular file', 1)
    rebase_to = ""
    if follow:
        st = container_stat(ctx, ctr, src)
        if st and int(st.get("mode", 0)) & GO_MODE_SYMLINK:
            target = st.get("linkTarget") or ""
            if not target.startswith("/"):
                target = os.path.join(split_dir_entry(src)[0], target)
            rebase_to = split_dir_entry(src)[1]
            src = target
    resp = ctx.client.request("GET", f"/containers/{ctr}/archive", {"path": src})
    try:
        st = _stat_header(resp.headers)
        if dst == "-":
            from core.cli.hijack import _write_all

            sys.stdout.flush()
            for chunk in resp.iter_chunks():
                _write_all(1, chunk)
            return 0
        src_is_dir = bool(int(st.get("mode", 0)) & GO_MODE_DIR)
        src_base = split_dir_entry(src)[1]
        reader = _ChunkReader(resp.iter_chunks())
        # where to extract, and under which name (archive.CopyTo / PrepareArchiveCopy)
        dst_real = dst
        for _ in range(10):
            if os.path.islink(dst_real.rstrip("/")):
                link = os.readlink(dst_real.rstrip("/"))
                dst_real = link if link.startswith("/") else os.path.join(os.path.dirname(dst_real.rstrip("/")), link)
            else:
                break
        exists = os.path.exists(dst_real)
        is_dir = os.path.isdir(dst_real)
        dst_dir, dst_base = split_dir_entry(dst_real)
        if exists and is_dir:
            target_dir, rebase = dst_real, ((src_base, rebase_to) if rebase_to and src_base != rebase_to else None)
        elif exists and src_is_dir:
            raise CLIError("cannot copy directory", 1)
        elif not exists and not src_is_dir and asserts_directory(dst):
            raise CLIError("no such directory", 1)
        else:
            if not os.path.isdir(dst_dir):
                raise CLIError("not a directory" if os.path.exists(dst_dir) else
                               f"lstat {dst_dir}: no such file or directory", 1)
            target_dir, rebase = dst_dir, (src_base, dst_base)
        safe_extract(reader, target_dir, rebase=rebase)
        if not quiet:
            sys.stderr.write(f"Successfully copied {_progress_size(reader.count)} to {dst}\n")
        return 0
    finally:
        resp.sock.close()


def _to_container(ctx: Any, ctr: str, src: str, dst: str, follow: bool, copy_uid_gid: bool, quiet: bool) -> int:
    dst_info_path = dst
    st = container_stat(ctx, ctr, dst)
    if st and int(st.get("mode", 0)) & GO_MODE_SYMLINK:
        target = st.get("linkTarget") or ""
        if not target.startswith("/"):
            target = os.path.join(split_dir_entry(dst)[0], target)
        dst_info_path = target
        st = container_stat(ctx, ctr, target)
    exists = st is not None and bool(st)
    is_dir = exists and bool(int(st.get("mode", 0)) & GO_MODE_DIR)
    params = {"path": None, "noOverwriteDirNonDir": True, "copyUIDGID": True if copy_uid_gid else None}
    if src == "-":
        if not is_dir:
            raise CLIError(f'destination "{ctr}:{dst}" must be a directory', 1)
        data = sys.stdin.buffer   # sent as it is read: a file when stdin is one, else piped
        params["path"] = dst_info_path
    else:
        src = _local_abs(src)
        check = src[:-2] if src.endswith("/.") else src.rstrip("/") or "/"
        try:
            local = os.stat(check) if follow else os.lstat(check)
        except FileNotFoundError:
            raise CLIError(f"lstat {check}: no such file or directory", 1) from None
        src_is_dir = statmod.S_ISDIR(local.st_mode)
        if src.endswith("/") and not src_is_dir:
            raise CLIError(f"lstat {src}: not a directory", 1)
        src_base = split_dir_entry(src)[1]
        dst_dir, dst_base = split_dir_entry(dst_info_path)
        if exists and is_dir:
            root_name, target_dir = ("" if src_base == "." else src_base), dst_info_path
        elif exists and src_is_dir:
            raise CLIError("cannot copy directory", 1)
        elif not exists and not src_is_dir and asserts_directory(dst_info_path):
            raise CLIError("no such directory", 1)
        else:
            root_name, target_dir = dst_base, dst_dir
        data = build_archive(src, root_name, follow_link=follow)
        params["path"] = target_dir
    if not _seekable(data):
        data = _spool(data)
    size = os.fstat(data.fileno()).st_size - data.tell()
    try:
        resp = ctx.client.request("PUT", f"/containers/{ctr}/archive", params, raw_body=data,
                                  headers={"Content-Type": "application/x-tar"})
    finally:
        data.close()
    resp.sock.close()
    if not quiet:
        sys.stderr.write(f"Successfully copied {_progress_size(size)} to {ctr}:{dst_info_path}\n")
    return 0


def _seekable(f: Any) -> bool:
    try:
        return f.seekable() and os.path.isfile(f"/proc/self/fd/{f.fileno()}")
    except (OSError, ValueError):
        return False


def _spool(f: Any) -> Any:
    """A pipe's content in a temporary file (its length must be known before sending)."""
    import shutil
    import tempfile

    out = tempfile.TemporaryFile()
    shutil.copyfileobj(f, out, 1 << 20)
    out.seek(0)
    return out
