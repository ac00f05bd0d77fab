"""Image commands: pull, push, images, rmi, tag, inspect, history, image prune, save, load, commit, login, logout."""
from __future__ import annotations

import sys

from core.cli import dockerconfig
from core.cli.client import APIError, CLIError
from core.cli.flags import FORMAT_HELP, INSPECT_FORMAT_HELP, Flags, command
from core.cli.lean import dumps
from core.cli.format import ago, display_stream, print_table, render_each, render_format, timestamp
from core.units import human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _split_tag(name: str) -> tuple[str, str]:
    """``repo[:tag|@digest]`` → (repo, tag-or-digest) as docker sends them to the API."""
    if "@" in name:
        repo, _, digest = name.partition("@")
        return repo, digest
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = name.rpartition(":")
        return repo, tag
    return name, ""


@command
def pull(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry",
              aliases="core image pull, core pull")
    f.add("all-tags", "a", help="Download all tagged images in the repository")
    f.add("platform", None, "string", help='Set platform if server is multi-platform capable ("linux/arm64")')
    f.add("quiet", "q", help="Suppress verbose output")
    args, rest = f.parse(argv)
    f.require(rest, exact=1)
    repo, tag = _split_tag(rest[0])
    if args.all_tags and tag:
        raise CLIError("tag can't be used with --all-tags/-a", 1)
    if not tag and not args.all_tags:
        tag = "latest"
        if not args.quiet:
            sys.stdout.write("Using default tag: latest\n")
    pull_image(ctx, repo, tag, args.platform, quiet=args.quiet)
    # the reference pulled, fully qualified; with --all-tags the repository alone (as docker)
    sys.stdout.write((_canonical(repo, tag) if not args.all_tags else _canonical(repo, "")) + "\n")
    return 0


def pull_image(ctx, repo: str, tag: str, platform: str = "", quiet: bool = False, out: Any = None) -> None:
    """``POST /images/create`` with docker's progress on ``out`` (stdout; ``run`` gives stderr),
    or only the error with ``quiet``."""
    params = {"fromImage": repo, "tag": tag or None, "platform": platform or None}
    resp = ctx.client.request("POST", "/images/create", params,
                              headers=dockerconfig.header_for(dockerconfig.registry_of(repo)))
    try:
        stream = resp.iter_json_lines()
        if quiet:
            for msg in stream:
                if msg.get("error") or msg.get("errorDetail"):
                    raise CLIError(msg.get("error") or msg["errorDetail"].get("message", ""))
        else:
            display_stream(stream, out=out or sys.stdout)
    finally:
        resp.sock.close()


def _canonical(repo: str, tag: str) -> str:
    """docker prints the fully qualified reference after a pull (``docker.io/library/alpine:latest``)."""
    name = repo
    if dockerconfig.registry_of(repo) == "docker.io" and not repo.startswith(("docker.io/", "index.docker.io/")):
        name = f"docker.io/{repo}" if "/" in repo else f"docker.io/library/{repo}"
    if not tag:
        return name
    sep = "@" if ":" in tag and tag.startswith("sha") else ":"
    return f"{name}{sep}{tag}"


@command
def push(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] NAME[:TAG]", "Upload an image to a registry", aliases="core image push, core push")
    f.add("quiet", "q", help="Suppress verbose output")
    args, rest = f.parse(argv)
    f.require(rest, exact=1)
    repo, tag = _split_tag(rest[0])
    if not tag:
        sys.stdout.write("Using default tag: latest\n")
        tag = "latest"
    resp = ctx.client.request("POST", f"/images/{repo}/push", {"tag": tag},
                              headers=dockerconfig.header_for(dockerconfig.registry_of(repo)) or
                              {"X-Registry-Auth": "e30="})
    try:
        stream = resp.iter_json_lines()
        if args.quiet:
            for msg in stream:
                if msg.get("error"):
                    raise CLIError(msg["error"])
            sys.stdout.write(f"{repo}:{tag}\n")
        else:
            display_stream(stream)
    finally:
        resp.sock.close()
    return 0


