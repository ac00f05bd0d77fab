"""The signal state a new program expects, restored before a shim or a container's process
starts: every disposition back to its default (signals ignored stay ignored across execve, and
Python ignores SIGPIPE and SIGXFSZ) and an empty signal mask.

Part of the executor kit, C modules only (``_signal``): the zygote imports it as a top-level
module of this directory, a runtime helper as :mod:`core.shim.sigreset`.
"""
import _signal


def reset_signals():
    """Default dispositions for every signal that can have one, then an empty mask."""
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
