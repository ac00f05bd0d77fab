"""The streams of the Engine API's hijacked and streamed responses (attach, exec, logs).

- output is framed in docker's 8-byte headers (``[stream, 0, 0, 0, size]``,
  ``application/vnd.docker.multiplexed-stream``) without a TTY, raw with one
  (``application/vnd.docker.raw-stream``);
- a hijacked connection (``101 UPGRADED``) carries raw bytes both ways: stdin is forwarded to
  the process until the client half-closes (with ``StdinOnce`` that closes the process's
  stdin) or types the detach keys (:mod:`core.detachkeys`; the client is detached, the
  container runs on).
"""
from __future__ import annotations

import logging
import struct
from typing import Any

import trio

from core.api.http import Request
from core.errors import CoreError

log = logging.getLogger("core.api.streams")

RAW = "application/vnd.docker.raw-stream"
MUX = "application/vnd.docker.multiplexed-stream"


def frame(stream: int, data: bytes) -> bytes:
    """docker's multiplexed frame: ``[stream, 0, 0, 0, size]`` then the bytes."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def content_type(tty: bool) -> str:
    return RAW if tty else MUX


def wants_upgrade(req: Request) -> bool:
    return "upgrade" in req.headers.get("connection", "").lower() and bool(req.headers.get("upgrade"))


class DetachFilter:
    """Finds the detach sequence in what a client sends on stdin.

    With a terminal every byte is watched, across reads (keys arrive one by one, or together).
    Without one, as docker does, only a read made entirely of the sequence's next bytes counts:
    data piped through ``docker run -i`` may contain ctrl-p ctrl-q anywhere and must pass.
    A partial match that turns out not to be one is forwarded intact.
    """

    def __init__(self, keys: bytes, every_byte: bool) -> None:
        self.keys = keys
        self.every_byte = every_byte
        self.pos = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.keys:
            return data, False
        if not self.every_byte:
            rest = self.keys[self.pos:]
            if data and rest.startswith(data):
                self.pos += len(data)
                if self.pos == len(self.keys):
                    return b"", True
                return b"", False
            held = self.keys[: self.pos]
            self.pos = 0
            return held + data, False
        out = bytearray()
        for b in data:
            while True:
                if b == self.keys[self.pos]:
                    self.pos += 1
                    if self.pos == len(self.keys):
                        self.pos = 0
                        return bytes(out), True
                    break
                if self.pos:
                    out += self.keys[: self.pos]
                    self.pos = 0
                    continue  # the byte may start a new match
                out.append(b)
                break
        return bytes(out), False


async def close_client(stream: Any) -> None:
    with trio.move_on_after(2) as scope:
        scope.shield = True
        try:
            send_eof = getattr(stream, "send_eof", None)
            if send_eof is not None:
                await send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def pump(client: Any, leftover: bytes, att: Any, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
               detach_keys: bytes, stdin_once: bool, before_close: Any = None) -> bool:
    """Copy between a hijacked client connection and an attach stream until the output ends,
    the client goes away or detaches.  Returns True when the client detached.

    ``before_close`` (an async callable) runs when the output has ended, before the client's
    connection closes: an exec's exit code is recorded by then, as docker's clients expect."""
    detached = False
    filt = DetachFilter(detach_keys, every_byte=tty)

    async def output(scope: trio.CancelScope) -> None:
        try:
            while True:
                item = await att.receive()
                if item is None:
                    break
                fd, data = item
                if not data:
                    continue
                if tty or fd == 1:
                    if stdout or tty:
                        await client.send_all(data if tty else frame(1, data))
                elif fd == 2 and stderr:
                    await client.send_all(frame(2, data))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except CoreError as exc:  # the attach stream broke: its output has ended all the same
            log.debug("output of an attach: %s", exc)
        scope.cancel()

    async def input_(scope: trio.CancelScope) -> None:
        nonlocal detached
        data = leftover
        try:
            while True:
                if data:
                    forward, hit = filt.feed(data)
                    if forward and stdin:
                        await att.send_stdin(forward)
                    if hit:
                        detached = True
                        scope.cancel()
                        return
                data = await client.receive_some(65536)
                if not data:
                    if stdin and stdin_once:
                        await att.close_stdin()
                    elif not stdin:
                        pass
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            if not stdin:
                scope.cancel()  # the client went away
        except CoreError as exc:
            log.debug("stdin of an attach: %s", exc)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output, nursery.cancel_scope)
            nursery.start_soon(input_, nursery.cancel_scope)
        if before_close is not None and not detached:
            await before_close()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await att.aclose()
            except CoreError:
                pass
            await close_client(client)
    return detached
