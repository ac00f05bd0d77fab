"""The embedded DNS server of user-defined networks: ``127.0.0.11:53`` inside each container.

Docker gives every container on a user-defined network a resolver at ``127.0.0.11`` that knows
the names of the containers it shares a network with, and forwards everything else to the
host's resolvers.  Here each such container gets one :class:`EmbeddedDNS`: a UDP and a TCP
socket bound to ``127.0.0.11:53`` *inside the container's network namespace* (they are created
by a thread that entered the namespace, :func:`core.netns.run_in`; a socket belongs to the
namespace it was made in for good), served by trio in the daemon, which lives in the host's
namespace — so forwarded queries leave from the host and reach any resolver the host can,
loopback ones included.

What is answered locally is up to an :class:`Answerer` (the network manager: names, aliases and
short IDs of containers on the asker's networks, and their reverse names); everything else is
forwarded, byte for byte, to the answerer's upstream servers in turn (a fresh socket per query,
``timeout`` seconds per server; UDP queries over UDP, TCP over TCP), and answered ``SERVFAIL``
when none answers or there is none (internal networks).

Messages are parsed and built here (RFC 1035): one question, A/AAAA/PTR answers, name
compression when reading, TC when a UDP answer does not fit (512 bytes, or the EDNS size).
"""
from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
from typing import Any, Protocol

import attrs
import trio

from core import netns

log = logging.getLogger("core.engine.networks.dns")

__all__ = ["Answerer", "EmbeddedDNS", "Query", "parse_query", "build_response", "a_record",
           "ptr_record", "encode_name", "reverse_address", "DNS_ADDRESS", "DNS_PORT",
           "FORWARD_TIMEOUT", "TTL"]

DNS_ADDRESS = "127.0.0.11"
DNS_PORT = 53
TTL = 600                 # docker's TTL for container names
FORWARD_TIMEOUT = 4.0     # seconds per upstream server (docker's extIOTimeout)
TCP_IDLE = 10.0           # a TCP client that sends nothing for this long is dropped
MAX_INFLIGHT = 256        # queries of one container being answered at once (more are dropped)

TYPE_A, TYPE_PTR, TYPE_AAAA, TYPE_OPT, TYPE_ANY = 1, 12, 28, 41, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5


class FormatError(ValueError):
    """A message that is not a well-formed DNS query."""


@attrs.frozen
class Query:
    """The parts of a query the server needs.  ``name`` is lower-case, without the final dot."""

    id: int
    flags: int
    name: str
    qtype: int
    qclass: int
    question: bytes          # the question section as received (copied into the answer)
    edns_size: int | None    # the requestor's UDP payload size if it sent an OPT record

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The domain name at ``offset`` (compression followed) and the offset after it."""
    labels: list[str] = []
    end = None
    jumps = 0
    total = 0
    while True:
        if offset >= len(data):
            raise FormatError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise FormatError("truncated compression pointer")
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > 32:
                raise FormatError("compression loop")
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise FormatError("unknown label type")
        offset += 1
        if length == 0:
            break
        label = data[offset:offset + length]
        if len(label) != length:
            raise FormatError("label runs past the end of the message")
        total += length + 1
        if total > 255:
            raise FormatError("name longer than 255 octets")
        labels.append(label.decode("ascii", "replace").lower())
        offset += length
    return ".".join(labels), (end if end is not None else offset)


def _skip_rr(data: bytes, offset: int) -> tuple[int, int, int]:
    """Skip one resource record; return (type, class, offset after it)."""
    _name, offset = read_name(data, offset)
    if offset + 10 > len(data):
        raise FormatError("truncated resource record")
    rtype, rclass, _ttl, rdlen = struct.unpack("!HHIH", data[offset:offset + 10])
    offset += 10 + rdlen
    if offset > len(data):
        raise FormatError("truncated resource record data")
    return rtype, rclass, offset


def parse_query(data: bytes) -> Query:
    """Parse a query with exactly one question.  ``FormatError`` otherwise."""
    if len(data) < 12:
        raise FormatError("message shorter than a header")
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
    if flags & 0x8000:
        raise FormatError("a response, not a query")
    if qd != 1:
        raise FormatError(f"{qd} questions")
    name, offset = read_name(data, 12)
    if offset + 4 > len(data):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", data[offset:offset + 4])
    question = data[12:offset + 4]
    offset += 4
    edns_size = None
    try:
        for _ in range(an + ns):
            _t, _c, offset = _skip_rr(data, offset)
        for _ in range(ar):
            rtype, rclass, offset = _skip_rr(data, offset)
            if rtype == TYPE_OPT:
                edns_size = max(512, rclass)
    except FormatError:
        edns_size = None  # a broken additional section does not spoil the question
    return Query(ident, flags, name, qtype, qclass, question, edns_size)


def encode_name(name: str) -> bytes:
    """A name in wire format (no compression)."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if not label:
            continue
        raw = label.encode("ascii", "replace")[:63]
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def a_record(address: str) -> tuple[int, bytes]:
    return TYPE_A, ipaddress.IPv4Address(address).packed


