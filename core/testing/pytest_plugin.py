"""pytest plugin (entry point ``pytest11``): ``--driver KIND=NAME`` selects drivers under test."""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("core", "core driver conformance")
    group.addoption(
        "--driver",
        action="append",
        default=[],
        dest="core_drivers",
        metavar="KIND=NAME",
        help="driver under test for core.testing suites (repeatable), e.g. storage=vfs",
    )


def selected(config: pytest.Config, kind: str | None = None) -> list[tuple[str, str]]:
    """The ``(kind, name)`` pairs given with ``--driver``, of ``kind`` if given."""
    out = []
    for value in config.getoption("core_drivers") or []:
        k, sep, name = value.partition("=")
        if not sep or not k or not name:
            raise pytest.UsageError(f'--driver "{value}": expected KIND=NAME')
        if kind is None or k == kind:
            out.append((k, name))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Suites that take ``driver_under_test`` run once per ``--driver`` of their kind.

    A suite class states its kind (``kind = "storage"``), or ``None`` for every kind; a class
    that names its driver (``name = "vfs"``) runs for that driver alone.
    """
    if "driver_under_test" not in metafunc.fixturenames:
        return
    cls = metafunc.cls
    kind = getattr(cls, "kind", None)
    name = getattr(cls, "name", None)
    if kind and name:
        pairs = [(kind, name)]
    else:
        pairs = selected(metafunc.config, kind)
        if not pairs:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: choose the driver under test with --driver "
                f"{kind or 'KIND'}=NAME"
            )
    metafunc.parametrize("driver_under_test", pairs, ids=[f"{k}={n}" for k, n in pairs])
