"""``run``, ``create``, ``start``, ``attach`` and ``exec``: docker 28's flags turned into the Engine
API's ``POST /containers/create`` body, and the attach / wait / start choreography of its CLI.

``run`` = create (pulling on "No such image", progress on stderr) → attach (unless ``-d``) →
wait for the next exit (or removal with ``--rm``) → start → stream → exit with the container's
status.  Exit codes as docker's: 125 when the daemon refuses (or a flag is wrong), 126 when the
command cannot be invoked, 127 when it is not found, else the container's own.

The flags of ``run`` and ``create`` and the create body they make are
:mod:`core.cli.runconfig`'s; the values of single flags (ports, mounts, env files ...) are read by
:mod:`core.cli.flagvalues`.
"""
from __future__ import annotations

import os
import sys

from core.cli import lean
from core.cli.client import APIError, CLIError
from core.cli.flags import Flags, command
from core.cli.flagvalues import read_env, validate_env
from core.cli.runconfig import PULL_ALWAYS, PULL_MISSING, PULL_NEVER, ConfigError, build_config, container_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# ================================================================================================
# Errors and images
# ================================================================================================


def with_help(message: str, name: str) -> str:
    return f"core: {message}\n\nRun 'core {name} --help' for more information"


def status_error(exc: CLIError, name: str = "run") -> CLIError:
    """docker's toStatusError: 127 for a command not found, 126 for one that cannot be invoked,
    else 125 — with docker's "Run 'core run --help'" hint."""
    message = exc.message
    if ("executable file not found" in message or "no such file or directory" in message
            or "system cannot find the file specified" in message):
        code = 127
    elif "permission denied" in message or "is a directory" in message:
        code = 126
    else:
        code = 125
    return CLIError(with_help(message, name), code)


def _is_image_id(image: str) -> bool:
    text = image.removeprefix("sha256:")
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def tagged_familiar(image: str) -> str:
    """reference.FamiliarString(TagNameOnly(ref)): ``busybox`` → ``busybox:latest``."""
    from core.cli.format import familiar

    name = image
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" not in last:
        name += ":latest"
    return familiar(name)


def pull_for_run(ctx: Any, image: str, platform: str, quiet: bool) -> None:
    """Pull as ``run`` does: progress on stderr (stdout is for the container's ID and output)."""
    from core.cli.cmd_image import _split_tag, pull_image

    repo, tag = _split_tag(image)
    pull_image(ctx, repo, tag or "latest", platform, quiet, out=sys.stderr)


def create_container(ctx: Any, body: dict[str, Any], name: str, platform: str, pull: str, quiet: bool,
                     cidfile: str = "") -> str:
    """POST /containers/create, pulling the image first (``--pull always``) or when the daemon
    does not have it (``missing``); warnings go to stderr.  Returns the new container's ID."""
    image = body["Image"]
    cid_file = None
    if cidfile:
        if os.path.exists(cidfile):
            raise CLIError(f"container ID file found, make sure the other container isn't running or delete {cidfile}")
        try:
            cid_file = open(cidfile, "w")
        except OSError as exc:
            raise CLIError(f"failed to create the container ID file: {exc}") from None
    written = False
    try:
        if pull == PULL_ALWAYS:
            pull_for_run(ctx, image, platform, quiet)
        params = {"name": name or None, "platform": platform or None}
        try:
            created = ctx.client.post("/containers/create", params, body)
        except APIError as exc:
            if not (exc.status == 404 and pull == PULL_MISSING and not _is_image_id(image)
                    and "image" in exc.detail.lower()):
                raise
            if not quiet:
                sys.stderr.write(f"Unable to find image '{tagged_familiar(image)}' locally\n")
                sys.stderr.flush()
            pull_for_run(ctx, image, platform, quiet)
            created = ctx.client.post("/containers/create", params, body)
        created = created or {}
        warnings = list(created.get("Warnings") or [])
        for dns in (body.get("HostConfig") or {}).get("Dns") or []:
            import ipaddress

            try:
                if ipaddress.ip_address(dns).is_loopback:
                    warnings.append(f"Localhost DNS ({dns}) may fail in containers.")
            except ValueError:
                pass
        for w in warnings:
            sys.stderr.write(f"WARNING: {w}\n")
        ident = created.get("Id") or created.get("ID") or ""
        if cid_file is not None:
            cid_file.write(ident)
            written = True
        return ident
    finally:
        if cid_file is not None:
            cid_file.close()
            if not written:
                try:
                    os.remove(cidfile)
                except OSError:
                    pass


