"""Compile an OCI ``linux.seccomp`` object into a classic BPF program, in pure Python.

What libseccomp does for runc, for the subset the OCI runtime spec and docker's default profile
use: ``defaultAction`` (+ ``defaultErrnoRet``), ``architectures``, ``flags``, and ``syscalls[]``
with ``names``, ``action``, ``errnoRet`` and ``args`` conditions (``SCMP_CMP_NE``, ``_LT``,
``_LE``, ``_EQ``, ``_GE``, ``_GT``, ``_MASKED_EQ``; 64-bit comparisons).  Names unknown on an
architecture are skipped, as libseccomp does; ``SCMP_ACT_NOTIFY`` is refused.

The program::

    ld  arch                       ; dispatch on seccomp_data.arch
    jeq AUDIT_ARCH_X86_64 ... ja section_x86_64
    jeq AUDIT_ARCH_I386   ... ja section_x86
    ret KILL                       ; an architecture the profile does not list
  section_x86_64:
    ld  nr
    jset X32_SYSCALL_BIT -> section_x32 (or KILL when x32 is not listed)
    jge NR_m, 0, 1 ; ja upper      ; a binary search over the numbers that have rules,
    ...                            ; down to leaves of a few blocks:
    jeq NR_a, 0, +len(block_a)     ; one block per system call that has rules ...
    block_a: [conditions -> ret ACTION]* [ret ACTION | ret DEFAULT]
    ret DEFAULT                    ; ... and the default at the end of each leaf

Rules of one system call: those with ``args`` first (in profile order; the conditions of a
rule are ANDed, rules are ORed), then the first unconditional one; a rule whose action is the
default is dropped.

Also :func:`from_docker_profile`: docker's profile format (``archMap``, ``includes``/``excludes``
by architecture, capabilities and kernel version) resolved into the OCI object for this host,
as dockerd does before handing it to the runtime.
"""
from __future__ import annotations

import os
import struct
from typing import Any

from drivers.executor_container.syscall_table import TABLES

AUDIT_ARCH = {
    "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X86": 0x40000003,
    "SCMP_ARCH_X32": 0xC000003E,   # x86_64 with X32_SYSCALL_BIT in the number
    "SCMP_ARCH_AARCH64": 0xC00000B7,
}
X32_SYSCALL_BIT = 0x40000000
NATIVE = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
EPERM = 1

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K, JGT_K, JGE_K, JSET_K, JA = 0x15, 0x25, 0x35, 0x45, 0x05
AND_K = 0x54
RET_K = 0x06
MAX_INSNS = 4096

OFF_NR, OFF_ARCH, OFF_ARGS = 0, 4, 16


class SeccompError(ValueError):
    """The profile cannot be compiled (the runtime reports it as InvalidArgument)."""


