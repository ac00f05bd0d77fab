"""The container commands of the CLI (run, create, start, attach, exec, ps, logs, stop, rm, cp, ...).

Three layers:

1. pure parts, no daemon: docker's flag syntax, ``-p`` / ``--mount`` / ``-v`` / env-file parsing,
   ps's STATUS / COMMAND / PORTS columns, detach keys, the stream demultiplexer, safe tar extraction;
2. the CLI against a small fake Engine API on a unix socket (tests/…FakeEngine below): the
   attach → wait → start choreography of ``run``, hijacked streams, exit codes 125/126/127, the
   implicit pull — everything the CLI decides on its own;
3. end to end through the real daemon and the real registry's busybox, including the book's
   chapter 4 and 6 sessions in a real pty (pexpect): ``run -it``, Ctrl-P Ctrl-Q, ``exec -it``,
   ``stop`` (137 for a shell as PID 1, 0 for a TERM trap), ``start`` keeps the files written.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from core.cli.client import CLIError
from tests.conftest import CORE, wait_for
from tests.support.helpers import busybox_engine

# =================================================================================================
# 1. Pure parts
# =================================================================================================

from core.cli import cmd_container as cc  # noqa: E402
from core.cli import cmd_cp, cmd_run, flags, flagvalues, hijack, runconfig  # noqa: E402
from core.cli import format as cli_format  # noqa: E402
from core import detachkeys, units  # noqa: E402


class TestPortSpecs:
    def test_container_port_only(self):
        assert flagvalues.parse_port_spec("80") == [("80/tcp", {"HostIp": "", "HostPort": ""})]

    def test_host_and_container(self):
        assert flagvalues.parse_port_spec("80:8080") == [("8080/tcp", {"HostIp": "", "HostPort": "80"})]

    def test_ip_host_container_proto(self):
        assert flagvalues.parse_port_spec("127.0.0.1:53:5353/udp") == [
            ("5353/udp", {"HostIp": "127.0.0.1", "HostPort": "53"})]
        assert flagvalues.parse_port_spec("127.0.0.1::8080") == [("8080/tcp", {"HostIp": "127.0.0.1", "HostPort": ""})]

    def test_ipv6(self):
        assert flagvalues.parse_port_spec("[::1]:80:8080") == [("8080/tcp", {"HostIp": "::1", "HostPort": "80"})]

    def test_ranges(self):
        assert flagvalues.parse_port_spec("8000-8002:9000-9002") == [
            ("9000/tcp", {"HostIp": "", "HostPort": "8000"}),
            ("9001/tcp", {"HostIp": "", "HostPort": "8001"}),
            ("9002/tcp", {"HostIp": "", "HostPort": "8002"}),
        ]
        # one container port and a host range: the daemon picks a free one in the range
        assert flagvalues.parse_port_spec("8000-8010:80") == [("80/tcp", {"HostIp": "", "HostPort": "8000-8010"})]
        assert [p for p, _ in flagvalues.parse_port_spec("7000-7001")] == ["7000/tcp", "7001/tcp"]

    @pytest.mark.parametrize("spec,message", [
        ("80/foo", "invalid proto: foo"),
        ("1.2.3.400:80:80", "invalid IP address: 1.2.3.400"),
        ("8000-8001:9000-9002", "invalid ranges specified for container and host Ports: 9000-9002 and 8000-8001"),
        ("abc", "invalid containerPort: abc"),
        ("x:80", "invalid hostPort: x"),
        ("80-70", "invalid containerPort: 80-70"),
        ("80:", "no port specified: 80:<empty>"),
    ])
    def test_errors(self, spec, message):
        with pytest.raises(ValueError) as err:
            flagvalues.parse_port_spec(spec)
        assert str(err.value) == message

    def test_specs_and_long_syntax(self):
        exposed, bindings = flagvalues.parse_port_specs(["80:8080", "127.0.0.1:81:8080", "target=53,published=5353,protocol=udp"])
        assert exposed == {"8080/tcp": {}, "53/udp": {}}
        assert bindings == {"8080/tcp": [{"HostIp": "", "HostPort": "80"}, {"HostIp": "127.0.0.1", "HostPort": "81"}],
                            "53/udp": [{"HostIp": "", "HostPort": "5353"}]}


class TestEnvFile:
    def test_parse(self, tmp_path, monkeypatch):
        monkeypatch.setenv("FROM_HOST", "hostvalue")
        monkeypatch.delenv("UNSET_VAR", raising=False)
        f = tmp_path / "env"
        f.write_bytes("\ufeffA=1\n# a comment\n\n   B=two words  \nFROM_HOST\nUNSET_VAR\nC=\nD=x=y\r\n".encode())
        assert flagvalues.parse_env_file(str(f)) == ["A=1", "B=two words  ", "FROM_HOST=hostvalue", "C=", "D=x=y"]

    def test_errors(self, tmp_path):
        f = tmp_path / "env"
        f.write_text("BAD KEY=1\n")
        with pytest.raises(ValueError, match=r"invalid env file \(.*\): variable 'BAD KEY' contains whitespaces"):
            flagvalues.parse_env_file(str(f))
        f.write_text("=novar\n")
        with pytest.raises(ValueError, match="no variable name on line '=novar'"):
            flagvalues.parse_env_file(str(f))
        f.write_bytes(b"A=\xff\n")
        with pytest.raises(ValueError, match="invalid utf8 bytes at line 1"):
            flagvalues.parse_env_file(str(f))

    def test_env_flag_and_order(self, tmp_path, monkeypatch):
        monkeypatch.setenv("HOSTVAR", "h")
        assert flagvalues.validate_env("HOSTVAR") == "HOSTVAR=h"
        assert flagvalues.validate_env("NOPE_NOT_SET_X") == "NOPE_NOT_SET_X"
        with pytest.raises(ValueError, match="invalid environment variable: =x"):
            flagvalues.validate_env("=x")
        f = tmp_path / "env"
        f.write_text("A=file\n")
        assert flagvalues.read_env([str(f)], ["A=flag"]) == ["A=file", "A=flag"]


class TestMounts:
    def test_bind(self):
        assert flagvalues.parse_mount("type=bind,source=/src,target=/dst,readonly,bind-propagation=rshared") == {
            "Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": True,
            "BindOptions": {"Propagation": "rshared"}}

    def test_volume_default_and_options(self):
        m = flagvalues.parse_mount("src=data,dst=/data,volume-label=a=b,volume-opt=o=1,volume-nocopy")
        assert m == {"Type": "volume", "Source": "data", "Target": "/data",
                     "VolumeOptions": {"Labels": {"a": "b"}, "DriverConfig": {"Options": {"o": "1"}}, "NoCopy": True}}

    def test_tmpfs(self):
        assert flagvalues.parse_mount("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770") == {
            "Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}}

    def test_relative_source_made_absolute(self):
        assert flagvalues.parse_mount("type=bind,src=./x,dst=/x")["Source"] == os.path.abspath("./x")

    @pytest.mark.parametrize("spec,message", [
        ("type=bind,source=/a", "target is required"),
        ("type=volume,target=/a,bind-propagation=shared", "cannot mix 'bind-*' options with mount type 'volume'"),
        ("target=/a,foo", "invalid field 'foo' must be a key=value pair"),
        ("target=/a,colour=red", "unexpected key 'colour' in 'colour=red'"),
        ("type=bind,target=/a,readonly=maybe", "invalid value for readonly: maybe"),
    ])
    def test_errors(self, spec, message):
        with pytest.raises(ValueError) as err:
            flagvalues.parse_mount(spec)
        assert str(err.value) == message

    def test_volume_flag(self):
        assert flagvalues.parse_volume("/data") == (None, "/data")
        assert flagvalues.parse_volume("/host:/ctr:ro") == ("bind", "/host:/ctr:ro")
        assert flagvalues.parse_volume("named:/ctr") == ("bind", "named:/ctr")
        assert flagvalues.parse_volume("./rel:/ctr") == ("bind", os.path.abspath("./rel") + ":/ctr")
        with pytest.raises(ValueError, match="too many colons"):
            flagvalues.parse_volume("a:b:c:d")


class TestOtherValues:
    def test_sizes_cpus_ulimits_restart(self):
        assert units.ram_in_bytes("512m") == 512 << 20
        assert units.ram_in_bytes("1.5g") == int(1.5 * (1 << 30))
        assert units.ram_in_bytes("1024") == 1024
        with pytest.raises(ValueError, match="invalid size: 'lots'"):
            units.ram_in_bytes("lots")
        assert flagvalues.parse_cpus("1.5") == 1_500_000_000
        assert flagvalues.parse_ulimit("nofile=1024:2048") == {"Name": "nofile", "Soft": 1024, "Hard": 2048}
        assert flagvalues.parse_ulimit("nproc=10") == {"Name": "nproc", "Soft": 10, "Hard": 10}
        with pytest.raises(ValueError, match="invalid ulimit type: bogus"):
            flagvalues.parse_ulimit("bogus=1")
        assert flagvalues.parse_restart_policy("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
        with pytest.raises(ValueError, match="maximum retry count must be an integer"):
            flagvalues.parse_restart_policy("on-failure:x")
        assert flagvalues.validate_extra_host("db=10.0.0.2") == "db:10.0.0.2"
        assert flagvalues.validate_extra_host("gw:host-gateway") == "gw:host-gateway"


def _run_flags(*argv):
    f = cmd_run._run_flags("core run", True)
    opts, args = f.parse(list(argv))
    return opts, args


class TestFlagParser:
    def test_docker_syntax(self):
        opts, args = _run_flags("-itd", "--rm=false", "-eA=1", "-e=B=2", "--name=web", "-p", "80:8080", "busybox",
                                "sh", "-c", "echo --rm")
        assert (opts.interactive, opts.tty, opts.detach, opts.rm) == (True, True, True, False)
        assert opts.env == ["A=1", "B=2"] and opts.name == "web" and opts.publish == ["80:8080"]
        assert args == ["busybox", "sh", "-c", "echo --rm"]  # flags end at the image
        assert "rm" in opts.changed and "tty" in opts.changed

    def test_h_is_hostname_for_run(self):
        opts, args = _run_flags("-h", "myhost", "busybox")
        assert opts.hostname == "myhost" and args == ["busybox"]

    @pytest.mark.parametrize("argv,message", [
        (["--bogus", "x"], "unknown flag: --bogus"),
        (["-Z", "x"], "unknown shorthand flag: 'Z' in -Z"),
        (["--name"], "flag needs an argument: --name"),
        (["-e"], "flag needs an argument: 'e' in -e"),
        (["--rm=maybe", "x"], 'invalid argument "maybe" for "--rm" flag: strconv.ParseBool: parsing "maybe": '
                              'invalid syntax'),
        (["--stop-timeout", "soon", "x"], 'invalid argument "soon" for "--stop-timeout" flag: strconv.ParseInt: '
                                          'parsing "soon": invalid syntax'),
        (["-a", "stdfoo", "x"], 'invalid argument "stdfoo" for "-a, --attach" flag: valid streams are STDIN, '
                                'STDOUT and STDERR'),
    ])
    def test_errors_exit_125(self, argv, message):
        with pytest.raises(CLIError) as err:
            _run_flags(*argv)
        assert err.value.code == 125
        assert err.value.message.startswith(message + "\n\nUsage:  core run [OPTIONS] IMAGE [COMMAND] [ARG...]")
        assert err.value.message.endswith("Run 'core run --help' for more information")

    def test_arg_count(self):
        f = flags.Flags("core stop", "[OPTIONS] CONTAINER [CONTAINER...]", "Stop")
        with pytest.raises(CLIError) as err:
            f.require([], least=1)
        assert err.value.code == 1
        assert err.value.message.startswith("core: 'core stop' requires at least 1 argument\n\nUsage:  core stop")

    def test_help(self, capsys):
        f = cc._ps_flags("core ps")
        with pytest.raises(flags.HelpShown):
            f.parse(["--help"])
        out = capsys.readouterr().out
        assert out.startswith("Usage:  core ps [OPTIONS]\n\nList containers\n")
        assert "  -a, --all             Show all containers (default shows just running)" in out
        assert "  -n, --last int        Show n last created containers (includes all states) (default -1)" in out

    def test_build_config(self):
        opts, args = _run_flags("-it", "--rm", "-p", "80:8080", "-v", "/h:/c:ro", "-v", "/anon", "--memory", "64m",
                                "--cpus", "0.5", "--pids-limit", "20", "--init", "-l", "a=b", "--restart", "no",
                                "-w", "/tmp", "-u", "1000", "--network", "mynet", "--network-alias", "db",
                                "--ip", "10.1.0.5", "--entrypoint", "", "--stop-timeout", "3", "busybox", "sh")
        body = runconfig.build_config(opts, args[0], args[1:], (24, 80))
        assert body["Image"] == "busybox" and body["Cmd"] == ["sh"] and body["Entrypoint"] == [""]
        assert (body["AttachStdin"], body["OpenStdin"], body["StdinOnce"], body["Tty"]) == (True, True, True, True)
        assert body["ExposedPorts"] == {"8080/tcp": {}} and body["Volumes"] == {"/anon": {}}
        assert body["Labels"] == {"a": "b"} and body["StopTimeout"] == 3
        h = body["HostConfig"]
        assert h["Binds"] == ["/h:/c:ro"] and h["AutoRemove"] is True and h["Memory"] == 64 << 20
        assert h["NanoCpus"] == 500_000_000 and h["PidsLimit"] == 20 and h["Init"] is True
        assert h["PortBindings"] == {"8080/tcp": [{"HostIp": "", "HostPort": "80"}]}
        assert h["NetworkMode"] == "mynet" and h["ConsoleSize"] == [24, 80]
        assert body["NetworkingConfig"]["EndpointsConfig"] == {
            "mynet": {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}

    def test_build_config_refusals(self):
        opts, args = _run_flags("--rm", "--restart", "always", "busybox")
        with pytest.raises(runconfig.ConfigError, match="conflicting options: cannot specify both --restart and --rm"):
            runconfig.build_config(opts, args[0], [])
        opts, args = _run_flags("--network-alias", "x", "busybox")
        with pytest.raises(runconfig.ConfigError, match="network-scoped aliases are only supported for user-defined"):
            runconfig.build_config(opts, args[0], [])


class TestPsFormatting:
    def test_command_column(self):
        assert cc.format_command("sleep 300") == '"sleep 300"'
        assert cc.format_command("sh -c 'while true; do sleep 1; done'") == '"sh -c \'while true; …"'
        assert cc.format_command('echo "hi"') == '"echo \\"hi\\""'
        assert cc.format_command("sh -c 'while true; do sleep 1; done'", trunc=False) == \
            '"sh -c \'while true; do sleep 1; done\'"'

    def test_status(self):
        now = 1_700_000_000.0

        def iso(t):
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + f".{int(round((t % 1) * 1e9)):09d}Z"

        running = {"Status": "running", "Running": True, "StartedAt": iso(now - 3.25)}
        assert cc.container_status(running, now) == "Up 3 seconds"
        assert cc.container_status({**running, "StartedAt": iso(now - 1)}, now) == "Up 1 second"
        assert cc.container_status({**running, "Status": "paused", "Paused": True, "StartedAt": iso(now - 1)},
                                   now) == "Up 1 second (Paused)"
        exited = {"Status": "exited", "ExitCode": 137, "StartedAt": iso(now - 400), "FinishedAt": iso(now - 120)}
        assert cc.container_status(exited, now) == "Exited (137) 2 minutes ago"
        assert cc.container_status({"Status": "created", "StartedAt": "0001-01-01T00:00:00Z"}, now) == "Created"
        assert cc.container_status({**running, "Health": {"Status": "healthy"}}, now) == "Up 3 seconds (healthy)"

    def test_ports(self):
        ports = [
            {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 80, "Type": "tcp"},
            {"PrivatePort": 9000, "Type": "tcp"}, {"PrivatePort": 9001, "Type": "tcp"},
            {"PrivatePort": 53, "Type": "udp"},
            {"IP": "0.0.0.0", "PrivatePort": 7000, "PublicPort": 7000, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 7001, "PublicPort": 7001, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 8080, "PublicPort": 80, "Type": "tcp"},
        ]
        assert cc.displayable_ports(ports) == ("53/udp, 0.0.0.0:7000-7001->7000-7001/tcp, 9000-9001/tcp, "
                                               "0.0.0.0:80->8080/tcp, [::]:80->8080/tcp")
        assert cc.displayable_ports([]) == ""

    def test_row(self):
        c = {"Id": "a" * 64, "Names": ["/web"], "Image": "docker.io/library/busybox:latest@sha256:" + "b" * 64,
             "ImageID": "sha256:" + "c" * 64, "Command": "sleep 300", "Created": 1_700_000_000 - 90,
             "State": "running", "Status": "Up About a minute",
             "Ports": [{"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 80, "Type": "tcp"}],
             "Labels": {"b": "2", "a": "1"}, "NetworkSettings": {"Networks": {"bridge": {}}}, "Mounts": []}
        row = cc.ps_row(c, now=1_700_000_000)
        assert row["ID"] == "a" * 12 and row["Names"] == "web" and row["Image"] == "busybox:latest"
        assert row["Command"] == '"sleep 300"' and row["RunningFor"] == "About a minute ago"
        assert row["Ports"] == "0.0.0.0:80->8080/tcp" and row["Labels"] == "a=1,b=2" and row["Networks"] == "bridge"
        assert cc.ps_row({**c, "Image": "sha256:" + "c" * 64}, now=0)["Image"] == "c" * 12
        assert cc.ps_row(c, trunc=False, now=0)["ID"] == "a" * 64

    def test_table(self, capsys):
        c = {"Id": "0b3f" + "1" * 60, "Names": ["/tiny_poincare"], "Image": "ubuntu:latest", "ImageID": "sha256:x",
             "Command": "/bin/bash", "Created": int(time.time()) - 7 * 60, "State": "running", "Status": "Up 7 minutes",
             "Ports": []}
        cli_format.render_format(cc.PS_TABLE, [cc.ps_row(c)], cc.PS_HEADERS)
        out = capsys.readouterr().out.splitlines()
        assert out[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        assert re.match(r'0b3f11111111\s+ubuntu:latest\s+"/bin/bash"\s+7 minutes ago\s+Up 7 minutes\s+tiny_poincare$',
                        out[1]), out[1]

    def test_stats_entry(self):
        s = {"id": "f" * 64, "name": "/web", "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000,
                                                          "online_cpus": 2},
             "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
             "memory_stats": {"usage": 3 << 20, "limit": 1 << 30, "stats": {"total_inactive_file": 1 << 20}},
             "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 648}},
             "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 0}]},
             "pids_stats": {"current": 3}}
        e = cc.stats_entry("web", "", s)
        assert e["CPUPerc"] == "40.00%" and e["MemUsage"] == "2MiB / 1GiB" and e["MemPerc"] == "0.20%"
        assert e["NetIO"] == "1.5kB / 648B" and e["BlockIO"] == "4.1kB / 0B" and e["PIDs"] == "3" and e["Name"] == "web"

    def test_durations_and_timestamps(self):
        assert units.parse_go_duration("1h30m") == 5400 and units.parse_go_duration("1.5s") == 1.5
        with pytest.raises(ValueError):
            units.parse_go_duration("10")
        assert cc.get_timestamp("10m", now=1000.0) == "400.000000000"
        assert cc.get_timestamp("1700000000") == "1700000000"
        assert cc.get_timestamp("2013-01-02T13:23:37Z") == "1357133017.000000000"


class TestDetachKeysAndStreams:
    def test_parse_detach_keys(self):
        assert detachkeys.to_bytes("ctrl-p,ctrl-q") == b"\x10\x11"
        assert detachkeys.to_bytes("a,ctrl-@,ctrl-[,DEL") == b"a\x00\x1b\x7f"
        with pytest.raises(ValueError, match="Unknown character: 'ctrl-xx'"):
            detachkeys.to_bytes("ctrl-xx")
        with pytest.raises(CLIError, match=r"invalid detach keys \(ctrl-1\): Unknown character: 'ctrl-1'"):
            cmd_run.validate_detach_keys("ctrl-1")

    def test_escape_detector_across_reads(self):
        d = hijack.EscapeDetector(b"\x10\x11")
        assert d.feed(b"ls\r") is None
        assert d.feed(b"ab\x10") is None
        assert d.feed(b"\x11rest") == 1
        assert d.feed(b"\x10x\x11") is None  # interrupted sequence
        assert d.feed(b"\x10\x10\x11") == 3

    def test_demux(self, capfd):
        frames = b"".join(bytes([kind, 0, 0, 0]) + len(p).to_bytes(4, "big") + p
                          for kind, p in ((1, b"out1\n"), (2, b"err\n"), (1, b"out2\n")))
        d = hijack.Demux(1, 2)
        for i in range(0, len(frames), 3):  # frames split at arbitrary points
            d.feed(frames[i:i + 3])
        out, err = capfd.readouterr()
        assert out == "out1\nout2\n" and err == "err\n"
        with pytest.raises(CLIError, match="error from daemon in stream: boom"):
            hijack.Demux(1, 2).feed(bytes([3, 0, 0, 0, 0, 0, 0, 4]) + b"boom")

    def test_streamer_demultiplexes_until_eof(self, capfd):
        ours, theirs = socket.socketpair()
        conn = hijack.Hijacked(ours, bytes([1, 0, 0, 0, 0, 0, 0, 3]) + b"abc")
        def daemon():
            theirs.sendall(bytes([2, 0, 0, 0, 0, 0, 0, 4]) + b"err\n" + bytes([1, 0, 0, 0, 0, 0, 0, 2]) + b"d\n")
            theirs.close()
        threading.Thread(target=daemon).start()
        s = hijack.Streamer(conn, tty=False, stdin=False, stdout=True, stderr=True)
        assert s.run() == "eof"
        out, err = capfd.readouterr()
        assert out == "abcd\n" and err == "err\n"


class TestCpHelpers:
    def test_split_arg(self):
        assert cmd_cp.split_cp_arg("web:/etc/hosts") == ("web", "/etc/hosts")
        assert cmd_cp.split_cp_arg("/abs:path") == ("", "/abs:path")
        assert cmd_cp.split_cp_arg("./file:name") == ("", "./file:name")
        assert cmd_cp.split_cp_arg("plain") == ("", "plain")

    def test_rebase(self):
        assert cmd_cp.rebase_name("dir/a/b", "dir", "new") == "new/a/b"
        assert cmd_cp.rebase_name("dir", "dir", "new") == "new"
        assert cmd_cp.rebase_name("dirx/a", "dir", "new") == "dirx/a"
        assert cmd_cp.rebase_name("./a", ".", "new") == "new/a"

    @staticmethod
    def _tar(entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for name, kind, extra in entries:
                info = tarfile.TarInfo(name)
                if kind == "file":
                    info.size = len(extra)
                    info.mode = 0o4755
                    t.addfile(info, io.BytesIO(extra))
                    continue
                info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE,
                             "chr": tarfile.CHRTYPE}[kind]
                if kind in ("sym", "lnk"):
                    info.linkname = extra
                t.addfile(info)
        buf.seek(0)
        return buf

    def test_safe_extract(self, tmp_path):
        dest = tmp_path / "dest"
        dest.mkdir()
        cmd_cp.safe_extract(self._tar([("d", "dir", None), ("d/f", "file", b"hi"), ("d/l", "sym", "f"),
                                       ("d/h", "lnk", "d/f"), ("d/null", "chr", None)]), str(dest))
        assert (dest / "d/f").read_bytes() == b"hi" and os.readlink(dest / "d/l") == "f"
        assert os.stat(dest / "d/h").st_ino == os.stat(dest / "d/f").st_ino
        assert not (dest / "d/null").exists()  # no device nodes on the client
        assert oct(os.stat(dest / "d/f").st_mode & 0o7777) == "0o755"  # set-id bits dropped

    @pytest.mark.parametrize("entries", [
        [("../evil", "file", b"x")],
        [("a/../../evil", "file", b"x")],
        [("esc", "sym", "/"), ("esc/evil", "file", b"x")],
        [("esc", "sym", ".."), ("esc/evil", "file", b"x")],
        [("h", "lnk", "../../etc/passwd")],
    ])
    def test_safe_extract_refuses_escapes(self, tmp_path, entries):
        dest = tmp_path / "dest"
        dest.mkdir()
        with pytest.raises(CLIError):
            cmd_cp.safe_extract(self._tar(entries), str(dest))
        assert not (tmp_path / "evil").exists() and not Path("/evil").exists()

    def test_absolute_names_stay_inside(self, tmp_path):
        dest = tmp_path / "dest"
        dest.mkdir()
        cmd_cp.safe_extract(self._tar([("/abs", "file", b"x")]), str(dest))
        assert (dest / "abs").read_bytes() == b"x"

    def test_no_write_through_symlink(self, tmp_path):
        dest = tmp_path / "dest"
        dest.mkdir()
        outside = tmp_path / "outside"
        outside.write_text("keep")
        os.symlink(outside, dest / "f")
        cmd_cp.safe_extract(self._tar([("f", "file", b"new")]), str(dest))
        assert outside.read_text() == "keep" and (dest / "f").read_bytes() == b"new"

    def test_build_archive(self, tmp_path):
        src = tmp_path / "src"
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "a").write_text("a")
        names = lambda f: sorted(tarfile.open(fileobj=f).getnames())  # noqa: E731
        assert names(cmd_cp.build_archive(str(src), "src")) == ["src", "src/sub", "src/sub/a"]
        assert names(cmd_cp.build_archive(str(src) + "/.", "")) == ["sub", "sub/a"]
        assert names(cmd_cp.build_archive(str(src / "sub" / "a"), "renamed")) == ["renamed"]


# =================================================================================================
# 2. The CLI against a fake Engine API (what the CLI decides on its own)
# =================================================================================================


class FakeEngine:
    """Just enough of the Engine API, on a unix socket, to watch the CLI's requests: containers
    whose "process" is scripted by its command (echo, exit N, cat, err, trapint, nosuch, ...)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.images = {"busybox:latest"}
        self.containers: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        engine = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                engine._handle(self)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(path, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- HTTP --

    @staticmethod
    def _send(h, status, body=None, reason="OK", headers=()):
        data = b"" if body is None else json.dumps(body).encode()
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
        h.wfile.write(head.encode() + data)
        h.wfile.flush()

    def _handle(self, h):
        line = h.rfile.readline().decode().strip()
        if not line:
            return
        method, target, _ = line.split(" ", 2)
        headers = {}
        while True:
            hl = h.rfile.readline().decode()
            if hl in ("\r\n", "\n", ""):
                break
            k, _, v = hl.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = h.rfile.read(int(headers.get("content-length", 0) or 0))
        from urllib.parse import parse_qs, unquote, urlsplit

        parts = urlsplit(target)
        path = re.sub(r"^/v[0-9.]+", "", unquote(parts.path))
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self.lock:
            self.calls.append((method, path, query))
        payload = json.loads(body) if body and headers.get("content-type") == "application/json" else None
        try:
            self._route(h, method, path, query, payload, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _find(self, ref):
        for c in self.containers.values():
            if c["Id"] == ref or c["Id"].startswith(ref) or c["Name"] == "/" + ref:
                return c
        return None

    def _route(self, h, method, path, q, body, headers):
        m = re.fullmatch(r"/containers/([^/]+)/(\w+)", path)
        if method == "POST" and path == "/containers/create":
            image = body["Image"]
            if image not in self.images and image + ":latest" not in self.images:
                return self._send(h, 404, {"message": f"No such image: {image}"})
            name = q.get("name") or f"fake_{len(self.containers)}"
            if any(c["Name"] == "/" + name for c in self.containers.values()):
                return self._send(h, 409, {"message": f'Conflict. The container name "/{name}" is already in use by '
                                                      f'container "x". You have to remove (or rename) that container '
                                                      f'to be able to reuse that name.'})
            ident = os.urandom(32).hex()
            self.containers[ident] = {"Id": ident, "Name": "/" + name, "Config": body, "HostConfig": body["HostConfig"],
                                      "State": {"Status": "created", "Running": False, "ExitCode": 0},
                                      "exited": threading.Event(), "conns": [], "kills": [], "stdin": []}
            return self._send(h, 201, {"Id": ident, "Warnings": []}, "Created")
        if method == "POST" and path == "/images/create":
            ref = f"{q['fromImage']}:{q.get('tag') or 'latest'}"
            self.images.add(ref)
            lines = [{"status": f"Pulling from {q['fromImage']}", "id": q.get("tag") or "latest"},
                     {"status": "Pull complete", "id": "0123456789ab"},
                     {"status": "Digest: sha256:" + "d" * 64},
                     {"status": f"Status: Downloaded newer image for {ref}"}]
            data = b"".join(json.dumps(x).encode() + b"\r\n" for x in lines)
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                          + str(len(data)).encode() + b"\r\nConnection: close\r\n\r\n" + data)
            return None
        if method == "GET" and path == "/containers/json":
            return self._send(h, 200, [self._summary(c) for c in self.containers.values()
                                       if q.get("all") in ("1", "true") or c["State"]["Running"]])
        if method == "GET" and re.fullmatch(r"/(images|networks|volumes)/.+", path):
            return self._send(h, 404, {"message": f"No such {path.split('/')[1][:-1]}: {path.split('/', 2)[2]}"})
        if method == "GET" and path == "/info":
            return self._send(h, 200, {"Swarm": {"ControlAvailable": False}})
        if not m and method == "DELETE" and path.startswith("/containers/"):
            c = self._find(path.split("/")[2])
            if c is None:
                return self._send(h, 404, {"message": f"No such container: {path.split('/')[2]}"})
            del self.containers[c["Id"]]
            return self._send(h, 204)
        if not m:
            return self._send(h, 404, {"message": "page not found"})
        c = self._find(m.group(1))
        action = m.group(2)
        if c is None:
            return self._send(h, 404, {"message": f"No such container: {m.group(1)}"})
        if action == "json":
            return self._send(h, 200, {k: v for k, v in c.items() if k in ("Id", "Name", "Config", "HostConfig", "State")})
        if action == "attach":
            assert headers.get("upgrade") == "tcp" and headers.get("connection") == "Upgrade"
            h.wfile.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
                          b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            h.wfile.flush()
            conn = {"h": h, "stdin": q.get("stdin") in ("1", "true"), "eof": threading.Event()}
            c["conns"].append(conn)
            keys = {"": b"\x10\x11", "ctrl-a,x": b"\x01x"}.get(q.get("detachKeys", ""), b"\x10\x11")
            if conn["stdin"]:
                seen = b""
                while True:
                    data = h.rfile.read1(65536)
                    if not data:
                        break
                    seen += data
                    if c["Config"]["Tty"] and keys in seen:  # the daemon detaches on the keys
                        c["detaches"] = c.get("detaches", 0) + 1
                        c["conns"].remove(conn)
                        h.connection.shutdown(socket.SHUT_RDWR)
                        return None
                    c["stdin"].append(data)
                conn["eof"].set()
            c["exited"].wait(30)
            return None
        if action == "wait":
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            h.wfile.flush()
            c["exited"].wait(30)
            data = json.dumps({"StatusCode": c["State"]["ExitCode"], "Error": None}).encode()
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
            return None
        if action == "resize":
            c.setdefault("resizes", []).append((q.get("h"), q.get("w")))
            return self._send(h, 200)
        if action == "kill":
            c["kills"].append(q.get("signal"))
            return self._send(h, 204)
        if action == "start":
            cmd = c["Config"].get("Cmd") or ["sh"]
            if cmd[0] == "nosuch":
                return self._send(h, 400, {"message": 'failed to create task for container: exec: "nosuch": '
                                                      'executable file not found in $PATH: unknown'})
            if cmd[0] == "/etc/passwd":
                return self._send(h, 400, {"message": 'failed to create task for container: exec: "/etc/passwd": '
                                                      'permission denied: unknown'})
            c["State"].update(Status="running", Running=True)
            threading.Thread(target=self._process, args=(c, cmd), daemon=True).start()
            return self._send(h, 204)
        return self._send(h, 404, {"message": "page not found"})

    @staticmethod
    def _summary(c):
        return {"Id": c["Id"], "Names": [c["Name"]], "Image": c["Config"]["Image"], "ImageID": "sha256:" + "e" * 64,
                "Command": " ".join(c["Config"].get("Cmd") or ["sh"]), "Created": int(time.time()) - 5,
                "State": c["State"]["Status"], "Status": "Up 5 seconds" if c["State"]["Running"] else "Exited (0)",
                "Ports": [], "Labels": {}}

    def _process(self, c, cmd):
        def out(stream, data):
            for conn in c["conns"]:
                frame = data if c["Config"]["Tty"] else bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data
                try:
                    conn["h"].wfile.write(frame)
                    conn["h"].wfile.flush()
                except OSError:
                    pass

        code = 0
        if cmd[0] == "echo":
            out(1, (" ".join(cmd[1:]) + "\n").encode())
        elif cmd[:2] == ["sh", "-c"] and cmd[2].startswith("exit "):
            code = int(cmd[2].split()[1])
        elif cmd[0] == "cat":
            for conn in c["conns"]:
                if conn["stdin"]:
                    conn["eof"].wait(10)
            out(1, b"".join(c["stdin"]))
        elif cmd[0] == "err":
            out(2, b"oops\n")
            code = 1
        elif cmd == ["sh"] and c["Config"]["Tty"]:  # a pty: echoes what is typed, "exit" ends it
            out(1, b"/ # ")
            done = 0
            while True:
                typed = b"".join(c["stdin"])
                if len(typed) > done:
                    out(1, typed[done:].replace(b"\r", b"\r\n"))
                    done = len(typed)
                if b"exit\r" in typed:
                    break
                time.sleep(0.02)
        elif cmd[0] == "trapint":
            out(1, b"ready\n")
            deadline = time.monotonic() + 20
            while "SIGINT" not in c["kills"] and time.monotonic() < deadline:
                time.sleep(0.02)
            out(1, b"got INT\n")
            code = 7
        c["State"].update(Status="exited", Running=False, ExitCode=code)
        for conn in c["conns"]:
            try:
                conn["h"].connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        c["exited"].set()
        if c["HostConfig"].get("AutoRemove"):
            self.containers.pop(c["Id"], None)

    def actions(self):
        return [(m, re.sub(r"/containers/[0-9a-f]{64}/", "/containers/ID/", p)) for m, p, _ in self.calls]


@pytest.fixture
def fake():
    d = tempfile.mkdtemp(prefix="core-fake-", dir="/tmp")
    engine = FakeEngine(os.path.join(d, "engine.sock"))
    engine.env = {**os.environ, "CORE_HOST": f"unix://{engine.path}", "CORE_NO_AUTOSTART": "1",
                  "DOCKER_CONFIG": d}
    engine.env.pop("DOCKER_DEFAULT_PLATFORM", None)

    def run(*args, input=None, timeout=30):
        return subprocess.run(CORE + list(args), input=input, capture_output=True, text=True, timeout=timeout,
                              env=engine.env)

    engine.cli = run
    try:
        yield engine
    finally:
        engine.close()
        import shutil

        shutil.rmtree(d, ignore_errors=True)


class TestRunChoreography:
    def test_attach_wait_start_and_output(self, fake):
        proc = fake.cli("run", "busybox", "echo", "hello", "world")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello world\n", "")
        assert fake.actions() == [("POST", "/containers/create"), ("POST", "/containers/ID/attach"),
                                  ("POST", "/containers/ID/wait"), ("POST", "/containers/ID/start")]
        attach, wait = fake.calls[1][2], fake.calls[2][2]
        assert (attach["stream"], attach["stdin"], attach["stdout"], attach["stderr"]) == ("1", "0", "1", "1")
        assert wait["condition"] == "next-exit"
        body = next(iter(fake.containers.values()))["Config"]
        assert body["Cmd"] == ["echo", "hello", "world"] and body["AttachStdin"] is False and body["Tty"] is False

    def test_exit_code_stderr_and_rm(self, fake):
        assert fake.cli("run", "busybox", "sh", "-c", "exit 3").returncode == 3
        proc = fake.cli("run", "--rm", "busybox", "err")
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "oops\n")
        assert fake.calls[-2][2]["condition"] == "removed"

    def test_stdin_piped(self, fake):
        proc = fake.cli("run", "-i", "busybox", "cat", input="hello\nworld\n")
        assert (proc.returncode, proc.stdout) == (0, "hello\nworld\n")
        assert fake.calls[1][2]["stdin"] == "1"
        body = next(iter(fake.containers.values()))["Config"]
        assert body["OpenStdin"] and body["StdinOnce"] and body["AttachStdin"]

    def test_detached_prints_id(self, fake):
        proc = fake.cli("run", "-d", "--name", "web", "busybox", "echo", "x")
        ident = next(iter(fake.containers))
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, ident + "\n", "")
        assert ("POST", "/containers/ID/attach") not in fake.actions()
        assert fake.calls[0][2]["name"] == "web"

    @pytest.mark.parametrize("cmd,code,reason", [
        ("nosuch", 127, 'exec: "nosuch": executable file not found in $PATH'),
        ("/etc/passwd", 126, 'exec: "/etc/passwd": permission denied'),
    ])
    def test_start_failures_126_127(self, fake, cmd, code, reason):
        proc = fake.cli("run", "busybox", cmd)
        assert proc.returncode == code
        assert proc.stderr.startswith("core: Error response from daemon: failed to create task for container: ")
        assert reason in proc.stderr
        assert proc.stderr.endswith("\n\nRun 'core run --help' for more information\n")

    def test_daemon_refusal_125_and_create_1(self, fake):
        assert fake.cli("run", "-d", "--name", "dup", "busybox", "echo").returncode == 0
        proc = fake.cli("run", "--name", "dup", "busybox", "echo")
        assert proc.returncode == 125
        assert proc.stderr.startswith('core: Error response from daemon: Conflict. The container name "/dup" is '
                                      "already in use")
        proc = fake.cli("create", "--name", "dup", "busybox")
        assert proc.returncode == 1 and proc.stderr.startswith("Error response from daemon: Conflict.")
        bad = fake.cli("run", "--bogus", "busybox")
        assert bad.returncode == 125 and bad.stderr.startswith("unknown flag: --bogus")
        conflict = fake.cli("run", "--rm", "--restart", "always", "busybox")
        assert conflict.returncode == 125
        assert conflict.stderr == ("core: conflicting options: cannot specify both --restart and --rm\n\n"
                                   "Run 'core run --help' for more information\n")

    def test_pulls_when_the_image_is_missing(self, fake):
        proc = fake.cli("run", "example.com/app:1.0", "echo", "pulled")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "pulled\n"
        assert proc.stderr.splitlines() == [
            "Unable to find image 'example.com/app:1.0' locally", "1.0: Pulling from example.com/app",
            "0123456789ab: Pull complete", "Digest: sha256:" + "d" * 64,
            "Status: Downloaded newer image for example.com/app:1.0"]
        assert [a for a in fake.actions()][:3] == [("POST", "/containers/create"), ("POST", "/images/create"),
                                                   ("POST", "/containers/create")]
        proc = fake.cli("run", "--pull", "never", "other", "echo")
        assert proc.returncode == 125 and "No such image: other" in proc.stderr
        proc = fake.cli("create", "-q", "quietimage")
        assert proc.returncode == 0 and proc.stderr == "" and len(proc.stdout.strip()) == 64
        assert "Unable to find image 'busybox2:latest' locally" in fake.cli("create", "busybox2").stderr

    def test_sig_proxy_forwards_sigint(self, fake):
        p = subprocess.Popen(CORE + ["run", "busybox", "trapint"], env=fake.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline() == "ready\n"
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20)
        finally:
            p.kill()
        assert (p.returncode, out) == (7, "got INT\n"), err
        assert "SIGINT" in next(iter(fake.containers.values()))["kills"]

    def test_no_tty_on_a_pipe(self, fake):
        proc = fake.cli("run", "-it", "busybox", "sh", input="")
        assert (proc.returncode, proc.stderr) == (1, "the input device is not a TTY\n")
        assert fake.calls == []