def detach_keys_default(value: str) -> str:
    if value:
        return value
    try:
        from core.cli import dockerconfig

        return str(dockerconfig.load().get("detachKeys") or "")
    except CLIError:
        return ""


def validate_detach_keys(keys: str) -> None:
    if not keys:
        return
    from core.detachkeys import to_bytes

    try:
        to_bytes(keys)
    except ValueError as exc:
        raise CLIError(f"invalid detach keys ({keys}): {exc}", 1) from None


def check_tty(attach_stdin: bool, tty: bool) -> None:
    from core.cli.hijack import isatty

    if tty and attach_stdin and not isatty(0):
        raise CLIError("the input device is not a TTY", 1)


class Waiter:
    """``POST /containers/{id}/wait`` in a thread: registered before the container starts (the
    daemon answers its headers at once), the status when it exits (or is removed)."""

    ACCEPT_TIMEOUT = 2.0

    def __init__(self, ctx: Any, ident: str, condition: str) -> None:
        self.ctx, self.ident, self.condition = ctx, ident, condition
        self.accepted = lean.Event()
        self.done = lean.Event()
        self.code = 125
        self.error: str | None = None  # what docker logs when waiting failed
        self.message: str | None = None  # the daemon's wait error (attach reports just that)
        lean.spawn(self._run)
        self.accepted.wait(self.ACCEPT_TIMEOUT)

    def _run(self) -> None:
        try:
            resp = self.ctx.client.request("POST", f"/containers/{self.ident}/wait",
                                           {"condition": self.condition or None}, raw_body=b"")
            self.accepted.set()
            try:
                data = resp.json() or {}
            finally:
                resp.sock.close()
            message = (data.get("Error") or {}).get("Message")
            if message:
                self.error = f"Error waiting for container: {message}"
                self.message = message
                self.code = 125
            else:
                self.code = int(data.get("StatusCode", 0))
        except CLIError as exc:
            self.error = f"error waiting for container: {exc.message}"
            self.code = 125
        finally:
            self.accepted.set()
            self.done.set()

    def status(self, timeout: float | None = None, report: bool = True) -> int:
        """The exit status (125 if waiting failed, the reason then on stderr unless ``report`` is
        false, as when the start itself already failed)."""
        self.done.wait(timeout)
        if report and self.error:
            sys.stderr.write(self.error + "\n")
        return self.code


def _console_size() -> tuple[int, int]:
    from core.cli.hijack import terminal_size

    return terminal_size(1)


# ================================================================================================
# create, run
# ================================================================================================


def _run_flags(prog: str, run: bool) -> Flags:
    if run:
        f = Flags(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image",
                  aliases="core container run, core run", interspersed=False, help_shorthand=False)
    else:
        f = Flags(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
                  aliases="core container create, core create", interspersed=False, help_shorthand=False)
    return container_flags(f, run)


def _prepare(flags: Flags, argv: list[str], name: str) -> tuple[Any, dict[str, Any]]:
    opts, args = flags.parse(argv)
    flags.require(args, least=1)
    if opts.pull not in (PULL_ALWAYS, PULL_MISSING, PULL_NEVER, ""):
        raise CLIError(with_help(f"invalid pull option: '{opts.pull}': must be one of \"always\", \"missing\" "
                                 f"or \"never\"", name), 125)
    if opts.platform:
        parts = opts.platform.split("/")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise CLIError(with_help(f'error parsing specified platform: "{opts.platform}": unknown operating '
                                     "system or architecture: invalid argument", name), 125)
    try:
        body = build_config(opts, args[0], args[1:], _console_size())
    except ConfigError as exc:
        raise CLIError(with_help(str(exc), name), 125) from None
    return opts, body