def _rows(images: list[dict[str, Any]], digests: bool, no_trunc: bool) -> list[dict[str, Any]]:
    """One row per repository tag, as ``docker images`` lists them (``<none>`` where none)."""
    rows = []
    for img in images:
        image_id = img["Id"] if no_trunc else img["Id"].split(":", 1)[-1][:12]
        by_repo: dict[str, list[str]] = {}
        for d in img.get("RepoDigests") or []:
            repo, _, digest = d.partition("@")
            by_repo.setdefault(repo, []).append(digest)
        tags = img.get("RepoTags") or []
        seen_repos = set()
        common = {"ID": image_id, "CreatedSince": ago(img.get("Created", 0)),
                  "CreatedAt": timestamp(img.get("Created", 0)), "Size": human_size(img.get("Size", 0), 3),
                  "Containers": "N/A" if img.get("Containers", -1) < 0 else str(img["Containers"])}
        for t in tags:
            repo, _, tag = t.rpartition(":")
            seen_repos.add(repo)
            digest = (by_repo.get(repo) or ["<none>"])[0]
            rows.append({"Repository": repo, "Tag": tag, "Digest": digest, **common})
        for repo, ds in by_repo.items():
            if repo not in seen_repos:
                for d in ds:
                    rows.append({"Repository": repo, "Tag": "<none>", "Digest": d, **common})
        if not tags and not by_repo:
            rows.append({"Repository": "<none>", "Tag": "<none>", "Digest": "<none>", **common})
    return rows



@command
def images(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] [REPOSITORY[:TAG]]", "List images",
              aliases="core image ls, core image list, core images")
    f.add("all", "a", help="Show all images (default hides intermediate images)")
    f.add("digests", None, help="Show digests")
    f.add("filter", "f", "list", typename="filter", help="Filter output based on conditions provided")
    f.add("format", None, "string", help=FORMAT_HELP)
    f.add("no-trunc", None, help="Don't truncate output")
    f.add("quiet", "q", help="Only show image IDs")
    args, rest = f.parse(argv)
    f.require(rest, most=1)
    filters: dict[str, list[str]] = {}
    for item in args.filter or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise CLIError(f"invalid filter '{item}': expected key=value", 125)
        filters.setdefault(key, []).append(value)
    if rest:
        filters.setdefault("reference", []).append(rest[0])
    params = {"all": args.all or None, "filters": dumps(filters) if filters else None}
    data = ctx.client.get_json("/images/json", params)
    rows = _rows(data, args.digests, args.no_trunc)
    if args.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    if args.format and args.format != "table":
        render_format(args.format, rows, HEADERS)
        return 0
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    table = [[r["Repository"], r["Tag"]] + ([r["Digest"]] if args.digests else []) +
             [r["ID"], r["CreatedSince"], r["Size"]] for r in rows]
    print_table(headers, table)
    return 0


HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
           "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS"}


@command
def rmi(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images",
              aliases="core image rm, core image remove, core rmi")
    f.add("force", "f", help="Force removal of the image")
    f.add("no-prune", None, help="Do not delete untagged parents")
    args, rest = f.parse(argv)
    f.require(rest, least=1)
    # as docker: every error is printed; with --force, images that do not exist are no failure
    fatal = False
    for name in rest:
        try:
            resp = ctx.client.request("DELETE", f"/images/{name}",
                                      {"force": args.force or None, "noprune": args.no_prune or None})
            for rec in resp.json() or []:
                for key in ("Untagged", "Deleted"):
                    if key in rec:
                        sys.stdout.write(f"{key}: {rec[key]}\n")
            resp.sock.close()
        except APIError as exc:
            if exc.status == 404:
                sys.stderr.write(f"Error: No such image: {name}\n")
                fatal = fatal or not args.force
            else:
                sys.stderr.write(exc.message + "\n")
                fatal = True
    return 1 if fatal else 0


@command
def tag(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
              aliases="core image tag, core tag")
    _args, rest = f.parse(argv)
    f.require(rest, exact=2)
    source, target = rest
    repo, t = _split_tag(target)
    if "@" in target:
        raise CLIError("refusing to create a tag with a digest reference", 1)
    resp = ctx.client.request("POST", f"/images/{source}/tag", {"repo": repo, "tag": t or "latest"})
    resp.sock.close()
    return 0


