"""Conformance: every driver, whatever its kind, loads and describes itself as core expects.

Run against an installed driver::

    pytest --pyargs core.testing.loading --driver network=mydriver
"""
from __future__ import annotations

import inspect
import shutil

import pytest
import trio

from core import contracts, plugins
from core.hookspecs import SPECS
from core.testing import close_driver, make_driver, options_from_env, temp_root

PROTOCOLS = {
    "storage": contracts.Snapshotter,
    "network": contracts.NetworkDriver,
    "executor": contracts.Executor,
    "registry": contracts.RegistryClient,
}


class DriverSuite:
    """What every conformance suite shares: the driver under test (``kind`` and ``name``, or
    ``--driver``) and the options it is made with; each suite subclasses it."""

    kind: str | None = None
    name: str | None = None

    def driver_options(self) -> dict[str, str]:
        """``DriverContext.options`` of the driver under test (a fresh call per harness): by
        default the JSON object in ``$CORE_TESTING_DRIVER_OPTIONS``, if set."""
        return options_from_env()


class LoadingSuite(DriverSuite):
    kind: str | None = None  # None: every kind given with --driver

    @pytest.fixture
    def built(self, driver_under_test):
        kind, name = driver_under_test
        root = temp_root()
        try:
            loaded, context, driver = make_driver(kind, name, root, self.driver_options())
            yield kind, name, loaded, context, driver
            trio.run(close_driver, driver)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def test_found_once_through_entry_point(self, driver_under_test):
        kind, name = driver_under_test
        eps = plugins.entry_points(kind)
        assert name in eps, f"{kind} driver {name!r} has no entry point in group core.{kind}"
        assert len(eps[name]) == 1, f"{kind} driver {name!r} is claimed by several distributions"

    def test_hooks_match_the_specification(self, driver_under_test):
        kind, name = driver_under_test
        loaded = plugins.load(kind, name)  # raises DriverError with the reason otherwise
        known = {n for n in dir(SPECS[kind]) if n.startswith("core_")}
        for impl in loaded.pm.get_plugins():
            for attr in dir(impl):
                if attr.startswith("core_") and loaded.pm.parse_hookimpl_opts(impl, attr) is not None:
                    assert attr in known

    def test_describes_itself(self, built):
        _kind, _name, loaded, _context, _driver = built
        description = loaded.describe()
        assert isinstance(description, str)

    def test_probe_answers_none_or_a_reason(self, driver_under_test):
        kind, name = driver_under_test
        loaded = plugins.load(kind, name)
        root = temp_root()
        try:
            answer = loaded.probe(plugins.context_for(kind, name, root / "data", root / "run"))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        assert answer is None or (isinstance(answer, str) and answer.strip())

    def test_builds_an_object_of_its_kind(self, built):
        kind, _name, _loaded, _context, driver = built
        protocol = PROTOCOLS[kind]
        assert isinstance(driver, protocol), f"the driver object does not implement {protocol.__name__}"
        for attr in dir(protocol):
            if attr.startswith("_"):
                continue
            want = getattr(protocol, attr)
            if inspect.iscoroutinefunction(want):
                got = getattr(driver, attr)
                assert callable(got), f"{attr} is not callable"

    def test_writes_only_under_its_roots(self, built):
        _kind, _name, _loaded, context, _driver = built
        roots = (context.root, context.exec_root)
        if context.content is not None:  # the kernel's store the harness offers (root/content)
            roots += (context.data_root.parent / "content",)
        for path in context.data_root.parent.rglob("*"):
            inside = any(path.is_relative_to(r) for r in roots)
            above = any(path in r.parents for r in roots)
            assert inside or above, f"the driver wrote {path} outside its roots {roots}"


class TestLoading(LoadingSuite):
    """Collected when this module is run with ``--pyargs``; runs for every ``--driver``."""
