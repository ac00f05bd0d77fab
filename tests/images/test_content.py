"""The content store (core.engine.images.content): verified, atomic, resumable, bounded."""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

from core.engine.images.content import INLINE_WRITE_MAX, ContentStore
from core.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unavailable
from core.types import Descriptor, Digest
from tests.support.aio import collect

REPO = Path(__file__).resolve().parents[2]
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def desc_of(data: bytes, algorithm: str = "sha256") -> Descriptor:
    return Descriptor(LAYER, Digest.from_bytes(data, algorithm), len(data))


def chunks(data: bytes, size: int = 65536):
    return [data[i:i + size] for i in range(0, len(data), size)]




def ingest_dirs(store: ContentStore) -> list[Path]:
    return list((store.root / "ingest").iterdir())


@pytest.fixture
def store(tmp_path):
    return ContentStore(tmp_path / "content")


def test_ingest_commit_then_read(store):
    data = os.urandom(300_000)
    desc = desc_of(data)

    async def main():
        with store.ingest("blob-1", desc) as w:
            assert w.offset == 0
            for c in chunks(data):
                await w.write(c)
            assert w.offset == len(data)
            assert not store.exists(desc.digest)  # invisible until committed
            assert await w.commit() == desc
        assert await collect(store.open(desc.digest)) == data
        assert await collect(store.open(desc.digest, offset=100, chunk_size=7000)) == data[100:]
        assert store.read_bytes(desc.digest, len(data)) == data

    trio.run(main)
    assert store.exists(desc.digest) and store.size(desc.digest) == len(data)
    path = store.path(desc.digest)
    assert path == store.root / "blobs" / "sha256" / desc.digest.hex
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert ingest_dirs(store) == [] and store.ingests() == []
    infos = list(store.walk())
    assert [(i.digest, i.size) for i in infos] == [(desc.digest, len(data))]
    usage = store.usage()
    assert (usage.count, usage.size) == (1, len(data))


def test_digest_mismatch_stores_nothing(store):
    data = b"the real content\n" * 100
    bad = bytearray(data)
    bad[10] ^= 0xFF
    desc = desc_of(data)

    async def main():
        with store.ingest("blob-x", desc) as w:
            await w.write(bytes(bad))
            with pytest.raises(InvalidArgument, match="unexpected digest"):
                await w.commit()

    trio.run(main)
    assert not store.exists(desc.digest)
    assert ingest_dirs(store) == [] and list(store.walk()) == []


def test_short_content_stores_nothing(store):
    data = os.urandom(1000)
    desc = desc_of(data)

    async def main():
        with store.ingest("blob-short", desc) as w:
            await w.write(data[:999])
            with pytest.raises(InvalidArgument, match="unexpected size 999, expected 1000"):
                await w.commit()

    trio.run(main)
    assert not store.exists(desc.digest) and ingest_dirs(store) == []


def test_write_past_expected_size_fails_at_once(store):
    data = os.urandom(1000)
    desc = desc_of(data)

    async def main():
        with store.ingest("blob-long", desc) as w:
            await w.write(data[:600])
            with pytest.raises(InvalidArgument, match="more data than the expected 1000 bytes"):
                await w.write(os.urandom(401))
            assert ingest_dirs(store) == []  # discarded

    trio.run(main)
    assert not store.exists(desc.digest)