@command
def inspect(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] IMAGE [IMAGE...]", "Display detailed information on one or more images")
    f.add("format", "f", "string", help=INSPECT_FORMAT_HELP)
    args, rest = f.parse(argv)
    f.require(rest, least=1)
    found, missing = [], []
    for name in rest:
        try:
            found.append(ctx.client.get_json(f"/images/{name}/json"))
        except APIError as exc:
            if exc.status != 404:
                raise
            missing.append(f"Error response from daemon: No such image: {name}")
    if args.format and args.format != "json":
        render_each(args.format, found, formatter=False)
    else:
        import json

        sys.stdout.write(json.dumps(found, indent=4) + "\n")
    for m in missing:
        sys.stderr.write(m + "\n")
    return 1 if missing else 0


@command
def history(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] IMAGE", "Show the history of an image", aliases="core image history, core history")
    f.add("format", None, "string", help=FORMAT_HELP)
    f.add("human", "H", default=True, help="Print sizes and dates in human readable format")
    f.add("no-trunc", None, help="Don't truncate output")
    f.add("quiet", "q", help="Only show image IDs")
    args, rest = f.parse(argv)
    f.require(rest, exact=1)
    rows = ctx.client.get_json(f"/images/{rest[0]}/history")
    if args.quiet:
        for r in rows:
            sys.stdout.write((r["Id"] if args.no_trunc else r["Id"].split(":")[-1][:12]) + "\n")
        return 0
    out = []
    for r in rows:
        ident = r["Id"] if (args.no_trunc or r["Id"] == "<missing>") else r["Id"].split(":")[-1][:12]
        created_by = r.get("CreatedBy", "").replace("\t", " ").replace("\n", " ")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        out.append({"ID": ident, "CreatedSince": ago(r.get("Created", 0)), "CreatedBy": created_by,
                    "Size": human_size(r.get("Size", 0), 3), "Comment": r.get("Comment", "")})
    if args.format and args.format != "table":
        render_format(args.format, out, {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"})
        return 0
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                [[o["ID"], o["CreatedSince"], o["CreatedBy"], o["Size"], o["Comment"]] for o in out])
    return 0


@command
def prune(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Remove unused images")
    f.add("all", "a", help="Remove all unused images, not just dangling ones")
    f.add("filter", None, "list", typename="filter", help='Provide filter values (e.g. "until=<timestamp>")')
    f.add("force", "f", help="Do not prompt for confirmation")
    args, rest = f.parse(argv)
    f.require(rest, exact=0)
    if not args.force:
        what = ("all images without at least one container associated to them" if args.all
                else "all dangling images")
        sys.stdout.write(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    filters: dict[str, list[str]] = {}
    for item in args.filter or []:
        key, _, value = item.partition("=")
        filters.setdefault(key, []).append(value)
    filters["dangling"] = ["false" if args.all else "true"]
    resp = ctx.client.request("POST", "/images/prune", {"filters": dumps(filters)})
    data = resp.json()
    resp.sock.close()
    deleted = data.get("ImagesDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Images:\n")
        for rec in deleted:
            for key in ("Untagged", "Deleted"):
                if key in rec:
                    sys.stdout.write(f"{key.lower()}: {rec[key]}\n")
        sys.stdout.write("\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(data.get('SpaceReclaimed', 0), 3)}\n")
    return 0


@command
def login(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] [SERVER]", "Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.")
    f.add("username", "u", "string", help="Username")
    f.add("password", "p", "string", help="Password")
    f.add("password-stdin", None, help="Take the password from stdin")
    args, rest = f.parse(argv)
    f.require(rest, most=1)
    server_arg = rest[0] if rest else ""
    if args.password and args.password_stdin:
        raise CLIError("--password and --password-stdin are mutually exclusive", 1)
    password = args.password
    if args.password_stdin:
        if not args.username:
            raise CLIError("Must provide --username with --password-stdin", 1)
        password = sys.stdin.read().rstrip("\r\n")
    else:
        if args.password:
            sys.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise CLIError("Error: Cannot perform an interactive login from a non TTY device", 1)
        username = input("Username: ").strip()
    if not password:
        if not sys.stdin.isatty():
            raise CLIError("Error: Cannot perform an interactive login from a non TTY device", 1)
        import getpass

        password = getpass.getpass("Password: ")
    server = dockerconfig.server_key(server_arg)
    resp = ctx.client.request("POST", "/auth", body={"username": username, "password": password,
                                                      "serveraddress": server})
    data = resp.json()
    resp.sock.close()
    dockerconfig.store(server, username, password, data.get("IdentityToken") or "")
    sys.stdout.write("Login Succeeded\n")
    return 0


@command
def logout(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[SERVER]", "Log out from a registry.\nIf no server is specified, the default is defined by the daemon.")
    _args, rest = f.parse(argv)
    f.require(rest, most=1)
    key = dockerconfig.server_key(rest[0] if rest else "")
    if dockerconfig.forget(key):
        sys.stdout.write(f"Removing login credentials for {key}\n")
    else:
        sys.stdout.write(f"Not logged in to {key}\n")
    return 0


@command
def save(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] IMAGE [IMAGE...]", "Save one or more images to a tar archive (streamed to STDOUT by default)",
              aliases="core image save, core save")
    f.add("output", "o", "string", help="Write to a file, instead of STDOUT")
    args, rest = f.parse(argv)
    f.require(rest, least=1)
    if not args.output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    resp = ctx.client.request("GET", "/images/get", {"names": rest})
    import os

    target = None
    try:
        if args.output:
            # written beside the destination, renamed into place once complete (as docker does)
            directory = os.path.dirname(os.path.abspath(args.output))
            target = os.path.join(directory, f".{os.path.basename(args.output)}.core-save-{os.getpid()}")
            out = open(target, "wb")
        else:
            out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        with out:
            for chunk in resp.iter_chunks():
                out.write(chunk)
        if target is not None:
            os.replace(target, args.output)
            target = None
    except OSError as exc:
        raise CLIError(f"failed to save image: {exc.strerror or exc}", 1) from None
    finally:
        resp.close()
        if target is not None:
            try:
                os.unlink(target)
            except OSError:
                pass
    return 0


@command
def load(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS]", "Load an image from a tar archive or STDIN", aliases="core image load, core load")
    f.add("input", "i", "string", help="Read from tar archive file, instead of STDIN")
    f.add("quiet", "q", help="Suppress the load output")
    args, rest = f.parse(argv)
    f.require(rest, exact=0)
    import os
    import stat
    import tempfile

    if args.input:
        try:
            source = open(args.input, "rb")
        except OSError as exc:
            raise CLIError(f"open {args.input}: {exc.strerror or exc}", 1) from None
    else:
        if sys.stdin.isatty():
            raise CLIError("requested load from stdin, but stdin is empty", 1)
        source = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    with source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            # a pipe (docker save x | core load): its length is needed up front
            spool = tempfile.TemporaryFile()
            while piece := source.read(1 << 20):
                spool.write(piece)
            spool.seek(0)
            source.close()
            source = spool
        resp = ctx.client.request("POST", "/images/load", {"quiet": args.quiet or None}, raw_body=source,
                                  headers={"Content-Type": "application/x-tar"})
    try:
        display_stream(resp.iter_json_lines())
    finally:
        resp.close()
    return 0


@command
def commit(ctx, argv: list[str], prog: str) -> int:
    f = Flags(prog, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]", "Create a new image from a container's changes",
              aliases="core container commit, core commit")
    f.add("author", "a", "string", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    f.add("change", "c", "list", help="Apply Dockerfile instruction to the created image")
    f.add("message", "m", "string", help="Commit message")
    f.add("pause", "p", default=True, help="Pause container during commit")
    args, rest = f.parse(argv)
    f.require(rest, least=1, most=2)
    repo = tag = ""
    if len(rest) == 2:
        if "@" in rest[1]:
            raise CLIError("refusing to create a tag with a digest reference", 1)
        repo, tag = _split_tag(rest[1])
    params = {"container": rest[0], "repo": repo or None, "tag": tag or None, "comment": args.message or None,
              "author": args.author or None, "changes": args.change or None, "pause": args.pause}
    resp = ctx.client.request("POST", "/commit", params, body={})
    data = resp.json()
    resp.close()
    sys.stdout.write(f"{data['Id']}\n")
    return 0
