"""OCI spec generation, user resolution in hostile roots, capabilities, seccomp, mounts — and the
other pure parts of containers (names, resolv.conf, docker cp's path handling).  No daemon."""
from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from core.engine.containers import archive
from core.engine import names
from core.engine.containers import oci
from core.engine.containers.files import hosts_file, resolv_conf
from core.engine.containers.store import ContainerStateRecord, status_text
from core.units import human_duration
from core.errors import InvalidArgument, NotFound
from core.engine.volumes import merge_tmpfs_options, parse_bind, parse_mount, parse_mounts, parse_tmpfs

PASSWD = b"""root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nohome:x:1001:1001::/:/bin/sh
broken line without fields
bad:x:notanumber:1:::
"""
GROUP = b"""root:x:0:root
wheel:x:10:root,app
staff:x:50:app
app:x:1000:
audio:x:29:nohome
"""


# --------------------------------------------------------------------------------------- config merge
def test_merge_config_follows_docker():
    image = {"Env": ["PATH=/img/bin", "A=image", "B=image"], "Cmd": ["/bin/sh"], "Entrypoint": None,
             "WorkingDir": "/srv", "User": "app", "Labels": {"l1": "image", "l2": "image"},
             "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT", "ExposedPorts": {"80/tcp": {}}}
    cfg = oci.merge_config(image, {"Env": ["A=user", "C=user"], "Labels": {"l1": "user"}})
    assert cfg["Env"] == ["A=user", "C=user", "PATH=/img/bin", "B=image"]
    assert cfg["Cmd"] == ["/bin/sh"] and cfg["WorkingDir"] == "/srv" and cfg["User"] == "app"
    assert cfg["Labels"] == {"l1": "user", "l2": "image"} and cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Volumes"] == {"/data": {}} and cfg["ExposedPorts"] == {"80/tcp": {}}
    # a Cmd of the request replaces the image's; an Entrypoint drops the image's Cmd
    assert oci.merge_config(image, {"Cmd": ["ls"]})["Cmd"] == ["ls"]
    ep = oci.merge_config({"Cmd": ["-x"], "Entrypoint": ["/init"]}, {"Entrypoint": ["/other"]})
    assert ep["Entrypoint"] == ["/other"] and ep["Cmd"] is None
    keep = oci.merge_config({"Cmd": ["-x"], "Entrypoint": ["/init"]}, {"Cmd": ["-y"]})
    assert oci.process_args(keep) == ["/init", "-y"]
    # --entrypoint "": neither the image's entrypoint nor its cmd
    none = oci.merge_config({"Cmd": ["-x"], "Entrypoint": ["/init"]}, {"Entrypoint": [""], "Cmd": ["echo", "hi"]})
    assert oci.process_args(none) == ["echo", "hi"]
    with pytest.raises(InvalidArgument, match="no command specified"):
        oci.process_args(oci.merge_config({"Cmd": ["-x"], "Entrypoint": ["/init"]}, {"Entrypoint": [""]}))
    # a string is a one-element list (docker's StrSlice)
    assert oci.merge_config({}, {"Cmd": "date"})["Cmd"] == ["date"]
    with pytest.raises(InvalidArgument, match="absolute path"):
        oci.merge_config({}, {"Cmd": ["x"], "WorkingDir": "relative"})
    with pytest.raises(InvalidArgument, match="invalid environment variable"):
        oci.merge_config({}, {"Cmd": ["x"], "Env": ["=nokey"]})


def test_process_env():
    env = oci.process_env(["FOO=1", "PATH=/mine", "HOSTNAME=custom"], "abc123", tty=False, home="/root")
    assert env == ["PATH=/mine", "HOSTNAME=custom", "FOO=1", "HOME=/root"]
    env = oci.process_env([], "abc123", tty=True, home=None)
    assert env == [f"PATH={oci.DEFAULT_PATH}", "HOSTNAME=abc123", "TERM=xterm"]
    assert "TERM=dumb" in oci.process_env(["TERM=dumb"], "h", tty=True)
    assert oci.process_env(["HOME=/x"], "h", tty=False, home="/root")[-1] == "HOME=/x"
    # a bare name removes the variable
    assert not any(e.startswith("HOSTNAME=") for e in oci.process_env(["HOSTNAME"], "h", tty=False))
    assert oci.replace_or_append_env(["A=1", "B=2"], ["B=3", "C=4", "A"]) == ["B=3", "C=4"]


