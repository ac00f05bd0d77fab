"""The kernel: driver loading, daemon, CLI, API basics — with a real daemon on a real socket."""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.main import COMMANDS, GROUPS
from tests.conftest import _answers, wait_for
from tests.support.helpers import recv_all

BUILTIN = [
    ("storage", "overlay"), ("storage", "vfs"), ("network", "bridge"), ("network", "overlay"),
    ("executor", "container"), ("registry", "hub"),
]


def raw_http(sock_path, data: bytes, timeout=10) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def split_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


# -- start-up and drivers ----------------------------------------------------------------------------


def test_info_starts_the_daemon_and_lists_every_driver(core_env):
    assert not core_env.socket.exists()
    proc = core_env.run("info")
    assert proc.returncode == 0, proc.stderr
    assert core_env.socket.exists(), "core info should have started the daemon"
    assert (core_env.exec_root / "daemon.log").exists()
    lines = proc.stdout.splitlines()
    drivers = {}
    for line in lines[lines.index(" Drivers:") + 1:]:
        if not line.startswith("  "):
            break
        kind, name, status = line.split()[:3]
        drivers[(kind, name)] = status.rstrip(",")
    for kind, name in BUILTIN:
        assert drivers[(kind, name)] in ("ok", "skipped"), (kind, name, drivers)
    # the out-of-tree distribution, installed with pip like a third party's
    assert drivers[("storage", "dummy")] == "ok"
    assert drivers[("network", "dummy-skipped")] == "skipped"
    for broken in [("executor", "dummy-broken"), ("registry", "dummy-bad-hooks"), ("storage", "dummy-twin"),
                   ("storage", "dummy-unknown-hook"), ("registry", "dummy-no-factory")]:
        assert drivers[broken] == "error"
    assert "needs the frobnicator kernel module" in proc.stdout
    assert " Storage Driver: overlay" in proc.stdout
    # the daemon keeps running after the CLI exits, and answers the next command at once
    assert core_env.run("version").returncode == 0


def test_info_json_drivers_section(shared_core):
    info = json.loads(shared_core.run("info", "--format", "json", check=True).stdout)
    by_name = {(d["Kind"], d["Name"]): d for d in info["Drivers"]}
    assert by_name[("storage", "overlay")]["Default"] is True
    assert by_name[("storage", "dummy")]["Distribution"].startswith("core-dummy-driver")
    assert by_name[("network", "dummy-skipped")]["Reason"] == "needs the frobnicator kernel module"
    assert info["DockerRootDir"] == str(shared_core.data_root)


LOAD_ERRORS = [
    ("storage=nope", 'storage driver "nope" not found (available: dummy, dummy-twin, dummy-unknown-hook, overlay, vfs)'),
    ("bogus=x", 'unknown driver kind "bogus" (kinds: storage, network, executor, registry)'),
    ("executor=dummy-broken", "failed to load: ModuleNotFoundError: No module named 'core_dummy_driver_missing_dependency'"),
    ("registry=dummy-bad-hooks", "core_registry_driver(ctx) whose argument(s) 'ctx' the specification does not have"),
    ("storage=dummy-unknown-hook", "implements the hook core_storage_drivr, which no core hook specification has"),
    ("registry=dummy-no-factory", "does not implement the hook core_registry_driver"),
    ("storage=dummy-twin", "is claimed by several distributions: core-dummy-driver 0.1.0, core-dummy-twin 0.1.0"),
    ("network=dummy-skipped", 'network driver "dummy-skipped" cannot run here: needs the frobnicator kernel module'),
]


@pytest.mark.parametrize("selection,message", LOAD_ERRORS, ids=[s for s, _ in LOAD_ERRORS])
def test_cli_driver_errors_exit_125(shared_core, selection, message):
    proc = shared_core.run("--driver", selection, "info")
    assert proc.returncode == 125, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    kind, _, name = selection.partition("=")
    if kind != "bogus":
        assert "available: " in proc.stderr or "cannot run here" in proc.stderr


