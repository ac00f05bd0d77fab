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