def action_value(action: str, errno_ret: int | None) -> int:
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return RET_TRAP
    if action == "SCMP_ACT_ERRNO":
        return RET_ERRNO | ((EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return RET_TRACE | ((EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    if action == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    if action == "SCMP_ACT_LOG":
        return RET_LOG
    raise SeccompError(f"seccomp action {action!r} is not supported")


class _Asm:
    """Instructions with symbolic jump targets, resolved by :meth:`assemble`."""

    def __init__(self) -> None:
        self.code: list[list[Any]] = []   # [opcode, jt, jf, k]; jt/jf/k (JA) may be labels
        self.labels: dict[str, int] = {}
        self._n = 0

    def label(self) -> str:
        self._n += 1
        return f"L{self._n}"

    def place(self, label: str) -> None:
        self.labels[label] = len(self.code)

    def emit(self, op: int, k: Any = 0, jt: Any = 0, jf: Any = 0) -> None:
        self.code.append([op, jt, jf, k])

    def assemble(self) -> bytes:
        out = []
        for i, (op, jt, jf, k) in enumerate(self.code):
            def rel(target: Any) -> int:
                if isinstance(target, str):
                    return self.labels[target] - (i + 1)
                return target
            if op == JA:
                k = rel(k)
                jt = jf = 0
            else:
                jt, jf = rel(jt), rel(jf)
                if not (0 <= jt <= 255 and 0 <= jf <= 255):
                    raise SeccompError("seccomp profile too large: a conditional jump is out of "
                                       "range")
            out.append(struct.pack("=HBBI", op, jt, jf, k & 0xFFFFFFFF))
        if len(out) > MAX_INSNS:
            raise SeccompError(f"seccomp profile compiles to {len(out)} BPF instructions, more "
                               f"than the kernel's {MAX_INSNS}")
        return b"".join(out)


def _condition(asm: _Asm, cond: dict[str, Any], fail: str) -> None:
    """Code that falls through when ``cond`` holds and jumps to ``fail`` otherwise."""
    try:
        index = int(cond["index"])
        op = cond["op"]
        value = int(cond.get("value", 0)) & 0xFFFFFFFFFFFFFFFF
        two = int(cond.get("valueTwo", 0) or 0) & 0xFFFFFFFFFFFFFFFF
    except (KeyError, TypeError, ValueError) as exc:
        raise SeccompError(f"malformed seccomp argument condition {cond!r}") from exc
    if not 0 <= index <= 5:
        raise SeccompError(f"seccomp argument index {index} out of range")
    lo_off, hi_off = OFF_ARGS + 8 * index, OFF_ARGS + 8 * index + 4
    vhi, vlo = value >> 32, value & 0xFFFFFFFF
    ok = asm.label()
    if op == "SCMP_CMP_EQ":
        asm.emit(LD_W_ABS, hi_off)
        asm.emit(JEQ_K, vhi, 0, fail)
        asm.emit(LD_W_ABS, lo_off)
        asm.emit(JEQ_K, vlo, 0, fail)
    elif op == "SCMP_CMP_NE":
        asm.emit(LD_W_ABS, hi_off)
        asm.emit(JEQ_K, vhi, 0, ok)
        asm.emit(LD_W_ABS, lo_off)
        asm.emit(JEQ_K, vlo, fail, ok)
    elif op == "SCMP_CMP_MASKED_EQ":  # (arg & value) == valueTwo
        asm.emit(LD_W_ABS, hi_off)
        asm.emit(AND_K, vhi)
        asm.emit(JEQ_K, two >> 32, 0, fail)
        asm.emit(LD_W_ABS, lo_off)
        asm.emit(AND_K, vlo)
        asm.emit(JEQ_K, two & 0xFFFFFFFF, 0, fail)
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_LT", "SCMP_CMP_LE"):
        # unsigned 64-bit: the high words decide unless equal, then the low words; LT is "not
        # GE" and LE "not GT", so they jump the other way
        above, below = (ok, fail) if op in ("SCMP_CMP_GT", "SCMP_CMP_GE") else (fail, ok)
        asm.emit(LD_W_ABS, hi_off)
        asm.emit(JGT_K, vhi, above, 0)
        asm.emit(JEQ_K, vhi, 0, below)
        asm.emit(LD_W_ABS, lo_off)
        asm.emit(JGE_K if op in ("SCMP_CMP_GE", "SCMP_CMP_LT") else JGT_K, vlo, above, below)
    else:
        raise SeccompError(f"seccomp operator {op!r} is not supported")
    asm.place(ok)


def _rules_by_number(profile: dict[str, Any], arch: str, default: int) -> dict[int, list]:
    """``{nr: [(conditions, action), ...]}`` for ``arch``, in evaluation order."""
    table = TABLES[arch]
    conditional: dict[int, list] = {}
    unconditional: dict[int, int] = {}
    for rule in profile.get("syscalls") or ():
        if not isinstance(rule, dict):
            raise SeccompError(f"malformed seccomp rule {rule!r}")
        action = action_value(rule.get("action", ""), rule.get("errnoRet"))
        args = rule.get("args") or []
        for name in rule.get("names") or ([rule["name"]] if rule.get("name") else []):
            nr = table.get(name)
            if nr is None or action == default:
                continue   # unknown here (libseccomp skips it) / nothing to do
            if args:
                conditional.setdefault(nr, []).append((args, action))
            else:
                unconditional.setdefault(nr, action)
    rules: dict[int, list] = {}
    for nr in sorted(set(conditional) | set(unconditional)):
        rules[nr] = conditional.get(nr, []) + ([([], unconditional[nr])] if nr in unconditional
                                              else [([], default)])
    return rules


def _section(asm: _Asm, profile: dict[str, Any], arch: str, default: int) -> None:
    """The rules of one architecture, ``nr`` in the accumulator: a binary search over the
    numbers that have rules (``jge``/``ja`` nodes), linear chains of a few at the leaves."""
    rules = _rules_by_number(profile, arch, default)

    def leaf(numbers: list[int]) -> None:
        for nr in numbers:
            after = asm.label()
            asm.emit(JEQ_K, nr, 0, after)
            for conditions, action in rules[nr]:
                fail = asm.label()
                for cond in conditions:
                    _condition(asm, cond, fail)
                asm.emit(RET_K, action)
                asm.place(fail)
                if not conditions:
                    break
            asm.place(after)
        asm.emit(RET_K, default)

    def node(numbers: list[int]) -> None:
        if len(numbers) <= LEAF:
            leaf(numbers)
            return
        middle = len(numbers) // 2
        upper = asm.label()
        asm.emit(JGE_K, numbers[middle], 0, 1)
        asm.emit(JA, upper)
        node(numbers[:middle])
        asm.place(upper)
        node(numbers[middle:])

    node(sorted(rules))


LEAF = 8


def compile_cached(profile: dict[str, Any], cache_dir: str | None) -> tuple[bytes, int]:
    """:func:`compile_profile`, remembered in ``cache_dir`` (the executor's runtime directory):
    compiling docker's default profile takes a few milliseconds of every start and exec, reading
    it back well under one.  One file per profile, named by the SHA-256 of the profile (in
    canonical JSON), the machine and this compiler's file; its content the flags (4 bytes)
    then the program.  Written atomically; a file that does not look right is compiled again."""
    if not cache_dir:
        return compile_profile(profile)
    import hashlib
    import json

    st = os.stat(__file__)
    key = hashlib.sha256(json.dumps([profile, os.uname().machine, st.st_size, st.st_mtime_ns],
                                    sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    path = os.path.join(cache_dir, f"{key}.bpf")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) >= 12 and (len(data) - 4) % 8 == 0:
            return data[4:], int.from_bytes(data[:4], "little")
    except OSError:
        pass
    program, flags = compile_profile(profile)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(flags.to_bytes(4, "little") + program)
        os.replace(tmp, path)
    except OSError:
        pass   # a cache: compiling every time is still right
    return program, flags


def compile_profile(profile: dict[str, Any], machine: str | None = None) -> tuple[bytes, int]:
    """The BPF program of an OCI ``linux.seccomp`` object, and its seccomp(2) flags."""
    if not isinstance(profile, dict):
        raise SeccompError("linux.seccomp must be an object")
    machine = machine or os.uname().machine
    native = NATIVE.get(machine)
    if native is None:
        raise SeccompError(f"seccomp is not supported on {machine}")
    default = action_value(profile.get("defaultAction", ""), profile.get("defaultErrnoRet"))
    arches = [a for a in (profile.get("architectures") or [native]) if a in TABLES]
    if native not in arches:
        arches.insert(0, native)
    if native == "SCMP_ARCH_AARCH64":
        arches = [native]   # no 32-bit arm table: those calls hit the bad-architecture action
    flags = 0
    from drivers.executor_container.linux import SECCOMP_FILTER_FLAGS
    for flag in profile.get("flags") or ():
        if flag not in SECCOMP_FILTER_FLAGS:
            raise SeccompError(f"seccomp flag {flag!r} is not supported")
        flags |= SECCOMP_FILTER_FLAGS[flag]

    asm = _Asm()
    bad_arch = RET_KILL_THREAD
    sections = {a: asm.label() for a in arches}
    asm.emit(LD_W_ABS, OFF_ARCH)
    dispatched = set()
    for arch in arches:
        audit = AUDIT_ARCH[arch]
        if audit in dispatched:
            continue        # x32 shares x86_64's audit arch: reached from that section
        dispatched.add(audit)
        target = sections[arch] if arch != "SCMP_ARCH_X32" else sections[arch]
        asm.emit(JEQ_K, audit, 0, 1)
        asm.emit(JA, target)
    asm.emit(RET_K, bad_arch)
    for arch in arches:
        asm.place(sections[arch])
        asm.emit(LD_W_ABS, OFF_NR)
        if AUDIT_ARCH[arch] == AUDIT_ARCH["SCMP_ARCH_X86_64"]:
            x32 = arch == "SCMP_ARCH_X32"
            if x32:
                asm.emit(JSET_K, X32_SYSCALL_BIT, 1, 0)    # a plain x86_64 number here:
                asm.emit(RET_K, bad_arch)                  # x86_64 is not listed
            elif "SCMP_ARCH_X32" in arches:
                asm.emit(JSET_K, X32_SYSCALL_BIT, 0, 1)
                asm.emit(JA, sections["SCMP_ARCH_X32"])
            else:
                asm.emit(JSET_K, X32_SYSCALL_BIT, 0, 1)
                asm.emit(RET_K, bad_arch)
        _section(asm, profile, arch, default)
    return asm.assemble(), flags


def from_docker_profile(profile: dict[str, Any], capabilities: list[str],
                        machine: str | None = None,
                        kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """Docker's seccomp profile format resolved for this host into an OCI ``linux.seccomp``
    object, as dockerd does (moby ``profiles/seccomp``): ``capabilities`` is the bounding set."""
    machine = machine or os.uname().machine
    goarch = GOARCH.get(machine, machine)
    if kernel is None:
        major, minor = os.uname().release.split(".")[:2]
        kernel = (int(major), int("".join(c for c in minor if c.isdigit()) or 0))

    def version(text: str) -> tuple[int, int]:
        a, _, b = text.partition(".")
        return int(a), int(b or 0)

    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    native = NATIVE.get(machine)
    arches: list[str] = []
    for entry in profile.get("archMap") or ():
        if entry["architecture"] == native:
            arches = [native, *(entry.get("subArchitectures") or [])]
    if not arches and profile.get("architectures"):
        arches = list(profile["architectures"])
    if arches:
        out["architectures"] = arches
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    syscalls = []
    for call in profile.get("syscalls") or ():
        exc, inc = call.get("excludes") or {}, call.get("includes") or {}
        if exc.get("arches") and goarch in exc["arches"]:
            continue
        if exc.get("caps") and any(c in capabilities for c in exc["caps"]):
            continue
        if exc.get("minKernel") and kernel >= version(exc["minKernel"]):
            continue
        if inc.get("arches") and goarch not in inc["arches"]:
            continue
        if inc.get("caps") and not all(c in capabilities for c in inc["caps"]):
            continue
        if inc.get("minKernel") and kernel < version(inc["minKernel"]):
            continue
        rule = {"names": list(call.get("names") or [call.get("name")]), "action": call["action"]}
        if call.get("args"):
            rule["args"] = [dict(a) for a in call["args"]]
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out
