#!/usr/bin/env python3
"""How light is the CLI?  Ratio of ``core version`` (daemon running) to ``python -c "import json, socket"``.

Both run the same interpreter, alternately, N times; the figure is the ratio of medians.
Target (issue: the kernel): <= 2.  A benchmark, not a test: it prints, it never fails on timing.

    .venv/bin/python bench/cli_startup.py [-n 40]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=40, help="runs of each command (default 40)")
    args = ap.parse_args()
    core = shutil.which("core", path=str(Path(sys.executable).parent)) or shutil.which("core")
    if not core:
        print("core is not installed next to this interpreter", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="core-bench-", dir="/tmp"))
    table = f"cbench{os.getpid()}"  # its own nft tables and bridge, removed at the end
    (root / "daemon.json").write_text(json.dumps({"driver-opts": {"network": {"nft-table": table}}}))
    env = {**os.environ, "CORE_DATA_ROOT": str(root / "data"), "CORE_EXEC_ROOT": str(root / "run"),
           "CORE_HOST": f"unix://{root}/run/core.sock", "CORE_CONFIG_FILE": str(root / "daemon.json")}
    try:
        subprocess.run([core, "version"], env=env, stdout=subprocess.DEVNULL, check=True)  # starts the daemon
        for _ in range(3):  # warm caches
            timed([core, "version"], env)
            timed([sys.executable, "-c", "import json, socket"], env)
        ours, base = [], []
        for _ in range(args.n):
            ours.append(timed([core, "version"], env))
            base.append(timed([sys.executable, "-c", "import json, socket"], env))
        m_ours, m_base = statistics.median(ours), statistics.median(base)
        print(f"core version (daemon running):  median {m_ours * 1000:7.1f} ms over {args.n} runs")
        print(f'python -c "import json, socket": median {m_base * 1000:7.1f} ms over {args.n} runs')
        print(f"ratio: {m_ours / m_base:.2f}  (target <= 2)")
    finally:
        try:
            os.kill(int((root / "run" / "core.pid").read_text()), signal.SIGTERM)
            time.sleep(0.5)
        except (OSError, ValueError):
            pass
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.conftest import purge_network_driver

        purge_network_driver(root / "data", root / "run", {"nft-table": table})
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
