"""Finding, loading and validating drivers.

Drivers are found **only** through entry points, in the groups ``core.<kind>``; the kernel never
imports a driver module by name.  Loading goes through stevedore's ``DriverManager`` with a
callback that raises (stevedore's default is to log and drop a broken plugin), then the loaded
object is registered with a pluggy ``PluginManager`` holding the specs of its kind and validated.

Every failure is one :class:`core.errors.DriverError` whose message names the kind, the name and
the drivers that are available: unknown kind, unknown name, a module that fails to import, hooks
that match no spec or take arguments the spec does not have, a missing factory hook, two
distributions claiming one name.  A driver whose probe says the host cannot run it is *skipped*:
listed with the reason, and selecting it fails with that reason.
"""
from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy
import stevedore
import stevedore.exception

from core.errors import DriverError
from core.hookspecs import KINDS, PROJECT, SPECS

if TYPE_CHECKING:
    from core.contracts import DriverContext
    from core.contracts.content import ContentStore
    from core.contracts.registry import RegistryConfig

OK, SKIPPED, ERROR = "ok", "skipped", "error"


def group(kind: str) -> str:
    return f"core.{kind}"


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise DriverError(f'unknown driver kind "{kind}" (kinds: {", ".join(KINDS)})')


def entry_points(kind: str) -> dict[str, list[importlib.metadata.EntryPoint]]:
    """Entry points of ``kind`` by name; a name with several entries is claimed twice."""
    check_kind(kind)
    found: dict[str, list[importlib.metadata.EntryPoint]] = {}
    seen: set[tuple[str, str]] = set()
    for ep in importlib.metadata.entry_points(group=group(kind)):
        dist = ep.dist.name if ep.dist is not None else "?"
        if (ep.name, dist) in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add((ep.name, dist))
        found.setdefault(ep.name, []).append(ep)
    return dict(sorted(found.items()))


def available(kind: str) -> list[str]:
    return list(entry_points(kind))


def _fail(kind: str, name: str, what: str, names: str) -> DriverError:
    """One error naming the kind, the name and the drivers available; ``.detail`` is ``what``."""
    err = DriverError(f'{kind} driver "{name}" {what} (available: {names})')
    err.detail = what  # type: ignore[attr-defined]
    return err


def _explain(exc: pluggy.PluginValidationError) -> str:
    """pluggy's validation message, on one line and without object reprs."""
    text = str(exc)
    m = re.search(r"unknown hook '(\w+)'", text)
    if m:
        return f"implements the hook {m.group(1)}, which no {PROJECT} hook specification has"
    m = re.search(r"hookimpl definition: (\w+\(.*?\))\s*Argument\(s\) \{(.*?)\} are declared", text, re.S)
    if m:
        return f"has the hook {m.group(1)} whose argument(s) {m.group(2)} the specification does not have"
    return " ".join(text.split())