def aaaa_record(address: str) -> tuple[int, bytes]:
    return TYPE_AAAA, ipaddress.IPv6Address(address).packed


def ptr_record(name: str) -> tuple[int, bytes]:
    return TYPE_PTR, encode_name(name)


def reverse_address(name: str) -> str | None:
    """``4.3.2.1.in-addr.arpa`` → ``1.2.3.4``; None for anything else."""
    suffix = ".in-addr.arpa"
    if not name.endswith(suffix):
        return None
    parts = name[:-len(suffix)].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


def build_response(query: Query, rcode: int, answers: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
                   limit: int | None = None, ttl: int = TTL) -> bytes:
    """The answer to ``query``: its question, ``answers`` (type, rdata) for the question's name.

    ``limit`` is the UDP size: answers that do not fit are dropped and TC is set.
    """
    flags = 0x8000 | (query.flags & 0x7900) | 0x0080 | (rcode & 0xF)  # QR, opcode, RD; RA
    records = [struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(rdata)) + rdata
               for rtype, rdata in answers]
    body = query.question
    kept = records
    if limit is not None:
        size = 12 + len(body)
        kept = []
        for record in records:
            if size + len(record) > limit:
                flags |= 0x0200  # TC
                break
            kept.append(record)
            size += len(record)
    header = struct.pack("!HHHHHH", query.id, flags, 1, len(kept), 0, 0)
    return header + body + b"".join(kept)


def error_for(data: bytes, rcode: int) -> bytes | None:
    """A bare error answer to a message that could not be parsed (None if not even a query)."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    ident, flags = struct.unpack("!HH", data[:4])
    return struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


class Answerer(Protocol):
    """What one container's server asks its owner."""

    def local(self, query: Query) -> tuple[int, list[tuple[int, bytes]]] | None:
        """(rcode, answers) for a name this side knows, or None to forward the query."""

    def upstreams(self) -> list[tuple[str, int]]:
        """The servers to forward to, in order (empty: answer SERVFAIL)."""


def _open_sockets(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((address, port))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address, port))
        tcp.listen(64)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


async def _recv_exactly(stream: trio.SocketStream, n: int, buf: bytearray) -> bytes | None:
    while len(buf) < n:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


