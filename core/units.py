"""docker's units, both ways: sizes and durations as docker prints them (go-units) and as its flags
read them (``--memory 512m``, ``--health-interval 1m30s``).

- Printing: :func:`human_size` (decimal, ``"4.26MB"``: image and layer sizes, pull progress),
  :func:`bytes_size` (binary, ``"1.5GiB"``: memory in ``info`` and ``stats``),
  :func:`human_duration` (``"About a minute"``: ``Up 5 minutes``, ``2 hours ago``),
  :func:`go_duration` (Go's ``time.Duration.String``, ``"1m30s"``: healthcheck messages).
- Reading: :func:`ram_in_bytes` (go-units RAMInBytes, binary multiples: ``--memory``,
  ``--shm-size``, tmpfs sizes), :func:`parse_go_duration` (Go's time.ParseDuration).

Standard library only: the daemon's progress messages and the CLI's start-up path both import
this (:mod:`re` is imported by :func:`ram_in_bytes` when it runs).
"""
from __future__ import annotations

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(n: float, base: int, units: tuple[str, ...], precision: int) -> str:
    """go-units' CustomSize: divide by ``base`` while it fits (up to the last unit), then ``%.<p>g``."""
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return f"{n:.{precision}g}{units[i]}"


def human_size(n: float, precision: int = 4) -> str:
    """go-units HumanSizeWithPrecision: decimal units ("4.26MB", "0B"); docker's tables use 3."""
    return _scaled(n, 1000, _DECIMAL, precision)


def bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits ("23.47GiB", "1.5MiB", "1EiB")."""
    return _scaled(n, 1024, _BINARY, 4)


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration ("Less than a second", "About a minute", "2 weeks"): ``Up 5 minutes``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()`` of ``ns`` nanoseconds: ``"500ms"``, ``"1.5s"``, ``"1m30s"``, ``"2h0m0s"``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(int(ns))

    def frac(value: int, scale: int) -> str:
        whole, rest = divmod(value, scale)
        text = str(whole)
        if rest:
            text += "." + f"{rest:0{len(str(scale)) - 1}d}".rstrip("0")
        return text

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1_000)}\u00b5s"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = frac(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


_RAM_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: "512m", "1g", "1.5GiB", "100k", "1024" (binary multiples).

    ValueError ``invalid size: '<text>'`` for anything else."""
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", text.strip())
    if not m:
        raise ValueError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _RAM_UNITS[(m.group(2) or "").lower()])


_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9}


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration ("1h30m", "10s", "1.5h", "-5m") in seconds; ValueError with Go's
    message otherwise ("time: missing unit in duration ...", ``time: invalid duration`` for
    what does not fit Go's int64 of nanoseconds, as Go's)."""
    return parse_go_duration_ns(text) / 1e9


def parse_go_duration_ns(text: str) -> int:
    """:func:`parse_go_duration` in whole nanoseconds, exactly (Go's ``time.Duration``)."""
    invalid = f'time: invalid duration "{text}"'
    s = text
    if not s:
        raise ValueError(invalid)
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(invalid)
    total = 0  # nanoseconds, exact
    while s:
        whole = frac = ""
        while s and "0" <= s[0] <= "9":
            whole, s = whole + s[0], s[1:]
        if s[:1] == ".":
            s = s[1:]
            while s and "0" <= s[0] <= "9":
                frac, s = frac + s[0], s[1:]
        if not whole and not frac:
            raise ValueError(invalid)
        unit = ""
        while s and not ("0" <= s[0] <= "9" or s[0] == "."):
            unit, s = unit + s[0], s[1:]
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNIT_NS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        scale = _UNIT_NS[unit]
        total += int(whole or "0") * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        if total > 2**63 - 1 + (sign < 0):
            raise ValueError(invalid)
    return sign * total