def _distribution(eps: list[importlib.metadata.EntryPoint]) -> str:
    return ", ".join(f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?" for ep in eps)


@attrs.define
class LoadedDriver:
    """One validated driver: its plugin manager answers only the hooks of its kind."""

    kind: str
    name: str
    distribution: str
    pm: pluggy.PluginManager

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def describe(self) -> str:
        return self.hook.core_driver_describe() or ""

    def probe(self, context: DriverContext) -> str | None:
        """``None`` when the driver can run here, else why not."""
        return self.hook.core_driver_probe(context=context)

    def create(self, context: DriverContext) -> Any:
        """Build the driver object with the kind's factory hook (see ``core.hookspecs``)."""
        factory = getattr(self.hook, f"core_{self.kind}_driver")
        driver = factory(context=context)
        if driver is None:
            raise DriverError(f'{self.kind} driver "{self.name}" returned no driver object')
        return driver


def load(kind: str, name: str) -> LoadedDriver:
    """Load and validate the driver ``name`` of ``kind``; :class:`DriverError` on any failure."""
    eps = entry_points(kind)
    names = ", ".join(eps) or "none"
    if name not in eps:
        raise _fail(kind, name, "not found", names)
    if len(eps[name]) > 1:
        raise _fail(kind, name, f"is claimed by several distributions: {_distribution(eps[name])}", names)
    dist = _distribution(eps[name])

    def raise_failure(_manager: Any, ep: Any, exc: BaseException) -> None:
        raise _fail(kind, name, f"(from {dist}) failed to load: {type(exc).__name__}: {exc}", names) from exc

    try:
        manager = stevedore.DriverManager(
            namespace=group(kind),
            name=name,
            invoke_on_load=False,
            on_load_failure_callback=raise_failure,
        )
    except DriverError:
        raise
    except stevedore.exception.NoMatches as exc:  # vanished between listing and loading
        raise _fail(kind, name, "not found", names) from exc
    except stevedore.exception.MultipleMatches as exc:
        raise _fail(kind, name, "is claimed by several distributions", names) from exc
    except Exception as exc:  # anything stevedore itself raised while loading
        raise_failure(None, None, exc)
    plugin = manager.driver

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(SPECS[kind])
    try:
        pm.register(plugin, name=f"{kind}:{name}")
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise _fail(kind, name, f"(from {dist}) is invalid: it {_explain(exc)}", names) from exc
    except Exception as exc:  # a plugin object pluggy cannot even inspect
        raise _fail(kind, name, f"(from {dist}) is invalid: {type(exc).__name__}: {exc}", names) from exc
    factory = f"core_{kind}_driver"
    if not getattr(pm.hook, factory).get_hookimpls():
        raise _fail(kind, name, f"(from {dist}) is invalid: it does not implement the hook {factory}", names)
    return LoadedDriver(kind=kind, name=name, distribution=dist, pm=pm)


@attrs.frozen
class DriverReport:
    """One line of ``core info``'s driver list."""

    kind: str
    name: str
    status: str  # ok | skipped | error
    reason: str = ""
    description: str = ""
    distribution: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "Kind": self.kind,
            "Name": self.name,
            "Status": self.status,
            "Reason": self.reason,
            "Description": self.description,
            "Distribution": self.distribution,
        }


def report(kind: str, name: str, context: DriverContext) -> DriverReport:
    """Load and probe one driver and say how it fares; never raises."""
    try:
        loaded = load(kind, name)
    except DriverError as exc:
        dist = ""
        try:
            dist = _distribution(entry_points(kind).get(name, []))
        except DriverError:
            pass
        reason = getattr(exc, "detail", str(exc)).replace(f"(from {dist}) ", "")
        return DriverReport(kind, name, ERROR, reason=reason, distribution=dist)
    try:
        description = loaded.describe()
        why_not = loaded.probe(context)
    except Exception as exc:
        return DriverReport(kind, name, ERROR, reason=f"probe failed: {type(exc).__name__}: {exc}",
                            distribution=loaded.distribution)
    status = SKIPPED if why_not else OK
    return DriverReport(kind, name, status, reason=why_not or "", description=description,
                        distribution=loaded.distribution)


def context_for(kind: str, name: str, data_root: Path, exec_root: Path, options: dict[str, str] | None = None,
                *, content: ContentStore | None = None, registry: RegistryConfig | None = None
                ) -> DriverContext:
    """The :class:`core.contracts.DriverContext` of one driver (directories not created).

    ``content`` and ``registry`` are offered to registry drivers only: the other kinds get
    ``None`` whatever is passed, so that no driver comes to depend on what is not its kind's.
    """
    from core.contracts import DriverContext

    offered = kind == "registry"
    return DriverContext(
        kind=kind,
        name=name,
        root=data_root / kind / name,
        exec_root=exec_root / kind / name,
        data_root=data_root,
        options=dict(options or {}),
        content=content if offered else None,
        registry=registry if offered else None,
    )