@command
def create(ctx: Any, argv: list[str], prog: str) -> int:
    flags = _run_flags(prog, run=False)
    opts, body = _prepare(flags, argv, "create")
    ident = create_container(ctx, body, opts.name, opts.platform, opts.pull or PULL_MISSING, opts.quiet,
                             opts.cidfile)
    sys.stdout.write(ident + "\n")
    return 0


@command
def run(ctx: Any, argv: list[str], prog: str) -> int:
    flags = _run_flags(prog, run=True)
    opts, body = _prepare(flags, argv, "run")
    if not opts.detach:
        check_tty(body["AttachStdin"], body["Tty"])
    else:
        if opts.attach:
            raise CLIError("conflicting options: cannot specify both --attach and --detach", 1)
        body["AttachStdin"] = body["AttachStdout"] = body["AttachStderr"] = False
        body["StdinOnce"] = False
    detach_keys = detach_keys_default(opts.detach_keys)
    validate_detach_keys(opts.detach_keys)
    try:
        ident = create_container(ctx, body, opts.name, opts.platform, opts.pull or PULL_MISSING, opts.quiet,
                                 opts.cidfile)
    except CLIError as exc:
        raise status_error(exc) from None
    return _run_created(ctx, ident, body, opts, detach_keys)


def _run_created(ctx: Any, ident: str, body: dict[str, Any], opts: Any, detach_keys: str) -> int:
    from core.cli import hijack

    tty = bool(body["Tty"])
    attach_in, attach_out, attach_err = body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]
    attached = attach_in or attach_out or attach_err
    auto_remove = bool(body["HostConfig"].get("AutoRemove"))
    signals = hijack.SignalWorker(ctx.client)
    streamer: hijack.Streamer | None = None
    try:
        if opts.sig_proxy:
            signals.proxy(ident, on_force_exit=lambda: streamer and streamer.restore_terminal())
        if not attached:
            sys.stdout.write(ident + "\n")
            sys.stdout.flush()
        else:
            params = {"stream": True, "stdin": attach_in, "stdout": attach_out, "stderr": attach_err,
                      "detachKeys": detach_keys or None}
            conn = hijack.hijack(ctx.client, f"/containers/{ident}/attach", params)
            streamer = hijack.Streamer(conn, tty=tty, stdin=attach_in, stdout=attach_out, stderr=attach_err,
                                       detach_keys=detach_keys, stderr_to_stdout=tty)
        waiter = Waiter(ctx, ident, "removed" if auto_remove else "next-exit")
        try:
            ctx.client.post(f"/containers/{ident}/start")
        except CLIError as exc:
            if streamer is not None:
                streamer.cancel()
                streamer.conn.close()
            if auto_remove:
                waiter.status(timeout=10, report=False)
            raise status_error(exc) from None
        if streamer is None:
            return 0
        if tty and hijack.isatty(1):
            signals.monitor_size(ident, is_exec=False)
        if not attach_out and not attach_err:
            # nothing to read but stdin: the container's exit ends the session
            lean.spawn(lambda: (waiter.done.wait(), streamer.cancel()))
        else:
            _cancel_after_exit(waiter, streamer)
        outcome = streamer.run()
        if outcome == "detached":
            return 0
        return waiter.status()
    finally:
        signals.close()


def _cancel_after_exit(waiter: Waiter, streamer: Any, grace: float = 5.0) -> None:
    """Should the daemon keep an attach open after the process exited, end it after a grace."""

    def watch() -> None:
        waiter.done.wait()
        if not streamer.output_done.wait(grace):
            streamer.cancel()

    lean.spawn(watch)


# ================================================================================================
# start, attach
# ================================================================================================