# --------------------------------------------------------------------------------------- users
@pytest.mark.parametrize("spec, uid, gid, extra, home", [
    ("", 0, 0, (0, 10), "/root"),
    ("root", 0, 0, (0, 10), "/root"),
    ("app", 1000, 1000, (10, 50), "/home/app"),
    ("1000", 1000, 1000, (10, 50), "/home/app"),
    ("app:staff", 1000, 50, (), "/home/app"),
    ("app:4242", 1000, 4242, (), "/home/app"),
    ("4242", 4242, 0, (), "/"),
    ("4242:4343", 4242, 4343, (), "/"),
    ("nohome", 1001, 1001, (29,), "/"),
])
def test_resolve_user(spec, uid, gid, extra, home):
    u = oci.resolve_user(spec, PASSWD, GROUP)
    assert (u.uid, u.gid, u.additional_gids, u.home) == (uid, gid, extra, home)


def test_resolve_user_errors_and_group_add():
    with pytest.raises(InvalidArgument, match="unable to find user ghost: no matching entries in passwd file"):
        oci.resolve_user("ghost", PASSWD, GROUP)
    with pytest.raises(InvalidArgument, match="unable to find group ghosts: no matching entries in group file"):
        oci.resolve_user("app:ghosts", PASSWD, GROUP)
    with pytest.raises(InvalidArgument, match="range"):
        oci.resolve_user("99999999999", PASSWD, GROUP)
    u = oci.resolve_user("app", PASSWD, GROUP, ["audio", "777", "staff"])
    assert u.additional_gids == (10, 50, 29, 777)
    with pytest.raises(InvalidArgument, match="Unable to find group nope"):
        oci.resolve_user("app", PASSWD, GROUP, ["nope"])
    # no passwd at all: numbers still work, names do not
    assert oci.resolve_user("", None, None) == oci.ExecUser(0, 0, (), "/", "")
    assert oci.resolve_user("5:6", None, None).gid == 6
    with pytest.raises(InvalidArgument):
        oci.resolve_user("app", None, None)


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "dev").mkdir()
    return root


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    """Run each hostile-root test through the kernel's RESOLVE_IN_ROOT and the hand-made walk."""
    monkeypatch.setattr(archive, "_openat2_works", None if request.param == "openat2" else False)
    return request.param


def test_user_db_is_read_inside_the_root(rootfs, tmp_path, resolver):
    (rootfs / "usr" / "lib" / "passwd").write_bytes(PASSWD)
    (rootfs / "etc" / "passwd").symlink_to("../usr/lib/passwd")  # a legitimate relative link
    (rootfs / "etc" / "group").write_bytes(GROUP)
    passwd, group = oci.read_user_db(rootfs)
    assert passwd == PASSWD and group == GROUP
    assert oci.resolve_user("app", passwd, group).uid == 1000


def test_hostile_passwd_absolute_symlink_stays_in_root(rootfs, tmp_path, resolver):
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"evil:x:0:0::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").symlink_to(secret)  # absolute: means rootfs/<that path>
    (rootfs / "etc" / "group").symlink_to("../../../../../../../../" + str(secret))
    assert oci.read_user_db(rootfs) == (None, None)
    # the same path inside the root is what counts
    inside = rootfs / str(secret).lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_bytes(PASSWD)
    assert oci.read_user_db(rootfs)[0] == PASSWD


def test_hostile_etc_dir_symlink_climbs_no_higher_than_root(rootfs, tmp_path, resolver):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(b"outside:x:0:0::/:/bin/sh\n")
    os.rmdir(rootfs / "etc")
    (rootfs / "etc").symlink_to("../../../../etc/../etc/../../etc")
    passwd, _ = oci.read_user_db(rootfs)
    assert passwd is None or b"outside" not in passwd


