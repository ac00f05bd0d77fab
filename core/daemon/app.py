"""``core daemon``: owns the state, the drivers, and serves the Engine API on a unix socket.

Start-up order: lock the data root (a second daemon on it refuses to start), open the state
database, resolve the drivers (an explicitly chosen driver that cannot load stops the daemon with
exit code 125), bind the socket (mode 0660, group ``core`` if it exists), write the pid file,
serve (listen backlog: the kernel's ``somaxconn``, as Go's).  SIGTERM or SIGINT shuts down
gracefully: the listener closes, in-flight requests are cancelled, drivers closed, socket and pid
file removed.  Containers are not stopped by any of it.

Each request is routed (:meth:`Daemon.dispatch`: the ``/vX.Y`` prefix, docker's 404), checked by
:mod:`core.api.validate` (its path, query, ``X-Core-Driver`` header and JSON body: a 400 naming
the field before any handler runs), then handed to its route's handler.
"""
from __future__ import annotations

import errno
import fcntl
import grp
import logging
import os
import re
import signal
import socket as pysocket
import sys
from typing import Any, Callable

import trio

from core import API_VERSION, MIN_API_VERSION, __version__
from core.daemon.config import DaemonConfig
from core.daemon.drivers import HEADER, DriverSet
from core.api import validate
from core.api.http import HTTPServer, Request, Response, Router, dispatch_errors, error_response, listen_backlog
from core import plugins
from core.errors import CoreError
from core.hookspecs import KINDS
from core.engine.containers import store as _containers
from core.engine.events import Events
from core.engine.images import store as _images
from core.engine.networks import service as _networks
from core.engine.state import Migration, State
from core.engine import volumes as _volumes

log = logging.getLogger("core.daemon")
VERSIONED = re.compile(r"^/v([0-9]+)\.([0-9]+)(/.*)$")
SERVER_HEADER = f"core/{__version__} (linux)"
# on every response, as dockerd's version middleware sends them
VERSION_HEADERS = (("Api-Version", API_VERSION), ("Docker-Experimental", "false"), ("Ostype", "linux"))
# every table of the state database, by the engine service that keeps it
MIGRATIONS: tuple[Migration, ...] = (_images.MIGRATION, _volumes.MIGRATION, _containers.MIGRATION,
                                     _networks.MIGRATION)


def _version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


class StartupError(CoreError):
    """The daemon cannot start (lock taken, socket in use)."""