class TestTerminalAgainstFake:
    """``run -it`` in a real pty: raw mode, the container's size, Ctrl-P Ctrl-Q, re-attaching."""

    def test_run_it_detach_and_attach(self, fake):
        pexpect = pytest.importorskip("pexpect")
        child = pexpect.spawn(CORE[0], CORE[1:] + ["run", "-it", "--name", "tt", "busybox", "sh"], env=fake.env,
                              timeout=20, dimensions=(30, 100))
        child.expect_exact("/ # ")
        child.send("echo hi\r")
        child.expect_exact("echo hi\r\n")
        child.send("\x10\x11")  # ctrl-p ctrl-q
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
        c = fake._find("tt")
        assert c["State"]["Running"] and c["detaches"] == 1
        assert c["Config"]["Tty"] and c["HostConfig"]["ConsoleSize"] == [30, 100]
        assert ("30", "100") in c["resizes"]
        # attach: the detach keys end it with docker's message and status 1
        child = pexpect.spawn(CORE[0], CORE[1:] + ["attach", "--detach-keys", "ctrl-a,x", "tt"], env=fake.env,
                              timeout=20, dimensions=(30, 100))
        assert child.waitnoecho(10)  # the CLI has put the terminal in raw mode
        child.send("pwd\r")
        child.expect_exact("pwd\r\n")
        child.send("\x01x")
        child.expect_exact("read escape sequence")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 1
        assert c["detaches"] == 2 and c["State"]["Running"]
        assert ("31", "101") in c["resizes"]  # attach bumps the size so the shell redraws
        # and "exit" ends the container: attach returns its status
        child = pexpect.spawn(CORE[0], CORE[1:] + ["attach", "tt"], env=fake.env, timeout=20)
        assert child.waitnoecho(10)
        child.send("exit\r")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0 and not c["State"]["Running"]


    def test_terminal_restored_when_killed(self, fake):
        import pty
        import termios

        ok_run = subprocess.run(CORE + ["run", "-d", "-t", "-i", "--name", "tk2", "busybox", "sh"], env=fake.env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        assert ok_run.returncode == 0, ok_run.stderr  # -d: no TTY needed
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen(CORE + ["attach", "tk2"], env=fake.env, stdin=slave, stdout=slave, stderr=slave)
            wait_for(lambda: not termios.tcgetattr(slave)[3] & termios.ECHO, timeout=10, what="raw mode")
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 128 + signal.SIGTERM
            assert termios.tcgetattr(slave)[3] & termios.ECHO, "the terminal must be restored"
        finally:
            os.close(master)
            os.close(slave)


class TestListingsAgainstFake:
    def test_ps_and_inspect(self, fake):
        fake.cli("run", "-d", "--name", "one", "busybox", "echo", "x")
        ident = next(iter(fake.containers))
        proc = fake.cli("ps", "-a")
        lines = proc.stdout.splitlines()
        assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        assert re.match(rf'{ident[:12]}\s+busybox\s+"echo x"\s+5 seconds ago\s+\S.*\s+one$', lines[1]), lines
        assert fake.cli("ps", "-aq").stdout == ident[:12] + "\n"
        assert fake.cli("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}").stdout == f"{ident} one\n"
        assert json.loads(fake.cli("ps", "-a", "--format", "json").stdout)["Names"] == "one"
        assert fake.cli("container", "ls", "-a", "--format", "table {{.Names}}").stdout == "NAMES\none\n"
        insp = fake.cli("inspect", "--format", "{{.Name}} {{.Config.Image}}", "one")
        assert (insp.returncode, insp.stdout) == (0, "/one busybox\n")
        missing = fake.cli("inspect", "nothing")
        assert (missing.returncode, missing.stdout, missing.stderr) == (1, "[]\n", "Error: No such object: nothing\n")
        cmissing = fake.cli("container", "inspect", "nothing")
        assert (cmissing.returncode, cmissing.stdout) == (1, "[]\n")
        assert cmissing.stderr == "Error response from daemon: No such container: nothing\n"

    def test_rm_messages(self, fake):
        fake.cli("create", "--name", "gone", "busybox")
        proc = fake.cli("rm", "gone", "nope")
        assert (proc.returncode, proc.stdout) == (1, "gone\n")
        assert proc.stderr == "Error response from daemon: No such container: nope\n"
        proc = fake.cli("rm", "-f", "nope")
        assert (proc.returncode, proc.stderr) == (0, "Error response from daemon: No such container: nope\n")


# =================================================================================================
# 3. End to end: the real daemon, the real registry's busybox, a real pty
# =================================================================================================


def _kill_leftovers(root: Path) -> None:
    """Containers outlive the daemon by design: kill whatever still runs from this test's root
    (shims and container processes, found by their root directory or command line)."""
    prefix = str(root)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            rootdir = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if prefix in cmdline or rootdir.startswith(prefix):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="module")