def test_hostile_passwd_special_files(rootfs, resolver):
    os.mkfifo(rootfs / "etc" / "passwd")  # a FIFO must not hang the daemon
    os.mknod(rootfs / "etc" / "group", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
    done: list = []
    t = threading.Thread(target=lambda: done.append(oci.read_user_db(rootfs)), daemon=True)
    t.start()
    t.join(5)
    assert done == [(None, None)]


def test_hostile_passwd_loops_and_size(rootfs, resolver):
    (rootfs / "etc" / "passwd").symlink_to("passwd")
    (rootfs / "etc" / "group").symlink_to("/etc/group2")
    (rootfs / "etc" / "group2").symlink_to("/etc/group")
    assert oci.read_user_db(rootfs) == (None, None)
    os.unlink(rootfs / "etc" / "passwd")
    (rootfs / "etc" / "passwd").write_bytes(b"x" * (5 << 20))
    with pytest.raises(InvalidArgument, match="larger than"):
        oci.read_user_db(rootfs)


def test_open_in_root_clamps_dotdot(rootfs, tmp_path, resolver):
    (rootfs / "etc" / "passwd").write_bytes(PASSWD)
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path in ("/../../etc/passwd", "../etc/passwd", "/etc/../../../etc/passwd", "etc/./passwd"):
            assert archive.read_file_in_root(fd, path) == PASSWD
        (rootfs / "up").symlink_to("../../../..")
        assert archive.read_file_in_root(fd, "/up/etc/passwd") == PASSWD
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- capabilities
def test_capabilities_math():
    base = list(oci.DEFAULT_CAPABILITIES)
    assert oci.capabilities() == base and len(base) == 14
    caps = oci.capabilities(["net_admin", "CAP_SYS_TIME", "sys_time"], ["mknod", "CAP_NET_RAW"])
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_TIME" in caps
    assert "CAP_MKNOD" not in caps and "CAP_NET_RAW" not in caps
    assert len(caps) == len(set(caps))
    everything = oci.capabilities(["ALL"], ["CHOWN"])
    assert "CAP_CHOWN" not in everything and "CAP_SYS_ADMIN" in everything
    assert set(everything) == set(oci.all_capabilities()) - {"CAP_CHOWN"}
    assert oci.capabilities(["chown"], ["all"]) == ["CAP_CHOWN"]
    assert oci.capabilities(None, ["ALL"]) == []
    assert oci.capabilities(["CAP_KILL"], None, privileged=True) == list(oci.all_capabilities())
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_NOPE"'):
        oci.capabilities(["nope"])


# --------------------------------------------------------------------------------------- seccomp
def _names(profile):
    out = {}
    for rule in profile["syscalls"]:
        for n in rule["names"]:
            out.setdefault(n, []).append(rule)
    return out


def test_default_seccomp_profile_follows_capabilities():
    plain = oci.seccomp(oci.capabilities(), arch="amd64", kernel=(6, 1))
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 1
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names_ = _names(plain)
    for allowed in ("read", "write", "openat", "execve", "clone", "arch_prctl", "ptrace", "chroot"):
        assert allowed in names_, allowed
    for denied in ("mount", "umount2", "unshare", "setns", "reboot", "init_module", "kexec_load", "bpf"):
        assert denied not in names_, denied
    clone = [r for r in names_["clone"]]
    assert clone[0]["args"] == [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]
    assert names_["clone3"][0]["action"] == "SCMP_ACT_ERRNO" and names_["clone3"][0]["errnoRet"] == 38
    assert "s390_runtime_instr" not in names_ and "cacheflush" not in names_
    admin = _names(oci.seccomp(oci.capabilities(["SYS_ADMIN"]), arch="amd64", kernel=(6, 1)))
    assert "mount" in admin and "unshare" in admin
    assert "args" not in admin["clone"][0] and "clone3" in admin and admin["clone3"][0]["action"] == "SCMP_ACT_ALLOW"
    old = _names(oci.seccomp(oci.capabilities(), arch="amd64", kernel=(4, 4)))
    assert "ptrace" not in old
    arm = oci.seccomp(oci.capabilities(), arch="arm64", kernel=(6, 1))
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"] and "cacheflush" in _names(arm)
    assert "arch_prctl" not in _names(arm)


def test_custom_docker_profile_and_security_opts():
    custom = {"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                                              "subArchitectures": ["SCMP_ARCH_X86"]}],
              "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                           {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    import json

    opts = oci.parse_security_opts([f"seccomp={json.dumps(custom)}", "no-new-privileges"])
    assert opts.no_new_privileges and opts.seccomp == "custom"
    prof = oci.seccomp(oci.capabilities(), opts.seccomp_profile)
    assert prof["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {n for r in prof["syscalls"] for n in r["names"]} == {"chmod", "mount"}
    assert oci.parse_security_opts(["seccomp=unconfined"]).seccomp == "unconfined"
    assert oci.parse_security_opts(["no-new-privileges:false"]).no_new_privileges is False
    assert oci.parse_security_opts(["apparmor=unconfined", "label=disable"]).apparmor == "unconfined"
    with pytest.raises(InvalidArgument, match="invalid --security-opt"):
        oci.parse_security_opts(["bogus"])
    with pytest.raises(InvalidArgument, match="decoding seccomp profile failed"):
        oci.parse_security_opts(["seccomp={not json"])


def test_profile_data_is_our_own_schema():
    data = oci.default_seccomp_profile()
    assert "rules" in data and "syscalls" not in data and "archMap" not in data
    assert all(("allow" in r) != ("deny" in r) for r in data["rules"])


# --------------------------------------------------------------------------------------- the spec
HC = {"NetworkMode": "bridge", "IpcMode": "private", "CgroupnsMode": "host", "ShmSize": 0}


def spec_for(config=None, hc=None, mounts=None, ns=None, **kw):
    config = {"Cmd": ["sh"], "Env": ["A=1"], "Hostname": "abcdef012345", **(config or {})}
    hc = {**HC, **(hc or {})}
    return oci.build_spec(config=config, host_config=hc, rootfs=Path("/r"), user=oci.ExecUser(0, 0, (10,), "/root"),
                          hostname=config["Hostname"], mounts=mounts or [],
                          namespaces=ns or oci.namespaces_for(hc), cgroups_path="/core/x",
                          etc_files={"/etc/hosts": "/c/hosts", "/etc/hostname": "/c/hostname",
                                     "/etc/resolv.conf": "/c/resolv.conf"}, **kw)


def test_build_spec_defaults():
    spec = spec_for()
    p = spec["process"]
    assert p["args"] == ["sh"] and p["cwd"] == "/" and p["terminal"] is False
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [10]}
    assert p["env"] == [f"PATH={oci.DEFAULT_PATH}", "HOSTNAME=abcdef012345", "A=1", "HOME=/root"]
    assert p["capabilities"]["bounding"] == list(oci.DEFAULT_CAPABILITIES)
    assert p["noNewPrivileges"] is False and p["rlimits"] == []
    assert spec["hostname"] == "abcdef012345" and spec["root"] == {"path": "/r", "readonly": False}
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[:7] == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} <= set(dests)
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert "size=67108864" in shm["options"]
    sysfs = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]
    linux = spec["linux"]
    assert {n["type"] for n in linux["namespaces"]} == {"mount", "pid", "ipc", "uts", "network"}
    assert all("path" not in n for n in linux["namespaces"])
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert linux["cgroupsPath"] == "/core/x"


