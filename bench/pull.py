#!/usr/bin/env python3
"""Cold pull + unpack: ``core pull`` against ``skopeo copy`` + ``umoci unpack``, same image, same run.

The image (about 200 MB uncompressed in several thousand files, five gzip layers) is built by
the suite's own image builder and pushed with skopeo to a real registry (Debian's
docker-registry) on 127.0.0.1.  Where podman is installed, a cold ``podman pull`` (into a store of
its own) is measured too.  Each tool pulls it cold — an empty data root / OCI layout every
run — and the figure is the ratio of median wall times.  Target (issue: images): core <= 0.5 x
skopeo+umoci with the default storage driver.  A benchmark, not a test: it never fails on timing.

    .venv/bin/python bench/pull.py [-n 3] [--mb 200] [--driver storage=vfs]
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.images import LayerSpec, build_image, push  # noqa: E402
from core.testing.registry_server import Registry  # noqa: E402

from bench.engines import Core  # noqa: E402

WORDS = [f"{w}{i}" for i, w in enumerate("lorem ipsum dolor sit amet consectetur adipiscing elit sed do".split() * 40)]


def synthetic_layers(total_mb: int, layers: int = 5, seed: int = 7) -> list[LayerSpec]:
    """Compressible text files (gzip ~3x, like binaries and text in real images), 20-120 kB each."""
    rng = random.Random(seed)
    pool = " ".join(rng.choice(WORDS) for _ in range(800_000)).encode()  # ~6 MB of words
    per_layer = total_mb * 1_000_000 // layers
    out = []
    for n in range(layers):
        spec = LayerSpec()
        size = 0
        i = 0
        while size < per_layer:
            length = rng.randint(20_000, 120_000)
            start = rng.randrange(0, len(pool) - length)
            spec.file(f"/usr/share/bench{n}/d{i % 40:02d}/f{i:05d}.txt", pool[start:start + length])
            size += length
            i += 1
        out.append(spec)
    return out


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def core_pull(ref: str, drivers: list[str]) -> float:
    core = Core()
    try:
        core.run("version")  # the daemon up first
        return timed([core.bin, *[f"--driver={d}" for d in drivers], "pull", "-q", ref], core.env)
    finally:
        core.close()


def skopeo_umoci(ref: str) -> float:
    root = Path(tempfile.mkdtemp(prefix="core-bench-ref-", dir="/tmp"))
    try:
        start = time.perf_counter()
        timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{root}/layout:latest"])
        timed(["umoci", "unpack", "--image", f"{root}/layout:latest", str(root / "bundle")])
        return time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)


def podman_pull(ref: str) -> float:
    """A cold ``podman pull`` into a store of its own (``--root``), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="core-bench-podman-", dir="/tmp"))
    try:
        return timed(["podman", "--root", str(root / "storage"), "--runroot", str(root / "run"),
                      "--storage-driver", "overlay", "pull", "--quiet", "--tls-verify=false", ref])
    finally:
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3, help="runs of each (default 3)")
    ap.add_argument("--mb", type=int, default=200, help="uncompressed image size in MB (default 200)")
    ap.add_argument("--driver", action="append", default=[], help="core --driver KIND=NAME for the pull")
    args = ap.parse_args()
    for tool in ("skopeo", "umoci"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="core-bench-img-", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        layers = synthetic_layers(args.mb)
        info = build_image(work / "layout", layers, config={"Cmd": ["/bin/sh"]})
        files = sum(len(layer.entries) for layer in layers)
        blob_mb = sum(layer.size for layer in info.layers) / 1e6
        print(f"image: {args.mb} MB uncompressed, {files} entries, {len(layers)} gzip layers, "
              f"{blob_mb:.0f} MB compressed (built in {time.perf_counter() - t0:.0f} s)")
        with Registry() as registry:
            push(work / "layout", "bench:latest", registry)
            ref = f"{registry.host}/bench:latest"
            podman = bool(shutil.which("podman"))
            ours, theirs, pods = [], [], []
            for _ in range(args.n):
                ours.append(core_pull(ref, args.driver))
                theirs.append(skopeo_umoci(ref))
                if podman:
                    pods.append(podman_pull(ref))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    label = "core pull" + (f" ({', '.join(args.driver)})" if args.driver else " (default storage driver)")
    print(f"{label}: median {m_ours:6.2f} s  runs {', '.join(f'{t:.2f}' for t in ours)}")
    print(f"skopeo copy + umoci unpack:   median {m_theirs:6.2f} s  runs {', '.join(f'{t:.2f}' for t in theirs)}")
    print(f"ratio core / (skopeo+umoci): {m_ours / m_theirs:.2f}  (target <= 0.5)")
    if pods:
        m_pods = statistics.median(pods)
        print(f"podman pull (own store):      median {m_pods:6.2f} s  runs {', '.join(f'{t:.2f}' for t in pods)}")
        print(f"ratio core / podman: {m_ours / m_pods:.2f}")
    else:
        print("podman is not installed: not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
