"""The bridge driver's port proxy: one small process per endpoint with published ports.

It does what ``docker-proxy`` does for dockerd: it holds the published host ports (the
listening TCP sockets, the bound UDP sockets) for as long as the endpoint lives, so no other
program can take them and a container's restart never finds its port gone; and it forwards
what reaches those sockets to the container.  IPv4 traffic to a published port is normally
DNAT-ed by the kernel before it reaches the socket (see :mod:`drivers.net_bridge.nft`); IPv6
traffic (``[::]:P``, ``[::1]:P``) has no NAT to an IPv4 container, so it is this process that
carries it: connections are accepted here and opened again to the container's address.

The driver binds the sockets itself (so a port taken is an error at once, in the daemon) and
hands them over as inherited file descriptors::

    python3 -I -S proxy.py ENDPOINT_ID NETNS@DEV:INODE '[{"fd": 3, "proto": "tcp", "to": ["172.17.0.2", 80]}]'

``ENDPOINT_ID`` is only there so that the process can be told apart (the driver checks a PID's
command line before it signals it).  Only the standard library is used (``-I -S``: no site
packages, a quick start).  The process runs in a session of its own, outlives the daemon like
the NAT rules do, and ends on ``SIGTERM`` (``leave``) — or by itself once the endpoint's
network namespace ``NETNS`` is gone (checked every :data:`LIFELINE` seconds: the file is not
the namespace ``DEV:INODE`` the driver saw any more — removed, or another mounted there), so that no proxy holds ports for an endpoint that can no
longer be reached (a driver state wiped, a test harness that died).  UDP flows are kept per
client address and forgotten after :data:`UDP_IDLE` seconds without traffic.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

UDP_IDLE = 90.0
LIFELINE = 2.0
BUFFER = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(BUFFER)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        pass


async def _serve_tcp(sock: socket.socket, target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    server = await asyncio.start_server(handle, sock=sock)
    async with server:
        await server.serve_forever()


class _UDPFront:
    """One published UDP socket: a connected socket to the container per client address."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 target: tuple[str, int]) -> None:
        self.loop, self.sock, self.target = loop, sock, target
        self.flows: dict[tuple, tuple[socket.socket, list[float]]] = {}
        sock.setblocking(False)
        loop.add_reader(sock, self._from_client)

    def _from_client(self) -> None:
        try:
            data, client = self.sock.recvfrom(BUFFER)
        except OSError:
            return
        flow = self.flows.get(client)
        if flow is None:
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.setblocking(False)
            try:
                up.connect(self.target)
            except OSError:
                up.close()
                return
            flow = self.flows[client] = (up, [self.loop.time()])
            self.loop.add_reader(up, self._from_container, client)
        flow[1][0] = self.loop.time()
        try:
            flow[0].send(data)
        except OSError:
            pass

    def _from_container(self, client: tuple) -> None:
        flow = self.flows.get(client)
        if flow is None:
            return
        try:
            data = flow[0].recv(BUFFER)
        except OSError:
            return
        flow[1][0] = self.loop.time()
        try:
            self.sock.sendto(data, client)
        except OSError:
            pass

    async def expire(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE / 3)
            now = self.loop.time()
            for client, (up, seen) in list(self.flows.items()):
                if now - seen[0] > UDP_IDLE:
                    self.loop.remove_reader(up)
                    up.close()
                    del self.flows[client]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


async def _lifeline(netns: str) -> None:
    """Return once the namespace ``PATH@DEV:INODE`` is gone (``PATH`` names another one, or
    nothing).  Without ``@DEV:INODE``, wait for ever."""
    path, sep, ident = netns.rpartition("@")
    try:
        dev, ino = (int(x) for x in ident.split(":"))
    except ValueError:
        sep = ""
    if not sep:
        await asyncio.Event().wait()
    while _identity(path) == (dev, ino):
        await asyncio.sleep(LIFELINE)


async def _main(netns: str, spec: list[dict]) -> None:
    loop = asyncio.get_running_loop()
    tasks = []
    for item in spec:
        family = socket.AF_INET6 if ":" in item.get("host", "") else socket.AF_INET
        kind = socket.SOCK_STREAM if item["proto"] == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind, fileno=item["fd"])
        target = (str(item["to"][0]), int(item["to"][1]))
        if item["proto"] == "tcp":
            tasks.append(_serve_tcp(sock, target))
        else:
            tasks.append(_UDPFront(loop, sock, target).expire())
    serving = asyncio.ensure_future(asyncio.gather(*tasks))
    watching = asyncio.ensure_future(_lifeline(netns))
    await asyncio.wait([serving, watching], return_when=asyncio.FIRST_COMPLETED)
    for future in (serving, watching):
        future.cancel()
    await asyncio.gather(serving, watching, return_exceptions=True)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: proxy.py ENDPOINT_ID NETNS SPEC", file=sys.stderr)
        return 2
    try:
        asyncio.run(_main(argv[2], json.loads(argv[3])))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