def eng(test_images):
    """One daemon for the module, busybox pulled from the test registry."""
    with busybox_engine(test_images) as env:
        try:
            yield env
        finally:
            try:
                ids = env.run("ps", "-aq", timeout=30).stdout.split()
                if ids:
                    env.run("rm", "-f", *ids, timeout=120)
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
            env.stop_daemons()
            _kill_leftovers(env.root)


def ok(proc):
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def status_of(env, name):
    """The STATUS column of container ``name`` in ``ps -a`` ("" when it is not listed)."""
    for line in ok(env.run("ps", "-a", "--format", "{{.Names}}\t{{.Status}}")).splitlines():
        names, _, status = line.partition("\t")
        if name in names.split(","):
            return status
    return ""


def inspect_field(env, name, template):
    return ok(env.run("inspect", "-f", template, name)).strip()


def spawn(env, *args, **kw):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(CORE[0], CORE[1:] + list(args), env=env.env, timeout=kw.pop("timeout", 60),
                          dimensions=kw.pop("dimensions", (24, 80)), **kw)
    return child


def end(child):
    import pexpect

    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


SHELL_PROMPT = "/ # "
TRAP_LOOP = "trap 'exit 0' TERM; while true; do sleep 0.1; done"


class TestRun:
    def test_output_and_exit_codes(self, eng):
        proc = eng.run("run", "--rm", eng.bb, "echo", "hello")
        assert (proc.returncode, proc.stdout) == (0, "hello\n"), proc.stderr
        proc = eng.run("run", "--rm", eng.bb, "sh", "-c", "echo out; echo err >&2; exit 3")
        assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
        proc = eng.run("run", "--rm", "-i", eng.bb, "cat", input="piped\nlines\n")
        assert (proc.returncode, proc.stdout) == (0, "piped\nlines\n"), proc.stderr
        assert eng.run("run", "--rm", eng.bb, "false").returncode == 1
        proc = subprocess.run(CORE + ["run", "--rm", "-t", eng.bb, "echo", "tty"], env=eng.env, capture_output=True,
                              timeout=60)
        assert (proc.returncode, proc.stdout) == (0, b"tty\r\n"), proc.stderr  # a pty's ONLCR, raw

    def test_127_not_found(self, eng):
        proc = eng.run("run", "--rm", eng.bb, "no-such-command")
        assert proc.returncode == 127, (proc.stdout, proc.stderr)
        assert proc.stderr.startswith("core: Error response from daemon: ")
        assert "executable file not found" in proc.stderr or "no such file or directory" in proc.stderr
        assert proc.stderr.endswith("Run 'core run --help' for more information\n")

    def test_126_cannot_invoke(self, eng):
        proc = eng.run("run", "--rm", eng.bb, "/etc/passwd")
        assert proc.returncode == 126, (proc.stdout, proc.stderr)
        assert "permission denied" in proc.stderr

    def test_125_daemon_refuses(self, eng):
        ok(eng.run("create", "--name", "taken", eng.bb))
        proc = eng.run("run", "--name", "taken", eng.bb, "true")
        assert proc.returncode == 125 and "is already in use" in proc.stderr, proc.stderr
        assert eng.run("run", "--bogus-flag", eng.bb).returncode == 125
        proc = eng.run("run", "--rm", "--mount", "type=bind,source=/definitely/not/here,target=/x", eng.bb, "true")
        assert proc.returncode == 125 and "/definitely/not/here" in proc.stderr, proc.stderr
        ok(eng.run("rm", "taken"))

    def test_rm_removes(self, eng):
        ok(eng.run("run", "--rm", "--name", "ephemeral", eng.bb, "true"))
        assert eng.run("ps", "-a", "-q", "--filter", "name=ephemeral").stdout == ""

    def test_driver_storage_vfs(self, eng):
        proc = eng.run("--driver", "storage=vfs", "run", "--rm", eng.bb, "sh", "-c", "echo vfs > /tmp/x; cat /tmp/x")
        assert (proc.returncode, proc.stdout) == (0, "vfs\n"), (proc.stderr, eng.daemon_log()[-2000:])

    def test_sig_proxy(self, eng):
        p = subprocess.Popen(CORE + ["run", "--rm", eng.bb, "sh", "-c",
                                     "trap 'echo got INT; exit 7' INT; echo ready; while true; do sleep 0.1; done"],
                             env=eng.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline() == "ready\n"
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
        assert (p.returncode, out) == (7, "got INT\n"), err


def test_unable_to_find_image_then_pull(test_images, core_env):
    ref = test_images["busybox:latest"].reference
    try:
        proc = core_env.run("run", "--rm", ref, "echo", "pulled", timeout=300)
        assert proc.returncode == 0, (proc.stderr, core_env.daemon_log()[-3000:])
        assert proc.stdout == "pulled\n"
        assert proc.stderr.startswith(f"Unable to find image '{ref}' locally\n")
        assert f"Status: Downloaded newer image for {ref}" in proc.stderr
    finally:
        core_env.stop_daemons()
        _kill_leftovers(core_env.root)


class TestDetached:
    def test_web_example(self, eng):
        """The book's ``docker run -d --name webserver -p 80:8080`` — on a free loopback port."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        out = ok(eng.run("run", "-d", "--name", "webserver", "-p", f"127.0.0.1:{port}:8080", "-l", "app=book",
                         eng.bb, "sh", "-c", "echo started; echo oops >&2; exec httpd -f -p 8080"))
        ident = out.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", ident), out
        try:
            # what the container is and does
            table = ok(eng.run("ps"))
            header, *rows = table.splitlines()
            assert header.split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
            row = next(r for r in rows if r.endswith(" webserver"))
            assert row.startswith(ident[:12]) and f" {eng.bb} " in row
            assert re.search(r"\bUp (Less than a second|\d+ seconds?)\b", row), row
            assert ok(eng.run("ps", "-q", "--filter", "label=app=book")) == ident[:12] + "\n"
            assert ok(eng.run("ps", "--no-trunc", "-q", "--filter", "name=webserver")) == ident + "\n"
            assert ok(eng.run("ps", "--filter", "status=running", "--filter", f"id={ident[:12]}", "--format",
                              "{{.Names}} {{.State}}")) == "webserver running\n"
            assert inspect_field(eng, "webserver", "{{.State.Status}}") == "running"
            assert inspect_field(eng, ident[:5], "{{.Name}} {{.Id}}") == f"/webserver {ident}"
            data = json.loads(ok(eng.run("container", "inspect", "webserver")))
            assert data[0]["Id"] == ident and data[0]["Config"]["Labels"] == {"app": "book"}
            wait_for(lambda: "started" in eng.run("logs", "webserver").stdout, timeout=20, what="the log line")
            logs = eng.run("logs", "webserver")
            assert (logs.stdout, logs.stderr) == ("started\n", "oops\n")
            stamped = eng.run("logs", "-t", "--tail", "1", "webserver")  # the last line: "oops", on stderr
            assert stamped.stdout == "" and re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z oops\n", stamped.stderr), stamped
            top = ok(eng.run("top", "webserver")).splitlines()
            assert "PID" in top[0].split() and any("httpd" in line for line in top[1:])

            # its network: an address, the published port, the web server behind it
            ip = inspect_field(eng, "webserver", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
            assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip), f"no IP address: {ip!r}"
            assert ok(eng.run("port", "webserver")) == f"8080/tcp -> 127.0.0.1:{port}\n"
            assert ok(eng.run("port", "webserver", "8080/tcp")) == f"127.0.0.1:{port}\n"
            assert ok(eng.run("ps", "--filter", "name=webserver", "--format", "{{.Ports}}")) == \
                f"127.0.0.1:{port}->8080/tcp\n"
            import urllib.error
            import urllib.request

            def answers():
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                except urllib.error.HTTPError:
                    return True  # busybox httpd answered (404: nothing to serve)
                except OSError:
                    return False
                return True

            wait_for(answers, timeout=20, what="the published port")

            # the name filter is a regular expression, as docker's
            assert ok(eng.run("ps", "-q", "--filter", "name=^webserver$")) == ident[:12] + "\n"
            assert ok(eng.run("ps", "-q", "--filter", "name=^ebserver")) == ""
            # docker's daemon quotes the arguments that hold spaces in the summary's Command
            assert '"sh -c \'echo started…"' in row, row
        finally:
            eng.run("rm", "-f", "webserver")

    def test_exec(self, eng):
        ok(eng.run("run", "-d", "--name", "ex", eng.bb, "sh", "-c", TRAP_LOOP))
        assert ok(eng.run("exec", "ex", "echo", "hi")) == "hi\n"
        assert eng.run("exec", "ex", "sh", "-c", "exit 5").returncode == 5
        assert ok(eng.run("exec", "-e", "X=from-exec", "ex", "sh", "-c", "echo $X")) == "from-exec\n"
        assert ok(eng.run("exec", "-w", "/tmp", "ex", "pwd")) == "/tmp\n"
        assert ok(eng.run("exec", "-u", "1000", "ex", "id", "-u")) == "1000\n"
        assert ok(eng.run("exec", "-i", "ex", "cat", input="to exec\n")) == "to exec\n"
        proc = eng.run("exec", "ex", "sh", "-c", "echo out; echo err >&2")
        assert (proc.stdout, proc.stderr) == ("out\n", "err\n")
        proc = eng.run("exec", "ex", "no-such-command")
        assert proc.returncode == 127, (proc.stdout, proc.stderr)
        ok(eng.run("exec", "-d", "ex", "touch", "/tmp/from-detached"))
        wait_for(lambda: eng.run("exec", "ex", "test", "-e", "/tmp/from-detached").returncode == 0, timeout=10,
                 what="the detached exec")
        proc = eng.run("exec", "nosuchcontainer", "true")
        assert (proc.returncode, proc.stderr) == (1, "Error response from daemon: No such container: nosuchcontainer\n")
        ok(eng.run("rm", "-f", "ex"))


class TestLifecycle:
    def test_stop_137_for_pid1_shell_and_0_for_trap(self, eng):
        ok(eng.run("run", "-d", "--name", "ignorer", eng.bb, "sh", "-c", "while true; do sleep 0.1; done"))
        ok(eng.run("run", "-d", "--name", "trapper", eng.bb, "sh", "-c", TRAP_LOOP))
        t0 = time.monotonic()
        assert ok(eng.run("stop", "-t", "1", "ignorer", "trapper")) == "ignorer\ntrapper\n"
        assert time.monotonic() - t0 < 10
        assert status_of(eng, "ignorer").startswith("Exited (137) ")
        assert status_of(eng, "trapper").startswith("Exited (0) ")
        assert ok(eng.run("wait", "ignorer", "trapper")) == "137\n0\n"
        assert inspect_field(eng, "ignorer", "{{.State.ExitCode}} {{.State.Running}}") == "137 false"
        ok(eng.run("rm", "ignorer", "trapper"))

    def test_book_percy_start_keeps_files(self, eng):
        ok(eng.run("run", "-d", "--name", "percy", eng.bb, "sh", "-c", TRAP_LOOP))
        ok(eng.run("exec", "percy", "sh", "-c", "echo 'sysadmins FTW' > /tmp/newfile"))
        assert ok(eng.run("stop", "percy")) == "percy\n"
        assert "percy" not in ok(eng.run("ps"))
        assert status_of(eng, "percy").startswith("Exited (0)")
        assert ok(eng.run("start", "percy")) == "percy\n"
        assert status_of(eng, "percy").startswith("Up")
        assert ok(eng.run("exec", "percy", "cat", "/tmp/newfile")) == "sysadmins FTW\n"
        assert ok(eng.run("stop", "percy")) == "percy\n"
        assert ok(eng.run("rm", "percy")) == "percy\n"
        assert "percy" not in ok(eng.run("ps", "-a"))

    def test_rm_running_needs_force(self, eng):
        ok(eng.run("run", "-d", "--name", "rmme", eng.bb, "sleep", "300"))
        proc = eng.run("rm", "rmme")
        assert proc.returncode == 1 and proc.stderr.startswith("Error response from daemon: ")
        assert ok(eng.run("rm", "-f", "rmme")) == "rmme\n"
        proc = eng.run("rm", "rmme")
        assert (proc.returncode, proc.stderr) == (1, "Error response from daemon: No such container: rmme\n")
        assert eng.run("rm", "-f", "rmme").returncode == 0

    def test_pause_rename_restart_kill(self, eng):
        ok(eng.run("run", "-d", "--name", "life", eng.bb, "sh", "-c", TRAP_LOOP))
        assert ok(eng.run("pause", "life")) == "life\n"
        assert status_of(eng, "life").endswith("(Paused)")
        assert inspect_field(eng, "life", "{{.State.Status}}") == "paused"
        assert ok(eng.run("unpause", "life")) == "life\n"
        assert status_of(eng, "life").startswith("Up") and not status_of(eng, "life").endswith("(Paused)")
        ok(eng.run("rename", "life", "life2"))
        assert status_of(eng, "life2").startswith("Up")
        assert ok(eng.run("restart", "-t", "1", "life2")) == "life2\n"
        assert status_of(eng, "life2").startswith("Up")
        assert ok(eng.run("kill", "-s", "TERM", "life2")) == "life2\n"
        assert ok(eng.run("wait", "life2")) == "0\n"
        proc = eng.run("kill", "life2")
        assert proc.returncode == 1 and "is not running" in proc.stderr
        ok(eng.run("start", "life2"))
        assert ok(eng.run("kill", "life2")) == "life2\n"
        assert ok(eng.run("wait", "life2")) == "137\n"
        ok(eng.run("rm", "life2"))

    def test_start_attach(self, eng):
        ok(eng.run("create", "--name", "greeter", eng.bb, "sh", "-c", "echo hello from start; exit 4"))
        assert status_of(eng, "greeter") == "Created"
        proc = eng.run("start", "-a", "greeter")
        assert (proc.returncode, proc.stdout) == (4, "hello from start\n"), proc.stderr
        ok(eng.run("rm", "greeter"))

    def test_prune_and_stats(self, eng):
        ok(eng.run("run", "-d", "--name", "st", eng.bb, "sleep", "300"))
        out = ok(eng.run("stats", "--no-stream", "st")).splitlines()
        assert out[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                                  "NET", "I/O", "BLOCK", "I/O", "PIDS"]
        assert out[1].split()[1] == "st" and re.search(r"\d+\.\d\d%", out[1]) and int(out[1].split()[-1]) >= 1
        ok(eng.run("rm", "-f", "st"))
        ident = ok(eng.run("create", "--name", "dead", eng.bb, "true")).strip()
        declined = eng.run("container", "prune", input="n\n")
        assert declined.stdout.startswith("WARNING! This will remove all stopped containers.\n"
                                          "Are you sure you want to continue? [y/N] ")
        assert "dead" in ok(eng.run("ps", "-a"))
        out = ok(eng.run("container", "prune", "-f"))
        assert out.startswith("Deleted Containers:\n") and ident in out and "Total reclaimed space:" in out
        assert "dead" not in ok(eng.run("ps", "-a"))


class TestInteractive:
    """The book's chapter 4 and 6 sessions, in a real pty."""

    def test_run_it_ps_hostname_detach(self, eng):
        """Chapter 4: ``run -it``, the shell is PID 1, the hostname is the short ID, Ctrl-P Ctrl-Q
        leaves it running."""
        name = "tiny_poincare"
        child = spawn(eng, "run", "-it", "--name", name, eng.bb, "sh")
        child.expect_exact(SHELL_PROMPT)
        child.sendline("ps")
        child.expect(r"\n\s*1 root\s+(\S+\s+)?sh\s*\r\n")  # the shell is PID 1
        child.expect_exact(SHELL_PROMPT)
        child.sendline("hostname")
        child.expect(r"hostname\r\n([0-9a-f]{12})\r\n")
        hostname = child.match.group(1).decode()
        child.expect_exact(SHELL_PROMPT)
        child.sendline("echo data > /tmp/f")
        child.expect_exact(SHELL_PROMPT)
        child.send("\x10\x11")  # Ctrl-P Ctrl-Q
        assert end(child) == 0
        ident = inspect_field(eng, name, "{{.Id}}")
        assert hostname == ident[:12]
        try:
            assert status_of(eng, name).startswith("Up"), "detaching must leave the container running"
            row = next(r for r in ok(eng.run("ps")).splitlines() if r.endswith(name))
            assert row.startswith(ident[:12]) and '"sh"' in row
            assert ok(eng.run("exec", name, "cat", "/tmp/f")) == "data\n"
        finally:
            eng.run("rm", "-f", name)

    def test_exec_it_stop_137_start_keeps_files(self, eng):
        """Chapters 4 and 6: ``exec -it`` gets back in; ``stop`` kills a shell that is PID 1
        (it has no SIGTERM handler) → Exited (137); ``start`` brings it back with its files."""
        name = "percy_it"
        ok(eng.run("run", "-dit", "--name", name, eng.bb, "sh"))
        child = spawn(eng, "exec", "-it", name, "sh")
        child.expect_exact(SHELL_PROMPT)
        child.sendline("echo 'sysadmins FTW' > /tmp/newfile; cat /tmp/newfile")
        child.expect_exact("sysadmins FTW\r\n")
        child.sendline("exit 3")
        assert end(child) == 3
        assert status_of(eng, name).startswith("Up")
        t0 = time.monotonic()
        assert ok(eng.run("stop", "-t", "1", name)) == name + "\n"
        assert time.monotonic() - t0 < 10
        assert status_of(eng, name).startswith("Exited (137)")
        assert ok(eng.run("start", name)) == name + "\n"
        assert status_of(eng, name).startswith("Up")
        assert ok(eng.run("exec", name, "cat", "/tmp/newfile")) == "sysadmins FTW\n"
        assert ok(eng.run("rm", "-f", name)) == name + "\n"

    def test_attach_and_detach(self, eng):
        """``attach`` to a running ``-it`` container; the detach keys end it with docker's
        ``read escape sequence`` (exit 1) and leave the container running."""
        name = "attachee"
        ok(eng.run("run", "-dit", "--name", name, eng.bb, "sh"))
        try:
            child = spawn(eng, "attach", name)
            assert child.waitnoecho(10)
            child.sendline("echo attached")
            child.expect_exact("attached\r\n")
            child.send("\x10\x11")
            child.expect_exact("read escape sequence")
            assert end(child) == 1
            assert status_of(eng, name).startswith("Up"), "detaching must leave the container running"
            child = spawn(eng, "attach", "--detach-keys", "ctrl-a,d", name)
            assert child.waitnoecho(10)
            child.send("\x01d")
            child.expect_exact("read escape sequence")
            assert end(child) == 1
            child = spawn(eng, "attach", name)
            assert child.waitnoecho(10)
            child.sendline("exit 6")
            assert end(child) == 6
            assert status_of(eng, name).startswith("Exited (6)")
        finally:
            eng.run("rm", "-f", name)

    def test_exit_ends_the_container(self, eng):
        child = spawn(eng, "run", "-it", "--rm", "--name", "leaver", eng.bb, "sh")
        child.expect_exact(SHELL_PROMPT)
        child.sendline("exit 4")
        assert end(child) == 4
        wait_for(lambda: eng.run("ps", "-aq", "--filter", "name=leaver").stdout == "", timeout=10,
                 what="--rm to remove the container")

    def test_window_size(self, eng):
        child = spawn(eng, "run", "-it", "--rm", eng.bb, "sh", dimensions=(33, 111))
        child.expect_exact(SHELL_PROMPT)
        child.sendline("stty size")
        child.expect_exact("33 111")
        child.setwinsize(40, 120)  # SIGWINCH → POST /containers/{id}/resize
        time.sleep(0.5)
        child.sendline("stty size")
        child.expect_exact("40 120")
        child.sendline("exit")
        assert end(child) == 0


class TestCopy:
    def test_both_directions(self, eng, tmp_path):
        ok(eng.run("run", "-d", "--name", "cpbox", eng.bb, "sh", "-c", TRAP_LOOP))
        (tmp_path / "hello.txt").write_text("hello\n")
        (tmp_path / "d" / "sub").mkdir(parents=True)
        (tmp_path / "d" / "sub" / "x").write_text("x\n")
        ok(eng.run("cp", str(tmp_path / "hello.txt"), "cpbox:/tmp/"))
        assert ok(eng.run("exec", "cpbox", "cat", "/tmp/hello.txt")) == "hello\n"
        ok(eng.run("cp", str(tmp_path / "hello.txt"), "cpbox:/tmp/renamed.txt"))
        assert ok(eng.run("exec", "cpbox", "cat", "/tmp/renamed.txt")) == "hello\n"
        ok(eng.run("cp", str(tmp_path / "d"), "cpbox:/tmp/"))
        assert ok(eng.run("exec", "cpbox", "cat", "/tmp/d/sub/x")) == "x\n"
        ok(eng.run("cp", str(tmp_path / "d") + "/.", "cpbox:/tmp/newdir"))
        assert ok(eng.run("exec", "cpbox", "cat", "/tmp/newdir/sub/x")) == "x\n"

        ok(eng.run("cp", "cpbox:/tmp/hello.txt", str(tmp_path / "out.txt")))
        assert (tmp_path / "out.txt").read_text() == "hello\n"
        ok(eng.run("cp", "cpbox:/tmp/d", str(tmp_path / "back")))
        assert (tmp_path / "back" / "sub" / "x").read_text() == "x\n"
        (tmp_path / "into").mkdir()
        ok(eng.run("cp", "cpbox:/tmp/d", str(tmp_path / "into")))
        assert (tmp_path / "into" / "d" / "sub" / "x").read_text() == "x\n"
        ok(eng.run("cp", "cpbox:/tmp/d/.", str(tmp_path / "into")))  # the contents only
        assert (tmp_path / "into" / "sub" / "x").read_text() == "x\n"
        ok(eng.run("exec", "cpbox", "ln", "-s", "sub/x", "/tmp/d/link"))
        ok(eng.run("cp", "cpbox:/tmp/d/link", str(tmp_path / "l1")))
        assert os.readlink(tmp_path / "l1") == "sub/x"
        ok(eng.run("cp", "-L", "cpbox:/tmp/d/link", str(tmp_path / "l2")))  # follow the link
        assert (tmp_path / "l2").read_text() == "x\n" and not (tmp_path / "l2").is_symlink()

        tarred = subprocess.run(CORE + ["cp", "cpbox:/etc/passwd", "-"], env=eng.env, capture_output=True, timeout=60)
        assert tarred.returncode == 0, tarred.stderr
        with tarfile.open(fileobj=io.BytesIO(tarred.stdout)) as t:
            assert t.getnames() == ["passwd"] and b"root:" in t.extractfile("passwd").read()

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("from-stdin.txt")
            info.size = 6
            t.addfile(info, io.BytesIO(b"stdin\n"))
        piped = subprocess.run(CORE + ["cp", "-", "cpbox:/tmp"], input=buf.getvalue(), env=eng.env,
                               capture_output=True, timeout=60)
        assert piped.returncode == 0, piped.stderr
        assert ok(eng.run("exec", "cpbox", "cat", "/tmp/from-stdin.txt")) == "stdin\n"

        missing = eng.run("cp", "cpbox:/no/such/file", str(tmp_path))
        assert missing.returncode == 1 and missing.stderr.startswith("Error response from daemon: ")
        ok(eng.run("rm", "-f", "cpbox"))

    def test_large_files_both_directions(self, eng, tmp_path):
        """Past any request-size limit: sent from a temporary file, read by the daemon as it arrives."""
        import hashlib

        ok(eng.run("run", "-d", "--name", "bigcp", eng.bb, "sleep", "600"))
        big = tmp_path / "big.bin"
        with open(big, "wb") as f:
            for i in range(48):
                f.write(hashlib.sha256(str(i).encode()).digest() * 32768)   # 48 MiB
        want = hashlib.md5(big.read_bytes()).hexdigest()
        proc = eng.run("cp", str(big), "bigcp:/tmp/")
        assert proc.returncode == 0, proc.stderr
        assert ok(eng.run("exec", "bigcp", "md5sum", "/tmp/big.bin")).split()[0] == want
        with open(tmp_path / "big.tar", "wb") as t:   # a tar on stdin through a pipe
            subprocess.run(["tar", "-C", str(tmp_path), "-cf", "-", "big.bin"], stdout=t, check=True)
        with open(tmp_path / "big.tar", "rb") as t:
            cat = subprocess.Popen(["cat"], stdin=t, stdout=subprocess.PIPE)
            piped = subprocess.run(CORE + ["cp", "-", "bigcp:/"], stdin=cat.stdout, env=eng.env,
                                   capture_output=True, timeout=120)
            cat.wait()
        assert piped.returncode == 0, piped.stderr
        assert ok(eng.run("exec", "bigcp", "md5sum", "/big.bin")).split()[0] == want
        ok(eng.run("cp", "bigcp:/big.bin", str(tmp_path / "back.bin")))
        assert hashlib.md5((tmp_path / "back.bin").read_bytes()).hexdigest() == want
        ok(eng.run("rm", "-f", "bigcp"))


class TestVolumes:
    def test_volume_commands(self, eng):
        assert ok(eng.run("volume", "create", "bookvol")) == "bookvol\n"
        listing = ok(eng.run("volume", "ls")).splitlines()
        assert listing[0].split() == ["DRIVER", "VOLUME", "NAME"]
        assert any(line.split() == ["local", "bookvol"] for line in listing[1:])
        assert ok(eng.run("volume", "ls", "-q", "--filter", "name=bookvol")) == "bookvol\n"
        info = json.loads(ok(eng.run("volume", "inspect", "bookvol")))
        assert info[0]["Name"] == "bookvol" and info[0]["Driver"] == "local"
        assert ok(eng.run("volume", "inspect", "-f", "{{.Driver}}", "bookvol")) == "local\n"
        ok(eng.run("run", "--rm", "-v", "bookvol:/data", eng.bb, "sh", "-c", "echo persisted > /data/f"))
        assert ok(eng.run("run", "--rm", "-v", "bookvol:/data", eng.bb, "cat", "/data/f")) == "persisted\n"
        assert ok(eng.run("run", "--rm", "--mount", "type=volume,source=bookvol,target=/m,readonly", eng.bb,
                          "cat", "/m/f")) == "persisted\n"
        assert ok(eng.run("volume", "rm", "bookvol")) == "bookvol\n"
        missing = eng.run("volume", "inspect", "bookvol")
        assert (missing.returncode, missing.stdout) == (1, "[]\n")
        ok(eng.run("volume", "create", "spare"))
        out = ok(eng.run("volume", "prune", "-a", "-f"))
        assert out.startswith("Deleted Volumes:\nspare\n") and "Total reclaimed space:" in out

    def test_bind_mount_and_tmpfs(self, eng, tmp_path):
        (tmp_path / "in.txt").write_text("from host\n")
        assert ok(eng.run("run", "--rm", "-v", f"{tmp_path}:/host:ro", eng.bb, "cat", "/host/in.txt")) == "from host\n"
        assert eng.run("run", "--rm", "-v", f"{tmp_path}:/host:ro", eng.bb, "touch", "/host/x").returncode != 0
        assert ok(eng.run("run", "--rm", "--tmpfs", "/scratch", eng.bb, "sh", "-c",
                          "grep -c ' /scratch tmpfs ' /proc/mounts")) == "1\n"
