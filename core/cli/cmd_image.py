"""Image commands: pull, push, images, rmi, tag, inspect, history, image prune, login, logout."""
from __future__ import annotations

import getpass
import json
import sys

from core.cli import dockerconfig
from core.cli.client import APIError, CLIError
from core.cli.render import ago, display_stream
from core.units import human_size
from core.cli.util import add_format, parser, print_table, render_each, render_format

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


def pull(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry")
    p.add_argument("-a", "--all-tags", action="store_true", help="Download all tagged images in the repository")
    p.add_argument("--platform", default="", help='Set platform if server is multi-platform capable ("linux/arm64")')
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    args = p.parse_args(argv)
    repo, tag = _split_tag(args.name)
    if args.all_tags and tag:
        raise CLIError("tag can't be used with --all-tags/-a", 1)
    if not tag and not args.all_tags:
        tag = "latest"
        if not args.quiet:
            sys.stdout.write("Using default tag: latest\n")
    pull_image(ctx, repo, tag, args.platform, quiet=args.quiet)
    if not args.all_tags:
        sys.stdout.write(_canonical(repo, tag) + "\n")
    return 0


def pull_image(ctx, repo: str, tag: str, platform: str = "", quiet: bool = False) -> None:
    params = {"fromImage": repo, "tag": tag or None, "platform": platform or None}
    resp = ctx.client.request("POST", "/images/create", params,
                              headers=dockerconfig.header_for(dockerconfig.registry_of(repo)))
    try:
        stream = resp.iter_json_lines()
        if quiet:
            for msg in stream:
                if msg.get("error"):
                    raise CLIError(msg["error"])
        else:
            display_stream(stream)
    finally:
        resp.sock.close()


def _canonical(repo: str, tag: str) -> str:
    """docker prints the fully qualified reference after a pull (``docker.io/library/alpine:latest``)."""
    name = repo
    if dockerconfig.registry_of(repo) == "docker.io" and not repo.startswith(("docker.io/", "index.docker.io/")):
        name = f"docker.io/{repo}" if "/" in repo else f"docker.io/library/{repo}"
    sep = "@" if ":" in tag and tag.startswith("sha") else ":"
    return f"{name}{sep}{tag}"


def push(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS] NAME[:TAG]", "Upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name", metavar="NAME[:TAG]")
    args = p.parse_args(argv)
    repo, tag = _split_tag(args.name)
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
                  "CreatedAt": _timestamp(img.get("Created", 0)), "Size": human_size(img.get("Size", 0), 3),
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


def _timestamp(epoch: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(epoch)) if epoch else ""


def images(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS] [REPOSITORY[:TAG]]", "List images")
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    add_format(p)
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    args = p.parse_args(argv)
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, eq, value = f.partition("=")
        if not eq:
            raise CLIError(f"invalid filter '{f}': expected key=value", 125)
        filters.setdefault(key, []).append(value)
    if args.reference:
        filters.setdefault("reference", []).append(args.reference)
    params = {"all": args.all or None, "filters": json.dumps(filters) if filters else None}
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


def rmi(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    args = p.parse_args(argv)
    failed = False
    for name in args.images:
        try:
            resp = ctx.client.request("DELETE", f"/images/{name}",
                                      {"force": args.force or None, "noprune": args.no_prune or None})
            for rec in resp.json() or []:
                for key in ("Untagged", "Deleted"):
                    if key in rec:
                        sys.stdout.write(f"{key}: {rec[key]}\n")
            resp.sock.close()
        except APIError as exc:
            sys.stderr.write(exc.message + "\n")
            failed = True
    return 1 if failed else 0


def tag(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")
    args = p.parse_args(argv)
    repo, t = _split_tag(args.target)
    if "@" in args.target:
        raise CLIError("refusing to create a tag with a digest reference", 1)
    resp = ctx.client.request("POST", f"/images/{args.source}/tag", {"repo": repo, "tag": t or "latest"})
    resp.sock.close()
    return 0


def inspect(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS] IMAGE [IMAGE...]", "Display detailed information on one or more images")
    add_format(p, table=False, short=True)
    p.add_argument("names", nargs="+", metavar="IMAGE")
    args = p.parse_args(argv)
    found, missing = [], []
    for name in args.names:
        try:
            found.append(ctx.client.get_json(f"/images/{name}/json"))
        except APIError as exc:
            if exc.status != 404:
                raise
            missing.append(f"Error response from daemon: No such image: {name}")
    if args.format and args.format != "json":
        render_each(args.format, found, formatter=False)
    else:
        sys.stdout.write(json.dumps(found, indent=4) + "\n")
    for m in missing:
        sys.stderr.write(m + "\n")
    return 1 if missing else 0


def history(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS] IMAGE", "Show the history of an image")
    add_format(p)
    p.add_argument("-H", "--human", action="store_true", default=True,
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("image")
    args = p.parse_args(argv)
    rows = ctx.client.get_json(f"/images/{args.image}/history")
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


def prune(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS]", "Remove unused images")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    p.add_argument("--filter", action="append", default=[], help='Provide filter values (e.g. "until=<timestamp>")')
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    args = p.parse_args(argv)
    if not args.force:
        what = ("all images without at least one container associated to them" if args.all
                else "all dangling images")
        sys.stdout.write(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    filters["dangling"] = ["false" if args.all else "true"]
    resp = ctx.client.request("POST", "/images/prune", {"filters": json.dumps(filters)})
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


def login(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[OPTIONS] [SERVER]", "Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.")
    p.add_argument("-u", "--username", default="", help="Username")
    p.add_argument("-p", "--password", default="", help="Password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    p.add_argument("server", nargs="?", default="")
    args = p.parse_args(argv)
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
        password = getpass.getpass("Password: ")
    server = dockerconfig.server_key(args.server)
    resp = ctx.client.request("POST", "/auth", body={"username": username, "password": password,
                                                      "serveraddress": server})
    data = resp.json()
    resp.sock.close()
    dockerconfig.store(server, username, password, data.get("IdentityToken") or "")
    sys.stdout.write("Login Succeeded\n")
    return 0


def logout(ctx, argv: list[str], prog: str) -> int:
    p = parser(prog, "[SERVER]", "Log out from a registry.\nIf no server is specified, the default is defined by the daemon.")
    p.add_argument("server", nargs="?", default="")
    args = p.parse_args(argv)
    key = dockerconfig.server_key(args.server)
    if dockerconfig.forget(key):
        sys.stdout.write(f"Removing login credentials for {key}\n")
    else:
        sys.stdout.write(f"Not logged in to {key}\n")
    return 0
