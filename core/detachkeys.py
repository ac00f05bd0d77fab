"""Detach keys: the key sequence that detaches a client from an attached container.

Spelled as docker spells it (``--detach-keys``, the ``detachKeys`` attach parameter, the exec
config's ``DetachKeys``, ``detachKeys`` in ``~/.docker/config.json``): keys separated by ``,``,
each either

- one character, taken as it is (``a``, ``x``: one byte),
- ``ctrl-<value>``, ``<value>`` one of ``a``-``z``, ``@``, ``[``, ``\\``, ``]``, ``^``, ``_``
  (ctrl-@ is 0, ctrl-a 1 ... ctrl-z 26, ctrl-[ 27 ... ctrl-_ 31), lower case only,
- ``DEL`` (127).

Nothing else: no spaces around keys, no ``Ctrl-P`` or ``ctrl-P`` — as moby/term's ``ToBytes``,
which both docker's CLI and its daemon use.  The default is ``ctrl-p,ctrl-q``.

Standard library only, and none of it: the CLI's start-up path and the daemon both import this.
"""
from __future__ import annotations

DEFAULT = "ctrl-p,ctrl-q"
DEFAULT_BYTES = b"\x10\x11"

_CTRL_CODES = {f"ctrl-{c}": i for i, c in enumerate("@abcdefghijklmnopqrstuvwxyz[\\]^_")}


class InvalidDetachKeys(ValueError):
    """A key the syntax above does not know; the message is moby/term's ("Unknown character: 'k'")."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Unknown character: '{key}'")
        self.key = key


def to_bytes(keys: str) -> bytes:
    """moby/term ``ToBytes``: ``"ctrl-p,ctrl-q"`` → ``b"\\x10\\x11"``, ``"a,DEL"`` → ``b"a\\x7f"``.

    Raises :class:`InvalidDetachKeys` (a ValueError) at the first key it does not know.
    """
    out = bytearray()
    for key in keys.split(","):
        code = _CTRL_CODES.get(key)
        if code is not None:
            out.append(code)
        elif key == "DEL":
            out.append(127)
        elif len(key) == 1 and key.isascii():
            out.append(ord(key))
        else:
            raise InvalidDetachKeys(key)
    return bytes(out)


def parse_detach_keys(value: str | None) -> bytes:
    """The daemon's reading of a ``detachKeys`` parameter (attach, exec): None or ``""`` give the
    default; a key :func:`to_bytes` does not know raises :class:`core.errors.InvalidArgument`
    with docker's daemon message, ``Invalid detach keys (<value>) provided``."""
    if not value:
        return DEFAULT_BYTES
    try:
        return to_bytes(value)
    except InvalidDetachKeys:
        from core.errors import InvalidArgument

        raise InvalidArgument(f"Invalid detach keys ({value}) provided") from None
