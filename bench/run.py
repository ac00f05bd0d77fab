#!/usr/bin/env python3
"""Container start-up, per-container memory and concurrent starts, against reference runtimes.

All in one invocation on the same machine:

1. ``core run --rm --network none busybox true``, median of N runs, against ``runc run`` of an
   equivalent bundle (busybox-static rootfs, ``runc spec`` defaults, ``true``), and against
   podman/docker where an engine answers.  Targets: <= 3 x runc, <= 0.5 x podman.
2. Host memory (PSS, from /proc/<pid>/smaps_rollup) of all core processes — the daemon and every
   shim — per idle running container, with 50 containers running.  Target: <= 10 MiB.
3. Wall time of 50 concurrent ``core run -d``, against podman/docker where present.

Other engines run the same image, pulled from the same registry (and removed afterwards).

The busybox image is built by the test suite's image builder and served by a real registry
(Debian's docker-registry) on 127.0.0.1.  A benchmark, not a test: it never fails on timing.

    .venv/bin/python bench/run.py [-n 20] [--containers 50]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from bench.engines import Core  # noqa: E402
from bench.proc import pss_kib  # noqa: E402


def runc_bundle(root: Path) -> Path:
    bundle = root / "bundle"
    rootfs = bundle / "rootfs" / "bin"
    rootfs.mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "busybox")
    for applet in ("sh", "true", "sleep"):
        os.symlink("busybox", rootfs / applet)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def median_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20, help="runs of each start-up measurement (default 20)")
    ap.add_argument("--containers", type=int, default=50, help="containers for memory and concurrency (default 50)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="core-bench-run-", dir="/tmp"))
    core = Core()
    pulled: dict[str, str] = {}
    try:
        with engines.served_busybox(work, core) as image:

            # 1. start-up
            ours = []
            for _ in range(args.n):
                t = time.perf_counter()
                core.run("run", "--rm", "--network", "none", image, "true")
                ours.append(time.perf_counter() - t)
            print(f"core run --rm --network none busybox true: median {median_ms(ours)} over {args.n}")
            if shutil.which("runc"):
                bundle = runc_bundle(work)
                theirs = []
                for i in range(args.n):
                    t = time.perf_counter()
                    subprocess.run(["runc", "run", "--bundle", str(bundle), f"core-bench-{os.getpid()}-{i}"],
                                   check=True, stdout=subprocess.DEVNULL)
                    theirs.append(time.perf_counter() - t)
                print(f"runc run (same rootfs, true):              median {median_ms(theirs)} over {args.n}")
                print(f"ratio core / runc: {statistics.median(ours) / statistics.median(theirs):.2f}  (target <= 3)")
            else:
                print("runc is not installed: no runc ratio")
            others = [other for other in engines.NAMES if engines.answers(other)]
            for other in engines.NAMES:
                if other not in others:
                    print(f"{other}: no engine answers here, not measured")
                    continue
                engines.pull(other, image)
                pulled[other] = image
                times = []
                for _ in range(args.n):
                    t = time.perf_counter()
                    subprocess.run([other, "run", "--rm", *engines.limits(other), "--network", "none", image, "true"],
                                   check=True, capture_output=True)
                    times.append(time.perf_counter() - t)
                print(f"{other} run (same image):                 median {median_ms(times)} over {args.n}; "
                      f"ratio core / {other}: {statistics.median(ours) / statistics.median(times):.2f}  "
                      "(target <= 0.5)")

            # 3. concurrent starts (before the idle containers, so they start on a quiet host)
            n = args.containers
            t = time.perf_counter()
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(lambda i: core.run("run", "-d", "--network", "none", image, "sleep", "3600"), range(n)))
            wall = time.perf_counter() - t
            print(f"{n} concurrent core run -d: wall {wall:.2f} s ({wall / n * 1000:.0f} ms per container)")
            for other in others:
                label = f"core-bench-{os.getpid()}"
                t = time.perf_counter()
                with ThreadPoolExecutor(max_workers=n) as pool:
                    list(pool.map(lambda i: subprocess.run(
                        [other, "run", "-d", *engines.limits(other), "--network", "none", "--label", label, image,
                         "sleep", "3600"],
                        check=True, capture_output=True), range(n)))
                theirs = time.perf_counter() - t
                print(f"{n} concurrent {other} run -d: wall {theirs:.2f} s; ratio core / {other}: {wall / theirs:.2f}")
                ids = subprocess.run([other, "ps", "-aq", "--filter", f"label={label}"], capture_output=True,
                                     text=True).stdout.split()
                if ids:
                    subprocess.run([other, "rm", "-f", *ids], capture_output=True)

            # 2. memory of core's own processes per idle container
            time.sleep(2)
            running = len(core.run("ps", "-q").stdout.split())
            pids = core.processes()
            total = sum(pss_kib(p) for p in pids)
            print(f"core processes (daemon, zygote, shims: {len(pids)}) with {running} idle containers: "
                  f"PSS {total / 1024:.1f} MiB, {total / 1024 / max(running, 1):.2f} MiB per container "
                  "(target <= 10 MiB)")
    finally:
        core.close()
        shutil.rmtree(work, ignore_errors=True)
        for other, ref in pulled.items():   # what the other engines pulled goes again
            engines.remove_image(other, ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
