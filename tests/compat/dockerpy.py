#!/usr/bin/env python3
"""Run the Docker SDK for Python's own integration tests (docker/docker-py, tests/integration) against
an isolated core daemon, and summarise what passes and what fails.

::

    .venv/bin/python tests/compat/dockerpy.py --out /tmp/report    # the default selection, ~2 minutes
    .venv/bin/python tests/compat/dockerpy.py --files api_exec_test -- -k tty   # pytest arguments after --
    .venv/bin/python tests/compat/dockerpy.py --files api_volume_test errors_test

What it does, and undoes (by PID and by path, even on ^C or SIGTERM):

1. ``git archive``s docker-py's ``tests/`` out of a docker-py clone (``--repo``, bare or not) at the
   tag of the installed ``docker`` package (``7.2.0`` for docker 7.2.0; ``HEAD`` when no such tag)
   into a temporary directory, renamed ``dockerpy_tests`` so that it cannot be confused with core's
   own ``tests`` package (the editable install puts the clone on ``sys.path``).
2. Starts Debian's docker-registry on 127.0.0.1 (``core.testing.registry_server``) and pushes into it,
   with skopeo, stand-ins built from Debian's busybox-static (``tests.support.images``) for the
   Docker Hub images the selected tests use: ``library/alpine:3.10``, ``library/alpine:latest``
   (alpine's users, groups and directories on busybox), ``library/busybox:latest``,
   ``library/hello-world:latest`` (``/hello`` prints docker's greeting).
3. Starts a core daemon of its own (``tests.conftest.CoreEnv``: own data root, exec root, socket
   and nft tables) whose ``daemon.json`` mirrors ``docker.io`` to that registry.
4. Runs pytest on the selected files with ``DOCKER_HOST`` at core's socket, an empty
   ``DOCKER_CONFIG``, a per-test timeout (pytest-timeout) and an overall deadline, recording every
   result as it happens (``compat_resultlog.py``).
5. Prints ``N passed, M failed, K skipped`` and writes ``summary.json``, ``summary.md`` (failures
   grouped by the causes of ``dockerpy_causes.py``, new ones and fixed ones named), the pytest
   output and the daemon's log into the report directory (``--out``).

Needs root (core's daemon does), the Debian packages of ``ci/apt-packages.txt`` (docker-registry,
skopeo, busybox-static) and, in the Python that runs it, ``docker``, ``pytest``, ``pytest-timeout``
and what docker-py's own CI installs with it (``.[ssh,websockets]``): ``.venv/bin/pip install
pytest-timeout paramiko websocket-client``.

Not run (``DESELECTED``): the tests that need a swarm (core has no swarm mode yet), the one that
pulls an image by the digest Docker Hub serves (no stand-in can have that digest) and the one that
needs Docker Hub itself to answer that a repository does not exist (docker, like core, falls back
from a mirror to the Hub, which is not reachable from here), and the websocket attach test (the SDK
opens websockets over TCP only; core, like this harness, uses a unix socket).

``--assume-swarm-503`` makes a *diagnostic* run: the SDK takes core's 404 on ``/swarm/leave`` for
docker's 503 (``compat_swarm_shim.py``), which shows the failures hidden behind docker-py's network
tests' ``tearDown``; its counts are not the measurement.

Exit status: 0 when the run completed (whatever the count), 1 when the harness could not run it,
130 when interrupted.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DOCKERPY = "/work/.mirror/docker+docker-py/repo"

#: docker-py's integration test files for images, containers, exec, networks, volumes and errors
DEFAULT_FILES = [
    "api_container_test",
    "api_exec_test",
    "api_image_test",
    "api_network_test",
    "api_volume_test",
    "errors_test",
    "models_containers_test",
    "models_images_test",
    "models_networks_test",
    "models_volumes_test",
    "api_healthcheck_test",
]

#: tests not run, relative to docker-py's tests/integration, with why
DESELECTED = {
    "api_network_test.py::TestNetworks::test_create_inspect_network_with_scope": "needs a swarm (init_swarm)",
    "api_network_test.py::TestNetworks::test_create_network_attachable": "needs a swarm (init_swarm)",
    "api_network_test.py::TestNetworks::test_create_network_ingress": "needs a swarm (init_swarm)",
    "models_images_test.py::ImageCollectionTest::test_pull_with_sha":
        "pulls hello-world by Docker Hub's own manifest digest: needs the internet",
    "api_container_test.py::AttachContainerTest::test_run_container_reading_socket_ws":
        "the SDK's websocket attach works over TCP only (it makes ws:// of an http+docker:// unix-socket URL:"
        " 'scheme http+docker is invalid', whatever the daemon); core serves a unix socket",
    "models_containers_test.py::ContainerCollectionTest::test_run_with_image_that_does_not_exist":
        "needs Docker Hub to answer that the repository does not exist (a mirror's 404 falls back to the Hub)",
}

PACKAGE = "dockerpy_tests"


def _log(msg: str, who: str = "dockerpy") -> None:
    print(f"[{who} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


# ------------------------------------------------------------------------------------------ set-up
def check_requirements() -> list[str]:
    modules = {"docker": "docker", "pytest": "pytest", "pytest_timeout": "pytest-timeout", "paramiko": "paramiko",
               "websocket": "websocket-client"}
    missing = [pkg for mod, pkg in modules.items() if importlib.util.find_spec(mod) is None]
    problems = []
    if missing:
        problems.append(f"missing Python packages: {sys.executable} -m pip install {' '.join(missing)}")
    if os.geteuid() != 0:
        problems.append("core's daemon needs root: run it as root")
    return problems


def dockerpy_ref(repo: str, wanted: str | None) -> str:
    """The tag of the installed SDK when the clone has it, else HEAD (or ``wanted``)."""
    if wanted:
        return wanted
    version = importlib.metadata.version("docker")
    tags = subprocess.run(["git", "-C", repo, "tag", "--list", version], capture_output=True, text=True,
                          check=True).stdout.split()
    return version if version in tags else "HEAD"


def extract_tests(repo: str, ref: str, dest: Path) -> Path:
    """docker-py's ``tests/`` at ``ref`` as ``dest/dockerpy_tests``; returns its integration dir."""
    archive = subprocess.run(["git", "-C", repo, "archive", ref, "tests"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    (dest / "tests").rename(dest / PACKAGE)
    (dest / "pytest.ini").write_text("[pytest]\naddopts =\n")  # nothing of core's pyproject settings
    return dest / PACKAGE / "integration"


#: alpine's /etc/passwd and /etc/group (alpine-baselayout): docker-py's tests exec as ``postgres``
ALPINE_PASSWD = """\
root:x:0:0:root:/root:/bin/ash
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
adm:x:3:4:adm:/var/adm:/sbin/nologin
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin
sync:x:5:0:sync:/sbin:/bin/sync
shutdown:x:6:0:shutdown:/sbin:/sbin/shutdown
halt:x:7:0:halt:/sbin:/sbin/halt
mail:x:8:12:mail:/var/spool/mail:/sbin/nologin
news:x:9:13:news:/usr/lib/news:/sbin/nologin
uucp:x:10:14:uucp:/var/spool/uucppublic:/sbin/nologin
operator:x:11:0:operator:/root:/sbin/nologin
man:x:13:15:man:/usr/man:/sbin/nologin
postmaster:x:14:12:postmaster:/var/spool/mail:/sbin/nologin
cron:x:16:16:cron:/var/spool/cron:/sbin/nologin
ftp:x:21:21::/var/lib/ftp:/sbin/nologin
sshd:x:22:22:sshd:/dev/null:/sbin/nologin
at:x:25:25:at:/var/spool/cron/atjobs:/sbin/nologin
squid:x:31:31:Squid:/var/cache/squid:/sbin/nologin
xfs:x:33:33:X Font Server:/etc/X11/fs:/sbin/nologin
games:x:35:35:games:/usr/games:/sbin/nologin
postgres:x:70:70::/var/lib/postgresql:/bin/sh
cyrus:x:85:12::/usr/cyrus:/sbin/nologin
vpopmail:x:89:89::/var/vpopmail:/sbin/nologin
ntp:x:123:123:NTP:/var/empty:/sbin/nologin
smmsp:x:209:209:smmsp:/var/spool/mqueue:/sbin/nologin
guest:x:405:100:guest:/dev/null:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
"""
ALPINE_GROUP = """\
root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
sys:x:3:root,bin,adm
adm:x:4:root,adm,daemon
tty:x:5:
disk:x:6:root,adm
lp:x:7:lp
mem:x:8:
kmem:x:9:
wheel:x:10:root
floppy:x:11:root
mail:x:12:mail
news:x:13:news
uucp:x:14:uucp
man:x:15:man
cron:x:16:cron
console:x:17:
audio:x:18:
cdrom:x:19:
dialout:x:20:root
ftp:x:21:
sshd:x:22:
input:x:23:
at:x:25:at
tape:x:26:root
video:x:27:root
netdev:x:28:
readproc:x:30:
squid:x:31:squid
xfs:x:33:xfs
kvm:x:34:kvm
games:x:35:
shadow:x:42:
postgres:x:70:
cdrw:x:80:
usb:x:85:
vpopmail:x:89:
users:x:100:games
ntp:x:123:
nofiles:x:200:
smmsp:x:209:smmsp
locate:x:245:
abuild:x:300:
utmp:x:406:
ping:x:999:
nogroup:x:65533:
nobody:x:65534:
"""

#: alpine's top-level and /var directories (docker-py's tests exec with ``workdir='/var/opt'``)
ALPINE_DIRS = ["etc/apk", "lib", "media", "mnt", "opt", "run", "sbin", "srv", "usr/lib", "usr/local",
               "usr/local/bin", "usr/share", "var/cache", "var/empty", "var/lib", "var/local", "var/lock",
               "var/log", "var/mail", "var/opt", "var/run", "var/spool"]


def alpine_layer(release: str):
    from tests.support import images as im

    layer = im.LayerSpec(comment=f"alpine {release} stand-in")
    for d in ALPINE_DIRS:
        layer.dir(d)
    layer.file("etc/alpine-release", release + "\n", 0o644)
    layer.file("etc/passwd", ALPINE_PASSWD, 0o644)
    layer.file("etc/group", ALPINE_GROUP, 0o644)
    return layer


def hub_standins() -> dict[str, tuple[list, dict]]:
    """``library/NAME:TAG`` -> (layers, image config) of a busybox stand-in for that Docker Hub image."""
    from tests.support import images as im

    base = im.busybox_rootfs_layer()
    hello = im.LayerSpec(comment="hello").file(
        "hello", "#!/bin/sh\necho\necho 'Hello from Docker!'\n"
                 "echo 'This message shows that your installation appears to be working correctly.'\n", 0o755)
    return {
        "library/alpine:3.10": ([base, alpine_layer("3.10.9")], {"Cmd": ["/bin/sh"]}),
        "library/alpine:latest": ([base, alpine_layer("3.20.3")], {"Cmd": ["/bin/sh"]}),
        "library/busybox:latest": ([base], {"Cmd": ["sh"]}),
        "library/hello-world:latest": ([base, hello], {"Cmd": ["/hello"]}),
    }


def push_standins(registry, layouts: Path) -> dict[str, str]:
    """Build and push every stand-in; returns name -> manifest digest."""
    from tests.support import images as im

    pushed = {}
    platform = ("linux", im.host_arch())
    for name, (layers, config) in hub_standins().items():
        d = layouts / name.replace("/", "_").replace(":", "_")
        tag = name.rpartition(":")[2]
        info = im.build_image(d, layers, config, platform=platform, media="docker", tag=tag)
        pushed[name] = im.push(d, name, registry, src_tag=info.tag).digest
    return pushed


# ------------------------------------------------------------------------------------------ the run
def run_pytest(integration: Path, files: list[str], env: dict, result_log: Path, output: Path,
               per_test: int, deadline: float, extra: list[str], swarm_shim: bool = False) -> int | None:
    """pytest on ``files``; returns its exit status, or None when it was stopped at ``deadline``."""
    root = integration.parent.parent
    cmd = [sys.executable, "-m", "pytest", "-c", str(root / "pytest.ini"), "--rootdir", str(root),
           "-p", "no:cacheprovider", "-p", "no:core_testing", "-p", "compat_resultlog",
           "--timeout", str(per_test), "-rfEs", "--tb=short", "-v"]
    if swarm_shim:
        cmd += ["-p", "compat_swarm_shim"]
    for nodeid in DESELECTED:
        cmd += ["--deselect", f"{PACKAGE}/integration/{nodeid}"]
    cmd += [f"{PACKAGE}/integration/{f}.py" for f in files] + extra
    env = {**env, "COMPAT_RESULT_LOG": str(result_log),
           "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with open(output, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    _log("overall deadline reached: stopping pytest")
                    _stop(proc)
                    return None
                time.sleep(0.5)
            return proc.returncode
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (pytest ends the session and reports), then SIGKILL: the PID we started, nothing else."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
        try:
            proc.send_signal(sig)
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------------------ results
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not run")


def summarise(result_log: Path) -> dict:
    """Each test's outcome, as pytest counts them: ``failed`` (its call failed; for docker-py's
    unittest classes ``setUp`` and ``tearDown`` run in the call), ``error`` (only a fixture's setup
    or teardown failed), ``skipped``, ``xfailed``/``xpassed`` (marked ``xfail`` upstream),
    ``passed``, or ``not run`` (the run was stopped first).  ``messages`` holds every failing phase's
    one-line message."""
    collected_file = Path(str(result_log) + ".collected")
    collected = collected_file.read_text().split() if collected_file.exists() else []
    phases: dict[str, list[dict]] = {}
    if result_log.exists():
        for line in result_log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            phases.setdefault(entry["nodeid"], []).append(entry)
    tests = []
    for nodeid in dict.fromkeys(collected + list(phases)):
        entries = phases.get(nodeid, [])
        by_when = {e["when"]: e for e in entries}
        call = by_when.get("call")
        bad = [e for e in entries if e["outcome"] == "failed"]
        if call is not None and call.get("xfail"):
            outcome = "xfailed" if call["outcome"] == "skipped" else "xpassed"
        elif call is not None and call["outcome"] == "failed":
            outcome = "failed"
        elif bad:
            outcome = "error"
        elif any(e["outcome"] == "skipped" for e in entries):
            outcome = "skipped"
        elif call is not None:
            outcome = "passed"
        else:
            outcome = "not run"
        shown = [e for e in entries if e["outcome"] != "passed"]
        tests.append({
            "test": nodeid.removeprefix(f"{PACKAGE}/integration/"),
            "outcome": outcome,
            "messages": [f"{e['when']}: {e['message']}" for e in shown],
            "duration": round(sum(e["duration"] for e in entries), 2),
            "longrepr": "\n".join(e["longrepr"] for e in bad),
        })
    counts = {k: sum(1 for t in tests if t["outcome"] == k) for k in OUTCOMES}
    return {"counts": counts, "tests": tests}


def count_line(c: dict) -> str:
    """``N passed, M failed, K skipped`` and, when there are any, the rest of pytest's counts."""
    parts = [f"{c['passed']} passed", f"{c['failed']} failed", f"{c['skipped']} skipped"]
    parts += [f"{c[k]} {'errors' if k == 'error' else k}" for k in ("error", "xfailed", "xpassed", "not run") if c[k]]
    return ", ".join(parts)


def by_cause(tests: list[dict], ignored: frozenset[str] = frozenset()) -> list[str]:
    """The failures grouped by the causes of ``dockerpy_causes`` (a test under its first cause not
    ``ignored``: ``swarm-404`` in a ``--assume-swarm-503`` run), the failures no cause names, and the
    tests a cause names that passed."""
    from dockerpy_causes import CAUSES, FLAKY, KNOWN

    known = {t: [c for c in causes if c not in ignored] for t, causes in KNOWN.items()}
    known = {t: causes for t, causes in known.items() if causes}
    failing = [t for t in tests if t["outcome"] in ("failed", "error")]
    groups: dict[str, list[str]] = {}
    for t in failing:
        groups.setdefault(known.get(t["test"], ["new"])[0], []).append(t["test"])
    lines = ["## Failures by cause (tests/compat/dockerpy_causes.py, FINDINGS.md)", "",
             "| cause | issue 10 item | tests | what |", "|---|---|---|---|"]
    for key, (item, what) in CAUSES.items():
        if key in groups:
            lines.append(f"| `{key}` | {item} | {len(groups[key])} | {what} |")
    lines.append("")
    if "new" in groups:
        lines += ["### Failing for no known cause", ""] + [f"- `{t}`" for t in groups["new"]] + [""]
    passed = {t["test"] for t in tests if t["outcome"] == "passed"}
    fixed = [t for t, causes in known.items() if t in passed and not set(causes) <= FLAKY]
    flaky = [t for t, causes in known.items() if t in passed and set(causes) <= FLAKY]
    if fixed:
        lines += ["### Known failures that passed (a cause fixed?)", ""]
        lines += [f"- `{t}`: {known[t]}" for t in fixed] + [""]
    if flaky:
        lines += ["### Passed this time (their causes are races)", ""] + [f"- `{t}`: {known[t]}" for t in flaky] + [""]
    return lines


def write_reports(out: Path, meta: dict, summary: dict) -> None:
    from dockerpy_causes import KNOWN

    for t in summary["tests"]:
        t["known_causes"] = KNOWN.get(t["test"], [])
    data = {**meta, **summary}
    (out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# docker-py integration tests against core",
        "",
        f"- docker-py `{meta['dockerpy_ref']}` (SDK {meta['sdk_version']}), core at `{meta['core_commit']}`",
        f"- files ({len(meta['files'])}): " + ", ".join(f"`{f}`" for f in meta["files"]),
        f"- {meta['selected']} tests selected ({len(meta['deselected'])} deselected), per-test timeout"
        f" {meta['timeout']} s, run took {meta['seconds']:.0f} s"
        + ("" if meta["completed"] else " (**stopped before the end**: the overall deadline or an interruption)"),
    ]
    if meta["assume_swarm_503"]:
        lines.append("- **diagnostic run** (`--assume-swarm-503`): the SDK took core's 404 on /swarm/leave for 503")
    lines += ["", f"**{count_line(summary['counts'])}**", ""]
    lines += by_cause(summary["tests"], frozenset({"swarm-404"}) if meta["assume_swarm_503"] else frozenset())
    lines += ["## Not passing", "",
              "| test | outcome | messages |", "|---|---|---|"]
    for t in summary["tests"]:
        if t["outcome"] != "passed":
            msg = " / ".join(m[:300] for m in t["messages"]).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{t['test']}` | {t['outcome']} | {msg} |")
    lines += ["", "## Deselected", ""] + [f"- `{k}`: {v}" for k, v in meta["deselected"].items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=os.environ.get("DOCKERPY_REPO", DEFAULT_DOCKERPY),
                    help="a docker-py git clone, bare or not (default: %(default)s, or $DOCKERPY_REPO)")
    ap.add_argument("--ref", help="docker-py tag or commit (default: the installed SDK's version tag, else HEAD)")
    ap.add_argument("--files", nargs="+", default=DEFAULT_FILES, metavar="NAME",
                    help="test files of tests/integration, without .py (default: the 11 of issue 10)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per test (default: %(default)s)")
    ap.add_argument("--deadline", type=int, default=18 * 60,
                    help="seconds for the whole pytest run (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="report directory (default: a new /tmp/core-dockerpy-report-*)")
    ap.add_argument("--assume-swarm-503", action="store_true",
                    help="diagnostic run: the SDK takes core's 404 on /swarm/leave for docker's 503"
                         " (see the description above)")
    ap.add_argument("--keep", action="store_true", help="keep the extracted tests (the daemon is stopped anyway)")
    ap.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --  (e.g. -- -k exec)")
    args = ap.parse_args(argv)

    problems = check_requirements()
    if not Path(args.repo).exists():
        problems.append(f"no docker-py clone at {args.repo}: give --repo")
    for f in args.files:
        if not f.replace("_", "").isalnum():
            problems.append(f"--files {f!r}: a test file name such as api_exec_test")
    if problems:
        for p in problems:
            print(f"dockerpy: {p}", file=sys.stderr)
        return 1

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    from tests.conftest import CoreEnv
    from core.testing.registry_server import Registry

    out = args.out or Path(tempfile.mkdtemp(prefix=f"core-dockerpy-report-{time.strftime('%Y%m%dT%H%M%S')}-",
                                            dir="/tmp"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="core-dockerpy-"))
    registry = core = None
    started = time.monotonic()
    try:
        ref = dockerpy_ref(args.repo, args.ref)
        integration = extract_tests(args.repo, ref, work)
        missing = [f for f in args.files if not (integration / f"{f}.py").exists()]
        if missing:
            print(f"dockerpy: docker-py {ref} has no " + ", ".join(f"tests/integration/{f}.py" for f in missing),
                  file=sys.stderr)
            return 1
        _log(f"docker-py {ref}: {len(args.files)} files; registry and stand-in images")
        registry = Registry().start()
        digests = push_standins(registry, work / "layouts")
        core = CoreEnv()
        core.write_config({"registry-mirrors": [registry.url]})
        core.start_daemon()
        _log(f"core daemon on {core.host} (root {core.root}); running pytest (log: {out / 'pytest.log'})")
        (work / "docker-config").mkdir()
        env = {k: v for k, v in core.env.items() if not k.startswith(("DOCKER_TLS", "DOCKER_CERT", "DOCKER_CONTEXT"))}
        env.update({"DOCKER_HOST": core.host, "DOCKER_CONFIG": str(work / "docker-config")})
        env.pop("DOCKER_TEST_API_VERSION", None)
        result_log = out / "results.jsonl"
        result_log.unlink(missing_ok=True)
        status: int | None = None

        def report(completed: bool) -> dict:
            summary = summarise(result_log)
            collected = Path(str(result_log) + ".collected")
            meta = {
                "dockerpy_ref": ref,
                "sdk_version": importlib.metadata.version("docker"),
                "core_commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                              capture_output=True, text=True).stdout.strip(),
                "files": args.files,
                "selected": len(collected.read_text().split()) if collected.exists() else 0,
                "deselected": {k: v for k, v in DESELECTED.items() if k.split(".py::")[0] in args.files},
                "assume_swarm_503": args.assume_swarm_503,
                "timeout": args.timeout,
                "pytest_status": status,
                "completed": completed,
                "seconds": time.monotonic() - started,
                "standins": digests,
            }
            write_reports(out, meta, summary)
            print(f"{count_line(summary['counts'])} (of {meta['selected']} selected;"
                  f" {len(meta['deselected'])} deselected)")
            print(f"report: {out / 'summary.md'}")
            return summary

        try:
            status = run_pytest(integration, args.files, env, result_log, out / "pytest.log", args.timeout,
                                time.monotonic() + args.deadline, args.pytest_args, args.assume_swarm_503)
        except (KeyboardInterrupt, Interrupted):
            report(completed=False)  # what was reached before the interruption
            raise
        report(completed=status is not None)
        if status is not None and status not in (0, 1):
            _log(f"pytest exited {status}: see {out / 'pytest.log'}")
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        _log(f"interrupted ({str(exc) or 'SIGINT'}): cleaning up")
        return 130
    except subprocess.CalledProcessError as exc:  # git archive of a bad --ref, tar
        err = exc.stderr.decode(errors="replace").strip() if isinstance(exc.stderr, bytes) else exc.stderr
        print(f"dockerpy: {' '.join(map(str, exc.cmd))} failed: {err or exc}", file=sys.stderr)
        return 1
    except (RuntimeError, AssertionError, OSError) as exc:  # the registry, a push, the daemon's start
        print(f"dockerpy: could not set up the run: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up itself is not interrupted
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if core is not None:
            log = core.daemon_log()
            (out / "daemon.log").write_text(log)
            core.cleanup()
        if registry is not None:
            registry.stop()
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