class EmbeddedDNS:
    """One container's DNS server.  ``await nursery.start(server.run)`` opens the sockets in
    the namespace at ``netns_path`` (errors are raised to the caller) and serves until
    :meth:`stop` or cancellation; the sockets are closed when it returns."""

    def __init__(self, netns_path: str, answerer: Answerer, *, address: str = DNS_ADDRESS,
                 port: int = DNS_PORT, timeout: float = FORWARD_TIMEOUT) -> None:
        self.netns_path = netns_path
        self.answerer = answerer
        self.address = address
        self.port = port
        self.timeout = timeout
        self._scope: trio.CancelScope | None = None
        self._stopped = False
        self._inflight = 0
        self.done = trio.Event()

    def stop(self) -> None:
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            udp_raw, tcp_raw = await trio.to_thread.run_sync(
                netns.run_in, self.netns_path, _open_sockets, self.address, self.port)
            udp = trio.socket.from_stdlib_socket(udp_raw)
            tcp = trio.socket.from_stdlib_socket(tcp_raw)
            with udp, tcp:
                with trio.CancelScope() as self._scope:
                    if self._stopped:
                        self._scope.cancel()
                    task_status.started(self)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._serve_udp, udp, nursery)
                        nursery.start_soon(self._serve_tcp, tcp, nursery)
        finally:
            self.done.set()

    # ------------------------------------------------------------------ serving
    async def _serve_udp(self, sock: Any, nursery: trio.Nursery) -> None:
        while True:
            try:
                data, addr = await sock.recvfrom(65535)
            except OSError as exc:
                log.debug("dns %s: udp receive: %s", self.netns_path, exc)
                continue
            if self._inflight >= MAX_INFLIGHT:
                continue
            self._inflight += 1
            nursery.start_soon(self._udp_one, sock, data, addr)

    async def _udp_one(self, sock: Any, data: bytes, addr: Any) -> None:
        try:
            reply = await self.answer(data, tcp=False)
            if reply:
                await sock.sendto(reply, addr)
        except OSError as exc:
            log.debug("dns %s: udp answer: %s", self.netns_path, exc)
        finally:
            self._inflight -= 1

    async def _serve_tcp(self, sock: Any, nursery: trio.Nursery) -> None:
        listener = trio.SocketListener(sock)
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                log.debug("dns %s: tcp accept: %s", self.netns_path, exc)
                await trio.sleep(0.05)
                continue
            nursery.start_soon(self._tcp_client, stream)

    async def _tcp_client(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            async with stream:
                while True:
                    data = None
                    with trio.move_on_after(TCP_IDLE):  # waiting for the next query only
                        head = await _recv_exactly(stream, 2, buf)
                        if head is not None:
                            data = await _recv_exactly(stream, struct.unpack("!H", head)[0], buf)
                    if data is None:
                        return  # closed, or idle too long
                    reply = await self.answer(data, tcp=True)
                    if reply is None:
                        return
                    await stream.send_all(struct.pack("!H", len(reply)) + reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    # ------------------------------------------------------------------ answering
    async def answer(self, data: bytes, tcp: bool = False) -> bytes | None:
        """The reply to one message (None: send nothing)."""
        try:
            query = parse_query(data)
        except FormatError:
            return error_for(data, FORMERR)
        if query.opcode != 0:
            return build_response(query, NOTIMP)
        limit = None if tcp else (query.edns_size or 512)
        try:
            local = self.answerer.local(query)
        except Exception:
            log.exception("dns: answering %s", query.name)
            return build_response(query, SERVFAIL)
        if local is not None:
            rcode, answers = local
            return build_response(query, rcode, answers, limit)
        for host, port in self.answerer.upstreams():
            try:
                if tcp:
                    reply = await self._forward_tcp(data, host, port)
                else:
                    reply = await self._forward_udp(data, host, port)
            except OSError as exc:
                log.debug("dns: forwarding %s to %s:%s: %s", query.name, host, port, exc)
                reply = None
            if reply is not None:
                return reply
        return build_response(query, SERVFAIL)

    async def _forward_udp(self, data: bytes, host: str, port: int) -> bytes | None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
            await sock.connect((host, port))
            await sock.send(data)
            with trio.move_on_after(self.timeout):
                while True:
                    reply = await sock.recv(65535)
                    if len(reply) >= 12 and reply[:2] == data[:2] and reply[2] & 0x80:
                        return reply
        return None

    async def _forward_tcp(self, data: bytes, host: str, port: int) -> bytes | None:
        with trio.move_on_after(self.timeout):
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(struct.pack("!H", len(data)) + data)
                buf = bytearray()
                head = await _recv_exactly(stream, 2, buf)
                if head is None:
                    return None
                return await _recv_exactly(stream, struct.unpack("!H", head)[0], buf)
        return None


def shuffled(items: list[Any]) -> list[Any]:
    """Answers in random order, as docker's resolver gives them (poor man's load balancing)."""
    out = list(items)
    random.shuffle(out)
    return out
