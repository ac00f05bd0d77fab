"""Kernel helpers the CLI and the daemon share: docker's units (core.units) and detach keys
(core.detachkeys)."""
from __future__ import annotations

import pytest

from core import detachkeys, units
from core.errors import InvalidArgument


class TestSizes:
    def test_bytes_size_as_info_and_stats_print_memory(self):
        # `core info` Total Memory and `core stats` MEM USAGE / LIMIT: go-units BytesSize
        assert units.bytes_size(8243118080) == "7.677GiB"
        assert units.bytes_size(2 << 20) == "2MiB" and units.bytes_size(1 << 30) == "1GiB"
        assert units.bytes_size(0) == "0B" and units.bytes_size(1023) == "1023B"
        assert units.bytes_size(1536) == "1.5KiB" and units.bytes_size(1 << 60) == "1EiB"
        assert units.bytes_size(1 << 80) == "1YiB" and units.bytes_size(1 << 90) == "1024YiB"

    def test_human_size_as_tables_print_sizes(self):
        assert units.human_size(4_261_000) == "4.261MB" and units.human_size(4_261_000, 3) == "4.26MB"
        assert units.human_size(0) == "0B" and units.human_size(1500, 3) == "1.5kB"
        assert units.human_size(648, 3) == "648B" and units.human_size(10**18) == "1EB"

    def test_ram_in_bytes_as_memory_flags_read_it(self):
        # `--memory 512m`, `--shm-size 1g`, tmpfs-size: go-units RAMInBytes, binary multiples
        assert units.ram_in_bytes("512m") == 512 << 20 and units.ram_in_bytes("512M") == 512 << 20
        assert units.ram_in_bytes("1.5g") == int(1.5 * (1 << 30)) and units.ram_in_bytes("1GiB") == 1 << 30
        assert units.ram_in_bytes("100k") == 100 << 10 and units.ram_in_bytes("64 mb") == 64 << 20
        assert units.ram_in_bytes("1024") == 1024 and units.ram_in_bytes("1024b") == 1024
        for bad in ("lots", "", "-1", "1x", "m"):
            with pytest.raises(ValueError, match="invalid size: "):
                units.ram_in_bytes(bad)

    def test_printing_what_was_read(self):
        assert units.bytes_size(units.ram_in_bytes("512m")) == "512MiB"
        assert units.bytes_size(units.ram_in_bytes("1.5g")) == "1.5GiB"


class TestDurations:
    def test_human_duration(self):
        assert units.human_duration(0.5) == "Less than a second" and units.human_duration(1) == "1 second"
        assert units.human_duration(59) == "59 seconds" and units.human_duration(60) == "About a minute"
        assert units.human_duration(3600) == "About an hour" and units.human_duration(3 * 86400) == "3 days"

    def test_parse_go_duration(self):
        assert units.parse_go_duration("1h30m") == 5400 and units.parse_go_duration("1.5s") == 1.5
        assert units.parse_go_duration("100ms") == pytest.approx(0.1) and units.parse_go_duration("-5m") == -300
        assert units.parse_go_duration("0") == 0
        with pytest.raises(ValueError, match='missing unit in duration "10"'):
            units.parse_go_duration("10")
        with pytest.raises(ValueError, match='unknown unit "d"'):
            units.parse_go_duration("1d")
        with pytest.raises(ValueError, match="invalid duration"):
            units.parse_go_duration("")

    @pytest.mark.parametrize("text,ns", [("2562047h47m16.854775807s", 2**63 - 1), (".5s", 5 * 10**8),
                                         ("5.s", 5 * 10**9), ("1h1ns", 3600 * 10**9 + 1), ("-1.5us", -1500)])
    def test_go_durations_are_exact_nanoseconds(self, text, ns):
        assert units.parse_go_duration_ns(text) == ns

    @pytest.mark.parametrize("text,message", [
        ("2562048h", 'time: invalid duration "2562048h"'),   # beyond Go's int64 of nanoseconds
        ("9999999999999999999999s", "invalid duration"),
        ("\u0663s", "invalid duration"),                     # digits are ASCII digits, as Go's
        (".s", "invalid duration"), ("1.2.3s", "missing unit"), ("1e3s", 'unknown unit "e"')])
    def test_go_duration_refusals_are_gos(self, text, message):
        with pytest.raises(ValueError, match=message):
            units.parse_go_duration(text)


class TestDetachKeys:
    def test_to_bytes(self):
        assert detachkeys.to_bytes(detachkeys.DEFAULT) == detachkeys.DEFAULT_BYTES == b"\x10\x11"
        assert detachkeys.to_bytes("a,ctrl-@,ctrl-[,DEL") == b"a\x00\x1b\x7f"
        assert detachkeys.to_bytes("ctrl-a,ctrl-z,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == bytes([1, 26, 28, 29, 30, 31])
        assert detachkeys.to_bytes("x") == b"x"

    @pytest.mark.parametrize("keys,bad", [
        ("ctrl-P", "ctrl-P"), ("CTRL-p", "CTRL-p"), ("ctrl-p, ctrl-q", " ctrl-q"), ("ctrl-1", "ctrl-1"),
        ("ctrl-xx", "ctrl-xx"), ("", ""), ("a,,b", ""), ("é", "é"), ("del", "del"),
    ])
    def test_unknown_keys(self, keys, bad):
        """moby/term's rules: exact, lower-case ``ctrl-`` names, single ASCII characters, ``DEL``."""
        with pytest.raises(detachkeys.InvalidDetachKeys) as err:
            detachkeys.to_bytes(keys)
        assert str(err.value) == f"Unknown character: '{bad}'" and err.value.key == bad
        assert isinstance(err.value, ValueError)

    def test_daemon_reading(self):
        assert detachkeys.parse_detach_keys(None) == detachkeys.parse_detach_keys("") == b"\x10\x11"
        assert detachkeys.parse_detach_keys("ctrl-a,x") == b"\x01x"
        with pytest.raises(InvalidArgument, match=r"^Invalid detach keys \(ctrl-P\) provided$"):
            detachkeys.parse_detach_keys("ctrl-P")


@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (500, "500ns"), (1500, "1.5\u00b5s"), (300_000_000, "300ms"), (1_000_000_000, "1s"),
    (1_500_000_000, "1.5s"), (30_000_000_000, "30s"), (90_000_000_000, "1m30s"), (7_200_000_000_000, "2h0m0s"),
    (-2_000_000_000, "-2s"),
])
def test_go_duration(ns, text):
    assert units.go_duration(ns) == text
