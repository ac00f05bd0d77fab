"""core.cli.lean: the CLI's C-module-only stand-ins agree with the standard modules they replace."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
from hypothesis import given, settings, strategies as st

from core.cli import lean

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_round_trip_matches_json(value):
    text = lean.dumps(value)
    assert text == json.dumps(value)
    assert lean.loads(text) == json.loads(text)
    assert lean.loads(text.encode()) == json.loads(text)
    assert lean.loads(f" \n{text}\t\r\n") == json.loads(text)


@pytest.mark.parametrize("bad", ["", "   ", "{", "[1,]", "{'a': 1}", "1 2", "nul", '"\x01"', "[1] x", b"\xff"])
def test_loads_rejects_what_json_rejects(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        lean.loads(bad)


def test_loads_constants_and_dumps_errors():
    assert lean.loads("[NaN, Infinity, -Infinity]")[1] == float("inf")
    with pytest.raises(TypeError, match="not JSON serializable"):
        lean.dumps({"a": object()})


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from(["/", "", "/:@"]))
def test_quote_matches_urllib(text, safe):
    assert lean.quote(text, safe) == urllib.parse.quote(text, safe=safe)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1), st.text() | st.integers() | st.lists(st.text(), max_size=3), max_size=5))
def test_urlencode_matches_urllib(query):
    assert lean.urlencode(query) == urllib.parse.urlencode(query, doseq=True)


def test_event():
    ev = lean.Event()
    assert not ev.is_set() and ev.wait(0) is False
    t0 = time.monotonic()
    assert ev.wait(0.05) is False and time.monotonic() - t0 >= 0.04
    threading.Timer(0.02, ev.set).start()
    assert ev.wait(5) is True and ev.is_set()
    ev.set()  # twice is fine
    assert ev.wait() is True


def test_spawn_and_main_thread():
    seen = []
    ev = lean.Event()
    lean.spawn(lambda a: (seen.append((a, lean.main_thread())), ev.set()), 7)
    assert ev.wait(5) and seen == [(7, False)] and lean.main_thread()


def test_cli_hot_path_imports_only_c_modules():
    """`core run` must not pay for json/re/enum/socket/signal/threading/typing at start-up."""
    code = ("import sys; import core.cli.main, core.cli.client, core.cli.cmd_container, core.cli.cmd_run, "
            "core.cli.hijack, core.cli.dockerconfig, core.cli.format, core.cli.flags, core.cli.template, "
            "core.cli.runconfig, core.cli.flagvalues, core.detachkeys, "
            "core.cli.cmd_system, core.units, core.cli.cmd_image; print(' '.join(sorted(sys.modules)))")
    mods = set(subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[2])!r}); " + code],
                              capture_output=True, text=True, check=True).stdout.split())
    heavy = {"json", "re", "enum", "socket", "signal", "threading", "typing", "urllib.parse", "queue", "ipaddress"}
    assert not heavy & mods, sorted(heavy & mods)
