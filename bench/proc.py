"""What the benchmarks read of a process in /proc."""
from __future__ import annotations


def pss_kib(pid: int) -> int:
    """The process's proportional set size in KiB (0 if it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