def _check_state(info: dict[str, Any]) -> None:
    state = info.get("State") or {}
    if not state.get("Running"):
        raise CLIError("You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise CLIError("You cannot attach to a paused container, unpause it first", 1)
    if state.get("Restarting"):
        raise CLIError("You cannot attach to a restarting container, wait until it is running", 1)


@command
def start(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers",
              aliases="core container start, core start")
    f.add("attach", "a", help="Attach STDOUT/STDERR and forward signals")
    f.add("checkpoint", None, "string", hidden=True, help="Restore from this checkpoint")
    f.add("checkpoint-dir", None, "string", hidden=True, help="Use a custom checkpoint storage directory")
    f.add("detach-keys", None, "string", help="Override the key sequence for detaching a container")
    f.add("interactive", "i", help="Attach container's STDIN")
    opts, args = f.parse(argv)
    f.require(args, least=1)
    if not (opts.attach or opts.interactive):
        failed = []
        for name in args:
            try:
                ctx.client.post(f"/containers/{name}/start")
            except APIError as exc:
                sys.stderr.write(exc.message + "\n")
                failed.append(name)
                continue
            sys.stdout.write(name + "\n")
            sys.stdout.flush()
        if failed:
            raise CLIError(f"Error: failed to start containers: {', '.join(failed)}", 1)
        return 0
    if len(args) > 1:
        raise CLIError("you cannot start and attach multiple containers at once", 1)
    from core.cli import hijack

    info = ctx.client.get_json(f"/containers/{args[0]}/json")
    ident = info.get("Id") or args[0]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    detach_keys = detach_keys_default(opts.detach_keys)
    stdin = bool(opts.interactive and config.get("OpenStdin"))
    signals = hijack.SignalWorker(ctx.client)
    try:
        if not tty:
            signals.proxy(ident)
        conn = hijack.hijack(ctx.client, f"/containers/{ident}/attach", {
            "stream": True, "stdin": stdin, "stdout": True, "stderr": True, "detachKeys": detach_keys or None})
        streamer = hijack.Streamer(conn, tty=tty, stdin=stdin, stdout=True, stderr=True, detach_keys=detach_keys)
        auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
        waiter = Waiter(ctx, ident, "removed" if auto_remove else "next-exit")
        try:
            ctx.client.post(f"/containers/{ident}/start")
        except CLIError:
            streamer.cancel()
            conn.close()
            if auto_remove:
                waiter.status(timeout=10, report=False)
            raise
        if tty and hijack.isatty(1):
            signals.monitor_size(ident, is_exec=False)
        _cancel_after_exit(waiter, streamer)
        if streamer.run() == "detached":
            return 0
        return waiter.status()
    finally:
        signals.close()


@command
def attach(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER",
              "Attach local standard input, output, and error streams to a running container",
              aliases="core container attach, core attach")
    f.add("detach-keys", None, "string", help="Override the key sequence for detaching a container")
    f.add("no-stdin", help="Do not attach STDIN")
    f.add("sig-proxy", None, default=True, help="Proxy all received signals to the process")
    opts, args = f.parse(argv)
    f.require(args, exact=1)
    from core.cli import hijack

    waiter = Waiter(ctx, args[0], "")
    info = ctx.client.get_json(f"/containers/{args[0]}/json")
    _check_state(info)
    ident = info.get("Id") or args[0]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    check_tty(not opts.no_stdin, tty)
    detach_keys = detach_keys_default(opts.detach_keys)
    stdin = bool(not opts.no_stdin and config.get("OpenStdin"))
    signals = hijack.SignalWorker(ctx.client)
    try:
        if opts.sig_proxy and not tty:
            signals.proxy(ident)
        conn = hijack.hijack(ctx.client, f"/containers/{ident}/attach", {
            "stream": True, "stdin": stdin, "stdout": True, "stderr": True, "detachKeys": detach_keys or None})
        try:
            _check_state(ctx.client.get_json(f"/containers/{ident}/json"))
        except CLIError:
            conn.close()
            raise
        streamer = hijack.Streamer(conn, tty=tty, stdin=stdin, stdout=True, stderr=True, detach_keys=detach_keys)
        if tty and hijack.isatty(1):
            signals.monitor_size(ident, is_exec=False, bump=True)
        _cancel_after_exit(waiter, streamer)
        if streamer.run() == "detached":
            raise CLIError(hijack.ESCAPE_MESSAGE, 1)
        code = waiter.status(report=False)
        if waiter.message or waiter.error:
            raise CLIError(waiter.message or waiter.error or "", 1)
        return code
    finally:
        signals.close()


# ================================================================================================
# exec
# ================================================================================================


@command
def exec_(ctx: Any, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container",
              aliases="core container exec, core exec", interspersed=False)
    f.add("detach", "d", help="Detached mode: run command in the background")
    f.add("detach-keys", None, "string", help="Override the key sequence for detaching a container")
    f.add("env", "e", "list", convert=validate_env, help="Set environment variables")
    f.add("env-file", None, "list", help="Read in a file of environment variables")
    f.add("interactive", "i", help="Keep STDIN open even if not attached")
    f.add("privileged", help="Give extended privileges to the command")
    f.add("tty", "t", help="Allocate a pseudo-TTY")
    f.add("user", "u", "string", help='Username or UID (format: "<name|uid>[:<group|gid>]")')
    f.add("workdir", "w", "string", help="Working directory inside the container")
    opts, args = f.parse(argv)
    f.require(args, least=2)
    from core.cli import hijack

    try:
        env = read_env(opts.env_file or [], opts.env or [])
    except ValueError as exc:
        raise CLIError(str(exc), 1) from None
    detach_keys = detach_keys_default(opts.detach_keys)
    config: dict[str, Any] = {
        "User": opts.user, "Privileged": opts.privileged, "Tty": opts.tty, "Cmd": args[1:],
        "WorkingDir": opts.workdir, "Env": env or None, "DetachKeys": detach_keys,
        "AttachStdin": bool(opts.interactive and not opts.detach),
        "AttachStdout": not opts.detach, "AttachStderr": not opts.detach,
    }
    ctx.client.get_json(f"/containers/{args[0]}/json")  # "No such container" comes first
    if not opts.detach:
        check_tty(config["AttachStdin"], opts.tty)
    console = None
    if opts.tty:
        h, w = _console_size()
        console = [h, w]
        config["ConsoleSize"] = console
    created = ctx.client.post(f"/containers/{args[0]}/exec", body=config) or {}
    exec_id = created.get("Id") or created.get("ID") or ""
    if not exec_id:
        raise CLIError("exec ID empty", 1)
    start_body = {"Detach": bool(opts.detach), "Tty": bool(opts.tty), "ConsoleSize": console}
    try:
        if opts.detach:
            ctx.client.post(f"/exec/{exec_id}/start", body=start_body)
            return 0
        conn = hijack.hijack(ctx.client, f"/exec/{exec_id}/start", body=start_body)
    except APIError as exc:
        code = status_error(exc).code
        raise CLIError(exc.message, code if code in (126, 127) else exc.code) from None
    signals = hijack.SignalWorker(ctx.client)
    try:
        streamer = hijack.Streamer(conn, tty=opts.tty, stdin=config["AttachStdin"], stdout=True, stderr=True,
                                   detach_keys=detach_keys, stderr_to_stdout=opts.tty)
        if opts.tty and hijack.isatty(0):
            signals.monitor_size(exec_id, is_exec=True)
        if streamer.run() == "detached":
            raise CLIError(hijack.ESCAPE_MESSAGE, 1)
    finally:
        signals.close()
    return exec_exit_code(ctx, exec_id)


def exec_exit_code(ctx: Any, exec_id: str, patience: float = 5.0) -> int:
    """GET /exec/{id}/json's ExitCode once the exec is over (the stream may end a moment before
    the daemon has recorded the exit).  -1 (255) if the daemon is gone, as docker."""
    import time

    deadline = time.monotonic() + patience
    while True:
        try:
            data = ctx.client.get_json(f"/exec/{exec_id}/json")
        except APIError:
            raise
        except CLIError:
            return 255
        if (not data.get("Running") and data.get("ExitCode") is not None) or time.monotonic() > deadline:
            return int(data.get("ExitCode") or 0)
        time.sleep(0.02)
