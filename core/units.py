"""docker's human units (go-units), shared by the daemon's progress messages and the CLI.

Standard library only: the CLI imports this on its start-up path.
"""
from __future__ import annotations


def _scaled(n: float, base: int, units: tuple[str, ...], precision: int) -> str:
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return f"{n:.{precision}g}{units[i]}"


def human_size(n: float, precision: int = 4) -> str:
    """units.HumanSizeWithPrecision: decimal units ("4.26MB", "0B")."""
    return _scaled(n, 1000, ("B", "kB", "MB", "GB", "TB", "PB"), precision)


def bytes_size(n: float) -> str:
    """units.BytesSize: binary units ("23.47GiB")."""
    return _scaled(n, 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), 4)


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