def test_resume_after_close_rehashes_the_prefix(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    desc = desc_of(data)
    half = len(data) // 2

    async def first():
        store = ContentStore(tmp_path / "content")
        with store.ingest("blob-r", desc) as w:
            for c in chunks(data[:half]):
                await w.write(c)
        # left without commit: kept, not visible
        assert not store.exists(desc.digest)
        [status] = store.ingests()
        assert (status.ref, status.offset, status.expected, status.active) == \
            ("blob-r", half, desc, False)

    async def resume(consume_prefix: bool):
        store = ContentStore(tmp_path / "content")  # a new object, as after a restart
        with store.ingest("blob-r", desc) as w:
            assert w.offset == half
            if consume_prefix:
                assert await collect(w.prefix()) == data[:half]
            for c in chunks(data[half:]):
                await w.write(c)
            await w.commit()
        assert store.exists(desc.digest)
        assert hashlib.sha256(store.path(desc.digest).read_bytes()).hexdigest() == desc.digest.hex

    trio.run(first)
    trio.run(resume, True)
    ContentStore(tmp_path / "content").delete(desc.digest)
    trio.run(first)
    trio.run(resume, False)  # write() hashes the prefix by itself


def test_resume_after_the_writer_was_killed(tmp_path):
    """A process killed (SIGKILL) mid-ingest leaves no blob, and the ingest resumes."""
    root = tmp_path / "content"
    data = os.urandom(2 * 1024 * 1024)
    (tmp_path / "data").write_bytes(data)
    desc = desc_of(data)
    script = textwrap.dedent(f"""
        import os, signal, trio
        from core.engine.images.content import ContentStore
        from core.types import Descriptor
        data = open({str(tmp_path / "data")!r}, "rb").read()
        desc = Descriptor.from_json({desc.to_json()!r})
        async def main():
            w = ContentStore({str(root)!r}).ingest("blob-k", desc)
            for i in range(0, 1024 * 1024 + 5000, 65536):
                await w.write(data[i:i + 65536])
            print(w.offset, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        trio.run(main)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    written = int(proc.stdout.strip())
    store = ContentStore(root)
    assert not store.exists(desc.digest)

    async def main():
        with store.ingest("blob-k", desc) as w:
            assert w.offset == written
            assert await collect(w.prefix()) == data[:written]
            await w.write(data[written:])
            await w.commit()

    trio.run(main)
    assert store.path(desc.digest).read_bytes() == data


def test_one_writer_per_ref_and_committed_blobs_exist(tmp_path):
    data = os.urandom(5000)
    desc = desc_of(data)

    async def main():
        a = ContentStore(tmp_path / "c")
        b = ContentStore(tmp_path / "c")  # same root, another object: still one writer
        with a.ingest("blob-c", desc) as w:
            with pytest.raises(Conflict, match="in use"):
                b.ingest("blob-c", desc)
            await w.write(data)
            await w.commit()
        with pytest.raises(AlreadyExists):
            b.ingest("blob-c", desc)
        with pytest.raises(AlreadyExists):
            b.ingest("another-ref", desc)

    trio.run(main)


def test_other_expectation_or_overlong_partial_starts_over(store):
    data = os.urandom(4000)
    other = os.urandom(4000)

    async def main():
        with store.ingest("ref", desc_of(other)) as w:
            await w.write(other[:3000])
        with store.ingest("ref", desc_of(data)) as w:  # the same ref, another blob
            assert w.offset == 0
            await w.write(data[:2000])
        # a partial longer than expected (a corrupt ingest) is not trusted
        with open(ingest_dirs(store)[0] / "data", "ab") as f:
            f.write(os.urandom(5000))
        with store.ingest("ref", desc_of(data)) as w:
            assert w.offset == 0
            await w.write(data)
            await w.commit()

    trio.run(main)
    assert store.exists(desc_of(data).digest)


def test_truncate_starts_over(store):
    data = os.urandom(10_000)

    async def main():
        with store.ingest("t", desc_of(data)) as w:
            await w.write(os.urandom(4000))
            await w.truncate()
            assert w.offset == 0
            await w.write(data)
            await w.commit()

    trio.run(main)
    assert store.exists(desc_of(data).digest)


def test_cleanup_ingests(store):
    old, new, active = os.urandom(100), os.urandom(100), os.urandom(100)

    async def main():
        for d in (old, new):
            with store.ingest(f"blob-{len(d)}-{d[:4].hex()}", desc_of(d)) as w:
                await w.write(d[:50])
        for path in ingest_dirs(store):
            if (path / "ref").read_text().endswith(old[:4].hex()):
                for f in path.iterdir():
                    os.utime(f, (time.time() - 7200, time.time() - 7200))
        with store.ingest("active", desc_of(active)) as w:
            await w.write(active[:10])
            os.utime(w.directory / "data", (time.time() - 7200, time.time() - 7200))
            assert store.cleanup_ingests(3600) == 1  # the old one, not the active one
            assert sorted(s.ref for s in store.ingests()) == sorted(
                ["active", f"blob-100-{new[:4].hex()}"])
            assert store.cleanup_ingests(0) == 1  # everything not in use
            assert [s.ref for s in store.ingests()] == ["active"]
            assert [s.active for s in store.ingests()] == [True]

    trio.run(main)


def test_bounded_read_delete_and_missing(store):
    data = os.urandom(2048)
    desc = desc_of(data)

    async def main():
        await store.write_blob(data, desc)
        await store.write_blob(data, desc)  # already there: nothing to do
        with pytest.raises(InvalidArgument, match="larger than the 2047 bytes allowed"):
            store.read_bytes(desc.digest, 2047)
        assert store.read_bytes(desc.digest, 2048) == data
        with pytest.raises(InvalidArgument):
            await store.write_blob(b"y", desc_of(b"x"))
        store.delete(desc.digest)
        for call in (lambda: store.size(desc.digest), lambda: store.path(desc.digest),
                     lambda: store.delete(desc.digest)):
            with pytest.raises(NotFound):
                call()
        with pytest.raises(NotFound):
            store.read_bytes(desc.digest, 4096)
        with pytest.raises(NotFound):
            await collect(store.open(desc.digest))

    trio.run(main)
    assert not store.exists(desc.digest) and store.usage().count == 0


def test_big_chunks_and_sha512(store):
    data = os.urandom(INLINE_WRITE_MAX * 3 + 5)  # written in a worker thread
    desc = desc_of(data, "sha512")

    async def main():
        with store.ingest("big", desc) as w:
            await w.write(data)
            await w.commit()

    trio.run(main)
    assert store.path(desc.digest) == store.root / "blobs" / "sha512" / desc.digest.hex
    assert [i.digest for i in store.walk()] == [desc.digest]


@pytest.fixture
def tiny_fs(tmp_path):
    """A 256 KiB tmpfs (needs root), unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_unavailable_and_gives_the_space_back(tiny_fs):
    store = ContentStore(tiny_fs / "content")
    data = os.urandom(1024 * 1024)
    desc = desc_of(data)

    async def main():
        with store.ingest("blob-big", desc) as w:
            with pytest.raises(Unavailable, match="no space left on device"):
                for c in chunks(data):
                    await w.write(c)

    trio.run(main)
    assert ingest_dirs(store) == [] and not store.exists(desc.digest)
    small = os.urandom(1000)  # the space was given back: a small blob still fits
    trio.run(store.write_blob, small, desc_of(small))
    assert store.exists(desc_of(small).digest)