@pytest.mark.parametrize("selection,message", LOAD_ERRORS, ids=[s for s, _ in LOAD_ERRORS])
def test_daemon_refuses_to_start_with_a_broken_driver(core_env, selection, message):
    proc = subprocess.run([sys.executable, "-m", "core", "daemon", "--driver", selection], env=core_env.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 125, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not core_env.socket.exists()


def test_daemon_config_file_names_a_broken_driver(core_env):
    core_env.write_config({"drivers": {"executor": "dummy-broken"}})
    proc = core_env.run("info")
    assert proc.returncode == 125, proc.stderr
    assert 'executor driver "dummy-broken"' in proc.stderr and "failed to load" in proc.stderr


def test_driver_selected_per_operation(shared_core):
    assert " Storage Driver: dummy" in shared_core.run("--driver", "storage=dummy", "info", check=True).stdout
    assert " Storage Driver: overlay" in shared_core.run("info", check=True).stdout
    # the dummy driver was built under its own root, <data-root>/storage/dummy
    assert (shared_core.data_root / "storage" / "dummy" / "created-by-dummy").read_text() == "dummy"


def test_daemon_config_file(core_env):
    core_env.write_config({"storage-driver": "vfs", "registry-mirrors": ["http://127.0.0.1:1"],
                           "insecure-registries": ["10.9.0.0/16"]})
    info = json.loads(core_env.run("info", "--format", "json", check=True).stdout)
    assert info["Driver"] == "vfs"
    assert info["RegistryConfig"]["Mirrors"] == ["http://127.0.0.1:1"]
    assert "10.9.0.0/16" in info["RegistryConfig"]["InsecureRegistryCIDRs"]


@pytest.mark.parametrize("content,message", [
    ("{not json", "invalid JSON"),
    ('{"storage-driverz": "vfs"}', "unknown keys: storage-driverz"),
    ('{"registry-mirrors": "x"}', '"registry-mirrors" must be a list of strings'),
    ("[]", "must be a JSON object"),
    ('{"registry-mirrors": ["ftp://mirror"]}', "invalid mirror URL 'ftp://mirror'"),
    ('{"insecure-registries": ["10.0.0.0/99"]}', "invalid CIDR '10.0.0.0/99'"),
])
def test_daemon_config_file_errors(core_env, content, message):
    path = core_env.write_config(content)
    proc = subprocess.run([sys.executable, "-m", "core", "daemon", "--config-file", str(path)], env=core_env.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_second_daemon_on_the_same_data_root_refuses(core_env):
    first = core_env.start_daemon()
    second = subprocess.run([sys.executable, "-m", "core", "daemon", "-H", f"unix://{core_env.root}/other.sock"],
                            env=core_env.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"another core daemon (pid {first.pid}) is already running with data root {core_env.data_root}" \
        in second.stderr
    assert core_env.run("version").returncode == 0  # the first one is undisturbed


def test_second_daemon_on_the_same_socket_refuses(core_env):
    core_env.start_daemon()
    env = dict(core_env.env, CORE_DATA_ROOT=str(core_env.root / "data2"))
    second = subprocess.run([sys.executable, "-m", "core", "daemon"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 1
    assert "already listening on" in second.stderr
    assert not (core_env.root / "data2").exists()  # a refused daemon creates nothing


def test_sigterm_shuts_down_gracefully(core_env):
    proc = core_env.start_daemon()
    assert (core_env.exec_root / "core.pid").read_text().strip() == str(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert not core_env.socket.exists()
    assert not (core_env.exec_root / "core.pid").exists()
    # a stale socket file left by a killed daemon does not stop the next one
    proc = core_env.start_daemon()
    proc.kill()
    proc.wait()
    assert core_env.socket.exists()
    core_env.start_daemon()
    assert core_env.run("version").returncode == 0


def test_installed_command_runs_without_site(core_env):
    """install.sh writes the `core` command as `python -IS`: the CLI runs on the standard library
    alone, the daemon it starts (and `core daemon` through it) gets the virtualenv's packages."""
    exe = Path(sys.executable).with_name("core")
    if not exe.read_text().startswith(f"#!{Path(sys.executable).parent}"):
        pytest.skip("the core command is not install.sh's launcher (install.sh --test writes it)")
    assert exe.read_text().splitlines()[0].endswith(" -IS")
    proc = subprocess.run([str(exe), "version", "--format", "{{.Server.ApiVersion}}"], env=core_env.env,
                          capture_output=True, text=True, timeout=60)   # autostarts the daemon
    core_env._note_daemon()
    assert proc.returncode == 0 and proc.stdout.strip() == "1.47", proc.stderr
    core_env.stop_daemons()
    log = open(core_env.root / "daemon-launcher.log", "ab")
    daemon = subprocess.Popen([str(exe), "daemon"], env=core_env.env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    core_env.procs.append(daemon)
    wait_for(lambda: _answers(core_env.socket) or daemon.poll() is not None, what="the daemon's socket")
    assert daemon.poll() is None, (core_env.root / "daemon-launcher.log").read_text()
    assert core_env.run("info", "--format", "{{.Driver}}").stdout.strip() == "overlay"


def test_socket_mode(shared_core):
    assert oct(shared_core.socket.stat().st_mode & 0o777) == "0o660"


def test_no_daemon_and_no_autostart(core_env):
    proc = core_env.run("version", env={"CORE_NO_AUTOSTART": "1"})
    assert proc.returncode == 1
    assert f"Cannot connect to the Docker daemon at {core_env.host}. Is the docker daemon running?" in proc.stderr
    assert "Client:" in proc.stdout  # the client half is still printed, as docker does


@pytest.mark.parametrize("how", ["-H", "CORE_HOST", "DOCKER_HOST"])
def test_a_socket_elsewhere_is_not_started(core_env, how):
    """Only the local engine (the socket of the environment's exec root) is started on demand:
    a socket named elsewhere that does not answer is docker's error, and nothing is created."""
    other = f"unix://{core_env.root}/elsewhere.sock"
    env = {"CORE_HOST": "", "DOCKER_HOST": ""}
    args = ["version"]
    if how == "-H":
        args = ["-H", other, "version"]
    else:
        env[how] = other
    proc = core_env.run(*args, env=env)
    assert proc.returncode == 1
    assert f"Cannot connect to the Docker daemon at {other}. Is the docker daemon running?" in proc.stderr
    assert not core_env.data_root.exists() and not (core_env.exec_root / "core.pid").exists()


def test_the_local_engine_is_started_with_the_environments_roots(core_env):
    env = {"CORE_HOST": "", "DOCKER_HOST": ""}  # nothing named: the exec root's own socket
    try:
        proc = core_env.run("info", "--format", "{{.DockerRootDir}}", env=env)
    finally:
        core_env._note_daemon()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(core_env.data_root)
    assert core_env.socket.exists()


def test_permission_denied_says_what_to_do(shared_core):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv not installed")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *
                           [sys.executable, "-m", "core", "version"]], env=shared_core.env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "permission denied" in proc.stderr and 'join the "core" group' in proc.stderr


# -- CLI -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    proc = subprocess.run([sys.executable, "-m", "core", *command.split(), "--help"], capture_output=True,
                          text=True, timeout=60, env={"CORE_NO_AUTOSTART": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout.lower()


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_group_has_help(group):
    proc = subprocess.run([sys.executable, "-m", "core", group, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Commands:" in proc.stdout


def test_top_level_help_and_unknown_command():
    top = subprocess.run([sys.executable, "-m", "core", "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "Commands:" in top.stdout and "--driver KIND=NAME" in top.stdout
    bad = subprocess.run([sys.executable, "-m", "core", "frobnicate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 125 and "'frobnicate' is not a core command" in bad.stderr
    flag = subprocess.run([sys.executable, "-m", "core", "version", "--bogus"], capture_output=True, text=True,
                          timeout=60)
    assert flag.returncode == 125 and "unknown flag: --bogus" in flag.stderr


def test_version_output(shared_core):
    out = shared_core.run("version", check=True).stdout
    assert out.startswith("Client:\n Version:")
    assert "Server: core" in out and "API version:      1.47 (minimum version 1.24)" in out
    fmt = shared_core.run("version", "--format", "{{.Server.ApiVersion}} {{.Client.ApiVersion}}", check=True)
    assert fmt.stdout == "1.47 1.47\n"


def test_format_errors_are_clear(shared_core):
    proc = shared_core.run("info", "--format", "{{.Foo | nosuchfunc}}")
    assert proc.returncode != 0 and "nosuchfunc" in proc.stderr and "Traceback" not in proc.stderr


# -- API ------------------------------------------------------------------------------------------------


def test_docker_sdk_version_and_info(shared_core):
    client = shared_core.docker_client()
    try:
        assert client.ping() is True
        version = client.version()
        assert version["ApiVersion"] == "1.47" and version["MinAPIVersion"] == "1.24"
        info = client.info()
        assert info["OSType"] == "linux" and info["Driver"] == "overlay"
        assert info["Swarm"]["LocalNodeState"] == "inactive"
    finally:
        client.close()


def test_docker_sdk_auto_negotiates_version(shared_core):
    import docker

    client = docker.DockerClient(base_url=shared_core.host, version="auto")
    try:
        assert client.api.api_version == "1.47"
    finally:
        client.close()


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_docker_cli_version_and_info(shared_core):
    version = subprocess.run(["docker", "version"], env=shared_core.env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert "API version:      1.47 (minimum version 1.24)" in version.stdout
    info = subprocess.run(["docker", "info"], env=shared_core.env, capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert "Storage Driver: overlay" in info.stdout


def test_ping_headers(shared_core):
    for method in (b"GET", b"HEAD"):
        status, headers, body = split_response(raw_http(
            shared_core.socket, method + b" /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert status == 200
        assert headers["api-version"] == "1.47" and headers["ostype"] == "linux"
        assert headers["swarm"] == "inactive" and "no-cache" in headers["cache-control"]
        assert headers["server"].startswith("core/")
        assert body == (b"OK" if method == b"GET" else b"")


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.47"])
def test_versioned_paths(shared_core, prefix):
    status, _, body = split_response(raw_http(
        shared_core.socket, f"GET {prefix}/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()))
    assert status == 200 and json.loads(body)["ApiVersion"] == "1.47"


@pytest.mark.parametrize("request_bytes,status,fragment", [
    (b"GET /v1.12/version HTTP/1.1\r\nHost: x\r\n\r\n", 400, "client version 1.12 is too old"),
    (b"GET /v1.99/version HTTP/1.1\r\nHost: x\r\n\r\n", 400, "client version 1.99 is too new"),
    (b"GET /nothing/here HTTP/1.1\r\nHost: x\r\n\r\n", 404, "page not found"),
    (b"DELETE /version HTTP/1.1\r\nHost: x\r\n\r\n", 404, "page not found"),
    (b"THIS IS NOT HTTP\r\n\r\n", 400, "bad request"),
    (b"GET /version HTTP/1.1\r\n\r\n", 400, "bad request"),  # no Host header
    (b"GET /version HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n", 431, "bad request"),
    (b"POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n" + b"x" * 17_000_000, 413, "too large"),
    (b"GET /version HTTP/1.1\r\nHost: x\r\nX-Core-Driver: storage\r\n\r\n", 400, "expected KIND=NAME"),
    (b"GET /version HTTP/1.1\r\nHost: x\r\nX-Core-Driver: storage=nope\r\n\r\n", 404, 'storage driver "nope" not found'),
])
def test_malformed_requests_get_json_errors(shared_core, request_bytes, status, fragment):
    try:
        raw = raw_http(shared_core.socket, request_bytes)
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the daemon dropped the connection instead of answering")
    got, headers, body = split_response(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    message = json.loads(body)["message"]
    assert fragment in message and "Traceback" not in message
    # and the daemon goes on serving
    assert shared_core.run("version").returncode == 0


def test_keep_alive_serves_several_requests(shared_core):
    raw = raw_http(shared_core.socket, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    assert raw.count(b"HTTP/1.1 200") == 3


def test_driver_context_offers_each_kind_only_what_is_its_own(tmp_path):
    from core import plugins
    from core.contracts import ContentStore, DriverContext, RegistryConfig
    from core.engine.images.content import ContentStore as KernelContentStore

    store = KernelContentStore(tmp_path / "content")
    assert isinstance(store, ContentStore)  # the kernel's store satisfies the Protocol
    config = RegistryConfig.from_mapping({"insecure": ["10.0.0.0/8"]})
    for kind in ("storage", "network", "executor", "registry"):
        ctx = plugins.context_for(kind, "x", tmp_path / "data", tmp_path / "run", {"k": "v"},
                                  content=store, registry=config)
        assert isinstance(ctx, DriverContext)
        assert (ctx.root, ctx.exec_root, ctx.options) == (
            tmp_path / "data" / kind / "x", tmp_path / "run" / kind / "x", {"k": "v"})
        offered = kind == "registry"
        assert (ctx.content is store, ctx.registry is config) == (offered, offered)
    assert not hasattr(ctx, "services")


def test_suites_take_driver_options_from_the_environment(monkeypatch):
    from core.testing import OPTIONS_ENV, options_from_env

    monkeypatch.delenv(OPTIONS_ENV, raising=False)
    assert options_from_env() == {}
    monkeypatch.setenv(OPTIONS_ENV, '{"nft-table": "ct1"}')
    assert options_from_env() == {"nft-table": "ct1"}
    for bad in ("{not json", "[]", '{"n": 1}'):
        monkeypatch.setenv(OPTIONS_ENV, bad)
        with pytest.raises(pytest.UsageError, match="JSON object of strings"):
            options_from_env()


def test_hookspecs_name_the_protocol_each_factory_returns():
    import typing

    from core import contracts
    from core.hookspecs import SPECS

    protocols = {"storage": contracts.Snapshotter, "network": contracts.NetworkDriver,
                 "executor": contracts.Executor, "registry": contracts.RegistryClient}
    for kind, spec in SPECS.items():
        factory = getattr(spec, f"core_{kind}_driver")
        hints = typing.get_type_hints(factory, vars(contracts))
        assert hints["return"] is protocols[kind]
        assert hints["context"] is contracts.DriverContext
        assert factory.__doc__ and protocols[kind].__name__ in factory.__doc__


def test_loading_conformance_suite_as_a_third_party_runs_it(tmp_path):
    drivers = [f"--driver={k}={n}" for k, n in BUILTIN] + ["--driver=storage=dummy"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
                           "core.testing.loading", *drivers], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    broken = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
                             "core.testing.loading", "--driver=executor=dummy-broken"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert broken.returncode == 1
    assert "core_dummy_driver_missing_dependency" in broken.stdout


def test_a_cli_bug_is_one_line_not_a_traceback(monkeypatch, capsys):
    from core.cli import cmd_system, main

    def broken(ctx, argv, prog):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cmd_system, "version", broken)
    assert main.main(["version"]) == 1
    err = capsys.readouterr().err
    assert err == "core: internal error: ZeroDivisionError: division by zero (run with -D for the traceback)\n"
    with pytest.raises(ZeroDivisionError):
        main.main(["-D", "version"])


def test_state_database_from_a_newer_core_is_refused(core_env):
    import sqlite3

    core_env.data_root.mkdir(parents=True)
    db = sqlite3.connect(core_env.data_root / "state.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    proc = core_env.start_daemon(wait=False)
    assert proc.wait(timeout=30) != 0
    assert "state database version 99 is newer than this engine's" in core_env.daemon_log()


def test_state_migrations_are_numbered_not_ordered(tmp_path):
    from core.daemon.app import MIGRATIONS
    from core.engine import state

    # the order given does not matter: the numbers do
    assert [m.name for m in sorted((state.META, *MIGRATIONS), key=lambda m: m.number)] == [
        "meta", "images", "volumes", "containers", "networks"]
    db = state.State(tmp_path / "state.db", reversed(MIGRATIONS))
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    db.close()
    with pytest.raises(state.CoreError, match="given twice"):
        state.State(tmp_path / "twice.db", [*MIGRATIONS, state.Migration(2, "other", "CREATE TABLE x (y)")])
    with pytest.raises(state.CoreError, match=r"state migrations \[6, .*98\] are missing"):
        state.State(tmp_path / "other.db", [*MIGRATIONS, state.Migration(99, "gap", "CREATE TABLE gap (y)")])


def test_the_kernel_imports_no_engine_api_daemon_or_cli():
    """The micro-kernel's layering: the kernel (core/*.py, contracts, storage, shim, testing)
    never imports the engine services, the API, the daemon or the CLI (``core/__main__.py`` is
    the command's entry, not the kernel)."""
    import ast

    root = Path(__file__).resolve().parents[2] / "core"
    kernel = [p for p in root.glob("*.py") if p.name != "__main__.py"]
    for pkg in ("contracts", "storage", "shim", "testing"):
        kernel += sorted((root / pkg).rglob("*.py"))
    outer = ("core.engine", "core.api", "core.daemon", "core.cli")
    # the one exception: the suites' harness gives registry drivers the daemon's own content
    # store (the implementation behind core.contracts.content), as the daemon would
    allowed = {"core/testing/__init__.py: core.engine.images.content"}
    bad = []
    for path in kernel:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.relative_to(root.parent)}: {n}" for n in names if n.startswith(outer)]
    assert not set(bad) - allowed, bad
