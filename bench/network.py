#!/usr/bin/env python3
"""What the bridge network adds to a container's start: ``core run --rm busybox true`` on the
default bridge against the same with ``--network none``, median of N runs each, interleaved
(none, bridge, none, bridge, ...) so that drift hits both alike, in one invocation.  Target: the
bridge adds <= 15 ms.  Podman's / docker's figures the same way where an engine answers, on
the same image from the same local registry, with a bridge network of the bench's own (removed
afterwards; podman's CNI plugins keep their iptables chains, as on any podman host).

The busybox image is built by the test suite's image builder and served by a real registry
(Debian's docker-registry) on 127.0.0.1.  The daemon has nft tables of its own (so its own
default bridge), removed at the end with everything else.  A benchmark, not a test: it never
fails on timing.

    .venv/bin/python bench/network.py [-n 20]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from bench.engines import Core  # noqa: E402


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def interleaved(n: int, none_cmd: list[str], bridge_cmd: list[str], **kw) -> tuple[list[float], list[float]]:
    timed(none_cmd, **kw)  # warm-up: caches, the default bridge's creation, lazy imports
    timed(bridge_cmd, **kw)
    none, bridge = [], []
    for _ in range(n):
        none.append(timed(none_cmd, **kw))
        bridge.append(timed(bridge_cmd, **kw))
    return none, bridge


def report(who: str, n: int, none: list[float], bridge: list[float], target: bool) -> None:
    mn, mb = statistics.median(none) * 1000, statistics.median(bridge) * 1000
    print(f"{who} run --rm --network none busybox true: median {mn:7.1f} ms over {n}")
    print(f"{who} run --rm (default bridge) busybox true: median {mb:7.1f} ms over {n}")
    print(f"{who}: the bridge network adds {mb - mn:+.1f} ms" + ("  (target <= 15 ms)" if target else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20, help="runs of each (default 20, at least 20 recommended)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="core-bench-netimg-", dir="/tmp"))
    core = Core()
    try:
        with engines.served_busybox(work, core) as image:
            base = [core.bin, "run", "--rm"]
            none, bridge = interleaved(args.n, base + ["--network", "none", image, "true"],
                                       base + [image, "true"], env=core.env)
            report("core", args.n, none, bridge, target=True)
            for other in engines.NAMES:
                if not engines.answers(other):
                    print(f"{other}: no engine answers here (`{other} info` fails or it is not installed), "
                          "not measured")
                    continue
                engines.pull(other, image)
                net = f"core-bench-{os.getpid()}"   # a bridge network of the bench's own, removed after
                try:
                    subprocess.run([other, "network", "create", net], check=True, capture_output=True)
                    base = [other, "run", "--rm", *engines.limits(other)]
                    none, bridge = interleaved(args.n, base + ["--network", "none", image, "true"],
                                               base + ["--network", net, image, "true"])
                    report(other, args.n, none, bridge, target=False)
                except (SystemExit, subprocess.CalledProcessError) as exc:   # e.g. no network plugins
                    print(f"{other}: not measured: {exc}")
                finally:
                    subprocess.run([other, "network", "rm", "-f", net], capture_output=True)
                    engines.remove_image(other, image)
    finally:
        core.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
