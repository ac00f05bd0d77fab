"""``run`` / ``create`` flags → the body of ``POST /containers/create``, against a golden file.

``tests/golden/cli_build_config.json`` was written by the code before ``_build_config`` became
table-driven (issue 9): for each command line, the body both ``run`` and ``create`` built, or the
refusal (docker's message).  Every flag of ``container_flags`` appears in some line; ``{tmp}``
stands for a directory holding the env and label files below.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import cmd_run, runconfig
from core.cli.client import CLIError

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "golden" / "cli_build_config.json").read_text())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cfg")
    (tmp / "env").write_text("# c\nX=1\nY\n\nZ=a b\n")
    (tmp / "labels").write_text("k=v\nonly\n")
    return tmp


def build(argv: list[str], run: bool, tmp: Path) -> dict:
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    try:
        flags = cmd_run._run_flags("core run" if run else "core create", run)
        opts, args = flags.parse(argv)
        body = runconfig.build_config(opts, args[0], args[1:], (24, 80))
        return {"body": json.loads(json.dumps(body).replace(str(tmp), "{tmp}"))}
    except runconfig.ConfigError as exc:
        return {"config_error": str(exc).replace(str(tmp), "{tmp}")}
    except CLIError as exc:
        return {"cli_error": exc.message.replace(str(tmp), "{tmp}"), "code": exc.code}


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: ("run " if c["run"] else "create ") + " ".join(c["argv"]))
def test_same_body_as_before(case, files):
    expected = {k: v for k, v in case.items() if k not in ("argv", "run")}
    assert build(case["argv"], case["run"], files) == expected


def test_every_flag_is_covered():
    """The golden lines name every long flag of run and create (hidden aliases too)."""
    given = {a.split("=", 1)[0] for c in GOLDEN for a in c["argv"] if a.startswith("--")}
    given |= {f"--{f.long}" for f in cmd_run._run_flags("core run", True).flags
              for c in GOLDEN for a in c["argv"] if f.short and a.startswith("-") and not a.startswith("--")
              and f.short in a[1:2]}
    missing = {f"--{f.long}" for f in cmd_run._run_flags("core run", True).flags} - given
    assert not missing, sorted(missing)


def test_a_flag_is_one_row(monkeypatch, files):
    """A flag that fills one body field needs only its row in CONTAINER_FLAGS."""
    row = runconfig.Opt("blkio-weight", None, "int", "HostConfig.BlkioWeight", runconfig.IF_CHANGED,
                      help="Block IO (relative weight)")
    monkeypatch.setattr(runconfig, "CONTAINER_FLAGS", [*runconfig.CONTAINER_FLAGS, row])
    assert build(["--blkio-weight", "300", "busybox"], True, files)["body"]["HostConfig"]["BlkioWeight"] == 300
    assert "BlkioWeight" not in build(["busybox"], False, files)["body"]["HostConfig"]
    assert "--blkio-weight int" in cmd_run._run_flags("core run", True).usage()