def test_build_spec_options():
    hc = {"Privileged": False, "ReadonlyRootfs": True, "Memory": 64 << 20, "NanoCpus": 1_500_000_000,
          "PidsLimit": 50, "OomScoreAdj": 300, "SecurityOpt": ["no-new-privileges"], "CapDrop": ["ALL"],
          "CapAdd": ["CHOWN"], "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
          "Sysctls": {"kernel.shmmax": "1"}, "ShmSize": 1 << 20, "NetworkMode": "host", "PidMode": "host"}
    spec = spec_for({"Tty": True, "WorkingDir": "/w", "Domainname": "example.org"}, hc)
    p = spec["process"]
    assert p["terminal"] is True and "TERM=xterm" in p["env"] and p["cwd"] == "/w"
    assert p["capabilities"]["effective"] == ["CAP_CHOWN"] and p["noNewPrivileges"] is True
    assert p["oomScoreAdj"] == 300
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100}]
    assert spec["root"]["readonly"] is True and spec["domainname"] == "example.org"
    etc = next(m for m in spec["mounts"] if m["destination"] == "/etc/hosts")
    assert "ro" in etc["options"]
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"period": 100000, "quota": 150000}
    assert res["pids"] == {"limit": 50}
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {"mount", "ipc", "uts"}
    assert spec["linux"]["sysctl"] == {"kernel.shmmax": "1"}
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert "size=1048576" in shm["options"]


