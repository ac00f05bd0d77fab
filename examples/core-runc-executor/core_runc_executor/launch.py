"""Start core's shim for one runc container: ``python -I -S launch.py SHIM_DIR HELPER_CODE
STATE ID BUNDLE TERMINAL STDIN STDIN_ONCE WIDTH HEIGHT LOG SOCKET``.

As the built-in launcher (``shim.launch``): ``setsid``, fork; the child becomes a child
subreaper (``PR_SET_CHILD_SUBREAPER`` through ctypes: runc's container init, orphaned when
``runc create`` returns, is re-parented to it) and execs a fresh interpreter running core's
``shim.serve`` with ``HELPER_CODE`` (what it spawns to create a container or an exec) pointing
at this package's ``helper``; the parent prints the shim's verdict (``ok`` / ``error Kind
message``) and exits.
"""
import os
import sys

PR_SET_CHILD_SUBREAPER = 36
SERVE = ("import sys; sys.path.insert(0, sys.argv[1]); import shim; "
         "shim.HELPER_CODE = sys.argv[2]; shim.serve(int(sys.argv[3]), sys.argv[4:])")


def main(argv):
    shim_dir, helper_code, state = argv[0], argv[1], argv[2]
    try:
        os.setsid()
    except OSError:
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        chunks = []
        while True:
            data = os.read(r, 4096)
            if not data:
                break
            chunks.append(data)
        out = b"".join(chunks).decode("utf-8", "replace") or "error CoreError the shim died\n"
        sys.stdout.write(out)
        sys.stdout.flush()
        os._exit(0 if out.startswith("ok") else 1)
    try:
        os.close(r)
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        err = os.open(os.path.join(state, "shim.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                      0o600)
        os.dup2(err, 2)
        os.close(null)
        os.close(err)
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        os.set_inheritable(w, True)
        py = sys.executable
        os.execv(py, [py, "-I", "-S", "-c", SERVE, shim_dir, helper_code, str(w)] + argv[2:])
    except BaseException as exc:
        os.write(w, ("error CoreError starting the shim: %s\n" % exc).encode())
    os._exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