class Daemon:
    """The daemon's state and its API: :meth:`open` builds and wires the engine services and
    registers every route table of :mod:`core.api` (:meth:`_routes`)."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.router = Router()
        # what ``GET /info`` counts (containers, images): name -> callable, filled at open()
        self.info_counters: dict[str, Callable[[], int]] = {}
        self.drivers: DriverSet | None = None  # built at open(), with the content store
        self.state: State | None = None
        self.engine_id = ""
        self._lock_fd: int | None = None
        self.events = Events()
        self.content: Any = None
        self.images: Any = None
        self.image_service: Any = None  # core.engine.images.service.Images
        self.volumes: Any = None        # core.engine.volumes.VolumeStore
        self.volume_service: Any = None  # core.engine.volume_service.Volumes
        self.containers: Any = None     # core.engine.containers.service.Containers
        self.networks: Any = None       # core.engine.networks.service.NetworkManager
        self.swarm: Any = None          # core.engine.swarm.service.SwarmService
        self.swarm_services: Any = None  # core.engine.swarm.services.SwarmServices

    # -- start-up ------------------------------------------------------------------------------

    def lock(self) -> None:
        root = self.config.data_root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o711)
        fd = os.open(root / "core.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"another core daemon (pid {holder}) is already running with data root {root}; "
                "refusing to start a second one"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def open(self) -> None:
        """Everything before serving: lock, directories, state, drivers; then every engine
        service is built, in dependency order, each given its collaborators (the one place
        where services are wired), and their routes registered."""
        self.lock()
        self.config.exec_root.mkdir(parents=True, exist_ok=True)
        self.state = State(self.config.data_root / "state.db", MIGRATIONS)
        self.engine_id = self.state.get_meta("engine-id") or ""
        if not self.engine_id:
            import uuid

            self.engine_id = str(uuid.uuid4())
            self.state.set_meta("engine-id", self.engine_id)
        self._build_services()

    def _build_services(self) -> None:
        from core.engine.containers.files import ContainerFiles, Directory
        from core.engine.containers.service import Containers
        from core.engine.containers.store import ContainerStore
        from core.engine.images.content import ContentStore
        from core.engine.images.service import Images
        from core.engine.images.store import ImageStore
        from core.engine.networks.service import NetworkManager
        from core.engine.volume_service import Volumes
        from core.engine.volumes import VolumeStore

        root = self.config.data_root
        self.content = ContentStore(root / "content")
        # downloads cut by a crash stay resumable for a day, then go
        self.content.cleanup_ingests(max_age=24 * 3600)
        # the container rows first: the image, volume and network services ask about containers
        container_store = ContainerStore(self.state)
        container_files = ContainerFiles(root / "containers")
        self.images = ImageStore(self.state, users=container_store)
        self.info_counters["Images"] = self.images.count
        self.drivers = DriverSet(self.config, content=self.content)
        self.image_service = Images(store=self.images, content=self.content, drivers=self.drivers,
                                    events=self.events)
        self.drivers.resolve_defaults()
        self.volumes = VolumeStore(self.state, root / "volumes", users=container_store)
        self.volume_service = Volumes(self.volumes, self.events)
        from core.api.system import mem_total
        from core.engine.swarm.service import LocalEngine, SwarmService

        drivers = self.drivers
        self.swarm = SwarmService(self.config.data_root, engine_version=__version__,
                                  cpus=os.cpu_count() or 1, memory=mem_total(), events=self.events,
                                  local_engine=lambda: LocalEngine(
                                      containers=self.containers, images=self.image_service,
                                      events=self.events, drivers=lambda: drivers.selection(None),
                                      networking=lambda atts: self.networks.swarm.task_networking(atts),
                                      published_check=lambda atts, sid: self.networks.swarm.check_published(
                                          atts, sid)))
        self.networks = NetworkManager(self.state, self.drivers, exec_root=self.config.exec_root,
                                       containers=Directory(container_store, container_files), events=self.events,
                                       default_ipv6=(self.config.fixed_cidr_v6 or "auto") if self.config.ipv6
                                       else None,
                                       cluster=self.swarm.networks)
        self.containers = Containers(store=container_store, files=container_files, drivers=self.drivers,
                                     images=self.images, content=self.content, volumes=self.volumes,
                                     networks=self.networks, events=self.events)
        self.info_counters.update(self.containers.counters())
        from core.engine.swarm.services import SwarmServices

        self.swarm_services = SwarmServices(self.swarm, resolve_image=self._resolve_image, logs=self.swarm)
        self._routes()

    async def _resolve_image(self, image: str, auth: str) -> str | None:
        """A service image's digest from the registry (``X-Registry-Auth`` as sent), for the
        services front to pin it; None when the registry does not say."""
        import base64
        import json

        from core.reference import parse_reference

        creds = None
        if auth:
            try:
                creds = json.loads(base64.urlsafe_b64decode(auth + "=" * (-len(auth) % 4))) or None
            except ValueError:
                creds = None
        answer = await self.image_service.distribution(parse_reference(image), auth=creds,
                                                       registry=self.drivers.defaults["registry"])
        return answer["Descriptor"].get("digest")

    def _routes(self) -> None:
        """Every route table of the Engine API, each handler given the service it calls; the
        501/503 answers of what core does not serve last (they never shadow a served route)."""
        from core.api import containers, events, images, networks, swarm, system, unimplemented, volumes
        from core.api import services as service_api

        for table, services in ((system.ROUTES, self), (events.ROUTES, self), (images.ROUTES, self),
                                (containers.ROUTES, self.containers), (volumes.ROUTES, self.volume_service),
                                (networks.ROUTES, self.networks), (swarm.ROUTES, self.swarm),
                                (service_api.ROUTES, self.swarm_services),
                                (unimplemented.ROUTES, None)):
            self.router.include(table, services)

    def check_socket(self) -> None:
        """Refuse to start when another daemon answers on our socket; remove a stale one.  Called
        before anything is created, so a refused daemon leaves no trace."""
        path = self.config.socket
        if path.exists() or path.is_symlink():
            probe = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # stale: nobody answers
            else:
                raise StartupError(f"another daemon is already listening on {path}; refusing to start")
            finally:
                probe.close()

    def bind(self) -> trio.socket.SocketType:
        path = self.config.socket
        path.parent.mkdir(parents=True, exist_ok=True)
        self.check_socket()
        sock = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        try:
            os.chown(path, 0, grp.getgrnam(self.config.group).gr_gid)
        except KeyError:
            pass
        except PermissionError:
            pass
        sock.listen(listen_backlog())
        return trio.socket.from_stdlib_socket(sock)

    # -- requests ------------------------------------------------------------------------------

    def streams_body(self, method: str, path: str) -> bool:
        match = VERSIONED.match(path)
        return self.router.streams_body(method, match.group(3) if match else path)

    async def dispatch(self, request: Request) -> Response:
        match = VERSIONED.match(request.path)
        if match:
            version = f"{int(match.group(1))}.{int(match.group(2))}"
            request.path = match.group(3)
            v = _version_tuple(version)
            if v < _version_tuple(MIN_API_VERSION):
                return error_response(
                    400,
                    f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                    "please upgrade your client to a newer version",
                )
            if v > _version_tuple(API_VERSION):
                return error_response(
                    400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
                )
            request.api_version = version
        else:
            request.api_version = API_VERSION
        handler, params, pattern = self.router.match(request.method, request.path)
        if handler is None:
            return error_response(404, "page not found")
        request.params, request.pattern = params, pattern

        async def run(req: Request) -> Response:
            validate.check_request(req, pattern)   # 400 naming the field, before the handler
            header = req.headers.get(HEADER)
            validate.check_driver_header(header, plugins.available, KINDS)
            req.drivers = self.drivers.selection(header)
            return await handler(req)

        return await dispatch_errors(run, request)

    # -- lifecycle -----------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until SIGTERM/SIGINT or cancellation; reports readiness through ``task_status``."""
        pidfile = self.config.exec_root / "core.pid"
        # signals are caught before the socket exists: a client that sees the socket may stop us
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            sock = self.bind()
            pidfile.write_text(f"{os.getpid()}\n")
            server = HTTPServer(self.dispatch, SERVER_HEADER, self.streams_body, headers=VERSION_HEADERS)
            listener = trio.SocketListener(sock)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._on_signal, signals, nursery.cancel_scope)
                    if self.networks is not None:
                        await nursery.start(self.networks.serve)
                    if self.image_service is not None:
                        await nursery.start(self.image_service.serve)
                    if self.swarm is not None:  # re-attaches to its swarm in the background
                        await nursery.start(self.swarm.serve)
                    if self.containers is not None:  # re-adopt running containers before answering
                        await nursery.start(self.containers.serve)
                    await nursery.start(trio.serve_listeners, server.handle, [listener])
                    log.info("core daemon %s serving on unix://%s (data root %s)", __version__,
                             self.config.socket, self.config.data_root)
                    task_status.started()
            finally:
                with trio.CancelScope(shield=True):
                    await self.aclose()
                    for path in (self.config.socket, pidfile):
                        try:
                            path.unlink()
                        except FileNotFoundError:
                            pass

    async def _on_signal(self, signals: Any, scope: trio.CancelScope) -> None:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            scope.cancel()
            return

    async def aclose(self) -> None:
        if self.drivers is not None:
            await self.drivers.aclose()
        if self.state is not None:
            self.state.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def run(config: DaemonConfig) -> int:
    """Run the daemon in the foreground; return the process exit code."""
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    daemon = Daemon(config)
    try:
        daemon.check_socket()
        daemon.open()
    except CoreError as exc:
        from core.errors import DriverError

        log.error("%s", exc)
        print(f"core daemon: {exc}", file=sys.stderr)
        trio.run(daemon.aclose)
        return 125 if isinstance(exc, DriverError) else 1
    try:
        trio.run(daemon.serve)
    except StartupError as exc:
        print(f"core daemon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0

