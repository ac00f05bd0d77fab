"""``core daemon``: run the daemon in the foreground (for service managers)."""
from __future__ import annotations

import sys

from core.cli.client import CLIError
from core.cli.flags import parser


def daemon(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS]", "Run the core daemon in the foreground.")
    p.add_argument("-H", "--host", default=None, help="unix socket to serve (default unix:///run/core/core.sock)")
    p.add_argument("--data-root", default=None, help="root of persistent state (default /var/lib/core)")
    p.add_argument("--exec-root", default=None, help="root of runtime state (default /run/core)")
    p.add_argument("--config-file", default=None, help="daemon configuration file (default /etc/core/daemon.json)")
    p.add_argument("--driver", action="append", default=[], metavar="KIND=NAME",
                   help="default driver of a kind (storage, network, executor, registry); repeatable")
    p.add_argument("-D", "--debug", action="store_true", help="enable debug logging")
    args = p.parse_args(argv)

    if sys.flags.no_site:   # the installed `core` command runs without site; the daemon needs
        import site          # the virtualenv's packages (trio, h11, pyroute2...)

        site.main()
    from core.daemon import app, config
    from core.errors import CoreError, DriverError

    host = args.host
    if host is None and ctx.host != "unix:///run/core/core.sock":
        host = ctx.host  # `core -H unix:///x daemon`, or CORE_HOST
    try:
        cfg = config.load(args.config_file, data_root=args.data_root, exec_root=args.exec_root, host=host,
                          drivers=ctx.drivers + args.driver, debug=args.debug or ctx.debug)
    except CoreError as exc:
        raise CLIError(f"core daemon: {exc}", 125 if isinstance(exc, DriverError) else 1) from None
    return app.run(cfg)