def test_build_spec_privileged_and_overrides():
    spec = spec_for(hc={"Privileged": True})
    assert "seccomp" not in spec["linux"] and "maskedPaths" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert set(spec["process"]["capabilities"]["bounding"]) == set(oci.all_capabilities())
    assert "ro" not in next(m for m in spec["mounts"] if m["destination"] == "/sys")["options"]
    assert any(d["path"] == "/dev/null" for d in spec["linux"]["devices"])
    unconfined = spec_for(hc={"SecurityOpt": ["seccomp=unconfined"]})
    assert "seccomp" not in unconfined["linux"] and "maskedPaths" in unconfined["linux"]
    # a user mount replaces the default at the same place; a user /dev replaces everything under /dev
    user = [{"destination": "/dev/shm", "type": "bind", "source": "/h", "options": ["rbind"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/myhosts", "options": ["rbind"]}]
    spec = spec_for(mounts=user)
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [user[0]]
    assert [m["source"] for m in spec["mounts"] if m["destination"] == "/etc/hosts"] == ["/myhosts"]
    spec = spec_for(mounts=[{"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}])
    assert not any(m["destination"].startswith("/dev/") for m in spec["mounts"])
    spec = spec_for(hc={"IpcMode": "none"})
    assert not any(m["destination"] == "/dev/shm" for m in spec["mounts"])
    ns = oci.namespaces_for({"NetworkMode": "container:web", "PidMode": "container:web"},
                            {"network": "/proc/7/ns/net", "pid": "/proc/7/ns/pid"})
    spec = spec_for(ns=ns)
    assert {"type": "network", "path": "/proc/7/ns/net"} in spec["linux"]["namespaces"]
    with pytest.raises(InvalidArgument, match="not running"):
        oci.namespaces_for({"NetworkMode": "container:web"}, {})


def test_resource_and_sysctl_validation():
    ok = {"Memory": 0, "NanoCpus": 0}
    assert oci.check_resources(ok) == []
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        oci.check_resources({"Memory": 1024})
    with pytest.raises(InvalidArgument, match="Nano CPUs and CPU Period cannot both be set"):
        oci.check_resources({"NanoCpus": 1_000_000_000, "CpuPeriod": 100000})
    with pytest.raises(InvalidArgument, match="Range of CPUs is from 0.01 to 2.00"):
        oci.check_resources({"NanoCpus": 3_000_000_000}, ncpu=2)
    with pytest.raises(InvalidArgument, match="range for oom score adj"):
        oci.check_resources({"OomScoreAdj": 2000})
    with pytest.raises(InvalidArgument, match="invalid ulimit type"):
        oci.rlimits([{"Name": "bogus", "Soft": 1, "Hard": 1}])
    with pytest.raises(InvalidArgument, match="soft limit must be less than or equal"):
        oci.rlimits([{"Name": "nofile", "Soft": 10, "Hard": 1}])
    assert oci.check_sysctls({"kernel.shmmax": "1"}, host_network=False, host_ipc=False, host_uts=False)
    with pytest.raises(InvalidArgument, match="not whitelisted"):
        oci.check_sysctls({"vm.swappiness": "1"}, host_network=False, host_ipc=False, host_uts=False)
    with pytest.raises(InvalidArgument, match="host net namespace"):
        oci.check_sysctls({"net.core.somaxconn": "1"}, host_network=True, host_ipc=False, host_uts=False)


def test_signals():
    assert oci.parse_signal("SIGTERM") == 15 and oci.parse_signal("term") == 15 and oci.parse_signal("9") == 9
    assert oci.parse_signal(None) == 15 and oci.parse_signal("", 9) == 9 and oci.parse_signal("SIGRTMIN+1") > 32
    with pytest.raises(InvalidArgument, match="Invalid signal: SIGBOGUS"):
        oci.parse_signal("SIGBOGUS")
    with pytest.raises(InvalidArgument):
        oci.parse_signal("99")


def test_exec_process():
    spec = spec_for({"Env": ["FROM_CTR=1", "TERM=vt100"]})
    proc = oci.exec_process(container_spec=spec, config={"Env": ["FROM_CTR=1"]}, hostname="h", cmd=["ls", "-l"],
                            env=["EXTRA=2"], user=oci.ExecUser(1000, 1000, (), "/home/app"), working_dir="/tmp",
                            tty=True, privileged=False)
    assert proc["args"] == ["ls", "-l"] and proc["cwd"] == "/tmp" and proc["terminal"] is True
    assert proc["user"] == {"uid": 1000, "gid": 1000}
    assert proc["env"] == [f"PATH={oci.DEFAULT_PATH}", "HOSTNAME=h", "TERM=xterm", "FROM_CTR=1", "EXTRA=2",
                           "HOME=/home/app"]
    assert proc["capabilities"] == spec["process"]["capabilities"]
    priv = oci.exec_process(container_spec=spec, config={}, hostname="h", cmd=["x"], env=[],
                            user=oci.ExecUser(0, 0), working_dir="", tty=False, privileged=True)
    assert set(priv["capabilities"]["bounding"]) == set(oci.all_capabilities()) and priv["cwd"] == "/"
    with pytest.raises(InvalidArgument, match="No exec command specified"):
        oci.exec_process(container_spec=spec, config={}, hostname="h", cmd=[], env=[], user=oci.ExecUser(0, 0),
                         working_dir="", tty=False, privileged=False)


# --------------------------------------------------------------------------------------- mounts
def test_parse_bind():
    b = parse_bind("/host/dir:/ctr:ro,rshared")
    assert (b.type, b.source, b.destination, b.rw, b.propagation, b.mode) == \
           ("bind", "/host/dir", "/ctr", False, "rshared", "ro,rshared")
    v = parse_bind("myvol:/data")
    assert (v.type, v.name, v.destination, v.rw, v.mode, v.anonymous) == ("volume", "myvol", "/data", True, "z", False)
    assert parse_bind("myvol:/data:nocopy").copy_data is False
    anon = parse_bind("/just/a/path")
    assert anon.type == "volume" and anon.anonymous and anon.destination == "/just/a/path"
    for bad, msg in (("/a:relative", "mount path must be absolute"), ("/a:/b:bogus", "invalid mode: bogus"),
                     ("/a:/", "destination can't be '/'"), ("bad/name:/x", "includes invalid characters"),
                     ("a:b:c:d", "invalid volume specification"), ("/a:/b:ro,rw", "invalid mode")):
        with pytest.raises(InvalidArgument, match=re.escape(msg)):
            parse_bind(bad)


def test_parse_mount_and_tmpfs(tmp_path):
    m = parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/x", "ReadOnly": True,
                     "BindOptions": {"Propagation": "rslave", "NonRecursive": True}})
    assert m.rw is False and m.propagation == "rslave" and m.recursive is False
    with pytest.raises(InvalidArgument, match="bind source path does not exist: /nope"):
        parse_mount({"Type": "bind", "Source": "/nope", "Target": "/x"})
    created = tmp_path / "made"
    parse_mount({"Type": "bind", "Source": str(created), "Target": "/x", "BindOptions": {"CreateMountpoint": True}})
    assert created.is_dir()
    v = parse_mount({"Type": "volume", "Target": "/v", "VolumeOptions": {"NoCopy": True, "Subpath": "a/b"}})
    assert v.anonymous and not v.copy_data and v.subpath == "a/b"
    with pytest.raises(InvalidArgument, match="subpath"):
        parse_mount({"Type": "volume", "Source": "vv", "Target": "/v", "VolumeOptions": {"Subpath": "../x"}})
    t = parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700,
                                                                      "Options": [["exec"]]}})
    assert t.options == ["nosuid", "nodev", "rprivate", "size=1024k", "mode=700", "exec"]
    with pytest.raises(InvalidArgument, match="field Source must not be specified"):
        parse_mount({"Type": "tmpfs", "Source": "x", "Target": "/t"})
    with pytest.raises(InvalidArgument, match="field BindOptions must not be specified"):
        parse_mount({"Type": "volume", "Target": "/t", "BindOptions": {"Propagation": "shared"}})
    with pytest.raises(InvalidArgument, match="mount type unknown"):
        parse_mount({"Type": "npipe", "Target": "/t"})
    assert parse_tmpfs("/run", "rw,size=64m,exec").options == ["nosuid", "nodev", "rprivate", "rw", "size=64m", "exec"]
    assert merge_tmpfs_options(["noexec", "size=1", "exec", "size=2"]) == ["exec", "size=2"]


def test_parse_mounts_precedence_and_duplicates(tmp_path):
    hc = {"Binds": [f"{tmp_path}:/data"], "Tmpfs": {"/run": ""},
          "Mounts": [{"Type": "volume", "Source": "v1", "Target": "/v1"}]}
    mounts = parse_mounts(hc, ["/data", "/cache"])
    by_dest = {m.destination: m for m in mounts}
    assert by_dest["/data"].type == "bind"  # the bind wins over the image's volume
    assert by_dest["/cache"].type == "volume" and by_dest["/cache"].anonymous
    assert by_dest["/run"].type == "tmpfs" and not by_dest["/run"].listed
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /data"):
        parse_mounts({"Binds": [f"{tmp_path}:/data", "vv:/data"]}, [])
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        parse_mounts({"Binds": ["vv:/x"], "Tmpfs": {"/x": ""}}, [])


# --------------------------------------------------------------------------------------- docker cp
def _tar(*entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, kind, data, link in entries:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = kind, link
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize("codec", ["gzip", "bz2", "lzma"])
def test_archive_extract_compressed_and_bombs(rootfs, codec):
    """docker cp takes gzip, bzip2 and xz tars; a bomb is refused without being held whole."""
    import importlib
    import tracemalloc

    compress = importlib.import_module(codec).compress
    (rootfs / "tmp").mkdir()
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        archive.extract_tar(fd, "/tmp", "c", io.BytesIO(compress(_tar(("z.txt", tarfile.REGTYPE, b"zipped", "")).read())))
        assert (rootfs / "tmp" / "z.txt").read_bytes() == b"zipped"
        bomb = compress(bytes(256 << 20))   # zeros: an all-zero block ends the archive at once
        tracemalloc.start()
        try:
            archive.extract_tar(fd, "/tmp", "c", io.BytesIO(bomb))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 << 20
        with pytest.raises(InvalidArgument, match="invalid archive"):
            archive.extract_tar(fd, "/tmp", "c", io.BytesIO(compress(b"x" * 1000)[:-8] + b"garbage!"))
    finally:
        os.close(fd)


def test_archive_extract_and_hostile_entries(rootfs, tmp_path, resolver):
    (rootfs / "tmp").mkdir()
    (rootfs / "link").symlink_to("/tmp")
    (rootfs / "escape").symlink_to("../../../../..")
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        archive.extract_tar(fd, "/link", "c", _tar(("a/b.txt", tarfile.REGTYPE, b"hi", ""),
                                                   (".wh.kept", tarfile.REGTYPE, b"", "")))
        assert (rootfs / "tmp" / "a" / "b.txt").read_bytes() == b"hi"
        assert (rootfs / "tmp" / ".wh.kept").exists()  # not a whiteout in docker cp
        archive.extract_tar(fd, "/escape/tmp", "c", _tar(("c.txt", tarfile.REGTYPE, b"x", "")))
        assert (rootfs / "tmp" / "c.txt").exists() and not (tmp_path / "tmp" / "c.txt").exists()
        for entries in ([("../up", tarfile.REGTYPE, b"", "")], [("/abs", tarfile.REGTYPE, b"", "")],
                        [("l", tarfile.SYMTYPE, b"", "/"), ("l/evil", tarfile.REGTYPE, b"", "")],
                        [("h", tarfile.LNKTYPE, b"", "../../etc/passwd")]):
            with pytest.raises(InvalidArgument):
                archive.extract_tar(fd, "/tmp", "c", _tar(*entries))
        assert not (tmp_path / "evil").exists() and not Path("/evil").exists()
        with pytest.raises(InvalidArgument, match="extraction point is not a directory"):
            archive.extract_tar(fd, "/tmp/c.txt", "c", _tar(("x", tarfile.REGTYPE, b"", "")))
        with pytest.raises(NotFound, match="Could not find the file /nope in container c"):
            archive.extract_tar(fd, "/nope", "c", _tar(("x", tarfile.REGTYPE, b"", "")))
        with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
            archive.extract_tar(fd, "/tmp", "c", _tar(("a", tarfile.REGTYPE, b"", "")), no_overwrite_dir_nondir=True)
        archive.extract_tar(fd, "/tmp", "c", _tar(("owned", tarfile.REGTYPE, b"", "")), owner=(123, 456))
        st = os.stat(rootfs / "tmp" / "owned")
        assert (st.st_uid, st.st_gid) == (123, 456)
    finally:
        os.close(fd)


def test_archive_stat_and_tar(rootfs, resolver):
    (rootfs / "tmp").mkdir()
    (rootfs / "tmp" / "f").write_bytes(b"12345")
    os.link(rootfs / "tmp" / "f", rootfs / "tmp" / "hard")
    (rootfs / "tmp" / "sl").symlink_to("../etc")
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = archive.path_stat(fd, "/tmp/f", "c")
        assert st["name"] == "f" and st["size"] == 5 and st["mode"] == 0o644 and st["linkTarget"] == ""
        st = archive.path_stat(fd, "/tmp/sl", "c")
        assert st["linkTarget"] == "/etc" and st["mode"] & (1 << 27)
        assert archive.path_stat(fd, "/tmp/sl/", "c")["mode"] & (1 << 31)
        chunks: list[bytes] = []
        archive.write_tar(fd, "/tmp", "c", chunks.append)
        t = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
        members = {m.name: m for m in t.getmembers()}
        assert set(members) == {"tmp", "tmp/f", "tmp/hard", "tmp/sl"}
        assert members["tmp/sl"].issym() and members["tmp/sl"].linkname == "../etc"
        assert members["tmp/f"].islnk() or members["tmp/hard"].islnk()
        chunks = []
        archive.write_tar(fd, "/tmp/.", "c", chunks.append)
        names_ = tarfile.open(fileobj=io.BytesIO(b"".join(chunks))).getnames()
        assert "./f" in names_ or "f" in [n.lstrip("./") for n in names_]
        with pytest.raises(NotFound):
            archive.path_stat(fd, "/tmp/missing", "c")
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- small parts
def test_names():
    import random

    rng = random.Random(1)
    seen = {names.generate(rng=rng) for _ in range(200)}
    assert all(re.fullmatch(r"[a-z]+_[a-z]+", n) for n in seen) and len(seen) > 150
    assert re.fullmatch(r"[a-z]+_[a-z]+[0-9]", names.generate(retry=1, rng=rng))
    assert "boring_wozniak" not in seen


def test_resolv_conf_and_hosts():
    host = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nsearch example.org\noptions edns0\n"
    text = resolv_conf(host)
    assert "127.0.0.53" not in text and "nameserver 8.8.8.8\nnameserver 8.8.4.4\n" in text
    assert "search example.org" in text
    text = resolv_conf("nameserver 10.0.0.2\n")
    assert text == "nameserver 10.0.0.2\n"
    text = resolv_conf(host, dns=["1.1.1.1"], search=["corp"], options=["ndots:2"])
    assert "nameserver 1.1.1.1" in text and "search corp" in text and "options ndots:2" in text
    assert "127.0.0.53" not in text and "8.8.8.8" not in text and "example.org" not in text
    assert "127.0.0.53" in resolv_conf(host, host_network=True)
    hosts = hosts_file(["db:10.0.0.5"])
    assert hosts.startswith("127.0.0.1\tlocalhost\n") and hosts.endswith("10.0.0.5\tdb\n")


def test_status_texts():
    now = 1_000_000 * 10**9
    st = ContainerStateRecord(status="running", started_at=now - 5 * 10**9)
    assert status_text(st, now) == "Up 5 seconds"
    st = ContainerStateRecord(status="exited", exit_code=3, started_at=1, finished_at=now - 120 * 10**9)
    assert status_text(st, now) == "Exited (3) 2 minutes ago"
    assert status_text(ContainerStateRecord(), now) == "Created"
    assert status_text(ContainerStateRecord(status="paused", started_at=now - 3600 * 10**9), now) == \
        "Up About an hour (Paused)"
    assert human_duration(0.5) == "Less than a second" and human_duration(90) == "About a minute"
    assert human_duration(3 * 86400) == "3 days"
