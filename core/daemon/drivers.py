"""The daemon's drivers: which one of each kind is in use, built once, chosen per request.

The daemon resolves one *default* driver per kind at start-up (from ``--driver`` flags and the
config file; for storage, when nothing is named, the first of overlay, vfs that can run here).
A driver named explicitly that cannot be loaded or cannot run here stops the daemon with a
:class:`DriverError` — never a warning and a fallback.  A request may name other drivers for one
operation (the CLI's ``--driver KIND=NAME``, sent as the ``X-Core-Driver`` header, whose form
and names :func:`core.api.validate.check_driver_header` checks first); those are loaded on first
use and kept.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from core import plugins
from core.contracts.registry import RegistryConfig
from core.daemon.config import DEFAULT_DRIVERS, DaemonConfig
from core.errors import DriverError
from core.hookspecs import KINDS

if TYPE_CHECKING:
    from core.contracts import DriverContext
    from core.contracts.content import ContentStore

log = logging.getLogger("core.drivers")
HEADER = "x-core-driver"


def registry_config(config: DaemonConfig) -> RegistryConfig:
    """The registry settings of the daemon config: ``registry-mirrors`` (Docker Hub's),
    ``mirrors`` (any registry's) and ``insecure-registries``.  ``InvalidArgument`` when one is
    malformed: the daemon does not start with a registry config it cannot follow."""
    return RegistryConfig.from_mapping({
        "mirrors": {"docker.io": list(config.registry_mirrors), **config.mirrors},
        "insecure": list(config.insecure_registries),
    })


class DriverSet:
    """The daemon's drivers.  ``content`` is the kernel's content store, offered to registry
    drivers (with the registry settings of ``config``) through their :class:`DriverContext`."""

    def __init__(self, config: DaemonConfig, content: ContentStore | None = None) -> None:
        self.config = config
        self.content = content
        self.registry = registry_config(config)
        self.defaults: dict[str, str] = {}
        self._instances: dict[tuple[str, str], Any] = {}

    def context(self, kind: str, name: str) -> DriverContext:
        return plugins.context_for(kind, name, self.config.data_root, self.config.exec_root,
                                   self.config.driver_opts.get(kind), content=self.content,
                                   registry=self.registry)

    def resolve_defaults(self) -> None:
        """Choose the default driver of every kind.  Explicit choices must load and run here."""
        for kind in KINDS:
            if kind in self.config.drivers:
                name = self.config.drivers[kind]
                self._load_checked(kind, name)
                self.defaults[kind] = name
                continue
            reasons = []
            for name in DEFAULT_DRIVERS[kind]:
                rep = plugins.report(kind, name, self.context(kind, name))
                if rep.status == plugins.OK:
                    self.defaults[kind] = name
                    break
                reasons.append(f"{name}: {rep.reason}")
            else:
                # no built-in default can run: the daemon still serves, and operations needing
                # this kind fail with the reasons
                log.warning("no %s driver can run here: %s", kind, "; ".join(reasons))
                self.defaults[kind] = DEFAULT_DRIVERS[kind][0]

    def _load_checked(self, kind: str, name: str) -> plugins.LoadedDriver:
        loaded = plugins.load(kind, name)
        try:
            why_not = loaded.probe(self.context(kind, name))
        except Exception as exc:
            raise DriverError(f'{kind} driver "{name}" failed its probe: {type(exc).__name__}: {exc}') from exc
        if why_not:
            raise DriverError(f'{kind} driver "{name}" cannot run here: {why_not}')
        return loaded

    def selection(self, header: str | None) -> dict[str, str]:
        """The drivers of one request: the defaults, overridden by ``X-Core-Driver``."""
        chosen = dict(self.defaults)
        if header:
            for item in header.split(","):
                kind, sep, name = item.strip().partition("=")
                if not sep or not kind or not name:
                    raise DriverError(f'invalid driver selection "{item.strip()}": expected KIND=NAME')
                plugins.check_kind(kind)
                chosen[kind] = name
                self.get(kind, name)  # fail now, before the operation starts
        return chosen

    def get(self, kind: str, name: str | None = None) -> Any:
        """The driver object of ``kind`` (default driver unless ``name``), built on first use."""
        plugins.check_kind(kind)
        name = name or self.defaults[kind]
        key = (kind, name)
        if key not in self._instances:
            loaded = self._load_checked(kind, name)
            context = self.context(kind, name)
            context.root.mkdir(parents=True, exist_ok=True)
            context.exec_root.mkdir(parents=True, exist_ok=True)
            try:
                self._instances[key] = loaded.create(context)
            except DriverError:
                raise
            except Exception as exc:
                raise DriverError(f'{kind} driver "{name}" failed to start: {type(exc).__name__}: {exc}') from exc
        return self._instances[key]

    def reports(self) -> list[plugins.DriverReport]:
        out = []
        for kind in KINDS:
            for name in plugins.available(kind):
                out.append(plugins.report(kind, name, self.context(kind, name)))
        return out

    async def aclose(self) -> None:
        """Close every driver built (``aclose()``, the contracts' one way); a failure is logged
        and the others are closed all the same."""
        for (kind, name), driver in list(self._instances.items()):
            try:
                await driver.aclose()
            except Exception:
                log.exception("closing %s driver %s", kind, name)
        self._instances.clear()
