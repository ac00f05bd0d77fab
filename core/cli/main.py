"""``core``: the command line, a thin client of the daemon's Engine API.

Start-up must stay light: only this module and ``core.cli.client`` load for every command; each
command's module is imported when that command runs.  Commands and flags follow docker's.

A command is a function ``run(ctx, argv, prog) -> int`` in a module named by :data:`COMMANDS`,
decorated with :func:`core.cli.flags.command`; it parses its flags with :class:`core.cli.flags.Flags`
and writes its output with :mod:`core.cli.format`.
"""
from __future__ import annotations

import os
import sys

# name -> (module, function, summary).  Group commands ("image ls") are "group name" keys.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "version": ("core.cli.cmd_system", "version", "Show the core version information"),
    "info": ("core.cli.cmd_system", "info", "Display system-wide information"),
    "system info": ("core.cli.cmd_system", "info", "Display system-wide information"),
    "daemon": ("core.cli.cmd_daemon", "daemon", "Run the core daemon in the foreground"),
    "pull": ("core.cli.cmd_image", "pull", "Download an image from a registry"),
    "push": ("core.cli.cmd_image", "push", "Upload an image to a registry"),
    "images": ("core.cli.cmd_image", "images", "List images"),
    "rmi": ("core.cli.cmd_image", "rmi", "Remove one or more images"),
    "tag": ("core.cli.cmd_image", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "history": ("core.cli.cmd_image", "history", "Show the history of an image"),
    "inspect": ("core.cli.cmd_container", "inspect", "Return low-level information on core objects"),
    "login": ("core.cli.cmd_image", "login", "Authenticate to a registry"),
    "logout": ("core.cli.cmd_image", "logout", "Log out from a registry"),
    "image pull": ("core.cli.cmd_image", "pull", "Download an image from a registry"),
    "image push": ("core.cli.cmd_image", "push", "Upload an image to a registry"),
    "image ls": ("core.cli.cmd_image", "images", "List images"),
    "image rm": ("core.cli.cmd_image", "rmi", "Remove one or more images"),
    "image tag": ("core.cli.cmd_image", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "image inspect": ("core.cli.cmd_image", "inspect", "Display detailed information on one or more images"),
    "image history": ("core.cli.cmd_image", "history", "Show the history of an image"),
    "image prune": ("core.cli.cmd_image", "prune", "Remove unused images"),
    "save": ("core.cli.cmd_image", "save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "load": ("core.cli.cmd_image", "load", "Load an image from a tar archive or STDIN"),
    "commit": ("core.cli.cmd_image", "commit", "Create a new image from a container's changes"),
    "container commit": ("core.cli.cmd_image", "commit", "Create a new image from a container's changes"),
    "image save": ("core.cli.cmd_image", "save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "image load": ("core.cli.cmd_image", "load", "Load an image from a tar archive or STDIN"),
    "system events": ("core.cli.cmd_system", "events", "Get real time events from the server"),
    "system df": ("core.cli.cmd_system", "df", "Show core disk usage"),
    "events": ("core.cli.cmd_system", "events", "Get real time events from the server"),
    # containers
    "run": ("core.cli.cmd_run", "run", "Create and run a new container from an image"),
    "create": ("core.cli.cmd_run", "create", "Create a new container"),
    "start": ("core.cli.cmd_run", "start", "Start one or more stopped containers"),
    "attach": ("core.cli.cmd_run", "attach", "Attach local standard input, output, and error streams to a running container"),
    "exec": ("core.cli.cmd_run", "exec_", "Execute a command in a running container"),
    "ps": ("core.cli.cmd_container", "ps", "List containers"),
    "stop": ("core.cli.cmd_container", "stop", "Stop one or more running containers"),
    "kill": ("core.cli.cmd_container", "kill", "Kill one or more running containers"),
    "restart": ("core.cli.cmd_container", "restart", "Restart one or more containers"),
    "pause": ("core.cli.cmd_container", "pause", "Pause all processes within one or more containers"),
    "unpause": ("core.cli.cmd_container", "unpause", "Unpause all processes within one or more containers"),
    "rm": ("core.cli.cmd_container", "rm", "Remove one or more containers"),
    "logs": ("core.cli.cmd_container", "logs", "Fetch the logs of a container"),
    "wait": ("core.cli.cmd_container", "wait", "Block until one or more containers stop, then print their exit codes"),
    "top": ("core.cli.cmd_container", "top", "Display the running processes of a container"),
    "port": ("core.cli.cmd_container", "port", "List port mappings or a specific mapping for the container"),
    "rename": ("core.cli.cmd_container", "rename", "Rename a container"),
    "update": ("core.cli.cmd_container", "update", "Update configuration of one or more containers"),
    "stats": ("core.cli.cmd_container", "stats", "Display a live stream of container(s) resource usage statistics"),
    "cp": ("core.cli.cmd_cp", "cp", "Copy files/folders between a container and the local filesystem"),
    "container run": ("core.cli.cmd_run", "run", "Create and run a new container from an image"),
    "container create": ("core.cli.cmd_run", "create", "Create a new container"),
    "container start": ("core.cli.cmd_run", "start", "Start one or more stopped containers"),
    "container attach": ("core.cli.cmd_run", "attach", "Attach local standard input, output, and error streams to a running container"),
    "container exec": ("core.cli.cmd_run", "exec_", "Execute a command in a running container"),
    "container ls": ("core.cli.cmd_container", "ps", "List containers"),
    "container stop": ("core.cli.cmd_container", "stop", "Stop one or more running containers"),
    "container kill": ("core.cli.cmd_container", "kill", "Kill one or more running containers"),
    "container restart": ("core.cli.cmd_container", "restart", "Restart one or more containers"),
    "container pause": ("core.cli.cmd_container", "pause", "Pause all processes within one or more containers"),
    "container unpause": ("core.cli.cmd_container", "unpause", "Unpause all processes within one or more containers"),
    "container rm": ("core.cli.cmd_container", "rm", "Remove one or more containers"),
    "container logs": ("core.cli.cmd_container", "logs", "Fetch the logs of a container"),
    "container wait": ("core.cli.cmd_container", "wait", "Block until one or more containers stop, then print their exit codes"),
    "container inspect": ("core.cli.cmd_container", "container_inspect", "Display detailed information on one or more containers"),
    "container top": ("core.cli.cmd_container", "top", "Display the running processes of a container"),
    "container port": ("core.cli.cmd_container", "port", "List port mappings or a specific mapping for the container"),
    "container rename": ("core.cli.cmd_container", "rename", "Rename a container"),
    "container update": ("core.cli.cmd_container", "update", "Update configuration of one or more containers"),
    "container stats": ("core.cli.cmd_container", "stats", "Display a live stream of container(s) resource usage statistics"),
    "container prune": ("core.cli.cmd_container", "prune", "Remove all stopped containers"),
    "container cp": ("core.cli.cmd_cp", "cp", "Copy files/folders between a container and the local filesystem"),
    # volumes
    "volume create": ("core.cli.cmd_volume", "create", "Create a volume"),
    "volume ls": ("core.cli.cmd_volume", "ls", "List volumes"),
    "volume inspect": ("core.cli.cmd_volume", "inspect", "Display detailed information on one or more volumes"),
    "volume rm": ("core.cli.cmd_volume", "rm", "Remove one or more volumes"),
    "volume prune": ("core.cli.cmd_volume", "prune", "Remove unused local volumes"),
    "network ls": ("core.cli.cmd_network", "ls", "List networks"),
    "network create": ("core.cli.cmd_network", "create", "Create a network"),
    "network inspect": ("core.cli.cmd_network", "inspect", "Display detailed information on one or more networks"),
    "network rm": ("core.cli.cmd_network", "rm", "Remove one or more networks"),
    "network connect": ("core.cli.cmd_network", "connect", "Connect a container to a network"),
    "network disconnect": ("core.cli.cmd_network", "disconnect", "Disconnect a container from a network"),
    "network prune": ("core.cli.cmd_network", "prune", "Remove all unused networks"),
    # swarm mode
    "swarm init": ("core.cli.cmd_swarm", "init", "Initialize a swarm"),
    "swarm join": ("core.cli.cmd_swarm", "join", "Join a swarm as a node and/or manager"),
    "swarm join-token": ("core.cli.cmd_swarm", "join_token", "Manage join tokens"),
    "swarm leave": ("core.cli.cmd_swarm", "leave", "Leave the swarm"),
    "swarm update": ("core.cli.cmd_swarm", "update", "Update the swarm"),
    "swarm ca": ("core.cli.cmd_swarm", "ca", "Display and rotate the root CA"),
    "swarm unlock-key": ("core.cli.cmd_swarm", "unlock_key", "Manage the unlock key"),
    "swarm unlock": ("core.cli.cmd_swarm", "unlock", "Unlock swarm"),
    "node ls": ("core.cli.cmd_node", "ls", "List nodes in the swarm"),
    "node inspect": ("core.cli.cmd_node", "inspect", "Display detailed information on one or more nodes"),
    "node update": ("core.cli.cmd_node", "update", "Update a node"),
    "node promote": ("core.cli.cmd_node", "promote", "Promote one or more nodes to manager in the swarm"),
    "node demote": ("core.cli.cmd_node", "demote", "Demote one or more nodes from manager in the swarm"),
    "node rm": ("core.cli.cmd_node", "rm", "Remove one or more nodes from the swarm"),
    "node ps": ("core.cli.cmd_node", "ps", "List tasks running on one or more nodes, defaults to current node"),
    "service create": ("core.cli.cmd_service", "create", "Create a new service"),
    "service inspect": ("core.cli.cmd_service", "inspect", "Display detailed information on one or more services"),
    "service logs": ("core.cli.cmd_service", "logs", "Fetch the logs of a service or task"),
    "service ls": ("core.cli.cmd_service", "ls", "List services"),
    "service ps": ("core.cli.cmd_service", "ps", "List the tasks of one or more services"),
    "service rm": ("core.cli.cmd_service", "rm", "Remove one or more services"),
    "service rollback": ("core.cli.cmd_service", "rollback", "Revert changes to a service's configuration"),
    "service scale": ("core.cli.cmd_service", "scale", "Scale one or multiple replicated services"),
    "service update": ("core.cli.cmd_service", "update", "Update a service"),
}
GROUPS = {
    "network": "Manage networks",
    "system": "Manage core",
    "image": "Manage images",
    "container": "Manage containers",
    "volume": "Manage volumes",
    "swarm": "Manage Swarm",
    "node": "Manage Swarm nodes",
    "service": "Manage Swarm services",
}
# docker's aliases: the same command reached by another path
ALIASES: dict[str, str] = {
    "network list": "network ls", "network remove": "network rm",
    "image list": "image ls", "image remove": "image rm",
    "container ps": "container ls", "container list": "container ls", "container remove": "container rm",
    "volume list": "volume ls", "volume remove": "volume rm",
    "node list": "node ls", "node remove": "node rm",
    "service list": "service ls", "service remove": "service rm",
}

USAGE = """Usage:  core [OPTIONS] COMMAND

A container engine: pull images, run containers, wire their networks.

Global Options:
  -H, --host string       Daemon socket to connect to (default unix:///run/core/core.sock,
                          or $CORE_HOST)
      --driver KIND=NAME  Use driver NAME of KIND (storage, network, executor, registry) for this
                          operation; repeatable
  -D, --debug             Enable debug mode
  -v, --version           Print version information and quit
  -h, --help              Print usage

Commands:
{commands}

Management Commands:
{groups}

Run 'core COMMAND --help' for more information on a command.
"""


class Context:
    """What every command gets: where the daemon is, the per-operation drivers, the client."""

    def __init__(self, host: str, drivers: list[str], debug: bool) -> None:
        self.host = host
        self.drivers = drivers
        self.debug = debug
        self._client = None

    @property
    def client(self):  # noqa: ANN201 - keeps the import lazy
        if self._client is None:
            from core.cli.client import Client

            self._client = Client(self.host, self.drivers)
        return self._client


def _usage() -> str:
    top = sorted((k, v[2]) for k, v in COMMANDS.items() if " " not in k)
    width = max(len(k) for k, _ in top + list(GROUPS.items())) + 2
    commands = "\n".join(f"  {k:<{width}}{summary}" for k, summary in top)
    groups = "\n".join(f"  {k:<{width}}{summary}" for k, summary in sorted(GROUPS.items()))
    return USAGE.format(commands=commands, groups=groups)


def _group_usage(group: str) -> str:
    subs = sorted((k.split(" ", 1)[1], v[2]) for k, v in COMMANDS.items() if k.startswith(group + " "))
    width = max(len(k) for k, _ in subs) + 2
    lines = "\n".join(f"  {k:<{width}}{s}" for k, s in subs)
    return (f"Usage:  core {group} COMMAND\n\n{GROUPS[group]}\n\nCommands:\n{lines}\n\n"
            f"Run 'core {group} COMMAND --help' for more information on a command.\n")


def _fail(message: str, code: int = 125) -> int:
    sys.stderr.write(message.rstrip("\n") + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the local engine's socket is its exec root's, as the daemon it would start listens there
    host = (os.environ.get("CORE_HOST") or os.environ.get("DOCKER_HOST")
            or f"unix://{os.environ.get('CORE_EXEC_ROOT') or '/run/core'}/core.sock")
    drivers: list[str] = []
    debug = False
    # global options come before the command, as in docker
    while argv and argv[0].startswith("-"):
        opt = argv.pop(0)
        name, eq, value = opt.partition("=")
        if name in ("-H", "--host", "--driver"):
            if not eq:
                if not argv:
                    return _fail(f"flag needs an argument: {name}\nSee 'core --help'.")
                value = argv.pop(0)
            if name == "--driver":
                kind, sep, dname = value.partition("=")
                if not sep or not kind or not dname:
                    return _fail(f'invalid --driver "{value}": expected KIND=NAME '
                                 "(kinds: storage, network, executor, registry)")
                drivers.append(value)
            else:
                host = value
        elif opt in ("-D", "--debug"):
            debug = True
        elif opt in ("-h", "--help"):
            sys.stdout.write(_usage())
            return 0
        elif opt in ("-v", "--version"):
            from core import __version__

            sys.stdout.write(f"core version {__version__}\n")
            return 0
        else:
            return _fail(f"unknown flag: {opt}\nSee 'core --help'.")
    if not argv:
        sys.stdout.write(_usage())
        return 0
    name = argv.pop(0)
    if name in GROUPS:
        if not argv or argv[0] in ("-h", "--help"):
            sys.stdout.write(_group_usage(name))
            return 0
        sub = argv.pop(0)
        key = ALIASES.get(f"{name} {sub}", f"{name} {sub}")
        if key not in COMMANDS:
            return _fail(f"core: '{name} {sub}' is not a core command.\nSee 'core {name} --help'")
        name = key
    name = ALIASES.get(name, name)
    if name not in COMMANDS:
        return _fail(f"core: '{name}' is not a core command.\nSee 'core --help'")
    module_name, func, _summary = COMMANDS[name]
    ctx = Context(host, drivers, debug)

    from core.cli.client import CLIError

    try:
        module = __import__(module_name, fromlist=[func])
        return getattr(module, func)(ctx, argv, prog=f"core {name}") or 0
    except CLIError as exc:
        return _fail(exc.message, exc.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the socket went away mid-answer, a file could not be read...
        return _fail(f"error during connect: {exc}" if isinstance(exc, ConnectionError) else f"core: {exc}", 1)
    except Exception as exc:  # a bug of ours: say so in one line; -D shows the traceback
        if debug:
            raise
        return _fail(f"core: internal error: {type(exc).__name__}: {exc} (run with -D for the traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
